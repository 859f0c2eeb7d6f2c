//! Every bad input gets a clear error at the right field path. Each case starts from a valid
//! object, breaks one thing, and asserts the exact message and path.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;

use buoy_crds::{
    FieldError, UpstreamPool, VirtualIP,
    manifest::{self, Object},
    validation::{cel_compilation_errors, validate_value},
};
use serde_json::{Value, json};

fn valid_vip() -> Value {
    json!({
        "apiVersion": "buoy.io/v1alpha1",
        "kind": "VirtualIP",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "addresses": ["192.168.60.88/24"],
            "virtualRouterID": 51,
            "vrrp": {"version": 3, "advertisementInterval": "100ms"},
            "priorities": [{"node": "n1", "priority": 100}, {"node": "n2", "priority": 99}],
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "upstreamPool": "web"}]
        }
    })
}

fn valid_pool() -> Value {
    json!({
        "apiVersion": "buoy.io/v1alpha1",
        "kind": "UpstreamPool",
        "metadata": {"name": "web"},
        "spec": {
            "backends": [
                {"address": "192.168.60.91", "port": 80, "maxFails": 2, "failTimeout": "15s"},
                {"address": "192.168.60.92", "port": 80}
            ]
        }
    })
}

/// Applies `patch` (a JSON merge patch, RFC 7386) to `base`.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn vip_errors(patch: Value) -> Vec<FieldError> {
    let mut v = valid_vip();
    merge(&mut v, &patch);
    validate_value::<VirtualIP>(&v)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

fn pool_errors(patch: Value) -> Vec<FieldError> {
    let mut v = valid_pool();
    merge(&mut v, &patch);
    validate_value::<UpstreamPool>(&v)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

#[track_caller]
fn assert_one(errors: Vec<FieldError>, path: &str, message: &str) {
    assert_eq!(
        errors,
        vec![FieldError {
            path: path.into(),
            message: message.into()
        }]
    );
}

#[test]
fn the_crd_rules_all_compile() {
    assert_eq!(cel_compilation_errors::<VirtualIP>(), Vec::<String>::new());
    assert_eq!(
        cel_compilation_errors::<UpstreamPool>(),
        Vec::<String>::new()
    );
}

#[test]
fn valid_objects_pass() {
    assert_eq!(vip_errors(json!({})), vec![]);
    assert_eq!(pool_errors(json!({})), vec![]);
    // Minimal objects: everything else defaulted.
    let minimal = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "metadata": {"name": "v"},
        "spec": {"addresses": ["fd00::88"]}});
    assert_eq!(validate_value::<VirtualIP>(&minimal), Ok(()));
    let v2 = json!({"spec": {"addresses": ["10.0.0.1", "10.0.0.2/24"], "vrrp": {"version": 2, "advertisementInterval": "3s",
        "authentication": {"type": "Password", "secretRef": {"name": "vrrp", "key": "password"}},
        "unicast": true, "unicastPeers": ["10.0.0.5"]}}});
    assert_eq!(vip_errors(v2), vec![]);
}

#[test]
fn vip_bad_address() {
    assert_one(
        vip_errors(json!({"spec": {"addresses": ["192.168.60.88", "300.1.1.1"]}})),
        "spec.addresses[1]",
        "must be an IP address, optionally with a prefix length (192.168.60.88/24, fd00::88/64)",
    );
}

#[test]
fn vip_bad_prefix() {
    assert_one(
        vip_errors(json!({"spec": {"addresses": ["192.168.60.88/33"]}})),
        "spec.addresses[0]",
        "must be an IP address, optionally with a prefix length (192.168.60.88/24, fd00::88/64)",
    );
}

#[test]
fn vip_no_addresses() {
    assert_one(
        vip_errors(json!({"spec": {"addresses": []}})),
        "spec.addresses",
        "Invalid value: 0: must have at least 1 items",
    );
}

#[test]
fn vip_too_many_addresses() {
    let many: Vec<String> = (1..=17).map(|i| format!("10.0.0.{i}")).collect();
    assert_one(
        vip_errors(json!({"spec": {"addresses": many}})),
        "spec.addresses",
        "Too many: 17: must have at most 16 items",
    );
}

#[test]
fn vip_mixed_families() {
    assert_one(
        vip_errors(json!({"spec": {"addresses": ["192.168.60.88", "fd00::88"]}})),
        "spec.addresses",
        "all addresses must be of one family (all IPv4 or all IPv6)",
    );
}

