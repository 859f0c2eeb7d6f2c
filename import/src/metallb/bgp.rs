//! MetalLB's BGP mode: `BGPAdvertisement`s (which pools are announced by BGP, with which
//! communities and LOCAL_PREF, to which peers), `BGPPeer`s (metallb.io/v1beta1 and v1beta2) as
//! Buoy's cluster-scoped BGPPeers, their `BFDProfile`s folded into `bfd`, and `Community`
//! aliases resolved.
//!
//! Buoy attaches communities and LOCAL_PREF to a peer, not to a pool: an advertisement's are put
//! on the peers it names (all when it names none), and said when they reach the addresses of
//! other pools too. What Buoy has no field for is listed with its file and line.

use std::collections::BTreeMap;

use buoy_crds::{
    BGPPeer, BGPPeerSpec, BfdSpec, Community, Duration, IpAddressString, PasswordSecretRef,
    WELL_KNOWN_COMMUNITIES,
};
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use super::pool::Pool;
use crate::{
    diagnostics::{ImportError, Warnings},
    manifests::Manifest,
    names::dns_name,
    objects::Doc,
    selectors::{self, AnyOf},
};

/// The namespace MetalLB runs in, where its Secrets are unless a reference names another.
const METALLB_NAMESPACE: &str = "metallb-system";

/// BGPPeer fields Buoy has no counterpart for, and why.
const PEER_FIELDS_LACKING: [(&str, &str); 9] = [
    (
        "ebgpMultiHop",
        "Buoy peers with directly connected routers only (no eBGP multihop)",
    ),
    (
        "vrf",
        "Buoy's FRR peers from the default VRF only: the session opens there",
    ),
    (
        "sourceAddress",
        "Buoy lets FRR choose the source address (the address of the interface towards the \
         router)",
    ),
    (
        "routerID",
        "Buoy lets FRR choose the router ID (the highest address of the node)",
    ),
    ("connectTime", "Buoy uses FRR's default connect retry timer"),
    (
        "disableMP",
        "Buoy's FRR announces IPv4 and IPv6 routes as FRR does by default",
    ),
    (
        "dynamicASN",
        "Buoy needs the router's AS number in peerASN (iBGP when it equals myASN)",
    ),
    (
        "enableGracefulRestart",
        "Buoy does not configure BGP graceful restart (it drains with GRACEFUL_SHUTDOWN on a \
         planned stop)",
    ),
    (
        "interface",
        "Buoy peers with an address (peerAddress), not unnumbered over an interface",
    ),
];

/// BFDProfile fields Buoy has no counterpart for, and why.
const BFD_FIELDS_LACKING: [(&str, &str); 4] = [
    (
        "echoMode",
        "Buoy's bfd has no echo mode: BFD control packets only",
    ),
    ("echoInterval", "Buoy's bfd has no echo mode"),
    (
        "passiveMode",
        "Buoy's bfd is always active (it sends the first packets)",
    ),
    (
        "minimumTtl",
        "Buoy peers with directly connected routers only (single-hop BFD, TTL 255)",
    ),
];

/// A `BGPAdvertisement` read.
#[derive(Clone, Debug)]
pub(super) struct BgpAd {
    pub(super) source: Manifest,
    /// The pools it announces (indexes into the input's pools).
    pub(super) pools: Vec<usize>,
    /// The MetalLB BGPPeers it names; empty: every one.
    peers: Vec<String>,
    /// Its communities, aliases resolved, as Buoy writes them.
    communities: Vec<Community>,
    local_pref: Option<u32>,
}

