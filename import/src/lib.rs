//! `buoy-agent import`: translates a classic keepalived + nginx setup (one keepalived.conf per
//! host, and nginx.conf) into VirtualIP, UpstreamPool and Secret objects.
//!
//! Every directive is either translated or reported as a [`Warning`] with its file and line; none
//! is dropped silently. Malformed input is an [`ImportError`] with file and line. The result is
//! checked with the API's own validation ([`buoy_crds::manifest::parse`]) before it is returned.
//!
//! How the two halves meet: keepalived gives the VirtualIPs (one per `virtual_router_id` and
//! address set, with one priority per host file); nginx gives the UpstreamPools and the listeners.
//! nginx listens on every address of the host, so a `listen 80;` server becomes a listener on
//! every IPv4 VirtualIP (`listen [::]:80;` on every IPv6 one), and `listen 192.168.60.88:80;` only
//! on the VirtualIP that holds 192.168.60.88. Without keepalived files, the addresses of
//! `listen ADDRESS:PORT` make the VirtualIP, or a documentation address (192.0.2.1) stands in
//! with a warning that it must be replaced.

mod diagnostics;
mod draft;
mod keepalived;
mod names;
mod nginx;
mod options;
mod syntax;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
};

use buoy_crds::{
    AddressPool, AddressPoolSpec, AddressRange, InterfaceName, ListenerProtocol, NamespaceName,
    UpstreamPool, UpstreamPoolSpec, VirtualIP, VirtualIPSpec,
};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

pub(crate) use diagnostics::Warnings;
pub use diagnostics::{ImportError, Loc, Warning};
pub(crate) use draft::VipDraft;
pub(crate) use names::{dns_label, dns_name};
pub use options::{NodeNameFrom, Options};

/// An object and the comment lines printed above it.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc<T> {
    pub object: T,
    pub comments: Vec<String>,
}

/// The translation.
#[derive(Clone, Debug, Default)]
pub struct Import {
    /// The AddressPool that lets the imported VirtualIPs claim their addresses under the
    /// operator's address policy (on by default).
    pub address_pools: Vec<Doc<AddressPool>>,
    pub secrets: Vec<Doc<Secret>>,
    pub pools: Vec<Doc<UpstreamPool>>,
    pub vips: Vec<Doc<VirtualIP>>,
    pub warnings: Vec<Warning>,
}

