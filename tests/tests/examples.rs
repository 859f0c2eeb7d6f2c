//! Every example validates, its references resolve, and `examples/seed` is the reference
//! tutorial's setup.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use buoy_crds::{
    Algorithm, ListenerProtocol, RetryOn,
    manifest::{self, Located, Object},
};

fn examples() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")).to_path_buf()
}

fn load(dir: &Path) -> Vec<Located> {
    manifest::load(&[dir.to_path_buf()]).unwrap_or_else(|errors| {
        panic!(
            "{} is invalid:\n{}",
            dir.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn ns(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

#[test]
fn every_example_validates_and_its_references_resolve() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 2,
        "expected at least the seed and modern examples"
    );
    for dir in dirs {
        let objects = load(&dir);
        let mut pools = BTreeSet::new();
        let mut secrets = BTreeSet::new();
        let mut vips = 0;
        for o in &objects {
            match &o.object {
                Object::UpstreamPool(p) => {
                    pools.insert((ns(&p.metadata), p.metadata.name.clone().unwrap_or_default()));
                }
                Object::Secret(s) => {
                    secrets.insert((ns(&s.metadata), s.metadata.name.clone().unwrap_or_default()));
                }
                Object::VirtualIP(_) => vips += 1,
                Object::AddressPool(_) | Object::BGPPeer(_) | Object::Service(_) => {}
            }
        }
        assert!(vips > 0, "{} has no VirtualIP", dir.display());
        let address_pools = buoy_crds::manifest::address_pools(&objects);
        for o in &objects {
            let Object::VirtualIP(vip) = &o.object else {
                continue;
            };
            let namespace = ns(&vip.metadata);
            // With the operator's default address policy (Enforce), a newcomer applying the
            // directory gets a served VirtualIP: an AddressPool of the example admits it.
            let addresses: Vec<std::net::IpAddr> = vip
                .spec
                .addresses
                .iter()
                .filter_map(|a| a.0.split('/').next()?.parse().ok())
                .collect();
            let admission = buoy_crds::policy::admit(
                buoy_crds::policy::AddressPolicy::Enforce,
                &address_pools,
                &namespace,
                &Default::default(),
                &vip.spec,
                &addresses,
            );
            assert!(
                matches!(admission, buoy_crds::policy::Admission::Allowed(Some(_))),
                "{}: VirtualIP {} is not allowed by the example's AddressPools: {admission:?}",
                dir.display(),
                vip.metadata.name.as_deref().unwrap_or_default()
            );
            for l in &vip.spec.listeners {
                for pool in l.pool_names() {
                    assert!(
                        pools.contains(&(namespace.clone(), pool.to_string())),
                        "{}: listener {} names a missing pool {pool}",
                        dir.display(),
                        l.name,
                    );
                }
            }
            if let Some(auth) = &vip.spec.vrrp.authentication {
                assert!(
                    secrets.contains(&(namespace.clone(), auth.secret_ref.name.clone())),
                    "{}: missing Secret {}",
                    dir.display(),
                    auth.secret_ref.name
                );
            }
        }
    }
}

#[test]
fn seed_example_is_the_reference_setup() {
    let objects = load(&examples().join("seed"));
    let vip = objects
        .iter()
        .find_map(|o| match &o.object {
            Object::VirtualIP(v) => Some(v),
            _ => None,
        })
        .expect("VirtualIP");
    let pool = objects
        .iter()
        .find_map(|o| match &o.object {
            Object::UpstreamPool(p) => Some(p),
            _ => None,
        })
        .expect("UpstreamPool");
    let secret = objects
        .iter()
        .find_map(|o| match &o.object {
            Object::Secret(s) => Some(s),
            _ => None,
        })
        .expect("Secret");

    // keepalived.conf
    assert_eq!(
        vip.spec
            .addresses
            .iter()
            .map(|a| a.0.as_str())
            .collect::<Vec<_>>(),
        ["192.168.60.88"]
    );
    assert_eq!(vip.spec.interface.as_deref(), Some("eth0"));
    assert_eq!(vip.spec.virtual_router_id, Some(51));
    assert_eq!(vip.spec.vrrp.version, 2);
    assert_eq!(vip.spec.vrrp.advertisement_interval.to_string(), "1s");
    assert!(vip.spec.vrrp.preempt);
    let prio: Vec<(&str, u8, Option<&str>)> = vip
        .spec
        .priorities
        .iter()
        .flatten()
        .map(|p| {
            (
                p.node.as_str(),
                p.priority,
                p.source_address.as_ref().map(|a| a.0.as_str()),
            )
        })
        .collect();
    assert_eq!(
        prio,
        [
            ("lb1", 100, Some("192.168.60.93")),
            ("lb2", 99, Some("192.168.60.94"))
        ]
    );
    let auth = vip
        .spec
        .vrrp
        .authentication
        .as_ref()
        .expect("PASS authentication");
    let password = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(&auth.secret_ref.key))
        .expect("password");
    assert_eq!(password, "1111");
    assert_eq!(
        vip.spec
            .track
            .as_ref()
            .and_then(|t| t.upstreams.as_ref())
            .map(|u| u.weight),
        Some(2)
    );

    // nginx.conf
    assert_eq!(vip.spec.listeners.len(), 1);
    let l = &vip.spec.listeners[0];
    assert_eq!(
        (l.port, l.protocol, l.upstream_pool.as_deref()),
        (80, ListenerProtocol::HTTP, Some("test-web"))
    );
    assert_eq!(
        l.client
            .as_ref()
            .and_then(|c| c.keepalive_timeout)
            .map(|d| d.as_std()),
        Some(std::time::Duration::from_secs(65))
    );
    type Row = (String, u16, u32, Option<u32>, Option<String>);
    let backends: Vec<Row> = pool
        .spec
        .backends
        .iter()
        .flatten()
        .map(|b| {
            (
                b.address.clone(),
                b.port,
                b.weight,
                b.max_fails,
                b.fail_timeout.map(|d| d.to_string()),
            )
        })
        .collect();
    assert_eq!(
        backends,
        [
            (
                "192.168.60.91".to_string(),
                80,
                1,
                Some(2),
                Some("15s".to_string())
            ),
            (
                "192.168.60.92".to_string(),
                80,
                1,
                Some(2),
                Some("15s".to_string())
            ),
        ]
    );
    assert_eq!(pool.spec.load_balancing.algorithm, Algorithm::RoundRobin);
    let on: BTreeSet<RetryOn> = pool.spec.retry.retry_on.iter().copied().collect();
    assert_eq!(
        on,
        BTreeSet::from([
            RetryOn::Http502,
            RetryOn::Http504,
            RetryOn::ConnectFailure,
            RetryOn::Timeout,
            RetryOn::InvalidHeader
        ])
    );
    assert!(!pool.spec.retry.non_idempotent);
    let h = &pool.spec.http;
    assert!(h.preserve_host && h.x_real_ip && h.x_forwarded_for);
}