/// A `BGPAdvertisement`, announcing some of `pools`; warns about what Buoy has no field for.
pub(super) fn read_ad(
    m: Manifest,
    pools: &[Pool],
    aliases: &Aliases,
    warnings: &mut Warnings,
) -> Result<BgpAd, ImportError> {
    m.warn_unknown_fields(
        warnings,
        &["spec"],
        &[
            "ipAddressPools",
            "ipAddressPoolSelectors",
            "nodeSelectors",
            "peers",
            "communities",
            "localPref",
            "aggregationLength",
            "aggregationLengthV6",
        ],
        "MetalLB",
    );
    for (field, host) in [("aggregationLength", 32), ("aggregationLengthV6", 128)] {
        let at = ["spec", field];
        if let Some(len) = m.typed_at::<u32>(&at)?
            && len != host
        {
            m.warn(
                warnings,
                &at,
                format!(
                    "Buoy announces each address of a VirtualIP as a /{host}, not the /{len} \
                     that holds it: the routers get host routes, one per address"
                ),
            );
        }
    }
    let node_selectors: Vec<LabelSelector> =
        m.typed_at(&["spec", "nodeSelectors"])?.unwrap_or_default();
    if !node_selectors.is_empty() {
        m.warn(
            warnings,
            &["spec", "nodeSelectors"],
            "Buoy announces a BGP pool's addresses from every eligible node that peers (a \
             healthy backend, a ready local endpoint): to announce from these nodes only, give \
             the BGPPeers this nodeSelector",
        );
    }
    let mut communities = Vec::new();
    for (i, text) in m.strings_at(&["spec", "communities"])?.iter().enumerate() {
        let i = i.to_string();
        match aliases.resolve(text) {
            Ok(c) => {
                if !communities.contains(&c) {
                    communities.push(c);
                }
            }
            Err(why) => m.warn(warnings, &["spec", "communities", &i], why),
        }
    }
    Ok(BgpAd {
        pools: super::pool::selected(&m, pools, warnings)?,
        peers: m.strings_at(&["spec", "peers"])?,
        communities,
        local_pref: m.typed_at(&["spec", "localPref"])?,
        source: m,
    })
}

/// The community aliases of MetalLB's `Community` objects, by name.
#[derive(Default)]
pub(super) struct Aliases(BTreeMap<String, String>);

impl Aliases {
    /// Adds the aliases of a `Community`.
    pub(super) fn read(&mut self, m: &Manifest, warnings: &mut Warnings) {
        let Some(serde_json::Value::Array(items)) = m.get(&["spec", "communities"]) else {
            m.warn(warnings, &[], "no spec.communities: no alias to resolve");
            return;
        };
        for (i, item) in items.iter().enumerate() {
            match (item["name"].as_str(), item["value"].as_str()) {
                (Some(name), Some(value)) => {
                    self.0.insert(name.to_string(), value.to_string());
                }
                _ => {
                    let i = i.to_string();
                    m.warn(
                        warnings,
                        &["spec", "communities", &i],
                        "an alias needs a name and a value: left out",
                    );
                }
            }
        }
    }

    /// A community as Buoy writes it: an alias's value, `large:A:B:C` as `A:B:C`.
    pub(super) fn resolve(&self, text: &str) -> Result<Community, String> {
        let value = self.0.get(text).map_or(text, String::as_str);
        community(value).ok_or_else(|| {
            if self.0.contains_key(text) {
                format!("the alias {text} is {value}, not a community Buoy accepts")
            } else {
                format!(
                    "{text} is neither a community (A:B, large:A:B:C) nor an alias of a \
                     Community object in the input files"
                )
            }
        })
    }
}

/// `A:B` (each 0..65535), `large:A:B:C` (each 0..4294967295) or a well-known name, as Buoy
/// writes it.
fn community(text: &str) -> Option<Community> {
    if WELL_KNOWN_COMMUNITIES.contains(&text) {
        return Some(Community(text.to_string()));
    }
    let parts: Vec<&str> = text.split(':').collect();
    let ok = match parts.as_slice() {
        [_, _] => fits::<u16>(&parts),
        ["large", rest @ ..] if rest.len() == 3 => fits::<u32>(rest),
        _ => false,
    };
    ok.then(|| Community(text.trim_start_matches("large:").to_string()))
}

/// Whether every part is a decimal number that fits a `T`.
fn fits<T: std::str::FromStr>(parts: &[&str]) -> bool {
    parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<T>().is_ok())
}

/// A `BFDProfile` read: Buoy's timers, and whether a peer uses it.
pub(super) struct Bfd {
    pub(super) source: Manifest,
    spec: BfdSpec,
}