#[test]
fn vip_duplicate_address() {
    assert_one(
        vip_errors(json!({"spec": {"addresses": ["10.0.0.1", "10.0.0.1"]}})),
        "spec.addresses[1]",
        "Duplicate value: \"10.0.0.1\"",
    );
}

#[test]
fn vip_missing_addresses() {
    assert_one(
        vip_errors(json!({"spec": {"addresses": null}})),
        "spec.addresses",
        "Required value",
    );
}

#[test]
fn vip_vrid_out_of_range() {
    assert_one(
        vip_errors(json!({"spec": {"virtualRouterID": 256}})),
        "spec.virtualRouterID",
        "Invalid value: 256: must be less than or equal to 255",
    );
    assert_one(
        vip_errors(json!({"spec": {"virtualRouterID": 0}})),
        "spec.virtualRouterID",
        "Invalid value: 0: must be greater than or equal to 1",
    );
}

#[test]
fn vip_bad_version() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"version": 4}}})),
        "spec.vrrp.version",
        "Unsupported value: 4: supported values: \"2\", \"3\"",
    );
}

#[test]
fn vip_v3_interval_too_short() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"advertisementInterval": "5ms"}}})),
        "spec.vrrp.advertisementInterval",
        "with VRRP version 3, advertisementInterval must be from 10ms to 40.95s in steps of 10ms",
    );
}

#[test]
fn vip_v3_interval_not_centiseconds() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"advertisementInterval": "105ms"}}})),
        "spec.vrrp.advertisementInterval",
        "with VRRP version 3, advertisementInterval must be from 10ms to 40.95s in steps of 10ms",
    );
}

#[test]
fn vip_v3_interval_too_long() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"advertisementInterval": "41s"}}})),
        "spec.vrrp.advertisementInterval",
        "with VRRP version 3, advertisementInterval must be from 10ms to 40.95s in steps of 10ms",
    );
}

#[test]
fn vip_v2_interval_not_whole_seconds() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"version": 2, "advertisementInterval": "1500ms"}}})),
        "spec.vrrp.advertisementInterval",
        "with VRRP version 2, advertisementInterval must be a whole number of seconds from 1s to 255s",
    );
}

#[test]
fn vip_v2_with_ipv6() {
    assert_one(
        vip_errors(
            json!({"spec": {"addresses": ["fd00::88"], "vrrp": {"version": 2, "advertisementInterval": "1s"}}}),
        ),
        "spec.vrrp.version",
        "VRRP version 2 supports IPv4 only; use version 3 for IPv6 addresses",
    );
}

#[test]
fn vip_auth_with_v3() {
    assert_one(
        vip_errors(
            json!({"spec": {"vrrp": {"authentication": {"type": "Password", "secretRef": {"name": "s", "key": "k"}}}}}),
        ),
        "spec.vrrp.authentication",
        "authentication is only supported with VRRP version 2 (RFC 5798 removed it from version 3)",
    );
}

#[test]
fn vip_bad_auth_type() {
    assert_one(
        vip_errors(
            json!({"spec": {"vrrp": {"version": 2, "advertisementInterval": "1s", "authentication": {"type": "AH", "secretRef": {"name": "s", "key": "k"}}}}}),
        ),
        "spec.vrrp.authentication.type",
        "Unsupported value: \"AH\": supported values: \"Password\"",
    );
}

#[test]
fn vip_bad_duration_syntax() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"advertisementInterval": "1 second"}}})),
        "spec.vrrp.advertisementInterval",
        "Invalid value: \"1 second\": must match '^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$'",
    );
}

#[test]
fn vip_peers_without_unicast() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"unicastPeers": ["192.168.60.94"]}}})),
        "spec.vrrp.unicastPeers",
        "unicastPeers requires unicast: true",
    );
}

#[test]
fn vip_peer_family_mismatch() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"unicast": true, "unicastPeers": ["fd00::94"]}}})),
        "spec.vrrp.unicastPeers",
        "unicastPeers must be of the same address family as addresses",
    );
}

#[test]
fn vip_peer_not_an_ip() {
    assert_one(
        vip_errors(
            json!({"spec": {"vrrp": {"unicast": true, "unicastPeers": ["192.168.60.94/24"]}}}),
        ),
        "spec.vrrp.unicastPeers[0]",
        "must be an IP address without a prefix length",
    );
}

#[test]
fn vip_preempt_delay_too_long() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"preemptDelay": "20m"}}})),
        "spec.vrrp.preemptDelay",
        "preemptDelay must be at most 1000s",
    );
}

#[test]
fn vip_garp_refresh_too_fast() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"gratuitousARP": {"refreshInterval": "100ms"}}}})),
        "spec.vrrp.gratuitousARP.refreshInterval",
        "refreshInterval must be 0s (off) or at least 1s",
    );
}

