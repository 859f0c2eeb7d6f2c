//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed imperative
//! commands send them (`kubectl create namespace|secret|configmap|service|…`; `apply`, `label`,
//! `patch` and `delete` send JSON). A body is the magic `k8s\0` and a `runtime.Unknown` whose
//! `typeMeta` names the kind and whose `raw` holds the typed message.
//!
//! [`decode`] turns a body into the JSON object the same request would have carried as JSON, so
//! the server goes on as for a JSON body. The messages come from `k8s-pb` (prost); the conversion
//! to JSON is written here for the kinds these commands create, field by field after the Go
//! types' JSON tags. Go's protobuf encoding writes every non-pointer field, empty ones too, so an
//! empty string, a zero number or `false` in such a field is left out, as `omitempty` leaves it
//! out of the JSON; pointer fields (`immutable`, `appProtocol`, …) are written only when set and
//! are kept as they come. Other kinds get a 415 that names them. `managedFields` are not decoded:
//! the server keeps its own.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::jiff::Timestamp;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value, json};

use super::error::ApiError;

/// The four bytes that start every Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the magic \"k8s\\0\"")]
    NoMagic,
    #[error("invalid protobuf envelope (runtime.Unknown): {0}")]
    Envelope(prost::DecodeError),
    #[error("the protobuf envelope names no apiVersion and kind")]
    NoTypeMeta,
    #[error("unsupported content encoding {0:?} in the protobuf envelope")]
    ContentEncoding(String),
    #[error("invalid protobuf {kind}: {source}")]
    Message {
        kind: String,
        source: prost::DecodeError,
    },
    #[error("unsupported content type {0:?} in the protobuf envelope")]
    ContentType(String),
    #[error("invalid time in the protobuf {kind}: {seconds} s since the epoch")]
    Time { kind: String, seconds: i64 },
    #[error(
        "this test server cannot decode {api_version} {kind} from protobuf; send it as JSON or YAML (kubectl apply -f, kubectl create -f)"
    )]
    UnsupportedKind { api_version: String, kind: String },
}

impl From<ProtobufError> for ApiError {
    fn from(e: ProtobufError) -> Self {
        match e {
            ProtobufError::UnsupportedKind { .. } => {
                ApiError::new(415, "UnsupportedMediaType", e.to_string())
            }
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

/// Decodes a protobuf request body into the JSON object (with `apiVersion` and `kind`) that the
/// same request would have carried as JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let unknown = Unknown::decode(envelope).map_err(ProtobufError::Envelope)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::NoTypeMeta);
    }
    if let Some(enc) = unknown.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::ContentEncoding(enc));
    }
    // kubectl leaves contentType empty: the raw object is protobuf.
    if let Some(ct) = unknown
        .content_type
        .filter(|ct| !ct.is_empty() && ct != "application/vnd.kubernetes.protobuf")
    {
        return Err(ProtobufError::ContentType(ct));
    }
    let raw = unknown.raw.unwrap_or_default();
    let c = Conv { kind: &kind };
    let fields = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => c.namespace(&c.message(&raw)?)?,
        ("v1", "Secret") => c.secret(&c.message(&raw)?)?,
        ("v1", "ConfigMap") => c.config_map(&c.message(&raw)?)?,
        ("v1", "Service") => c.service(&c.message(&raw)?)?,
        ("v1", "ServiceAccount") => c.service_account(&c.message(&raw)?)?,
        ("rbac.authorization.k8s.io/v1", "Role") => c.role(&c.message(&raw)?)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => c.cluster_role(&c.message(&raw)?)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => c.role_binding(&c.message(&raw)?)?,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            let b: rbac::ClusterRoleBinding = c.message(&raw)?;
            c.binding(b.metadata.as_ref(), &b.subjects, b.role_ref.as_ref())?
        }
        ("policy/v1", "PodDisruptionBudget") => c.pdb(&c.message(&raw)?)?,
        _ => return Err(ProtobufError::UnsupportedKind { api_version, kind }),
    };
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = fields {
        obj.extend(fields);
    }
    Ok(Value::Object(obj))
}

