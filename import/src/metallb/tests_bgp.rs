//! The MetalLB BGP translation on small inputs: pools announced by BGP, peers field by field,
//! BFD profiles, passwords, communities and LOCAL_PREF, and every "not translated" reason.

use buoy_crds::{Announcement, BGPPeer, BGPPeerSpec, Duration};
use serde_json::json;

use super::tests::{error, l2, pool, run, spec, warned};
use crate::objects::Import;

fn doc(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: {kind}\nmetadata:\n  name: {name}\n  \
         namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

fn bgp_ad(name: &str, spec: &str) -> String {
    doc("BGPAdvertisement", name, spec)
}

fn peer(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: {name}\n  \
         namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

/// An eBGP peer with nothing but the required fields, and `more`.
fn ebgp(name: &str, more: &str) -> String {
    peer(
        name,
        &format!("  myASN: 64512\n  peerASN: 64501\n  peerAddress: 10.0.0.1\n{more}"),
    )
}

fn peer_spec<'a>(import: &'a Import, name: &str) -> &'a BGPPeerSpec {
    let p: &BGPPeer = import
        .bgp_peers
        .iter()
        .map(|d| &d.object)
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no BGPPeer {name}"));
    &p.spec
}

#[test]
fn pools_selected_by_name_by_label_or_all_are_announced_by_bgp() {
    let pools = pool("a", "  addresses: [203.0.113.0/28]\n")
        + &pool("b", "  addresses: [203.0.113.16/28]\n")
            .replace("  name: b\n", "  name: b\n  labels: {exposure: public}\n");
    for ad in [
        "  ipAddressPools: [a, b]\n",
        "  ipAddressPools: [a]\n  ipAddressPoolSelectors:\n  - matchLabels: {exposure: public}\n",
        "  {}\n",
    ] {
        let (import, warnings) = run(&(pools.clone() + &bgp_ad("pub", ad)));
        assert!(warnings.is_empty(), "{ad}: {warnings:#?}");
        for name in ["a", "b"] {
            assert_eq!(spec(&import, name).announcement, Announcement::BGP, "{ad}");
            assert_eq!(spec(&import, name).node_selector, None);
            assert_eq!(spec(&import, name).interfaces, None);
        }
        assert_eq!(
            import.address_pools[0].comments[1],
            "Announced by BGP as BGPAdvertisement metallb-system/pub (m.yaml:18) announces it."
        );
        let text = import.to_yaml().unwrap();
        assert!(text.contains("announcement: BGP"), "{text}");
    }
}

#[test]
fn a_pool_announced_in_l2_and_by_bgp_stays_l2_and_the_bgp_part_is_warned() {
    let yaml = pool("both", "  addresses: [192.168.10.0/24]\n")
        + &l2("lan", "  ipAddressPools: [both]\n")
        + &bgp_ad(
            "routed",
            "  ipAddressPools: [both]\n  communities: [65000:1]\n",
        )
        + &ebgp("tor", "");
    let (import, warnings) = run(&yaml);
    assert_eq!(spec(&import, "both").announcement, Announcement::L2);
    warned(
        &warnings,
        &[
            "directive \"BGPAdvertisement metallb-system/routed\"",
            "IPAddressPool both is announced in L2 too (L2Advertisement metallb-system/lan at \
             m.yaml:9)",
            "a Buoy pool announces one way",
        ],
    );
    // The advertisement announces nothing by BGP: its communities go nowhere.
    assert!(peer_spec(&import, "tor").communities.is_empty());
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}

#[test]
fn a_pool_announced_nowhere_is_left_out() {
    let (import, warnings) = run(&pool("idle", "  addresses: [203.0.113.0/28]\n"));
    assert!(import.address_pools.is_empty());
    warned(
        &warnings,
        &[
            "IPAddressPool metallb-system/idle\"",
            "nor BGPAdvertisement",
            "left out",
        ],
    );
}