#[test]
fn vip_priority_out_of_range() {
    assert_one(
        vip_errors(json!({"spec": {"priorities": [{"node": "n1", "priority": 255}]}})),
        "spec.priorities[0].priority",
        "Invalid value: 255: must be less than or equal to 254",
    );
}

#[test]
fn vip_duplicate_priority_node() {
    assert_one(
        vip_errors(
            json!({"spec": {"priorities": [{"node": "n1", "priority": 100}, {"node": "n1", "priority": 90}]}}),
        ),
        "spec.priorities[1]",
        "Duplicate value: {\"node\":\"n1\"}",
    );
}

#[test]
fn vip_duplicate_listener_name() {
    assert_one(
        vip_errors(json!({"spec": {"listeners": [
        {"name": "http", "port": 80, "upstreamPool": "web"}, {"name": "http", "port": 81, "upstreamPool": "web"}]}})),
        "spec.listeners[1]",
        "Duplicate value: {\"name\":\"http\"}",
    );
}

#[test]
fn vip_duplicate_listener_port() {
    assert_one(
        vip_errors(json!({"spec": {"listeners": [
        {"name": "http", "port": 80, "upstreamPool": "web"}, {"name": "mysql", "port": 80, "protocol": "TCP", "upstreamPool": "db"}]}})),
        "spec.listeners",
        "listener ports must be unique",
    );
}

#[test]
fn vip_bad_listener_protocol() {
    assert_one(
        vip_errors(
            json!({"spec": {"listeners": [{"name": "http", "port": 80, "protocol": "UDP", "upstreamPool": "web"}]}}),
        ),
        "spec.listeners[0].protocol",
        "Unsupported value: \"UDP\": supported values: \"HTTP\", \"TCP\"",
    );
}

#[test]
fn vip_listener_port_zero() {
    assert_one(
        vip_errors(
            json!({"spec": {"listeners": [{"name": "http", "port": 0, "upstreamPool": "web"}]}}),
        ),
        "spec.listeners[0].port",
        "Invalid value: 0: must be greater than or equal to 1",
    );
}

#[test]
fn vip_listener_without_pool() {
    assert_one(
        vip_errors(json!({"spec": {"listeners": [{"name": "http", "port": 80}]}})),
        "spec.listeners[0].upstreamPool",
        "Required value",
    );
}

#[test]
fn vip_http_settings_on_tcp_listener() {
    assert_one(
        vip_errors(
            json!({"spec": {"listeners": [{"name": "db", "port": 3306, "protocol": "TCP", "upstreamPool": "db",
        "client": {"keepaliveTimeout": "65s"}}]}}),
        ),
        "spec.listeners[0].client",
        "HTTP client settings (headerTimeout, keepaliveTimeout, maxRequestHeaderBytes, maxRequestBodyBytes) apply only to HTTP listeners",
    );
}

#[test]
fn vip_track_upstreams_without_listeners() {
    assert_one(
        vip_errors(json!({"spec": {"listeners": [], "track": {"upstreams": {"weight": 2}}}})),
        "spec.track.upstreams",
        "track.upstreams needs at least one listener whose backends can be tracked",
    );
}

#[test]
fn vip_track_weight_out_of_range() {
    assert_one(
        vip_errors(json!({"spec": {"track": {"upstreams": {"weight": 300}}}})),
        "spec.track.upstreams.weight",
        "Invalid value: 300: must be less than or equal to 253",
    );
}

#[test]
fn vip_bad_interface_name() {
    assert_one(
        vip_errors(json!({"spec": {"interface": "a-very-long-interface-name"}})),
        "spec.interface",
        "Invalid value: \"a-very-long-interface-name\": must match '^[A-Za-z0-9_.:@+-]{1,15}$'",
    );
}

#[test]
fn vip_unknown_field_is_reported() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"preemt": false}}})),
        "spec.vrrp.preemt",
        "field not declared in schema",
    );
}

#[test]
fn vip_wrong_type() {
    assert_one(
        vip_errors(json!({"spec": {"vrrp": {"preempt": "no"}}})),
        "spec.vrrp.preempt",
        "Invalid value: \"string\": must be of type boolean",
    );
}

#[test]
fn vip_bad_name() {
    assert_one(
        vip_errors(json!({"metadata": {"name": "Web_VIP"}})),
        "metadata.name",
        "Invalid value: \"Web_VIP\": must be at most 253 lowercase letters, digits, '-' (and '.' for names), starting and ending with a letter or digit",
    );
}