/// Runs the import: reads the files, translates, validates.
pub fn import(options: &Options) -> Result<Import, ImportError> {
    if options.keepalived.is_empty() && options.nginx.is_empty() {
        return Err(ImportError::Usage(
            "nothing to import: give --keepalived FILE… and/or --nginx FILE…".into(),
        ));
    }
    let mut warnings = Warnings::default();
    let mut files = Vec::new();
    for path in &options.keepalived {
        files.push(keepalived::parse_file(path, &mut warnings)?);
    }
    let mut vips = keepalived::merge(&files, options.node_name_from, &mut warnings)?;
    let mut web = nginx::Config::default();
    for path in &options.nginx {
        let one = nginx::parse_file(path, &mut warnings)?;
        web.merge(one, &mut warnings);
    }
    let listeners = attach_listeners(
        &mut vips,
        &web,
        !options.keepalived.is_empty(),
        &mut warnings,
    );
    set_tracking(&mut vips, &listeners, &mut warnings);
    name_vips(&mut vips, &listeners);

    let ns = &options.namespace;
    let mut import = Import::default();
    // One Secret for every VRRPv2 password: key `password` when all agree, else one key per VIP.
    let passwords: BTreeSet<&str> = vips
        .iter()
        .filter_map(|v| v.password.as_ref().map(|(p, _)| p.as_str()))
        .collect();
    if !passwords.is_empty() {
        let mut data = BTreeMap::new();
        for v in &vips {
            if let Some((p, _)) = &v.password {
                let key = if passwords.len() == 1 {
                    "password".to_string()
                } else {
                    v.name.clone()
                };
                data.insert(key, p.clone());
            }
        }
        let comments = vec![
                "The VRRPv2 password(s) of keepalived's `authentication { auth_type PASS; auth_pass … }`."
                    .into(),
                "In standalone mode this document sits beside the others; in a cluster, do not commit it:"
                    .into(),
                format!(
                    "create it with `kubectl -n {ns} create secret generic {SECRET_NAME} {literals}` instead.",
                    literals = data
                        .keys()
                        .map(|k| format!("--from-literal={k}=…"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
        ];
        let secret = Secret {
            metadata: meta(SECRET_NAME, ns),
            type_: Some("Opaque".into()),
            string_data: Some(data),
            ..Default::default()
        };
        import.secrets.push(Doc {
            object: secret,
            comments,
        });
    }
    for pool in &web.pools {
        let mut object = UpstreamPool::new(&pool.name, pool.spec.clone());
        object.metadata.namespace = Some(ns.clone());
        import.pools.push(Doc {
            object,
            comments: pool.comments.clone(),
        });
    }
    for v in &vips {
        let mut spec = v.spec.clone();
        spec.listeners = listeners
            .get(&v.key)
            .map(|ls| ls.iter().map(|l| l.listener.clone()).collect())
            .unwrap_or_default();
        if v.password.is_some()
            && let Some(auth) = spec.vrrp.authentication.as_mut()
        {
            auth.secret_ref.name = SECRET_NAME.into();
            auth.secret_ref.key = if passwords.len() == 1 {
                "password".into()
            } else {
                v.name.clone()
            };
        }
        let mut object = VirtualIP::new(&v.name, spec);
        object.metadata.namespace = Some(ns.clone());
        let mut comments = v.comments.clone();
        for l in listeners.get(&v.key).into_iter().flatten() {
            comments.push(l.comment.clone());
        }
        import.vips.push(Doc { object, comments });
    }
    if let Some(pool) = address_pool(ns, &import.vips) {
        import.address_pools.push(pool);
    }
    import.warnings = warnings.sorted();
    // The API's own validation: what `buoy-agent check` and the API server would say.
    let yaml = import.to_yaml()?;
    if let Err(errors) = buoy_crds::manifest::parse(Path::new("<import>"), &yaml) {
        return Err(ImportError::Invalid(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    Ok(import)
}

const SECRET_NAME: &str = "vrrp-auth";

fn meta(name: &str, ns: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

struct AttachedListener {
    /// Index of the nginx server it comes from.
    server: usize,
    listener: buoy_crds::Listener,
    comment: String,
}

/// Puts every nginx server on the VirtualIPs whose addresses it listens on.
fn attach_listeners(
    vips: &mut Vec<VipDraft>,
    web: &nginx::Config,
    have_keepalived: bool,
    warnings: &mut Warnings,
) -> BTreeMap<usize, Vec<AttachedListener>> {
    if !have_keepalived && !web.servers.is_empty() {
        stub_vips(vips, web, warnings);
    }
    let mut out: BTreeMap<usize, Vec<AttachedListener>> = BTreeMap::new();
    for (si, server) in web.servers.iter().enumerate() {
        for listen in &server.listens {
            let targets: Vec<usize> = vips
                .iter()
                .filter(|v| match listen.address {
                    nginx::ListenAddress::Any { ipv6 } => first_is_ipv6(&v.spec) == ipv6,
                    nginx::ListenAddress::Ip(ip) => v
                        .spec
                        .addresses
                        .iter()
                        .any(|a| address_ip(&a.0) == Some(ip)),
                })
                .map(|v| v.key)
                .collect();
            if targets.is_empty() {
                let why = match listen.address {
                    nginx::ListenAddress::Any { ipv6: true } => {
                        "no virtual address is IPv6; a listener needs a VirtualIP".to_string()
                    }
                    nginx::ListenAddress::Any { ipv6: false } => {
                        "no virtual address is IPv4; a listener needs a VirtualIP".to_string()
                    }
                    nginx::ListenAddress::Ip(ip) => format!(
                        "{ip} is not a virtual address of the keepalived configuration; Buoy listens only on virtual addresses"
                    ),
                };
                warnings.add(&listen.at, "listen", why);
                continue;
            }
            for key in targets {
                let list = out.entry(key).or_default();
                if let Some(other) = list.iter().find(|l| l.listener.port == listen.port) {
                    // Another `listen` of the same server on another address of this VirtualIP.
                    if other.server == si {
                        continue;
                    }
                    warnings.add(
                        &listen.at,
                        "listen",
                        format!(
                            "port {} of this VirtualIP is already served by {}; Buoy routes by port, not by server_name",
                            listen.port, other.comment
                        ),
                    );
                    continue;
                }
                let name = match (server.protocol, listen.port) {
                    (ListenerProtocol::HTTP, 80) => "http".to_string(),
                    (ListenerProtocol::HTTP, p) => format!("http-{p}"),
                    (ListenerProtocol::TCP, p) => format!("tcp-{p}"),
                };
                list.push(AttachedListener {
                    server: si,
                    listener: buoy_crds::Listener {
                        name,
                        port: listen.port,
                        protocol: server.protocol,
                        upstream_pool: server.pool.clone(),
                        client: server.client.clone(),
                    },
                    comment: format!(
                        "nginx {} server at {} (listen {})",
                        if server.protocol == ListenerProtocol::TCP {
                            "stream"
                        } else {
                            "http"
                        },
                        server.at,
                        listen.text
                    ),
                });
            }
        }
    }
    out
}

/// Without keepalived, the VirtualIPs come from the addresses nginx listens on, or a placeholder.
fn stub_vips(vips: &mut Vec<VipDraft>, web: &nginx::Config, warnings: &mut Warnings) {
    for ipv6 in [false, true] {
        let mut explicit: Vec<IpAddr> = Vec::new();
        let mut wildcard: Option<&Loc> = None;
        for l in web.servers.iter().flat_map(|s| s.listens.iter()) {
            match l.address {
                nginx::ListenAddress::Ip(ip) if ip.is_ipv6() == ipv6 && !explicit.contains(&ip) => {
                    explicit.push(ip);
                }
                nginx::ListenAddress::Any { ipv6: v6 } if v6 == ipv6 => {
                    wildcard = wildcard.or(Some(&l.at));
                }
                _ => {}
            }
        }
        let mut addresses: Vec<String> =
            explicit.iter().take(16).map(ToString::to_string).collect();
        let mut comments = vec![
            "No keepalived configuration was given: this VirtualIP only carries nginx's listeners."
                .to_string(),
        ];
        if let Some(at) = wildcard
            && addresses.is_empty()
        {
            let placeholder = if ipv6 { "2001:db8::1" } else { "192.0.2.1" };
            addresses.push(placeholder.into());
            comments.push(format!(
                "REPLACE {placeholder} (a documentation address) with the virtual address(es) to serve."
            ));
            warnings.add(
                at,
                "listen",
                format!(
                    "nginx listens on every address and no keepalived file says which one is virtual; the VirtualIP gets the placeholder {placeholder}: replace it"
                ),
            );
        }
        if addresses.is_empty() {
            continue;
        }
        let spec: Result<VirtualIPSpec, _> =
            serde_json::from_value(serde_json::json!({ "addresses": addresses }));
        if let Ok(spec) = spec {
            vips.push(VipDraft {
                key: vips.len(),
                name: if ipv6 {
                    "nginx-ipv6".into()
                } else {
                    "nginx".into()
                },
                spec,
                password: None,
                track_upstreams: None,
                comments,
            });
        }
    }
}

fn first_is_ipv6(spec: &VirtualIPSpec) -> bool {
    spec.addresses
        .first()
        .and_then(|a| address_ip(&a.0))
        .is_some_and(|ip| ip.is_ipv6())
}

/// The IP of `192.168.60.88/24`.
pub(crate) fn address_ip(a: &str) -> Option<IpAddr> {
    a.split('/').next()?.parse().ok()
}

/// `track.upstreams` needs listeners (the API's rule): without them, keepalived's nginx check has
/// nothing left to watch.
fn set_tracking(
    vips: &mut [VipDraft],
    listeners: &BTreeMap<usize, Vec<AttachedListener>>,
    warnings: &mut Warnings,
) {
    for v in vips {
        let Some((weight, at)) = v.track_upstreams.clone() else {
            continue;
        };
        if listeners.get(&v.key).is_some_and(|l| !l.is_empty()) {
            v.spec.track.get_or_insert_with(Default::default).upstreams =
                Some(buoy_crds::TrackWeight { weight });
        } else {
            warnings.add(
                &at,
                "track_script",
                "the nginx check becomes track.upstreams, which needs listeners, and this VirtualIP has none (give the nginx.conf with --nginx)",
            );
        }
    }
}

/// Names each VirtualIP after the pool of its first listener when no other VirtualIP would take
/// that name (the seed names its VirtualIP after the service, `test-web`); otherwise after the
/// keepalived instance. Names are made unique with a numeric suffix.
fn name_vips(vips: &mut [VipDraft], listeners: &BTreeMap<usize, Vec<AttachedListener>>) {
    let candidate = |v: &VipDraft| {
        listeners
            .get(&v.key)
            .and_then(|l| l.first())
            .map(|l| l.listener.upstream_pool.clone())
    };
    let candidates: Vec<Option<String>> = vips.iter().map(candidate).collect();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for (i, v) in vips.iter_mut().enumerate() {
        let base = match &candidates[i] {
            Some(c) if candidates.iter().filter(|o| o.as_ref() == Some(c)).count() == 1 => {
                dns_label(c)
            }
            _ => v.name.clone(),
        };
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(name.clone());
        v.name = name;
    }
}

/// The AddressPool of an import into `namespace`: exactly the imported VirtualIPs' addresses
/// (each as a host route), for that namespace, on their interfaces when every VirtualIP names
/// one. Named after the namespace (`<namespace>-vips`): imports into two namespaces do not
/// overwrite each other's pool.
fn address_pool(namespace: &str, vips: &[Doc<VirtualIP>]) -> Option<Doc<AddressPool>> {
    let mut addresses = BTreeSet::new();
    for v in vips {
        for a in &v.object.spec.addresses {
            let ip = a.0.split('/').next().unwrap_or_default();
            let host = if ip.contains(':') { 128 } else { 32 };
            addresses.insert(format!("{ip}/{host}"));
        }
    }
    if addresses.is_empty() {
        return None;
    }
    let interfaces: Option<BTreeSet<String>> = vips
        .iter()
        .map(|v| v.object.spec.interface.clone())
        .collect();
    let spec = AddressPoolSpec {
        addresses: addresses.into_iter().map(AddressRange).collect(),
        namespaces: Some(vec![NamespaceName(namespace.to_string())]),
        namespace_selector: None,
        node_selector: None,
        interfaces: interfaces.map(|i| i.into_iter().map(InterfaceName).collect()),
        allowed_tolerations: None,
        auto_assign: true,
        avoid_buggy_ips: false,
    };
    let mut object = AddressPool::new(&format!("{}-vips", dns_name(namespace)), spec);
    object.metadata.namespace = None;
    Some(Doc {
        object,
        comments: vec![
            "Who may claim the imported addresses: with the operator's address policy (on by"
                .into(),
            format!(
                "default) a VirtualIP is served only when an AddressPool admitting namespace {namespace}"
            ),
            "holds its addresses. Cluster-scoped: applied by a cluster admin.".into(),
        ],
    })
}

impl Import {
    /// Multi-document YAML, the AddressPool first (the cluster admin's part), then Secrets,
    /// then pools, then VirtualIPs; values equal to the API's defaults are left out so that the
    /// output reads like a hand-written manifest.
    pub fn to_yaml(&self) -> Result<String, ImportError> {
        let mut out = String::new();
        let mut docs: Vec<(Value, &[String])> = Vec::new();
        let json = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| ImportError::Invalid(format!("cannot serialize: {e}")))
        };
        for d in &self.address_pools {
            let mut v = json(serde_json::to_value(&d.object))?;
            if let Some(Value::Object(spec)) = v.get_mut("spec") {
                // The API's defaults.
                spec.retain(|k, v| {
                    !((k == "autoAssign" && v == &Value::Bool(true))
                        || (k == "avoidBuggyIPs" && v == &Value::Bool(false)))
                });
            }
            docs.push((v, &d.comments));
        }
        for d in &self.secrets {
            docs.push((json(serde_json::to_value(&d.object))?, &d.comments));
        }
        let pool_default = serde_json::to_value(UpstreamPoolSpec {
            backends: None,
            service: None,
            load_balancing: Default::default(),
            health_check: Default::default(),
            retry: Default::default(),
            timeouts: Default::default(),
            http: Default::default(),
        })
        .unwrap_or(Value::Null);
        for d in &self.pools {
            let mut v = json(serde_json::to_value(&d.object))?;
            if let Some(spec) = v.get_mut("spec") {
                prune(spec, &pool_default, &["loadBalancing.algorithm"], "");
                if let Some(Value::Array(backends)) = spec.get_mut("backends") {
                    for b in backends {
                        if let Value::Object(m) = b {
                            m.retain(|k, v| {
                                !((k == "backup" || k == "down") && v == &Value::Bool(false))
                            });
                        }
                    }
                }
            }
            docs.push((v, &d.comments));
        }
        let vip_default = serde_json::from_value::<VirtualIPSpec>(
            serde_json::json!({"addresses": ["192.0.2.1"]}),
        )
        .ok()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
        for d in &self.vips {
            let mut v = json(serde_json::to_value(&d.object))?;
            if let Some(spec) = v.get_mut("spec") {
                prune(
                    spec,
                    &vip_default,
                    &[
                        "addresses",
                        "vrrp.version",
                        "vrrp.advertisementInterval",
                        "listeners",
                    ],
                    "",
                );
            }
            docs.push((v, &d.comments));
        }
        for (i, (v, comments)) in docs.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            for c in comments.iter() {
                out.push_str("# ");
                out.push_str(c);
                out.push('\n');
            }
            // Quoted where YAML 1.1 (kubectl) would read a name such as `on` or `n` as a boolean.
            let text = buoy_crds::yaml11::to_string(v)
                .map_err(|e| ImportError::Invalid(format!("cannot write YAML: {e}")))?;
            out.push_str(&text);
        }
        Ok(out)
    }
}

/// Removes the fields of `v` equal to those of `default` (recursively), except `keep`.
fn prune(v: &mut Value, default: &Value, keep: &[&str], path: &str) {
    let (Value::Object(map), Value::Object(dmap)) = (v, default) else {
        return;
    };
    map.retain(|k, val| {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let kept = keep.iter().any(|k| {
            *k == p
                || k.strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        });
        kept || dmap.get(k) != Some(val)
    });
    for (k, val) in map.iter_mut() {
        if let Some(d) = dmap.get(k) {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            prune(val, d, keep, &p);
        }
    }
    // An object emptied by pruning says nothing either.
    map.retain(|_, val| !matches!(val, Value::Object(m) if m.is_empty()));
}