#[test]
fn a_peer_maps_field_by_field() {
    let yaml = doc(
        "BFDProfile",
        "fast",
        "  receiveInterval: 100\n  transmitInterval: 150\n  detectMultiplier: 5\n  \
         echoMode: false\n  passiveMode: false\n",
    ) + &peer(
        "tor1",
        "  myASN: 64512\n  peerASN: 64512\n  peerAddress: 192.168.1.1\n  peerPort: 1179\n  \
         holdTime: 9s\n  keepaliveTime: 2s\n  nodeSelectors:\n  - matchLabels: {rack: r1}\n  \
         bfdProfile: fast\n  passwordSecret: {name: tor1-auth}\n",
    ) + &ebgp(
        "tor2",
        "  holdTime: 30s\n  passwordSecret: {name: tor2-auth, namespace: net}\n",
    );
    let (import, warnings) = run(&yaml);
    assert!(warnings.is_empty(), "{warnings:#?}");
    let one = serde_json::to_value(peer_spec(&import, "tor1")).unwrap();
    assert_eq!(
        one,
        json!({
            "peerAddress": "192.168.1.1",
            "peerASN": 64512,
            "myASN": 64512,
            "peerPort": 1179,
            "holdTime": "9s",
            "keepaliveTime": "2s",
            "nodeSelector": {"matchLabels": {"rack": "r1"}},
            "bfd": {"receiveInterval": "100ms", "transmitInterval": "150ms", "detectMultiplier": 5},
            "passwordSecretRef": {"name": "tor1-auth", "namespace": "metallb-system", "key": "password"},
        })
    );
    let two = peer_spec(&import, "tor2");
    // MetalLB's keepalive is a third of the hold time when not given.
    assert_eq!(two.keepalive_time, Duration::from_secs(10));
    assert_eq!(two.peer_port, 179);
    assert_eq!(two.bfd, None);
    assert_eq!(
        two.password_secret_ref
            .as_ref()
            .map(|r| r.namespace.as_str()),
        Some("net")
    );
    // Cluster-scoped, and says where it comes from.
    let doc = &import.bgp_peers[0];
    assert_eq!(doc.object.metadata.namespace, None);
    assert_eq!(
        doc.comments,
        [
            "From BGPPeer metallb-system/tor1 (m.yaml:13).",
            "BFD as BFDProfile metallb-system/fast (m.yaml:1).",
        ]
    );
    // The API's defaults are left out of the output.
    let text = import.to_yaml().unwrap();
    assert!(!text.contains("peerPort: 179\n"), "{text}");
    assert!(text.contains("peerPort: 1179\n"), "{text}");
}

#[test]
fn a_v1beta1_peer_translates_too() {
    let yaml = ebgp("old", "").replace("metallb.io/v1beta2", "metallb.io/v1beta1");
    let (import, warnings) = run(&yaml);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(peer_spec(&import, "old").peer_asn, 64501);
}