/// A `BFDProfile`: its intervals (integers in ms) as durations; the rest warned.
pub(super) fn read_bfd(m: Manifest, warnings: &mut Warnings) -> Result<Bfd, ImportError> {
    m.warn_unknown_fields(
        warnings,
        &["spec"],
        &[
            "receiveInterval",
            "transmitInterval",
            "detectMultiplier",
            "echoMode",
            "echoInterval",
            "passiveMode",
            "minimumTtl",
        ],
        "MetalLB",
    );
    for (field, why) in BFD_FIELDS_LACKING {
        let at = ["spec", field];
        // `echoMode: false` and `passiveMode: false` are MetalLB's defaults: nothing lost.
        if matches!(m.get(&at), None | Some(serde_json::Value::Bool(false))) {
            continue;
        }
        m.warn(warnings, &at, why);
    }
    let mut spec = BfdSpec::default();
    for (field, slot) in [
        ("receiveInterval", &mut spec.receive_interval),
        ("transmitInterval", &mut spec.transmit_interval),
    ] {
        if let Some(ms) = m.typed_at::<u64>(&["spec", field])? {
            *slot = Duration::from_millis(ms);
        }
    }
    if let Some(n) = m.typed_at::<u8>(&["spec", "detectMultiplier"])? {
        spec.detect_multiplier = n;
    }
    Ok(Bfd { source: m, spec })
}

/// A MetalLB `BGPPeer` as Buoy's, with its password's Secret when MetalLB has it in plain text.
pub(super) struct Peer {
    /// The MetalLB object's name (what advertisements' `peers` name).
    pub(super) name: String,
    pub(super) source: Manifest,
    pub(super) doc: Doc<BGPPeer>,
    pub(super) secret: Option<Doc<Secret>>,
}

/// The `BGPPeer`s (each name once: Buoy's are cluster-scoped), their BFD profiles from
/// `profiles` (those no peer uses are warned), plain-text passwords as Secrets in `namespace`.
pub(super) fn read_peers(
    sources: Vec<Manifest>,
    profiles: &[Bfd],
    namespace: &str,
    warnings: &mut Warnings,
) -> Result<Vec<Peer>, ImportError> {
    let mut peers: Vec<Peer> = Vec::new();
    for m in sources {
        let p = read_peer(m, profiles, namespace, warnings)?;
        if let Some(other) = peers.iter().find(|o| o.name == p.name) {
            return Err(p.source.error(
                &["metadata", "name"],
                format!(
                    "a second BGPPeer named {} (the first is at {}): Buoy's BGPPeers are \
                     cluster-scoped, one name each",
                    p.name, other.source.at
                ),
            ));
        }
        peers.push(p);
    }
    for profile in profiles {
        let name = profile.source.name();
        if !peers
            .iter()
            .any(|p| p.source.str(&["spec", "bfdProfile"]) == Some(name))
        {
            profile.source.warn(
                warnings,
                &[],
                "no BGPPeer uses this profile: nothing to translate",
            );
        }
    }
    Ok(peers)
}

/// A `BGPPeer` (v1beta1 or v1beta2), its BFD profile from `profiles`, its plain-text password
/// as a Secret in `namespace`.
fn read_peer(
    m: Manifest,
    profiles: &[Bfd],
    namespace: &str,
    warnings: &mut Warnings,
) -> Result<Peer, ImportError> {
    if m.name().is_empty() {
        return Err(m.error(&["metadata"], "no metadata.name"));
    }
    warn_lacking(&m, warnings);
    let peer_address = m
        .str(&["spec", "peerAddress"])
        .ok_or_else(|| m.error(&["spec", "peerAddress"], "no peerAddress"))?;
    let asn = |field: &str| -> Result<u32, ImportError> {
        match m.typed_at::<u32>(&["spec", field])? {
            Some(n) if n > 0 => Ok(n),
            _ => Err(m.error(
                &["spec", field],
                format!("no {field}: Buoy needs the AS number"),
            )),
        }
    };
    let my_asn = asn("myASN")?;
    let peer_asn = asn("peerASN")?;
    let duration = |field: &str| -> Result<Option<Duration>, ImportError> {
        let at = ["spec", field];
        match m.typed_at::<String>(&at)? {
            None => Ok(None),
            Some(s) => s
                .parse::<Duration>()
                .map(Some)
                .map_err(|e| m.error(&at, e.to_string())),
        }
    };
    let hold_time = duration("holdTime")?;
    // MetalLB's keepalive defaults to a third of the hold time (BGP's advice).
    let keepalive_time = match (duration("keepaliveTime")?, hold_time) {
        (Some(k), _) => Some(k),
        (None, Some(h)) => Some(Duration(h.0 / 3)),
        (None, None) => None,
    };
    let mut spec: BGPPeerSpec = serde_json::from_value(serde_json::json!({
        "peerAddress": peer_address,
        "peerASN": peer_asn,
        "myASN": my_asn,
    }))
    .map_err(|e| m.error(&["spec"], e.to_string()))?;
    spec.peer_address = IpAddressString(peer_address.to_string());
    if let Some(port) = m.typed_at::<u16>(&["spec", "peerPort"])? {
        spec.peer_port = port;
    }
    if let Some(h) = hold_time {
        spec.hold_time = h;
    }
    if let Some(k) = keepalive_time {
        spec.keepalive_time = k;
    }
    spec.node_selector = node_selector(&m, warnings)?;
    let mut comments = vec![format!("From {} ({}).", m.label(), m.at)];
    if let Some(name) = m.str(&["spec", "bfdProfile"]) {
        match profiles.iter().find(|p| p.source.name() == name) {
            Some(p) => {
                spec.bfd = Some(p.spec.clone());
                comments.push(format!("BFD as {} ({}).", p.source.label(), p.source.at));
            }
            None => m.warn(
                warnings,
                &["spec", "bfdProfile"],
                format!("no BFDProfile {name} in the input files: the peer has no BFD"),
            ),
        }
    }
    let (password_secret_ref, secret) = password(&m, namespace, warnings)?;
    spec.password_secret_ref = password_secret_ref;
    let mut object = BGPPeer::new(m.name(), spec);
    object.metadata.namespace = None;
    Ok(Peer {
        name: m.name().to_string(),
        doc: Doc { object, comments },
        secret,
        source: m,
    })
}

