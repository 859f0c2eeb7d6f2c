//! The hosts' keepalived files into VirtualIP drafts: one per (virtual_router_id, addresses)
//! across the files, with one priority per host; what the hosts disagree on is warned about and
//! the first file's settings are used.

use std::{collections::BTreeMap, path::Path};

use buoy_crds::{IpAddressString, NodePriority, TrackSpec, VipAddress, VirtualIPSpec, VrrpSpec};

use super::{instance::Instance, translate::File};
use crate::{
    diagnostics::{ImportError, Warnings},
    draft::VipDraft,
    names::{dns_label, dns_name},
    options::NodeNameFrom,
};

/// The instances that make one VirtualIP: the same virtual_router_id and addresses, at most one
/// per node.
struct Group<'a> {
    first: &'a Instance,
    /// Node name and instance, in file order.
    members: Vec<(&'a str, &'a Instance)>,
}

/// One VirtualIP per (virtual_router_id, addresses) across the files, one priority per file.
pub(crate) fn merge(
    files: &[File],
    from: NodeNameFrom,
    warnings: &mut Warnings,
) -> Result<Vec<VipDraft>, ImportError> {
    let names = node_names(files, from, warnings)?;
    let groups = group(files, &names, warnings);
    let mut out = Vec::new();
    for (key, g) in groups.iter().enumerate() {
        let vrrp = shared_vrrp(g, warnings);
        let priorities = priorities(g, warnings);
        out.push(draft(key, g, vrrp, priorities));
    }
    Ok(out)
}

/// Groups the instances of every file (named `names`) by virtual_router_id and addresses.
fn group<'a>(files: &'a [File], names: &'a [String], warnings: &mut Warnings) -> Vec<Group<'a>> {
    let mut groups: Vec<Group> = Vec::new();
    for (file, node) in files.iter().zip(names) {
        for inst in &file.instances {
            let mut key: Vec<&String> = inst.addresses.iter().collect();
            key.sort();
            let found = groups.iter_mut().find(|g| {
                let mut k: Vec<&String> = g.first.addresses.iter().collect();
                k.sort();
                g.first.vrid == inst.vrid && k == key
            });
            match found {
                Some(g) => {
                    if g.members.iter().any(|(n, _)| n == node) {
                        warnings.add(&inst.at, "vrrp_instance", format!("a second instance with virtual_router_id {} and the same addresses on node {node}", inst.vrid));
                        continue;
                    }
                    g.members.push((node, inst));
                }
                None => {
                    for g in &groups {
                        if g.first.vrid == inst.vrid
                            && g.first.interface.as_ref().map(|i| &i.0)
                                == inst.interface.as_ref().map(|i| &i.0)
                        {
                            warnings.add(&inst.at, "virtual_router_id", format!("{} is also used by vrrp_instance {} ({}) with other addresses: two VirtualIPs are made, and their router IDs collide on a shared LAN", inst.vrid, g.first.name, g.first.at));
                        }
                    }
                    groups.push(Group {
                        first: inst,
                        members: vec![(node, inst)],
                    });
                }
            }
        }
    }
    groups
}

/// The group's VRRP settings: the first file's, with the unicast peers of every host (in
/// standalone mode it is the whole peer list).
fn shared_vrrp(g: &Group, warnings: &mut Warnings) -> VrrpSpec {
    let mut vrrp = g.first.vrrp.clone();
    let mut peers: Vec<IpAddressString> = Vec::new();
    for (_, inst) in &g.members {
        for p in inst.vrrp.unicast_peers.iter().flatten() {
            if !peers.contains(p) {
                peers.push(p.clone());
            }
        }
        differences(g.first, inst, warnings);
    }
    vrrp.unicast_peers = (!peers.is_empty()).then_some(peers);
    vrrp
}

/// Warns about what `inst` sets otherwise than `first`, whose settings are used.
fn differences(first: &Instance, inst: &Instance, warnings: &mut Warnings) {
    let mut theirs = inst.vrrp.clone();
    theirs.unicast_peers = None;
    let mut ours = first.vrrp.clone();
    ours.unicast_peers = None;
    if theirs != ours {
        // Name the fields (vrrp.advertisementInterval, vrrp.preempt, …) that differ.
        let a = serde_json::to_value(&ours).unwrap_or_default();
        let b = serde_json::to_value(&theirs).unwrap_or_default();
        let fields: Vec<String> = a
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, _)| format!("vrrp.{k}"))
            .collect();
        warnings.add(
            &inst.at,
            "vrrp_instance",
            format!(
                "{} differ from {} ({}); Buoy shares one set per VirtualIP: the first file's are used",
                fields.join(", "),
                first.name,
                first.at
            ),
        );
    }

    if inst.interface.as_ref().map(|i| &i.0) != first.interface.as_ref().map(|i| &i.0)
        && let Some((i, at)) = &inst.interface
    {
        warnings.add(at, "interface", format!("{i} differs from {}'s; Buoy has one interface per VirtualIP: the first file's is used", first.at));
    }
    if inst.track_interfaces != first.track_interfaces {
        warnings.add(
            &inst.at,
            "track_interface",
            format!("differs from {}; the first file's is used", first.at),
        );
    }
    if inst.track_upstreams.as_ref().map(|t| t.0) != first.track_upstreams.as_ref().map(|t| t.0)
        && let Some((_, at)) = &inst.track_upstreams
    {
        warnings.add(
            at,
            "track_script",
            format!(
                "the weight differs from {}'s; the first file's is used",
                first.at
            ),
        );
    }
    if inst.password.as_ref().map(|p| &p.0) != first.password.as_ref().map(|p| &p.0)
        && let Some((_, at)) = &inst.password
    {
        warnings.add(
            at,
            "auth_pass",
            format!("differs from {}'s; the first file's is used", first.at),
        );
    }
}