#[test]
fn a_plain_password_becomes_a_secret_in_the_import_namespace_and_is_warned() {
    let (import, warnings) = run(&ebgp("tor", "  password: s3cret\n"));
    let reference = peer_spec(&import, "tor")
        .password_secret_ref
        .clone()
        .unwrap();
    assert_eq!(
        (
            reference.name.as_str(),
            reference.namespace.as_str(),
            reference.key.as_str()
        ),
        ("tor-bgp-password", "default", "password")
    );
    assert_eq!(import.secrets.len(), 1);
    let secret = &import.secrets[0].object;
    assert_eq!(secret.metadata.name.as_deref(), Some("tor-bgp-password"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        secret.string_data.as_ref().and_then(|d| d.get("password")),
        Some(&"s3cret".to_string())
    );
    warned(
        &warnings,
        &[
            "m.yaml:10: directive \"BGPPeer metallb-system/tor spec.password\"",
            "the password is now in a file",
            "Secret default/tor-bgp-password",
        ],
    );
    assert_eq!(warnings.len(), 1);
}

#[test]
fn several_node_selectors_keep_the_first_and_say_so() {
    let (import, warnings) = run(&ebgp(
        "tor",
        "  nodeSelectors:\n  - matchLabels: {rack: r1}\n  - matchLabels: {zone: b}\n",
    ));
    assert_eq!(
        serde_json::to_value(&peer_spec(&import, "tor").node_selector).unwrap(),
        json!({"matchLabels": {"rack": "r1"}})
    );
    warned(
        &warnings,
        &[
            "spec.nodeSelectors[1]",
            "a BGPPeer has one nodeSelector",
            r#"only {"matchLabels":{"zone":"b"}}"#,
        ],
    );
    // Selectors that one selector covers are merged, not warned.
    let (import, warnings) = run(&ebgp(
        "tor",
        "  nodeSelectors:\n  - matchLabels: {rack: r1}\n  - matchLabels: {rack: r2}\n",
    ));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert!(peer_spec(&import, "tor").node_selector.is_some());
}

#[test]
fn peer_and_bfd_fields_buoy_lacks_are_warned_with_their_line() {
    let lacking = [
        ("ebgpMultiHop", "true", "eBGP multihop"),
        ("vrf", "red", "default VRF"),
        ("sourceAddress", "10.0.0.9", "source address"),
        ("routerID", "10.0.0.9", "router ID"),
        ("connectTime", "5s", "connect retry"),
        ("disableMP", "true", "IPv4 and IPv6"),
        ("dynamicASN", "external", "peerASN"),
    ];
    let more: String = lacking
        .iter()
        .map(|(f, v, _)| format!("  {f}: {v}\n"))
        .collect();
    let yaml = ebgp("tor", &format!("{more}  bfdProfile: slow\n"))
        + &doc(
            "BFDProfile",
            "slow",
            "  echoMode: true\n  echoInterval: 50\n  passiveMode: true\n  minimumTtl: 254\n",
        );
    let (import, warnings) = run(&yaml);
    for (i, (field, _, why)) in lacking.iter().enumerate() {
        warned(
            &warnings,
            &[
                &format!(
                    "m.yaml:{}: directive \"BGPPeer metallb-system/tor spec.{field}\"",
                    10 + i
                ),
                why,
            ],
        );
    }
    for (i, (field, why)) in [
        ("echoMode", "no echo mode"),
        ("echoInterval", "no echo mode"),
        ("passiveMode", "always active"),
        ("minimumTtl", "single-hop"),
    ]
    .iter()
    .enumerate()
    {
        warned(
            &warnings,
            &[
                &format!(
                    "m.yaml:{}: directive \"BFDProfile metallb-system/slow spec.{field}\"",
                    25 + i
                ),
                why,
            ],
        );
    }
    assert_eq!(warnings.len(), lacking.len() + 4, "{warnings:#?}");
    // The profile's timers are still used: MetalLB's defaults.
    assert_eq!(peer_spec(&import, "tor").bfd, Some(Default::default()));
}

#[test]
fn a_missing_bfd_profile_and_unknown_fields_are_warned() {
    let (import, warnings) = run(&ebgp("tor", "  bfdProfile: nope\n  frobnicate: 1\n"));
    assert_eq!(peer_spec(&import, "tor").bfd, None);
    warned(
        &warnings,
        &["spec.bfdProfile", "no BFDProfile nope in the input files"],
    );
    warned(
        &warnings,
        &["spec.frobnicate", "not a field of MetalLB's BGPPeer"],
    );
}

#[test]
fn communities_and_local_pref_go_onto_the_peers_an_advertisement_names() {
    let yaml = pool("a", "  addresses: [203.0.113.0/28]\n")
        + &doc(
            "Community",
            "aliases",
            "  communities:\n  - name: no-export-alias\n    value: 65535:65281\n  \
             - name: big\n    value: large:64512:1:2\n",
        )
        + &bgp_ad(
            "named",
            "  peers: [ibgp]\n  localPref: 150\n  \
             communities: [no-export-alias, big, 64512:7, 64512:7]\n",
        )
        + &bgp_ad("all", "  communities: [large:1:2:3]\n")
        + &peer(
            "ibgp",
            "  myASN: 64512\n  peerASN: 64512\n  peerAddress: 10.0.0.2\n",
        )
        + &ebgp("ebgp", "");
    let (import, warnings) = run(&yaml);
    assert!(warnings.is_empty(), "{warnings:#?}");
    let ibgp = peer_spec(&import, "ibgp");
    let communities: Vec<&str> = ibgp.communities.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        communities,
        ["65535:65281", "64512:1:2", "64512:7", "1:2:3"]
    );
    assert_eq!(ibgp.local_pref, Some(150));
    let ebgp = peer_spec(&import, "ebgp");
    let communities: Vec<&str> = ebgp.communities.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(communities, ["1:2:3"]);
    assert_eq!(ebgp.local_pref, None);
    let comments = &import.bgp_peers[0].comments;
    assert!(
        comments.contains(
            &"Communities and localPref of BGPAdvertisement metallb-system/named (m.yaml:21)."
                .to_string()
        ),
        "{comments:#?}"
    );
}