/// Warns about the fields of a BGPPeer that Buoy has no counterpart for, and unknown ones.
fn warn_lacking(m: &Manifest, warnings: &mut Warnings) {
    let mut known = vec![
        "myASN",
        "peerASN",
        "peerAddress",
        "peerPort",
        "holdTime",
        "keepaliveTime",
        "nodeSelectors",
        "password",
        "passwordSecret",
        "bfdProfile",
    ];
    known.extend(PEER_FIELDS_LACKING.iter().map(|(f, _)| *f));
    m.warn_unknown_fields(warnings, &["spec"], &known, "MetalLB");
    for (field, why) in PEER_FIELDS_LACKING {
        let at = ["spec", field];
        if matches!(m.get(&at), None | Some(serde_json::Value::Bool(false))) {
            continue;
        }
        m.warn(warnings, &at, why);
    }
}

/// `nodeSelectors`: one selector that matches what any of them does, else the first (warned).
fn node_selector(
    m: &Manifest,
    warnings: &mut Warnings,
) -> Result<Option<LabelSelector>, ImportError> {
    let all: Vec<LabelSelector> = m.typed_at(&["spec", "nodeSelectors"])?.unwrap_or_default();
    Ok(match selectors::any_of(&all) {
        _ if all.is_empty() => None,
        AnyOf::Everything => None,
        AnyOf::One(s) => Some(s),
        AnyOf::Several(distinct) => {
            let kept = distinct.first().cloned().unwrap_or_default();
            let dropped: Vec<String> = distinct.iter().skip(1).map(selectors::show).collect();
            let index = all.iter().position(|s| *s != kept).unwrap_or(1).to_string();
            m.warn(
                warnings,
                &["spec", "nodeSelectors", &index],
                format!(
                    "a BGPPeer has one nodeSelector: the first, {}, is kept; nodes matching only \
                     {} no longer peer with this router: label them to match the first",
                    selectors::show(&kept),
                    dropped.join(" or ")
                ),
            );
            Some(kept)
        }
    })
}

