//! BGPPeer, AddressPool's `announcement` and VirtualIP's `bgp`: what is accepted, with its
//! defaults, and how `buoy-agent check`'s loader reports a bad BGPPeer (the rejected inputs,
//! each at its path, are cases of bad_examples.yaml).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;

use buoy_crds::{
    AddressPool, Announcement, BGPPeer, BfdSpec, BgpMode, Duration, FieldError, VirtualIP,
    manifest::{self, Object},
    validation::validate_value,
};
use serde_json::{Value, json};

mod bad_examples;

fn peer_errors(patch: Value) -> Vec<FieldError> {
    let mut v = bad_examples::valid("BGPPeer");
    bad_examples::merge(&mut v, &patch);
    validate_value::<BGPPeer>(&v)
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

#[test]
fn a_minimal_peer_is_valid_and_defaulted() {
    let minimal = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "tor"},
        "spec": {"peerAddress": "fd00::1", "peerASN": 4200000000u32, "myASN": 64512}});
    assert_eq!(validate_value::<BGPPeer>(&minimal), Ok(()));
    let peer: BGPPeer = serde_json::from_value(minimal).unwrap();
    assert_eq!(peer.spec.peer_port, 179);
    assert_eq!(peer.spec.peer_asn, 4_200_000_000);
    assert_eq!(peer.spec.hold_time, Duration::from_secs(90));
    assert_eq!(peer.spec.keepalive_time, Duration::from_secs(30));
    assert!(peer.spec.bfd.is_none() && peer.spec.password_secret_ref.is_none());
    assert!(peer.spec.communities.is_empty() && peer.spec.local_pref.is_none());
    // The ASNs keep their API names.
    let back = serde_json::to_value(&peer).unwrap();
    assert_eq!(back["spec"]["peerASN"], 4_200_000_000u32);
    assert_eq!(back["spec"]["myASN"], 64512);
    // An empty `bfd` turns BFD on with FRR's defaults; an empty password reference reads key
    // `password`.
    let peer: BGPPeer = serde_json::from_value(json!({"apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer",
        "metadata": {"name": "tor"}, "spec": {"peerAddress": "10.0.0.1", "peerASN": 1, "myASN": 2, "bfd": {},
        "passwordSecretRef": {"name": "bgp", "namespace": "buoy-system"}}}))
    .unwrap();
    assert_eq!(peer.spec.bfd, Some(BfdSpec::default()));
    assert_eq!(
        peer.spec.bfd.as_ref().map(|b| (
            b.receive_interval,
            b.transmit_interval,
            b.detect_multiplier
        )),
        Some((Duration::from_millis(300), Duration::from_millis(300), 3))
    );
    assert_eq!(
        peer.spec
            .password_secret_ref
            .as_ref()
            .map(|r| r.key.as_str()),
        Some("password")
    );
    assert_eq!(peer.validate(), Ok(()));
}

#[test]
fn the_edges_of_each_rule_are_accepted() {
    assert_eq!(peer_errors(json!({})), vec![]);
    // holdTime 0s: no keepalives, whatever keepaliveTime says; 3s is the shortest otherwise.
    assert_eq!(
        peer_errors(json!({"spec": {"holdTime": "0s", "keepaliveTime": "30s"}})),
        vec![]
    );
    assert_eq!(
        peer_errors(json!({"spec": {"holdTime": "3s", "keepaliveTime": "1s"}})),
        vec![]
    );
    // localPref on an iBGP session.
    assert_eq!(
        peer_errors(json!({"spec": {"myASN": 64512, "localPref": 200}})),
        vec![]
    );
    // BFD at both ends of FRR's ranges.
    assert_eq!(
        peer_errors(
            json!({"spec": {"bfd": {"receiveInterval": "10ms", "transmitInterval": "60s", "detectMultiplier": 255}}})
        ),
        vec![]
    );
    assert_eq!(
        peer_errors(json!({"spec": {"bfd": {"detectMultiplier": 2}}})),
        vec![]
    );
    // Communities at the top of their ranges, and every well-known name.
    assert_eq!(
        peer_errors(json!({"spec": {"communities": ["0:0", "65535:65535",
            "4294967295:4294967295:4294967295", "no-export", "no-advertise", "no-peer",
            "blackhole", "local-AS"]}})),
        vec![]
    );
    assert_eq!(
        peer_errors(json!({"spec": {"peerASN": 4294967295u32, "peerPort": 65535}})),
        vec![]
    );
}