#[test]
fn pool_both_backends_and_service() {
    assert_one(
        pool_errors(json!({"spec": {"service": {"name": "web", "port": 80}}})),
        "spec",
        "exactly one of backends or service must be set",
    );
}

#[test]
fn pool_neither_backends_nor_service() {
    assert_one(
        pool_errors(json!({"spec": {"backends": null}})),
        "spec",
        "exactly one of backends or service must be set",
    );
}

#[test]
fn pool_weight_out_of_range() {
    assert_one(
        pool_errors(
            json!({"spec": {"backends": [{"address": "10.0.0.1", "port": 80, "weight": 101}]}}),
        ),
        "spec.backends[0].weight",
        "Invalid value: 101: must be less than or equal to 100",
    );
}

#[test]
fn pool_duplicate_backend() {
    assert_one(
        pool_errors(
            json!({"spec": {"backends": [{"address": "10.0.0.1", "port": 80}, {"address": "10.0.0.1", "port": 80, "weight": 2}]}}),
        ),
        "spec.backends",
        "backends must be unique by address and port",
    );
}

#[test]
fn pool_bad_backend_address() {
    assert_one(
        pool_errors(json!({"spec": {"backends": [{"address": "web server", "port": 80}]}})),
        "spec.backends[0].address",
        &format!(
            "Invalid value: \"web server\": must match '{}'",
            buoy_crds::names::HOST_PATTERN
        ),
    );
}

#[test]
fn pool_backup_with_consistent_hash() {
    assert_one(
        pool_errors(
            json!({"spec": {"loadBalancing": {"algorithm": "ConsistentHash"},
        "backends": [{"address": "10.0.0.1", "port": 80}, {"address": "10.0.0.2", "port": 80, "backup": true}]}}),
        ),
        "spec.backends",
        "backup backends cannot be used with ConsistentHash (as in nginx, hashing has no backup tier)",
    );
}

#[test]
fn pool_header_hash_without_name() {
    assert_one(
        pool_errors(
            json!({"spec": {"loadBalancing": {"algorithm": "ConsistentHash", "hashKey": "Header"}}}),
        ),
        "spec.loadBalancing.hashKeyName",
        "hashKeyName is required when hashKey is Header or Cookie",
    );
}

#[test]
fn pool_hash_key_without_consistent_hash() {
    assert_one(
        pool_errors(json!({"spec": {"loadBalancing": {"hashKey": "ClientIP"}}})),
        "spec.loadBalancing.hashKey",
        "hashKey and hashKeyName apply only to the ConsistentHash algorithm",
    );
}

#[test]
fn pool_bad_algorithm() {
    assert_one(
        pool_errors(json!({"spec": {"loadBalancing": {"algorithm": "Random"}}})),
        "spec.loadBalancing.algorithm",
        "Unsupported value: \"Random\": supported values: \"RoundRobin\", \"LeastConnections\", \"ConsistentHash\"",
    );
}

#[test]
fn pool_health_timeout_above_interval() {
    assert_one(
        pool_errors(
            json!({"spec": {"healthCheck": {"active": {"interval": "1s", "timeout": "2s"}}}}),
        ),
        "spec.healthCheck.active.timeout",
        "timeout must be greater than 0s and at most interval",
    );
}

#[test]
fn pool_health_interval_too_short() {
    assert_one(
        pool_errors(
            json!({"spec": {"healthCheck": {"active": {"interval": "10ms", "timeout": "5ms"}}}}),
        ),
        "spec.healthCheck.active.interval",
        "interval must be at least 100ms",
    );
}

#[test]
fn pool_http_fields_on_tcp_check() {
    assert_one(
        pool_errors(
            json!({"spec": {"healthCheck": {"active": {"protocol": "TCP", "path": "/healthz"}}}}),
        ),
        "spec.healthCheck.active.protocol",
        "path, host and expectedStatuses apply only to HTTP health checks",
    );
}

#[test]
fn pool_bad_status_range() {
    assert_one(
        pool_errors(
            json!({"spec": {"healthCheck": {"active": {"protocol": "HTTP", "expectedStatuses": ["200-99x"]}}}}),
        ),
        "spec.healthCheck.active.expectedStatuses[0]",
        &format!(
            "Invalid value: \"200-99x\": must match '{}'",
            buoy_crds::names::STATUS_RANGE_PATTERN
        ),
    );
}

#[test]
fn pool_reversed_status_range() {
    assert_one(
        pool_errors(
            json!({"spec": {"healthCheck": {"active": {"protocol": "HTTP", "expectedStatuses": ["399-200"]}}}}),
        ),
        "spec.healthCheck.active.expectedStatuses",
        "each status range must be written low-high",
    );
}