/// `passwordSecret` as a reference (key `password`, as MetalLB reads it), or `password` as a
/// Secret in `namespace` and a reference to it.
fn password(
    m: &Manifest,
    namespace: &str,
    warnings: &mut Warnings,
) -> Result<(Option<PasswordSecretRef>, Option<Doc<Secret>>), ImportError> {
    let plain = m.str(&["spec", "password"]).filter(|p| !p.is_empty());
    if let Some(name) = m.str(&["spec", "passwordSecret", "name"]) {
        if plain.is_some() {
            m.warn(
                warnings,
                &["spec", "password"],
                "both password and passwordSecret (MetalLB refuses such a peer): the Secret is \
                 used",
            );
        }
        let reference = PasswordSecretRef {
            name: name.to_string(),
            namespace: m
                .str(&["spec", "passwordSecret", "namespace"])
                .unwrap_or(METALLB_NAMESPACE)
                .to_string(),
            key: "password".to_string(),
        };
        return Ok((Some(reference), None));
    }
    let Some(plain) = plain else {
        return Ok((None, None));
    };
    let name = format!("{}-bgp-password", dns_name(m.name()));
    m.warn(
        warnings,
        &["spec", "password"],
        format!(
            "the password is now in a file: written in plain text into Secret {namespace}/{name} \
             of the output (passwordSecretRef); keep the output private, or create the Secret \
             with kubectl and delete its document"
        ),
    );
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            "password".to_string(),
            plain.to_string(),
        )])),
        ..Default::default()
    };
    let comments = vec![
        format!(
            "The TCP MD5 password of {} ({}), in plain text there.",
            m.label(),
            m.loc(&["spec", "password"])
        ),
        "In standalone mode this document sits beside the others; in a cluster, do not commit it:"
            .into(),
        format!(
            "create it with `kubectl -n {namespace} create secret generic {name} \
             --from-literal=password=…` instead."
        ),
    ];
    let reference = PasswordSecretRef {
        name,
        namespace: namespace.to_string(),
        key: "password".to_string(),
    };
    Ok((
        Some(reference),
        Some(Doc {
            object: secret,
            comments,
        }),
    ))
}

/// Puts the communities and LOCAL_PREF of the advertisements (`ads`, those that announce at
/// least one BGP pool) onto the peers they name; `bgp_pools` are the pools announced by BGP.
pub(super) fn attach(
    ads: &[&BgpAd],
    peers: &mut [Peer],
    bgp_pools: &[usize],
    pools: &[Pool],
    warnings: &mut Warnings,
) {
    for ad in ads {
        for (i, name) in ad.peers.iter().enumerate() {
            if !peers.iter().any(|p| &p.name == name) {
                let i = i.to_string();
                ad.source.warn(
                    warnings,
                    &["spec", "peers", &i],
                    format!("no BGPPeer {name} in the input files: nothing to attach to"),
                );
            }
        }
        if ad.communities.is_empty() && ad.local_pref.is_none() {
            continue;
        }
        // A peer's communities and LOCAL_PREF go with every address announced to it.
        let others: Vec<&str> = bgp_pools
            .iter()
            .filter(|&&i| !ad.pools.contains(&i))
            .map(|&i| pools[i].name.as_str())
            .collect();
        let field = if ad.communities.is_empty() {
            "localPref"
        } else {
            "communities"
        };
        if !others.is_empty() {
            ad.source.warn(
                warnings,
                &["spec", field],
                format!(
                    "Buoy attaches communities and localPref to a BGPPeer, so to every address \
                     announced to it: the addresses of IPAddressPool {} get them too",
                    others.join(", ")
                ),
            );
        }
        let named = |p: &Peer| ad.peers.is_empty() || ad.peers.contains(&p.name);
        for peer in peers.iter_mut().filter(|p| named(p)) {
            let label = peer.source.label();
            let spec = &mut peer.doc.object.spec;
            for c in &ad.communities {
                if !spec.communities.contains(c) {
                    spec.communities.push(c.clone());
                }
            }
            if let Some(pref) = ad.local_pref {
                if spec.my_asn != spec.peer_asn {
                    ad.source.warn(
                        warnings,
                        &["spec", "localPref"],
                        format!(
                            "LOCAL_PREF goes to iBGP peers only, and {label} is eBGP (myASN {} \
                             ≠ peerASN {}): not set on it",
                            spec.my_asn, spec.peer_asn
                        ),
                    );
                } else if let Some(kept) = spec.local_pref.filter(|&k| k != pref) {
                    ad.source.warn(
                        warnings,
                        &["spec", "localPref"],
                        format!(
                            "{label} has one localPref, {kept}, from an advertisement before \
                             this one: {pref} is not set"
                        ),
                    );
                } else {
                    spec.local_pref = Some(pref);
                }
            }
            let note = format!(
                "Communities and localPref of {} ({}).",
                ad.source.label(),
                ad.source.at
            );
            if !peer.doc.comments.contains(&note) {
                peer.doc.comments.push(note);
            }
        }
    }
}
