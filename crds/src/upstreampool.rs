//! `UpstreamPool`: the backends a listener proxies to, and how it balances, checks and retries
//! them. The nginx `upstream` block and the `proxy_*` directives of the reference setup live here.

// kube's KubeSchema derive (the CEL rules) copies each validated struct into a private scope;
// `unreachable_pub` reports that copy, so the lint is off here. These types are the public API.
#![allow(unreachable_pub)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Duration,
    names::{DNS_SUBDOMAIN_PATTERN, HOST_PATTERN, STATUS_RANGE_PATTERN, TOKEN_PATTERN},
};

/// Desired state of an upstream pool.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "buoy.io",
    version = "v1alpha1",
    kind = "UpstreamPool",
    plural = "upstreampools",
    singular = "upstreampool",
    namespaced,
    status = "UpstreamPoolStatus",
    shortname = "upool",
    category = "buoy",
    printcolumn = r#"{"name":"Backends","type":"integer","jsonPath":".status.backends.total","description":"Backends in the pool"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.backends.ready","description":"Backends that pass their health checks"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    derive = "PartialEq",
    doc = "A pool of backends that Buoy's proxy balances, health-checks and retries."
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.backends) != has(self.service)").message("exactly one of backends or service must be set"))]
#[x_kube(validation = Rule::new("self.loadBalancing.algorithm != 'ConsistentHash' || !has(self.backends) || self.backends.all(b, !b.backup)").message("backup backends cannot be used with ConsistentHash (as in nginx, hashing has no backup tier)").field_path(".backends"))]
pub struct UpstreamPoolSpec {
    /// Static backends (nginx: `server` lines of an `upstream` block). Exclusive with `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.all(b, self.exists_one(c, c.address == b.address && c.port == b.port))").message("backends must be unique by address and port"))]
    pub backends: Option<Vec<Backend>>,

    /// Backends from a Service's EndpointSlices (ready endpoints only). Exclusive with
    /// `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,

    /// How a backend is chosen for each request (HTTP) or connection (TCP).
    #[serde(default)]
    pub load_balancing: LoadBalancing,

    /// Active and passive health checks.
    #[serde(default)]
    pub health_check: HealthCheck,

    /// Retries to the next backend (nginx: `proxy_next_upstream`, `proxy_next_upstream_tries`).
    #[serde(default)]
    pub retry: Retry,

    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,

    /// Request headers sent to HTTP backends (nginx: `proxy_set_header`).
    #[serde(default)]
    pub http: HttpSettings,

    /// Send the client's address to the backends in a PROXY protocol header, version `V1` (text)
    /// or `V2` (binary), at the start of every backend connection, for HTTP and TCP listeners
    /// (nginx stream: `proxy_protocol on`, which sends V1; HAProxy: `send-proxy`,
    /// `send-proxy-v2`). Active health checks send one too, without a client (V1 `UNKNOWN`, V2
    /// `LOCAL`). A connection then belongs to its client: HTTP backend connections are reused
    /// only by the same client connection, never shared through the keep-alive cache (HAProxy
    /// makes such connections private too). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolVersion>,