#[test]
fn what_cannot_go_onto_a_peer_is_warned() {
    let yaml = pool("a", "  addresses: [203.0.113.0/28]\n")
        + &pool("b", "  addresses: [203.0.113.16/28]\n")
        + &bgp_ad(
            "a",
            "  ipAddressPools: [a]\n  localPref: 100\n  \
             communities: [nope, 70000:1]\n  peers: [ebgp, ghost]\n",
        )
        + &bgp_ad("b", "  ipAddressPools: [b]\n")
        + &ebgp("ebgp", "");
    let (import, warnings) = run(&yaml);
    assert_eq!(peer_spec(&import, "ebgp").local_pref, None);
    assert!(peer_spec(&import, "ebgp").communities.is_empty());
    warned(
        &warnings,
        &[
            "spec.communities[0]",
            "nope is neither a community (A:B, large:A:B:C) nor an alias",
        ],
    );
    warned(&warnings, &["spec.communities[1]", "70000:1 is neither"]);
    warned(
        &warnings,
        &["spec.peers[1]", "no BGPPeer ghost in the input files"],
    );
    warned(
        &warnings,
        &[
            "spec.localPref",
            "iBGP peers only",
            "BGPPeer metallb-system/ebgp is eBGP",
        ],
    );
    warned(
        &warnings,
        &[
            "BGPAdvertisement metallb-system/a spec.localPref",
            "the addresses of IPAddressPool b get them too",
        ],
    );
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
}

#[test]
fn two_local_prefs_for_one_peer_keep_the_first() {
    let yaml = pool("a", "  addresses: [203.0.113.0/28]\n")
        + &bgp_ad("one", "  localPref: 100\n")
        + &bgp_ad("two", "  localPref: 200\n")
        + &peer(
            "ibgp",
            "  myASN: 64512\n  peerASN: 64512\n  peerAddress: 10.0.0.2\n",
        );
    let (import, warnings) = run(&yaml);
    assert_eq!(peer_spec(&import, "ibgp").local_pref, Some(100));
    warned(
        &warnings,
        &[
            "BGPAdvertisement metallb-system/two spec.localPref",
            "has one localPref, 100",
            "200 is not set",
        ],
    );
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}