/// A JSON object built field by field, leaving out what Go's `omitempty` leaves out.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn set(mut self, k: &str, v: Value) -> Self {
        self.0.insert(k.into(), v);
        self
    }
    /// A non-pointer string: left out when empty.
    fn str(self, k: &str, v: Option<&String>) -> Self {
        match v.filter(|s| !s.is_empty()) {
            Some(s) => self.set(k, json!(s)),
            None => self,
        }
    }
    /// A non-pointer number: left out when zero.
    fn num(self, k: &str, v: Option<impl Into<i64>>) -> Self {
        match v.map(Into::into).filter(|n| *n != 0) {
            Some(n) => self.set(k, json!(n)),
            None => self,
        }
    }
    /// A non-pointer bool: left out when false.
    fn flag(self, k: &str, v: Option<bool>) -> Self {
        if v == Some(true) {
            self.set(k, json!(true))
        } else {
            self
        }
    }
    /// A pointer field (or one without `omitempty`): kept whenever it came.
    fn some<T: serde::Serialize>(self, k: &str, v: Option<T>) -> Self {
        match v {
            Some(v) => self.set(k, json!(v)),
            None => self,
        }
    }
    fn strs(self, k: &str, v: &[String]) -> Self {
        if v.is_empty() {
            self
        } else {
            self.set(k, json!(v))
        }
    }
    fn map(self, k: &str, v: &BTreeMap<String, String>) -> Self {
        if v.is_empty() {
            self
        } else {
            self.set(k, json!(v))
        }
    }
    /// Bytes by key, base64 as in JSON.
    fn bytes(self, k: &str, v: &BTreeMap<String, Vec<u8>>) -> Self {
        if v.is_empty() {
            return self;
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let m: Map<String, Value> = v
            .iter()
            .map(|(k, b)| (k.clone(), json!(b64.encode(b))))
            .collect();
        self.set(k, Value::Object(m))
    }
    fn list(self, k: &str, v: Vec<Value>) -> Self {
        if v.is_empty() {
            self
        } else {
            self.set(k, Value::Array(v))
        }
    }
    /// A nested message: kept whenever it came (Go writes non-pointer structs always, pointer
    /// ones when set, in protobuf and JSON alike).
    fn obj(self, k: &str, v: Option<Value>) -> Self {
        self.some(k, v)
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// Conversions of one object's messages, named after its kind in errors.
struct Conv<'a> {
    kind: &'a str,
}

type Res = Result<Value, ProtobufError>;

impl Conv<'_> {
    fn message<M: Message + Default>(&self, raw: &[u8]) -> Result<M, ProtobufError> {
        M::decode(raw).map_err(|source| ProtobufError::Message {
            kind: self.kind.to_string(),
            source,
        })
    }

    /// `metav1.Time`: RFC 3339 to the second; the zero time (an empty message) is null.
    fn time(&self, t: &meta::Time) -> Res {
        let seconds = t.seconds.unwrap_or(0);
        if seconds == 0 && t.nanos.unwrap_or(0) == 0 {
            return Ok(Value::Null);
        }
        Timestamp::from_second(seconds)
            .map(|ts| json!(ts.to_string()))
            .map_err(|_| ProtobufError::Time {
                kind: self.kind.to_string(),
                seconds,
            })
    }

    fn opt_time(&self, t: Option<&meta::Time>) -> Result<Option<Value>, ProtobufError> {
        t.map(|t| self.time(t)).transpose()
    }

    fn meta(&self, m: Option<&meta::ObjectMeta>) -> Result<Option<Value>, ProtobufError> {
        let Some(m) = m else { return Ok(None) };
        let owners = m
            .owner_references
            .iter()
            .map(|o| {
                Obj::default()
                    .some("apiVersion", o.api_version.as_ref())
                    .some("kind", o.kind.as_ref())
                    .some("name", o.name.as_ref())
                    .some("uid", o.uid.as_ref())
                    .some("controller", o.controller)
                    .some("blockOwnerDeletion", o.block_owner_deletion)
                    .done()
            })
            .collect();
        // creationTimestamp has no omitempty: JSON writes null for the zero time.
        let created = self
            .opt_time(m.creation_timestamp.as_ref())?
            .unwrap_or(Value::Null);
        Ok(Some(
            Obj::default()
                .str("name", m.name.as_ref())
                .str("generateName", m.generate_name.as_ref())
                .str("namespace", m.namespace.as_ref())
                .str("uid", m.uid.as_ref())
                .str("resourceVersion", m.resource_version.as_ref())
                .num("generation", m.generation)
                .set("creationTimestamp", created)
                .some(
                    "deletionTimestamp",
                    self.opt_time(m.deletion_timestamp.as_ref())?,
                )
                .some(
                    "deletionGracePeriodSeconds",
                    m.deletion_grace_period_seconds,
                )
                .map("labels", &m.labels)
                .map("annotations", &m.annotations)
                .list("ownerReferences", owners)
                .strs("finalizers", &m.finalizers)
                .done(),
        ))
    }

    fn conditions(&self, cs: &[meta::Condition]) -> Result<Vec<Value>, ProtobufError> {
        cs.iter()
            .map(|c| {
                Ok(Obj::default()
                    .some("type", c.r#type.as_ref())
                    .some("status", c.status.as_ref())
                    .num("observedGeneration", c.observed_generation)
                    .set(
                        "lastTransitionTime",
                        self.opt_time(c.last_transition_time.as_ref())?
                            .unwrap_or(Value::Null),
                    )
                    .some("reason", c.reason.as_ref())
                    .some("message", c.message.as_ref())
                    .done())
            })
            .collect()
    }

    fn namespace(&self, n: &core::Namespace) -> Res {
        let spec = n
            .spec
            .as_ref()
            .map(|s| Obj::default().strs("finalizers", &s.finalizers).done());
        let status = match &n.status {
            Some(s) => {
                let conditions = s
                    .conditions
                    .iter()
                    .map(|c| {
                        Ok(Obj::default()
                            .str("type", c.r#type.as_ref())
                            .str("status", c.status.as_ref())
                            .some(
                                "lastTransitionTime",
                                self.opt_time(c.last_transition_time.as_ref())?,
                            )
                            .str("reason", c.reason.as_ref())
                            .str("message", c.message.as_ref())
                            .done())
                    })
                    .collect::<Result<Vec<_>, ProtobufError>>()?;
                Some(
                    Obj::default()
                        .str("phase", s.phase.as_ref())
                        .list("conditions", conditions)
                        .done(),
                )
            }
            None => None,
        };
        Ok(Obj::default()
            .obj("metadata", self.meta(n.metadata.as_ref())?)
            .obj("spec", spec)
            .obj("status", status)
            .done())
    }

    fn secret(&self, s: &core::Secret) -> Res {
        Ok(Obj::default()
            .obj("metadata", self.meta(s.metadata.as_ref())?)
            .some("immutable", s.immutable)
            .bytes("data", &s.data)
            .map("stringData", &s.string_data)
            .str("type", s.r#type.as_ref())
            .done())
    }

    fn config_map(&self, c: &core::ConfigMap) -> Res {
        Ok(Obj::default()
            .obj("metadata", self.meta(c.metadata.as_ref())?)
            .some("immutable", c.immutable)
            .map("data", &c.data)
            .bytes("binaryData", &c.binary_data)
            .done())
    }

    fn service(&self, s: &core::Service) -> Res {
        let spec = s.spec.as_ref().map(|spec| {
            let ports = spec
                .ports
                .iter()
                .map(|p| {
                    Obj::default()
                        .str("name", p.name.as_ref())
                        .str("protocol", p.protocol.as_ref())
                        .some("appProtocol", p.app_protocol.as_ref())
                        // port has no omitempty; targetPort is a struct, always written.
                        .set("port", json!(p.port.unwrap_or(0)))
                        .obj("targetPort", p.target_port.as_ref().map(int_or_string))
                        .num("nodePort", p.node_port)
                        .done()
                })
                .collect();
            let affinity = spec.session_affinity_config.as_ref().map(|a| {
                let client_ip = a.client_ip.as_ref().map(|c| {
                    Obj::default()
                        .some("timeoutSeconds", c.timeout_seconds)
                        .done()
                });
                Obj::default().obj("clientIP", client_ip).done()
            });
            Obj::default()
                .list("ports", ports)
                .map("selector", &spec.selector)
                .str("clusterIP", spec.cluster_ip.as_ref())
                .strs("clusterIPs", &spec.cluster_ips)
                .str("type", spec.r#type.as_ref())
                .strs("externalIPs", &spec.external_ips)
                .str("sessionAffinity", spec.session_affinity.as_ref())
                .str("loadBalancerIP", spec.load_balancer_ip.as_ref())
                .strs(
                    "loadBalancerSourceRanges",
                    &spec.load_balancer_source_ranges,
                )
                .str("externalName", spec.external_name.as_ref())
                .str(
                    "externalTrafficPolicy",
                    spec.external_traffic_policy.as_ref(),
                )
                .num("healthCheckNodePort", spec.health_check_node_port)
                .flag("publishNotReadyAddresses", spec.publish_not_ready_addresses)
                .obj("sessionAffinityConfig", affinity)
                .strs("ipFamilies", &spec.ip_families)
                .some("ipFamilyPolicy", spec.ip_family_policy.as_ref())
                .some(
                    "allocateLoadBalancerNodePorts",
                    spec.allocate_load_balancer_node_ports,
                )
                .some("loadBalancerClass", spec.load_balancer_class.as_ref())
                .some(
                    "internalTrafficPolicy",
                    spec.internal_traffic_policy.as_ref(),
                )
                .some("trafficDistribution", spec.traffic_distribution.as_ref())
                .done()
        });
        let status = match &s.status {
            Some(st) => {
                let lb = st.load_balancer.as_ref().map(|lb| {
                    let ingress = lb
                        .ingress
                        .iter()
                        .map(|i| {
                            let ports = i
                                .ports
                                .iter()
                                .map(|p| {
                                    Obj::default()
                                        .set("port", json!(p.port.unwrap_or(0)))
                                        .set(
                                            "protocol",
                                            json!(p.protocol.clone().unwrap_or_default()),
                                        )
                                        .some("error", p.error.as_ref())
                                        .done()
                                })
                                .collect();
                            Obj::default()
                                .str("ip", i.ip.as_ref())
                                .str("hostname", i.hostname.as_ref())
                                .some("ipMode", i.ip_mode.as_ref())
                                .list("ports", ports)
                                .done()
                        })
                        .collect();
                    Obj::default().list("ingress", ingress).done()
                });
                Some(
                    Obj::default()
                        .obj("loadBalancer", lb)
                        .list("conditions", self.conditions(&st.conditions)?)
                        .done(),
                )
            }
            None => None,
        };
        Ok(Obj::default()
            .obj("metadata", self.meta(s.metadata.as_ref())?)
            .obj("spec", spec)
            .obj("status", status)
            .done())
    }

    fn service_account(&self, sa: &core::ServiceAccount) -> Res {
        let secrets = sa
            .secrets
            .iter()
            .map(|r| {
                Obj::default()
                    .str("kind", r.kind.as_ref())
                    .str("namespace", r.namespace.as_ref())
                    .str("name", r.name.as_ref())
                    .str("uid", r.uid.as_ref())
                    .str("apiVersion", r.api_version.as_ref())
                    .str("resourceVersion", r.resource_version.as_ref())
                    .str("fieldPath", r.field_path.as_ref())
                    .done()
            })
            .collect();
        let pull = sa
            .image_pull_secrets
            .iter()
            .map(|r| Obj::default().str("name", r.name.as_ref()).done())
            .collect();
        Ok(Obj::default()
            .obj("metadata", self.meta(sa.metadata.as_ref())?)
            .list("secrets", secrets)
            .list("imagePullSecrets", pull)
            .some(
                "automountServiceAccountToken",
                sa.automount_service_account_token,
            )
            .done())
    }

    fn role(&self, r: &rbac::Role) -> Res {
        Ok(Obj::default()
            .obj("metadata", self.meta(r.metadata.as_ref())?)
            .set("rules", rules(&r.rules))
            .done())
    }

    fn cluster_role(&self, r: &rbac::ClusterRole) -> Res {
        let aggregation = r.aggregation_rule.as_ref().map(|a| {
            let selectors = a
                .cluster_role_selectors
                .iter()
                .map(label_selector)
                .collect();
            Obj::default()
                .list("clusterRoleSelectors", selectors)
                .done()
        });
        Ok(Obj::default()
            .obj("metadata", self.meta(r.metadata.as_ref())?)
            .set("rules", rules(&r.rules))
            .obj("aggregationRule", aggregation)
            .done())
    }

    fn role_binding(&self, b: &rbac::RoleBinding) -> Res {
        self.binding(b.metadata.as_ref(), &b.subjects, b.role_ref.as_ref())
    }

    /// A RoleBinding or a ClusterRoleBinding (the same fields).
    fn binding(
        &self,
        m: Option<&meta::ObjectMeta>,
        subjects: &[rbac::Subject],
        role_ref: Option<&rbac::RoleRef>,
    ) -> Res {
        let subjects = subjects
            .iter()
            .map(|s| {
                Obj::default()
                    .set("kind", json!(s.kind.clone().unwrap_or_default()))
                    .str("apiGroup", s.api_group.as_ref())
                    .set("name", json!(s.name.clone().unwrap_or_default()))
                    .str("namespace", s.namespace.as_ref())
                    .done()
            })
            .collect();
        let role_ref = role_ref.map(|r| {
            json!({
                "apiGroup": r.api_group.clone().unwrap_or_default(),
                "kind": r.kind.clone().unwrap_or_default(),
                "name": r.name.clone().unwrap_or_default(),
            })
        });
        Ok(Obj::default()
            .obj("metadata", self.meta(m)?)
            .list("subjects", subjects)
            .obj("roleRef", role_ref)
            .done())
    }

    fn pdb(&self, p: &policy::PodDisruptionBudget) -> Res {
        let spec = p.spec.as_ref().map(|s| {
            Obj::default()
                .obj("minAvailable", s.min_available.as_ref().map(int_or_string))
                .obj("selector", s.selector.as_ref().map(label_selector))
                .obj(
                    "maxUnavailable",
                    s.max_unavailable.as_ref().map(int_or_string),
                )
                .some(
                    "unhealthyPodEvictionPolicy",
                    s.unhealthy_pod_eviction_policy.as_ref(),
                )
                .done()
        });
        let status = match &p.status {
            Some(s) => {
                let mut disrupted = Map::new();
                for (pod, t) in &s.disrupted_pods {
                    disrupted.insert(pod.clone(), self.time(t)?);
                }
                let disrupted = (!disrupted.is_empty()).then_some(Value::Object(disrupted));
                Some(
                    Obj::default()
                        .num("observedGeneration", s.observed_generation)
                        .obj("disruptedPods", disrupted)
                        .set(
                            "disruptionsAllowed",
                            json!(s.disruptions_allowed.unwrap_or(0)),
                        )
                        .set("currentHealthy", json!(s.current_healthy.unwrap_or(0)))
                        .set("desiredHealthy", json!(s.desired_healthy.unwrap_or(0)))
                        .set("expectedPods", json!(s.expected_pods.unwrap_or(0)))
                        .list("conditions", self.conditions(&s.conditions)?)
                        .done(),
                )
            }
            None => None,
        };
        Ok(Obj::default()
            .obj("metadata", self.meta(p.metadata.as_ref())?)
            .obj("spec", spec)
            .obj("status", status)
            .done())
    }
}

/// `intstr.IntOrString`: a number (type 0) or a string (type 1), as in JSON.
fn int_or_string(v: &IntOrString) -> Value {
    match v.r#type {
        Some(1) => json!(v.str_val.clone().unwrap_or_default()),
        _ => json!(v.int_val.unwrap_or(0)),
    }
}

fn label_selector(s: &meta::LabelSelector) -> Value {
    let exprs = s
        .match_expressions
        .iter()
        .map(|e| {
            Obj::default()
                .set("key", json!(e.key.clone().unwrap_or_default()))
                .set("operator", json!(e.operator.clone().unwrap_or_default()))
                .strs("values", &e.values)
                .done()
        })
        .collect();
    Obj::default()
        .map("matchLabels", &s.match_labels)
        .list("matchExpressions", exprs)
        .done()
}

/// `rules` has no omitempty, nor has a rule's `verbs`.
fn rules(rules: &[rbac::PolicyRule]) -> Value {
    rules
        .iter()
        .map(|r| {
            Obj::default()
                .set("verbs", json!(r.verbs))
                .strs("apiGroups", &r.api_groups)
                .strs("resources", &r.resources)
                .strs("resourceNames", &r.resource_names)
                .strs("nonResourceURLs", &r.non_resource_ur_ls)
                .done()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    /// Bodies kubectl 1.32 sent to this server (see testdata/README.md for the commands).
    fn captured(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/testapi/testdata")
            .join(name);
        decode(&std::fs::read(&path).unwrap()).unwrap()
    }

    /// A body as Go's client encodes it: the magic and an Unknown holding `msg`.
    fn envelope(api_version: &str, kind: &str, msg: &impl Message) -> Vec<u8> {
        envelope_raw(api_version, kind, msg.encode_to_vec(), "")
    }

    fn envelope_raw(api_version: &str, kind: &str, raw: Vec<u8>, content_type: &str) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(content_type.into()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    // The expected objects below are what `kubectl create … --dry-run=client -o json` prints for
    // the same command: the JSON the request would have carried.
    #[test]
    fn namespace() {
        assert_eq!(
            captured("namespace.pb"),
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "web", "creationTimestamp": null},
                "spec": {}, "status": {},
            })
        );
    }

    #[test]
    fn secret_from_literal_and_from_file() {
        let s = captured("secret-generic-literal.pb");
        assert_eq!(
            s,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "vrrp-auth", "namespace": "web", "creationTimestamp": null},
                "data": {"password": "MTExMQ=="},
            })
        );
        let f = captured("secret-generic-file.pb");
        assert_eq!(f["metadata"]["name"], "s2");
        // The file held "tls-crt\n".
        assert_eq!(f["data"], json!({"f.txt": "dGxzLWNydAo="}));
    }

    #[test]
    fn tls_secret_with_type_and_string_data() {
        // As `kubectl create secret tls` builds it (with stand-in PEM bytes).
        let msg = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("cert".into()),
                namespace: Some(String::new()),
                creation_timestamp: Some(meta::Time::default()),
                ..Default::default()
            }),
            immutable: Some(false),
            data: BTreeMap::from([
                ("tls.crt".to_string(), b"crt\x00\xff".to_vec()),
                ("tls.key".to_string(), b"key".to_vec()),
            ]),
            string_data: BTreeMap::from([("note".to_string(), "plain".to_string())]),
            r#type: Some("kubernetes.io/tls".into()),
        };
        let v = decode(&envelope("v1", "Secret", &msg)).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cert", "creationTimestamp": null},
                "immutable": false,
                "data": {"tls.crt": "Y3J0AP8=", "tls.key": "a2V5"},
                "stringData": {"note": "plain"},
                "type": "kubernetes.io/tls",
            })
        );
    }

    #[test]
    fn config_map() {
        assert_eq!(
            captured("configmap.pb"),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "web", "creationTimestamp": null},
                "data": {"a": "b"},
            })
        );
    }

    #[test]
    fn services() {
        assert_eq!(
            captured("service-loadbalancer.pb"),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "lb", "namespace": "web", "creationTimestamp": null,
                             "labels": {"app": "lb"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "lb"},
                    "type": "LoadBalancer",
                },
                "status": {"loadBalancer": {}},
            })
        );
        let ci = captured("service-clusterip.pb");
        assert_eq!(ci["spec"]["type"], "ClusterIP");
        assert_eq!(ci["spec"]["ports"][0]["targetPort"], 8080);
        let en = captured("service-externalname.pb");
        assert_eq!(en["spec"]["type"], "ExternalName");
        assert_eq!(en["spec"]["externalName"], "example.com");
    }

    #[test]
    fn named_target_port_and_pointer_fields() {
        let msg = core::Service {
            metadata: Some(meta::ObjectMeta {
                name: Some("s".into()),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                ..Default::default()
            }),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    port: Some(443),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("https".into()),
                    }),
                    node_port: Some(0),
                    app_protocol: Some("h2c".into()),
                    ..Default::default()
                }],
                allocate_load_balancer_node_ports: Some(false),
                health_check_node_port: Some(0),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("v1", "Service", &msg)).unwrap();
        assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(
            v["spec"],
            json!({
                "ports": [{"port": 443, "targetPort": "https", "appProtocol": "h2c"}],
                "allocateLoadBalancerNodePorts": false,
            })
        );
        assert!(v.get("status").is_none());
    }

    #[test]
    fn service_account_rbac_and_pdb() {
        assert_eq!(
            captured("serviceaccount.pb"),
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "sa", "namespace": "web", "creationTimestamp": null},
            })
        );
        let role = captured("role.pb");
        assert_eq!(
            role["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])
        );
        assert_eq!(
            captured("rolebinding.pb"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "rb", "namespace": "web", "creationTimestamp": null},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "u"}],
            })
        );
        assert_eq!(captured("clusterrole.pb")["kind"], "ClusterRole");
        let crb = captured("clusterrolebinding.pb");
        assert_eq!(crb["roleRef"]["kind"], "ClusterRole");
        assert!(crb["metadata"].get("namespace").is_none());
        assert_eq!(
            captured("poddisruptionbudget.pb"),
            json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "pdb", "namespace": "web", "creationTimestamp": null},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}},
                "status": {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0,
                           "expectedPods": 0},
            })
        );
    }

    #[test]
    fn an_unsupported_kind_is_a_415_that_names_it() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/testapi/testdata/deployment.pb");
        let err = decode(&std::fs::read(path).unwrap()).unwrap_err();
        assert!(
            matches!(&err, ProtobufError::UnsupportedKind { api_version, kind }
                if api_version == "apps/v1" && kind == "Deployment"),
            "{err}"
        );
        let api: ApiError = err.into();
        assert_eq!((api.code, api.reason), (415, "UnsupportedMediaType"));
        assert!(
            api.message.contains("apps/v1 Deployment"),
            "{}",
            api.message
        );
    }

    #[test]
    fn bad_bodies_are_400s_not_panics() {
        let ns = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/testapi/testdata/namespace.pb"),
        )
        .unwrap();
        assert!(matches!(
            decode(b"{\"kind\":\"Namespace\"}"),
            Err(ProtobufError::NoMagic)
        ));
        assert!(matches!(decode(MAGIC), Err(ProtobufError::NoTypeMeta)));
        // Every truncation of a real body fails cleanly or decodes.
        for cut in 0..ns.len() {
            if let Err(e) = decode(&ns[..cut]) {
                assert_eq!(ApiError::from(e).code, 400);
            }
        }
        // A raw message that is not a Namespace.
        let bad = envelope_raw("v1", "Namespace", vec![0x0a, 0xff, 0xff], "");
        assert!(
            matches!(decode(&bad), Err(ProtobufError::Message { kind, .. }) if kind == "Namespace")
        );
        // JSON is sent as JSON, not wrapped.
        let wrapped = envelope_raw("v1", "Namespace", b"{}".to_vec(), "application/json");
        assert!(matches!(
            decode(&wrapped),
            Err(ProtobufError::ContentType(_))
        ));
        // An encoded envelope is refused, not misread.
        let mut unknown = Unknown::decode(&ns[MAGIC.len()..]).unwrap();
        unknown.content_encoding = Some("gzip".into());
        let mut gz = MAGIC.to_vec();
        gz.extend(unknown.encode_to_vec());
        assert!(matches!(
            decode(&gz),
            Err(ProtobufError::ContentEncoding(e)) if e == "gzip"
        ));
    }
}