    /// TLS to the backends (nginx: `proxy_pass https://`, stream `proxy_ssl on`), for HTTP and
    /// TCP listeners; plain TCP when absent. Backend certificates are verified against
    /// `caSecretName`'s CA, else the host's CA certificates, for the name `serverName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// TLS to a pool's backends. The connection is verified as a browser would: the chain up to a
/// trusted CA, and the name. Only `http/1.1` is offered by ALPN, and sessions are resumed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.caSecretName) || !has(self.insecureSkipVerify) || !self.insecureSkipVerify").message(UPSTREAM_TLS_CA_AND_INSECURE).field_path(".insecureSkipVerify"))]
pub struct UpstreamTls {
    /// The name sent by SNI and verified in the backend's certificate (nginx:
    /// `proxy_ssl_name` with `proxy_ssl_server_name on`). Default: the backend's host name
    /// when its address is a name, else its IP address (then verified against the
    /// certificate's IP address SANs, and not sent by SNI, which carries names only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = HOST_PATTERN))]
    pub server_name: Option<String>,
    /// A Secret in the pool's namespace (in standalone mode, among the files) whose `ca.crt`
    /// holds the PEM CA certificates that backend certificates must chain to (nginx:
    /// `proxy_ssl_trusted_certificate`). Default: the host's CA certificates (Debian's
    /// `ca-certificates`, read from `/etc/ssl/certs`). A Secret that is missing or holds no CA
    /// certificate leaves the pool without usable backends, reported in its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub ca_secret_name: Option<String>,
    /// Accept any backend certificate (nginx: `proxy_ssl_verify off`, its default). The
    /// traffic is encrypted but whoever sits between the proxy and the backends can read and
    /// change it by presenting their own certificate: use only for backends on a trusted
    /// network, while their certificates cannot be verified. Reported as a warning in the
    /// pool's status and by `buoy-agent check`. Exclusive with `caSecretName`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// What a UDP listener whose pool has `tls` says (the agent's status and `buoy-agent check`).
pub fn udp_pool_with_tls(pool: &str) -> String {
    format!(
        "UpstreamPool {pool} has tls, which a UDP listener cannot carry (no DTLS): no datagram is forwarded"
    )
}

/// The CEL message (and `buoy-agent check`'s) for `caSecretName` with `insecureSkipVerify`.
pub const UPSTREAM_TLS_CA_AND_INSECURE: &str = "caSecretName and insecureSkipVerify: true cannot be used together: a CA is for verifying backend certificates, which insecureSkipVerify turns off";

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

/// One static backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxFails) || self.maxFails == 0 || !has(self.failTimeout) || duration(self.failTimeout) > duration('0s')").message("failTimeout must be greater than 0s when maxFails is set").field_path(".failTimeout"))]
pub struct Backend {
    /// IP address or DNS name (resolved when the configuration is loaded).
    #[schemars(length(min = 1, max = 253), regex(pattern = HOST_PATTERN))]
    pub address: String,
    /// TCP port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Relative share of requests, 1..100 (nginx: `weight`, default 1).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: u32,
    /// Used only when every non-backup backend is down (nginx: `backup`).
    #[serde(default)]
    pub backup: bool,
    /// Taken out of rotation without removing it from the list (nginx: `down`).
    #[serde(default)]
    pub down: bool,
    /// Overrides `healthCheck.passive.maxFails` for this backend (nginx: `max_fails`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_fails: Option<u32>,
    /// Overrides `healthCheck.passive.failTimeout` for this backend (nginx: `fail_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_timeout: Option<Duration>,
}

fn default_weight() -> u32 {
    1
}

/// A Service whose ready endpoints are the backends.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// Service name, in the pool's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// The Service port; traffic goes to the matching target port of each endpoint.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// Backend selection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.algorithm == 'ConsistentHash' || (!has(self.hashKey) && !has(self.hashKeyName))").message("hashKey and hashKeyName apply only to the ConsistentHash algorithm").field_path(".hashKey"))]
#[x_kube(validation = Rule::new("!has(self.hashKey) || self.hashKey == 'ClientIP' || has(self.hashKeyName)").message("hashKeyName is required when hashKey is Header or Cookie").field_path(".hashKeyName"))]
#[x_kube(validation = Rule::new("!has(self.hashKeyName) || (has(self.hashKey) && self.hashKey != 'ClientIP')").message("hashKeyName applies only to hashKey Header or Cookie").field_path(".hashKeyName"))]
pub struct LoadBalancing {
    /// `RoundRobin`: smooth weighted round robin (nginx's default); `LeastConnections`: fewest
    /// active requests, weighted (nginx: `least_conn`); `ConsistentHash`: the same key goes to
    /// the same backend while it is up (nginx: `hash … consistent`, `ip_hash`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// What ConsistentHash hashes: the client IP (default), a request header or a cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<HashKey>,
    /// Header or cookie name for hashKey Header or Cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = TOKEN_PATTERN))]
    pub hash_key_name: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum Algorithm {
    #[default]
    RoundRobin,
    LeastConnections,
    ConsistentHash,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum HashKey {
    #[serde(rename = "ClientIP")]
    ClientIp,
    Header,
    Cookie,
}

/// Health checks. A backend is used only while both agree it is up.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Probes sent to every backend on a timer. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    /// Failures seen on real traffic take a backend out for a while (nginx semantics).
    #[serde(default)]
    pub passive: PassiveHealthCheck,
}

/// Active probes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.timeout) > duration('0s') && duration(self.timeout) <= duration(self.interval)").message("timeout must be greater than 0s and at most interval").field_path(".timeout"))]
#[x_kube(validation = Rule::new("duration(self.interval) >= duration('100ms')").message("interval must be at least 100ms").field_path(".interval"))]
#[x_kube(validation = Rule::new("self.protocol != 'TCP' || (!has(self.path) && !has(self.host) && !has(self.expectedStatuses))").message("path, host and expectedStatuses apply only to HTTP and HTTPS health checks").field_path(".protocol"))]
pub struct ActiveHealthCheck {
    /// `TCP`: a connection is opened and closed. `HTTP`: a GET request must answer with an
    /// expected status. `HTTPS`: the same GET over TLS, the backend's certificate not verified
    /// (HAProxy: `check-ssl verify none`), for backends that only speak TLS, such as
    /// Kubernetes API servers (`/livez`). The TLS server name is `host` when it is a DNS name,
    /// else none (the backend's address). A pool with `tls` is checked over its own TLS,
    /// verified as its traffic is, for `HTTP` and `HTTPS` checks alike.
    #[serde(default)]
    pub protocol: HealthCheckProtocol,
    /// HTTP request path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^\s]*$"))]
    pub path: Option<String>,
    /// HTTP `Host` header (default: the backend address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// Statuses or inclusive ranges that count as healthy (default `["200-399"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(r, !r.contains('-') || int(r.split('-')[0]) <= int(r.split('-')[1]))").message("each status range must be written low-high"))]
    pub expected_statuses: Option<Vec<StatusRange>>,
    /// Time between probes of one backend.
    #[serde(default = "default_check_interval")]
    pub interval: Duration,
    /// Time allowed for one probe; at most `interval`.
    #[serde(default = "default_check_timeout")]
    pub timeout: Duration,
    /// Consecutive successes that bring a backend back (rise).
    #[serde(default = "default_healthy_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a backend out (fall).
    #[serde(default = "default_unhealthy_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: u32,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// An HTTP status or inclusive status range: `200`, `200-399`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct StatusRange(pub String);

impl JsonSchema for StatusRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusRange".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "maxLength": 7, "pattern": STATUS_RANGE_PATTERN })
    }
}

impl StatusRange {
    /// The inclusive range; the schema guarantees the shape.
    pub fn bounds(&self) -> Option<(u16, u16)> {
        match self.0.split_once('-') {
            Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
            None => {
                let code = self.0.parse().ok()?;
                Some((code, code))
            }
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum HealthCheckProtocol {
    #[default]
    TCP,
    HTTP,
    HTTPS,
}

/// nginx's passive check, exactly: `maxFails` failed attempts within `failTimeout` mark the
/// backend down for `failTimeout`. `maxFails: 0` turns it off.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxFails == 0 || duration(self.failTimeout) > duration('0s')").message("failTimeout must be greater than 0s when maxFails is set").field_path(".failTimeout"))]
pub struct PassiveHealthCheck {
    /// Failures that take a backend out (nginx: `max_fails`, default 1).
    #[serde(default = "default_max_fails")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_fails: u32,
    /// The window for counting failures and the time out (nginx: `fail_timeout`, default 10s).
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: Duration,
}

fn default_max_fails() -> u32 {
    1
}
fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for PassiveHealthCheck {
    fn default() -> Self {
        PassiveHealthCheck {
            max_fails: default_max_fails(),
            fail_timeout: default_fail_timeout(),
        }
    }
}

/// When a failed attempt is tried again on the next backend.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Total attempts per request, the first included; 1 disables retries
    /// (nginx: `proxy_next_upstream_tries`). Never more than the number of backends.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub attempts: u32,
    /// Conditions that allow a retry: `ConnectFailure` (nginx `error`: the connection failed or
    /// broke before a response header arrived), `Timeout` (nginx `timeout`), `InvalidHeader`
    /// (nginx `invalid_header`), `HTTP500`..`HTTP504`, `HTTP429` (nginx `http_500`, …). Never
    /// after response bytes reached the client. Default: `[ConnectFailure, Timeout]`, nginx's
    /// `error timeout`.
    #[serde(default = "default_retry_on")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub retry_on: Vec<RetryOn>,
    /// Also retry methods that are not idempotent (POST, PATCH, LOCK) (nginx:
    /// `proxy_next_upstream non_idempotent`).
    #[serde(default)]
    pub non_idempotent: bool,
}

fn default_attempts() -> u32 {
    3
}
fn default_retry_on() -> Vec<RetryOn> {
    // nginx's default: `proxy_next_upstream error timeout`.
    vec![RetryOn::ConnectFailure, RetryOn::Timeout]
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: default_attempts(),
            retry_on: default_retry_on(),
            non_idempotent: false,
        }
    }
}

#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum RetryOn {
    ConnectFailure,
    Timeout,
    InvalidHeader,
    #[serde(rename = "HTTP500")]
    Http500,
    #[serde(rename = "HTTP502")]
    Http502,
    #[serde(rename = "HTTP503")]
    Http503,
    #[serde(rename = "HTTP504")]
    Http504,
    #[serde(rename = "HTTP429")]
    Http429,
}

/// Upstream timeouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.connect) > duration('0s') && duration(self.read) > duration('0s') && duration(self.write) > duration('0s') && duration(self.idle) > duration('0s')").message("connect, read, write and idle timeouts must be greater than 0s"))]
pub struct Timeouts {
    /// Establishing a backend connection (nginx: `proxy_connect_timeout`; Buoy defaults to 5s
    /// rather than nginx's 60s so that a dead backend is skipped quickly).
    #[serde(default = "default_connect_timeout")]
    pub connect: Duration,
    /// Between two reads from the backend (nginx: `proxy_read_timeout`, 60s).
    #[serde(default = "default_io_timeout")]
    pub read: Duration,
    /// Between two writes to the backend (nginx: `proxy_send_timeout`, 60s).
    #[serde(default = "default_io_timeout")]
    pub write: Duration,
    /// Idle pooled backend connections are closed after this (HTTP; nginx upstream
    /// `keepalive_timeout`, 60s), and idle TCP streams are cut after it (nginx stream
    /// `proxy_timeout`).
    #[serde(default = "default_io_timeout")]
    pub idle: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_io_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: default_connect_timeout(),
            read: default_io_timeout(),
            write: default_io_timeout(),
            idle: default_io_timeout(),
        }
    }
}