#[test]
fn aggregation_lengths_and_node_selectors_of_an_advertisement_are_warned() {
    let yaml = pool("a", "  addresses: [203.0.113.0/28, fd00::/120]\n")
        + &bgp_ad(
            "agg",
            "  aggregationLength: 28\n  aggregationLengthV6: 120\n  \
             nodeSelectors:\n  - matchLabels: {edge: \"true\"}\n",
        );
    let (import, warnings) = run(&yaml);
    assert_eq!(spec(&import, "a").announcement, Announcement::BGP);
    warned(
        &warnings,
        &["spec.aggregationLength\"", "as a /32, not the /28"],
    );
    warned(
        &warnings,
        &["spec.aggregationLengthV6", "as a /128, not the /120"],
    );
    warned(
        &warnings,
        &["spec.nodeSelectors", "give the BGPPeers this nodeSelector"],
    );
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    // The host lengths say nothing.
    let (_, warnings) = run(&(pool("a", "  addresses: [203.0.113.0/28]\n")
        + &bgp_ad(
            "host",
            "  aggregationLength: 32\n  aggregationLengthV6: 128\n",
        )));
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[test]
fn services_of_a_bgp_pool_are_handed_over() {
    let yaml = pool("public", "  addresses: [203.0.113.0/28]\n")
        + &bgp_ad("public", "  ipAddressPools: [public]\n")
        + "apiVersion: v1\nkind: Service\nmetadata:\n  name: www\n  namespace: web\n  \
           annotations:\n    metallb.io/address-pool: public\nspec:\n  type: LoadBalancer\n  \
           ports: [{port: 80}]\nstatus:\n  loadBalancer:\n    ingress: [{ip: 203.0.113.2}]\n";
    let (import, warnings) = run(&yaml);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(import.services.len(), 1);
    let annotations = &import.services[0].object["metadata"]["annotations"];
    assert_eq!(annotations["buoy.io/address-pool"], "public");
    assert_eq!(annotations["buoy.io/load-balancer-ips"], "203.0.113.2");
}

#[test]
fn bad_peers_are_errors_with_their_line() {
    let e = error(&peer("tor", "  myASN: 64512\n  peerAddress: 10.0.0.1\n"));
    assert!(
        e.starts_with("m.yaml:6: ") && e.contains("no peerASN"),
        "{e}"
    );
    let e = error(&ebgp("tor", "  holdTime: soon\n"));
    assert!(
        e.starts_with("m.yaml:10: ") && e.contains("invalid duration"),
        "{e}"
    );
    let e = error(&(ebgp("tor", "") + &ebgp("tor", "")));
    assert!(
        e.starts_with("m.yaml:14: ") && e.contains("a second BGPPeer named tor"),
        "{e}"
    );
}

#[test]
fn bad_aliases_both_passwords_and_other_fields_are_warned() {
    let yaml = pool("a", "  addresses: [203.0.113.0/28]\n")
        + &doc(
            "Community",
            "bad",
            "  communities:\n  - name: odd\n    value: 1:2:3\n  - name: half\n",
        )
        + &doc("Community", "empty", "  {}\n")
        + &bgp_ad("ad", "  communities: [odd]\n  frobnicate: 1\n")
        + &ebgp(
            "tor",
            "  password: plain\n  passwordSecret: {name: tor-auth}\n  \
             enableGracefulRestart: true\n  interface: eth0\n",
        );
    let (import, warnings) = run(&yaml);
    let reference = peer_spec(&import, "tor")
        .password_secret_ref
        .clone()
        .unwrap();
    assert_eq!(reference.name, "tor-auth");
    assert!(import.secrets.is_empty());
    for parts in [
        &["spec.communities[1]", "an alias needs a name and a value"][..],
        &["Community metallb-system/empty\"", "no alias to resolve"],
        &[
            "spec.communities[0]",
            "the alias odd is 1:2:3, not a community",
        ],
        &[
            "spec.frobnicate",
            "not a field of MetalLB's BGPAdvertisement",
        ],
        &["spec.password\"", "both password and passwordSecret"],
        &["spec.enableGracefulRestart", "graceful restart"],
        &["spec.interface", "unnumbered"],
    ] {
        warned(&warnings, parts);
    }
    assert_eq!(warnings.len(), 7, "{warnings:#?}");
}
