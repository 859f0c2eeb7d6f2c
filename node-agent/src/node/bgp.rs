//! The node's BGP sessions, from the BGPPeers that select it (pure): FRR's peers, the node's
//! ASN, and what is wrong with a peer that cannot be used (left out, the others kept).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use buoy_crds::{BGPPeer, policy};
use k8s_openapi::api::core::v1::Secret;

pub use crate::bgp::speaker::BgpNode;
use crate::{
    bgp::{BfdConfig, PeerConfig},
    config,
};

/// The sessions of a node with `labels`, from `peers`; the problems of the peers left out,
/// by BGPPeer name. `None` when no usable peer selects the node. FRR runs one ASN per node:
/// peers whose `myASN` differs from the first's (by name) are left out.
pub(crate) fn plan_sessions(
    peers: &[&BGPPeer],
    labels: &BTreeMap<String, String>,
    secrets: &[&Secret],
    wanted_secrets: &mut BTreeSet<(String, String)>,
    problems: &mut BTreeMap<String, String>,
) -> Option<BgpNode> {
    let mut selected: Vec<&BGPPeer> = peers
        .iter()
        .copied()
        .filter(|p| policy::selector_matches(p.spec.node_selector.as_ref(), labels))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut asn = None;
    let mut out = Vec::new();
    for peer in selected {
        let name = peer.metadata.name.clone().unwrap_or_default();
        match session(peer, &name, secrets, wanted_secrets) {
            Ok(config) => {
                let mine = *asn.get_or_insert(peer.spec.my_asn);
                if mine != peer.spec.my_asn {
                    problems.insert(
                        name,
                        format!(
                            "myASN {} differs from {} of the node's other BGPPeers: FRR runs one ASN per node",
                            peer.spec.my_asn, mine
                        ),
                    );
                    continue;
                }
                out.push(config);
            }
            Err(problem) => {
                problems.insert(name, problem);
            }
        }
    }
    Some(BgpNode {
        asn: asn?,
        peers: out,
    })
    .filter(|n| !n.peers.is_empty())
}

/// One peer's session, or why it cannot be had.
fn session(
    peer: &BGPPeer,
    name: &str,
    secrets: &[&Secret],
    wanted_secrets: &mut BTreeSet<(String, String)>,
) -> Result<PeerConfig, String> {
    let spec = &peer.spec;
    let address: IpAddr = spec
        .peer_address
        .0
        .parse()
        .map_err(|_| format!("peerAddress {:?} is not an IP address", spec.peer_address.0))?;
    let password = match &spec.password_secret_ref {
        None => None,
        Some(r) => {
            wanted_secrets.insert((r.namespace.clone(), r.name.clone()));
            let value =
                config::secret_value(secrets, &r.namespace, &r.name, &r.key).ok_or_else(|| {
                    format!(
                        "password: Secret {}/{} (key {}) cannot be read",
                        r.namespace, r.name, r.key
                    )
                })?;
            Some(
                String::from_utf8(value)
                    .map_err(|_| {
                        format!("password: Secret {}/{} is not text", r.namespace, r.name)
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            )
        }
    };
    let config = PeerConfig {
        name: name.to_string(),
        address,
        asn: spec.peer_asn,
        port: spec.peer_port,
        hold_time: spec.hold_time.as_std(),
        keepalive: spec.keepalive_time.as_std(),
        password,
        bfd: spec.bfd.as_ref().map(|b| BfdConfig {
            receive: b.receive_interval.as_std(),
            transmit: b.transmit_interval.as_std(),
            multiplier: b.detect_multiplier,
        }),
        communities: spec.communities.iter().map(|c| c.0.clone()).collect(),
        local_pref: spec.local_pref,
    };
    // What FRR could not read (or could be made to read more than the value) stays out.
    config.validate().map_err(|e| match e {
        crate::bgp::ConfigError::Peer { problem, .. } => problem,
        other => other.to_string(),
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, json: serde_json::Value) -> BGPPeer {
        let mut p: BGPPeer = serde_json::from_value(serde_json::json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": name}, "spec": json,
        }))
        .unwrap();
        p.metadata.name = Some(name.into());
        p
    }

    fn secret(ns: &str, name: &str, key: &str, value: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": {key: value},
        }))
        .unwrap()
    }

    #[test]
    fn selected_peers_become_sessions_and_bad_ones_are_left_out_alone() {
        let tor = peer(
            "tor-a",
            serde_json::json!({"peerAddress": "10.0.0.1", "peerASN": 64500, "myASN": 64512,
                "bfd": {"receiveInterval": "100ms", "transmitInterval": "100ms", "detectMultiplier": 3},
                "communities": ["64512:100"],
                "passwordSecretRef": {"name": "bgp", "namespace": "buoy"}}),
        );
        let other_rack = peer(
            "tor-b",
            serde_json::json!({"peerAddress": "10.1.0.1", "peerASN": 64500, "myASN": 64512,
                "nodeSelector": {"matchLabels": {"rack": "b"}}}),
        );
        let wrong_asn = peer(
            "tor-c",
            serde_json::json!({"peerAddress": "10.0.0.3", "peerASN": 64500, "myASN": 64999}),
        );
        let no_secret = peer(
            "tor-d",
            serde_json::json!({"peerAddress": "10.0.0.4", "peerASN": 64500, "myASN": 64512,
                "passwordSecretRef": {"name": "missing", "namespace": "buoy"}}),
        );
        let labels = BTreeMap::from([("rack".to_string(), "a".to_string())]);
        let s = secret("buoy", "bgp", "password", "s3cret\n");
        let (mut wanted, mut problems) = (BTreeSet::new(), BTreeMap::new());
        let node = plan_sessions(
            &[&wrong_asn, &no_secret, &other_rack, &tor],
            &labels,
            &[&s],
            &mut wanted,
            &mut problems,
        )
        .unwrap();
        assert_eq!(node.asn, 64512);
        let names: Vec<&str> = node.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["tor-a"], "{problems:?}");
        let a = &node.peers[0];
        assert_eq!(a.password.as_deref(), Some("s3cret"), "the newline goes");
        assert_eq!(a.port, 179);
        assert_eq!(a.hold_time, std::time::Duration::from_secs(90));
        assert_eq!(
            a.bfd.map(|b| (b.receive.as_millis(), b.multiplier)),
            Some((100, 3))
        );
        assert!(
            problems["tor-c"].contains("one ASN per node"),
            "{problems:?}"
        );
        assert!(problems["tor-d"].contains("buoy/missing"), "{problems:?}");
        assert!(
            !problems.contains_key("tor-b"),
            "not selected is no problem"
        );
        assert!(wanted.contains(&("buoy".to_string(), "bgp".to_string())));
        assert!(wanted.contains(&("buoy".to_string(), "missing".to_string())));
    }

    #[test]
    fn no_peer_no_sessions() {
        let other_rack = peer(
            "tor-b",
            serde_json::json!({"peerAddress": "10.1.0.1", "peerASN": 64500, "myASN": 64512,
                "nodeSelector": {"matchLabels": {"rack": "b"}}}),
        );
        let (mut wanted, mut problems) = (BTreeSet::new(), BTreeMap::new());
        assert_eq!(
            plan_sessions(
                &[&other_rack],
                &BTreeMap::new(),
                &[],
                &mut wanted,
                &mut problems
            ),
            None
        );
    }
}