/// Headers sent to HTTP backends, as the reference nginx config sets them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Pass the client's host, as nginx's `proxy_set_header Host $host` does (lower case,
    /// without the port); otherwise the backend's `address:port` is sent.
    #[serde(default = "default_true")]
    pub preserve_host: bool,
    /// Append the client address to `X-Forwarded-For`
    /// (nginx: `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`).
    #[serde(default = "default_true", rename = "xForwardedFor")]
    pub x_forwarded_for: bool,
    /// Set `X-Real-IP` to the client address, replacing any value the client sent
    /// (nginx: `proxy_set_header X-Real-IP $remote_addr`).
    #[serde(default = "default_true", rename = "xRealIP")]
    pub x_real_ip: bool,
    /// Set `X-Forwarded-Proto` to the listener's scheme.
    #[serde(default = "default_true", rename = "xForwardedProto")]
    pub x_forwarded_proto: bool,
    /// Idle keep-alive connections kept per backend (nginx: upstream `keepalive`); 0 disables
    /// connection reuse.
    #[serde(default = "default_keepalive_connections")]
    #[schemars(range(min = 0, max = 10000))]
    pub keepalive_connections: u32,
}

fn default_true() -> bool {
    true
}
fn default_keepalive_connections() -> u32 {
    128
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            preserve_host: true,
            x_forwarded_for: true,
            x_real_ip: true,
            x_forwarded_proto: true,
            keepalive_connections: default_keepalive_connections(),
        }
    }
}

/// Observed state of a pool.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamPoolStatus {
    /// The `metadata.generation` that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: at least one backend is healthy. `Degraded`: some backends are unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Backend counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<BackendCounts>,
    /// One entry per node whose proxy uses the pool, each written by that node's agent: the
    /// backends it has (names resolved), those that pass its health checks, and what is wrong
    /// with the others (a name that does not resolve, a backend refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<PoolNodeStatus>,
}

/// What one node's agent reports about a pool.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolNodeStatus {
    /// Node name.
    pub node: String,
    /// Backends on this node (each address of a name counts) and the ready ones.
    pub backends: BackendCounts,
    /// Why some backends of the spec are not there, when some are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
/// How many backends a pool has, and how many are ready.
pub struct BackendCounts {
    /// Backends in the pool (static, or endpoints of the Service).
    pub total: u32,
    /// Backends that pass their health checks.
    pub ready: u32,
}