/// One priority per node. keepalived's `state` only picks the initial state; it decides only
/// when no host sets a priority (then MASTER gets 100, keepalived's default, and BACKUP 99).
fn priorities(g: &Group, warnings: &mut Warnings) -> Vec<NodePriority> {
    let any_priority = g.members.iter().any(|(_, i)| i.priority.is_some());
    let mut priorities = Vec::new();
    for (node, inst) in &g.members {
        let priority = match (inst.priority, &inst.state) {
            (Some(p), Some((s, at))) => {
                warnings.add(at, "state", format!("{s} is only keepalived's initial state; in Buoy every node starts in Initialize and the priorities decide ({node}: {p})"));
                p
            }
            (Some(p), None) => p,
            (None, state) => {
                let is_master = state.as_ref().is_some_and(|(s, _)| s == "MASTER");
                let p = if any_priority || is_master { 100 } else { 99 };
                let why = match state {
                    Some((s, _)) if !any_priority => format!(
                        "{s} becomes priority {p} ({node} has no priority: keepalived's default is 100, and MASTER is kept ahead of BACKUP)"
                    ),
                    _ => format!("{node} has no priority: keepalived's default, 100, is used"),
                };
                warnings.add(state.as_ref().map_or(&inst.at, |(_, at)| at), "state", why);
                p
            }
        };
        priorities.push(NodePriority {
            node: node.to_string(),
            priority,
            source_address: inst.source.clone().map(IpAddressString),
        });
    }
    priorities
}

/// The group's VirtualIP draft, numbered `key`.
fn draft(key: usize, g: &Group, vrrp: VrrpSpec, priorities: Vec<NodePriority>) -> VipDraft {
    let first = g.first;
    let spec = VirtualIPSpec {
        addresses: first.addresses.iter().cloned().map(VipAddress).collect(),
        address_pool: None,
        interface: first.interface.as_ref().map(|i| i.0.clone()),
        virtual_router_id: Some(first.vrid),
        vrrp,
        node_selector: None,
        tolerations: None,
        priorities: Some(priorities),
        track: first.track_interfaces.clone().map(|i| TrackSpec {
            upstreams: None,
            interface: Some(i),
            http_get: None,
        }),
        listeners: Vec::new(),
        bgp: None,
    };
    let comments = vec![format!(
        "keepalived vrrp_instance {}: {}.",
        first.name,
        g.members
            .iter()
            .map(|(n, i)| format!(
                "{} (node {n}, priority {})",
                i.at,
                i.priority.map_or("default".into(), |p| p.to_string())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    VipDraft {
        key,
        name: dns_label(&first.name),
        spec,
        password: first.password.clone(),
        track_upstreams: first.track_upstreams.clone(),
        comments,
    }
}

/// The node name of each file.
fn node_names(
    files: &[File],
    from: NodeNameFrom,
    warnings: &mut Warnings,
) -> Result<Vec<String>, ImportError> {
    // `lb1.conf` → lb1; when several files share a name (`lb1/keepalived.conf`,
    // `lb2/keepalived.conf`: one directory per host), their directories name them.
    let name = |p: Option<&std::ffi::OsStr>| {
        p.map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let stems: Vec<String> = files.iter().map(|f| name(f.path.file_stem())).collect();
    let stem = |f: &File| {
        let own = name(f.path.file_stem());
        if stems.iter().filter(|s| **s == own).count() > 1 {
            let dir = name(f.path.parent().and_then(Path::file_name));
            if !dir.is_empty() {
                return dns_name(&dir);
            }
        }
        dns_name(&own)
    };
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for f in files {
        if let Some((r, _)) = &f.router_id {
            *count.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut names = Vec::new();
    for f in files {
        let name = match (&f.router_id, from) {
            (Some((r, at)), NodeNameFrom::RouterId) if count.get(r.as_str()) == Some(&1) => {
                let n = dns_name(r);
                if &n != r {
                    warnings.add(
                        at,
                        "router_id",
                        format!("{r:?} is not a valid node name; the node is called {n:?}"),
                    );
                }
                n
            }
            (Some((r, at)), NodeNameFrom::RouterId) => {
                let n = stem(f);
                warnings.add(at, "router_id", format!("{r:?} is the router_id of several files, so it cannot name a node; the node is named after the file: {n:?}"));
                n
            }
            (Some((_, at)), NodeNameFrom::FileName) => {
                let n = stem(f);
                warnings.add(
                    at,
                    "router_id",
                    format!(
                        "--node-name-from hostname-of-file: the node is named after the file: {n:?}"
                    ),
                );
                n
            }
            (None, _) => stem(f),
        };
        if names.contains(&name) {
            return Err(ImportError::Usage(format!(
                "two keepalived files give the node name {name:?}; name each copy after its host (lb1.conf, lb2.conf) or set distinct router_ids"
            )));
        }
        names.push(name);
    }
    Ok(names)
}