#[test]
fn typed_validate_matches_value_validation() {
    let mut peer: BGPPeer = serde_json::from_value(bad_examples::valid("BGPPeer")).unwrap();
    assert_eq!(peer.validate(), Ok(()));
    peer.spec.keepalive_time = Duration::from_secs(10); // holdTime is 9s
    peer.spec.local_pref = Some(100); // an eBGP peer
    assert_eq!(
        peer.validate().unwrap_err().0,
        vec![
            FieldError::new(
                "spec.keepaliveTime",
                "keepaliveTime must be less than holdTime (unless holdTime is 0s)".into()
            ),
            FieldError::new(
                "spec.localPref",
                "localPref applies only to iBGP peers (myASN equal to peerASN)".into()
            ),
        ]
    );
}

#[test]
fn manifests_load_bgp_peers_and_report_bad_ones_at_their_path() {
    let good = "apiVersion: buoy.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor1}\n\
                spec: {peerAddress: 192.168.60.1, peerASN: 64512, myASN: 64512, localPref: 150, \
                communities: ['64512:100', no-export], bfd: {transmitInterval: 100ms}}\n";
    let objects = manifest::parse(Path::new("peers.yaml"), good).unwrap();
    let peers = manifest::bgp_peers(&objects);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].spec.local_pref, Some(150));
    assert_eq!(
        peers[0].spec.bfd.as_ref().map(|b| b.transmit_interval),
        Some(Duration::from_millis(100))
    );
    assert!(matches!(objects[0].object, Object::BGPPeer(_)));
    let bad = good.replace("myASN: 64512", "myASN: 64513");
    let bad = bad.replace("no-export", "no-export-please");
    let errors = manifest::parse(Path::new("peers.yaml"), &bad).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "peers.yaml: document 1 (BGPPeer tor1): spec.localPref: localPref applies only to iBGP peers (myASN equal to peerASN)",
            "peers.yaml: document 1 (BGPPeer tor1): spec.communities[1]: must be a standard community A:B (each 0..65535), a large community A:B:C (each 0..4294967295) or one of no-export, no-advertise, no-peer, blackhole, local-AS",
        ]
    );
}

#[test]
fn announcement_defaults_to_l2_and_bgp_mode_to_ecmp() {
    let pool = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "AddressPool", "metadata": {"name": "p"},
        "spec": {"addresses": ["10.0.0.0/24"]}});
    assert_eq!(validate_value::<AddressPool>(&pool), Ok(()));
    let typed: AddressPool = serde_json::from_value(pool.clone()).unwrap();
    assert_eq!(typed.spec.announcement, Announcement::L2);
    // Left out when written: objects from before BGP stay the same (the importer's output).
    let written = serde_json::to_value(&typed).unwrap();
    assert_eq!(written["spec"].get("announcement"), None, "{written}");
    let mut bgp = pool;
    bgp["spec"]["announcement"] = json!("BGP");
    assert_eq!(validate_value::<AddressPool>(&bgp), Ok(()));
    let typed: AddressPool = serde_json::from_value(bgp).unwrap();
    assert_eq!(typed.spec.announcement, Announcement::BGP);
    assert_eq!(
        serde_json::to_value(&typed).unwrap()["spec"]["announcement"],
        "BGP"
    );

    let vip = json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "metadata": {"name": "v"},
        "spec": {"addressPool": "p", "bgp": {}}});
    assert_eq!(validate_value::<VirtualIP>(&vip), Ok(()));
    let typed: VirtualIP = serde_json::from_value(vip).unwrap();
    assert_eq!(typed.spec.bgp.map(|b| b.mode), Some(BgpMode::ECMP));
}