#[test]
fn pool_zero_connect_timeout() {
    assert_one(
        pool_errors(json!({"spec": {"timeouts": {"connect": "0s"}}})),
        "spec.timeouts",
        "connect, read, write and idle timeouts must be greater than 0s",
    );
}

#[test]
fn pool_passive_zero_fail_timeout() {
    assert_one(
        pool_errors(
            json!({"spec": {"healthCheck": {"passive": {"maxFails": 3, "failTimeout": "0s"}}}}),
        ),
        "spec.healthCheck.passive.failTimeout",
        "failTimeout must be greater than 0s when maxFails is set",
    );
}

#[test]
fn pool_bad_retry_condition() {
    assert_one(
        pool_errors(json!({"spec": {"retry": {"on": ["HTTP404"]}}})),
        "spec.retry.on[0]",
        "Unsupported value: \"HTTP404\": supported values: \"ConnectFailure\", \"Timeout\", \"InvalidHeader\", \"HTTP500\", \"HTTP502\", \"HTTP503\", \"HTTP504\", \"HTTP429\"",
    );
}

#[test]
fn pool_retry_attempts_out_of_range() {
    assert_one(
        pool_errors(json!({"spec": {"retry": {"attempts": 0}}})),
        "spec.retry.attempts",
        "Invalid value: 0: must be greater than or equal to 1",
    );
}

#[test]
fn several_errors_are_all_reported() {
    let errors = vip_errors(
        json!({"spec": {"virtualRouterID": 300, "vrrp": {"version": 5}, "listeners": [{"name": "Bad Name", "port": 80, "upstreamPool": "web"}]}}),
    );
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "spec.listeners[0].name",
            "spec.virtualRouterID",
            "spec.vrrp.version"
        ]
    );
}

#[test]
fn typed_validate_matches_value_validation() {
    let mut vip: VirtualIP = serde_json::from_value(valid_vip()).unwrap();
    assert_eq!(vip.validate(), Ok(()));
    vip.spec.vrrp.version = 2; // with a 100ms interval and no other change
    let errors = vip.validate().unwrap_err().0;
    assert_eq!(errors, vec![FieldError {
        path: "spec.vrrp.advertisementInterval".into(),
        message: "with VRRP version 2, advertisementInterval must be a whole number of seconds from 1s to 255s".into()
    }]);
    let pool: UpstreamPool = serde_json::from_value(valid_pool()).unwrap();
    assert_eq!(pool.validate(), Ok(()));
}

#[test]
fn manifest_errors_name_file_document_and_object() {
    let text = "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {name: ok}\nspec: {backends: [{address: 10.0.0.1, port: 80}]}\n---\n\
                apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web, namespace: prod}\nspec: {addresses: [10.0.0.300]}\n---\n\
                apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n";
    let errors = manifest::parse(Path::new("buoy.yaml"), text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "buoy.yaml: document 2 (VirtualIP prod/web): spec.addresses[0]: must be an IP address, optionally with a prefix length (192.168.60.88/24, fd00::88/64)",
            "buoy.yaml: document 3 (Deployment default/x): kind: Unsupported value: \"apps/v1, Kind=Deployment\": supported: buoy.io/v1alpha1 VirtualIP, buoy.io/v1alpha1 UpstreamPool, v1 Secret",
        ]
    );
}

#[test]
fn manifest_yaml_syntax_error_has_a_location() {
    let errors = manifest::parse(
        Path::new("bad.yaml"),
        "kind: VirtualIP\nspec: {addresses: [\n",
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    let shown = errors[0].to_string();
    assert!(
        shown.starts_with("bad.yaml: document 1: invalid YAML: ") && shown.contains("line"),
        "{shown}"
    );
}

#[test]
fn manifest_defaults_are_applied_when_typed() {
    let text = "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: web}\nspec: {addresses: [10.0.0.1]}\n";
    let objects = manifest::parse(Path::new("v.yaml"), text).unwrap();
    let Object::VirtualIP(vip) = &objects[0].object else {
        panic!("not a VirtualIP")
    };
    assert_eq!(vip.spec.vrrp.version, 3);
    assert_eq!(vip.spec.vrrp.advertisement_interval.to_string(), "1s");
    assert!(vip.spec.vrrp.preempt);
    assert_eq!(vip.spec.vrrp.gratuitous_arp.repeat, 5);
    assert_eq!(vip.spec.vrrp.gratuitous_arp.delay.to_string(), "5s");
}
