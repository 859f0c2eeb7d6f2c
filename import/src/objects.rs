//! The objects of an import: the BGPPeers, one Secret for the VRRPv2 passwords (and one per plain-text
//! BGP password), the Secrets of nginx's
//! certificates, the UpstreamPools, the VirtualIPs with their listeners, and the AddressPool that
//! lets them claim their addresses; each with the comments printed above it.

use std::collections::{BTreeMap, BTreeSet};

use buoy_crds::{
    AddressPool, AddressPoolSpec, AddressRange, BGPPeer, InterfaceName, NamespaceName,
    UpstreamPool, VirtualIP,
};
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use crate::{
    certificates::PemSecrets,
    diagnostics::{Warning, Warnings},
    draft::VipDraft,
    listeners::Listeners,
    names::dns_name,
    nginx,
    options::Options,
};

/// An object and the comment lines printed above it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Doc<T> {
    pub(crate) object: T,
    pub(crate) comments: Vec<String>,
}

/// The translation: the objects, and what was not translated.
#[derive(Clone, Debug, Default)]
pub struct Import {
    /// The AddressPool that lets the imported VirtualIPs claim their addresses under the
    /// operator's address policy (on by default).
    pub(crate) address_pools: Vec<Doc<AddressPool>>,
    /// The BGP routers of AddressPools with `announcement: BGP` (from MetalLB's BGPPeers).
    pub(crate) bgp_peers: Vec<Doc<BGPPeer>>,
    pub(crate) secrets: Vec<Doc<Secret>>,
    pub(crate) pools: Vec<Doc<UpstreamPool>>,
    pub(crate) vips: Vec<Doc<VirtualIP>>,
    /// LoadBalancer Services handed over to Buoy (from MetalLB or kube-vip), as read but for
    /// their class and annotations.
    pub(crate) services: Vec<Doc<serde_json::Value>>,
    /// Every directive that is not translated, by file and line.
    pub warnings: Vec<Warning>,
}

/// The Secret of the VRRPv2 passwords.
pub(crate) const SECRET_NAME: &str = "vrrp-auth";

/// The VRRPv2 passwords of the VirtualIPs, which share one Secret: key `password` when all
/// agree, else one key per VirtualIP.
struct Passwords<'a> {
    distinct: BTreeSet<&'a str>,
}

impl<'a> Passwords<'a> {
    fn of(vips: &'a [VipDraft]) -> Self {
        Passwords {
            distinct: vips
                .iter()
                .filter_map(|v| v.password.as_ref().map(|(p, _)| p.as_str()))
                .collect(),
        }
    }

    /// The Secret's key for the password of `v`.
    fn key(&self, v: &VipDraft) -> String {
        if self.distinct.len() == 1 {
            "password".to_string()
        } else {
            v.name.clone()
        }
    }
}

/// The objects of the VirtualIP drafts with their `listeners`, of nginx's pools and of the PEM
/// files they name (`pem`), in the namespace of `options` (without warnings, but for the PEM
/// files that cannot be read).
pub(crate) fn build(
    options: &Options,
    vips: &[VipDraft],
    listeners: &Listeners,
    web: &nginx::Config,
    pem: &mut PemSecrets,
    warnings: &mut Warnings,
) -> Import {
    let ns = options.namespace.as_str();
    let passwords = Passwords::of(vips);
    let mut import = Import::default();
    import.secrets.extend(secret(ns, vips, &passwords));
    for pool in &web.pools {
        let mut spec = pool.spec.clone();
        if let (Some(tls), Some((file, at))) = (spec.tls.as_mut(), &pool.ca) {
            tls.ca_secret_name = Some(pem.ca(file, at));
        }
        let mut object = UpstreamPool::new(&pool.name, spec);
        object.metadata.namespace = Some(ns.to_string());
        import.pools.push(Doc {
            object,
            comments: pool.comments.clone(),
        });
    }
    let keys_out = options.secrets_as_references;
    for (object, comments) in pem.secrets(ns, keys_out, warnings) {
        import.secrets.push(Doc { object, comments });
    }
    for v in vips {
        let mut doc = virtual_ip(ns, v, listeners, &passwords);
        if keys_out {
            doc.comments.extend(secret_references(ns, &doc.object, pem));
        }
        import.vips.push(doc);
    }
    if let Some(pool) = address_pool(ns, &import.vips) {
        import.address_pools.push(pool);
    }
    import
}

/// One Secret for every VRRPv2 password, if there is any.
fn secret(ns: &str, vips: &[VipDraft], passwords: &Passwords) -> Option<Doc<Secret>> {
    if passwords.distinct.is_empty() {
        return None;
    }
    let mut data = BTreeMap::new();
    for v in vips {
        if let Some((p, _)) = &v.password {
            data.insert(passwords.key(v), p.clone());
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
        metadata: ObjectMeta {
            name: Some(SECRET_NAME.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(data),
        ..Default::default()
    };
    Some(Doc {
        object: secret,
        comments,
    })
}

/// With --secrets-as-references: how to create the certificate Secrets a VirtualIP names.
fn secret_references(ns: &str, vip: &VirtualIP, pem: &PemSecrets) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for l in &vip.spec.listeners {
        for c in l.tls.iter().flat_map(|t| &t.certificates) {
            if !names.contains(&c.secret_name.as_str()) {
                names.push(&c.secret_name);
            }
        }
    }
    let mut out = Vec::new();
    for n in names {
        if let Some(cmd) = pem.kubectl(ns, n) {
            if out.is_empty() {
                out.push(
                    "Its certificate Secrets are not written (--secrets-as-references): create them with"
                        .to_string(),
                );
            }
            out.push(format!("  {cmd}"));
        }
    }
    out
}

/// The VirtualIP of a draft: its listeners, and its password's place in the Secret.
fn virtual_ip(
    ns: &str,
    v: &VipDraft,
    listeners: &Listeners,
    passwords: &Passwords,
) -> Doc<VirtualIP> {
    let mut spec = v.spec.clone();
    spec.listeners = listeners
        .of(v.key)
        .iter()
        .map(|l| l.listener.clone())
        .collect();
    if v.password.is_some()
        && let Some(auth) = spec.vrrp.authentication.as_mut()
    {
        auth.secret_ref.name = SECRET_NAME.into();
        auth.secret_ref.key = passwords.key(v);
    }
    let mut object = VirtualIP::new(&v.name, spec);
    object.metadata.namespace = Some(ns.to_string());
    let mut comments = v.comments.clone();
    for l in listeners.of(v.key) {
        comments.push(l.comment.clone());
    }
    Doc { object, comments }
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
        announcement: Default::default(),
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
