//! Prometheus metrics of the node's VRRP instances, refreshed from their status and counters.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, opts};

use super::{host::PortStats, instance::Stats};
use crate::{agent::VipStatus, proxy::metrics::REGISTRY};

struct Families {
    state: IntGaugeVec,
    priority: IntGaugeVec,
    sent: IntCounterVec,
    received: IntCounterVec,
    drops: IntCounterVec,
    collisions: IntCounterVec,
    interface_drops: IntCounterVec,
    other_vrid: IntCounterVec,
}

const STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];

static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        IntGaugeVec::new(opts!(name, help), labels).unwrap_or_else(|_| unreachable!())
    };
    let counter = |name: &str, help: &str, labels: &[&str]| {
        IntCounterVec::new(opts!(name, help), labels).unwrap_or_else(|_| unreachable!())
    };
    let f = Families {
        state: gauge(
            "buoy_vrrp_state",
            "1 for the VRRP state this node is in for a VirtualIP",
            &["virtualip", "state"],
        ),
        priority: gauge(
            "buoy_vrrp_priority",
            "Effective VRRP priority (after tracking)",
            &["virtualip"],
        ),
        sent: counter(
            "buoy_vrrp_adverts_sent_total",
            "VRRP advertisements sent",
            &["virtualip"],
        ),
        received: counter(
            "buoy_vrrp_adverts_received_total",
            "VRRP advertisements accepted",
            &["virtualip"],
        ),
        drops: counter(
            "buoy_vrrp_dropped_total",
            "VRRP packets dropped, by reason",
            &["virtualip", "reason"],
        ),
        // No label per foreign router: spoofed adverts from many source addresses would make
        // as many series. Their addresses are in /status and the VirtualIP's status.
        collisions: counter(
            "buoy_vrrp_collisions_total",
            "Advertisements for our router ID from routers that are not ours",
            &["virtualip"],
        ),
        interface_drops: counter(
            "buoy_vrrp_interface_dropped_total",
            "VRRP packets dropped before any VirtualIP could be told (bad IP header, truncated, \
             an instance's queue full), by interface, family and reason",
            &["interface", "family", "reason"],
        ),
        other_vrid: counter(
            "buoy_vrrp_other_vrid_total",
            "VRRP advertisements for router IDs no VirtualIP here uses (normal on a shared LAN)",
            &["interface", "family"],
        ),
    };
    for c in [
        Box::new(f.state.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(f.priority.clone()),
        Box::new(f.sent.clone()),
        Box::new(f.received.clone()),
        Box::new(f.drops.clone()),
        Box::new(f.collisions.clone()),
        Box::new(f.interface_drops.clone()),
        Box::new(f.other_vrid.clone()),
    ] {
        let _ = REGISTRY.register(c);
    }
    f
});

/// Raises a counter to `value` (a VirtualIP removed and added again starts from zero: then the
/// counter stays where it is rather than going back).
fn raise(counter: &prometheus::IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

/// Updates the VRRP metrics of one VirtualIP.
pub fn record(vip: &str, status: Option<&VipStatus>, stats: &Stats) {
    let f = &*FAMILIES;
    if let Some(s) = status {
        for state in STATES {
            f.state
                .with_label_values(&[vip, state])
                .set(i64::from(s.state == state));
        }
        f.priority
            .with_label_values(&[vip])
            .set(i64::from(s.priority));
    }
    raise(&f.sent.with_label_values(&[vip]), stats.adverts_sent);
    raise(
        &f.received.with_label_values(&[vip]),
        stats.adverts_received,
    );
    for (reason, n) in &stats.drops {
        raise(&f.drops.with_label_values(&[vip, reason]), *n);
    }
    raise(
        &f.collisions.with_label_values(&[vip]),
        stats.collisions_total(),
    );
}

/// Updates the counters of the VRRP socket on `interface` (one per family).
pub fn record_port(interface: &str, ipv6: bool, stats: &PortStats) {
    let f = &*FAMILIES;
    let family = if ipv6 { "ipv6" } else { "ipv4" };
    for (reason, n) in &stats.drops {
        raise(
            &f.interface_drops
                .with_label_values(&[interface, family, reason]),
            *n,
        );
    }
    raise(
        &f.interface_drops
            .with_label_values(&[interface, family, "queue_full"]),
        stats.queue_full,
    );
    raise(
        &f.other_vrid.with_label_values(&[interface, family]),
        stats.other_vrid,
    );
}

/// Removes the series of a VirtualIP this node no longer serves.
pub fn forget(vip: &str) {
    let f = &*FAMILIES;
    for state in STATES {
        let _ = f.state.remove_label_values(&[vip, state]);
    }
    let _ = f.priority.remove_label_values(&[vip]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_counters_are_exported() {
        let status = VipStatus {
            state: "MASTER",
            priority: 101,
            reason: String::new(),
            since: std::time::SystemTime::now(),
            collisions: Default::default(),
            serving: true,
            not_serving: None,
            address: None,
            warnings: Vec::new(),
        };
        let mut stats = Stats {
            adverts_sent: 5,
            ..Stats::default()
        };
        stats.drops.insert("bad_ttl", 2);
        record("t/vip", Some(&status), &stats);
        stats.adverts_sent = 7;
        record("t/vip", Some(&status), &stats);
        let text = crate::proxy::metrics::encode();
        assert!(
            text.contains(r#"buoy_vrrp_state{state="MASTER",virtualip="t/vip"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"buoy_vrrp_state{state="BACKUP",virtualip="t/vip"} 0"#));
        assert!(text.contains(r#"buoy_vrrp_priority{virtualip="t/vip"} 101"#));
        assert!(text.contains(r#"buoy_vrrp_adverts_sent_total{virtualip="t/vip"} 7"#));
        assert!(text.contains(r#"buoy_vrrp_dropped_total{reason="bad_ttl",virtualip="t/vip"} 2"#));
        let mut port = PortStats {
            other_vrid: 3,
            ..PortStats::default()
        };
        port.drops.insert("bad_ip_header", 4);
        record_port("eth9", false, &port);
        let text = crate::proxy::metrics::encode();
        assert!(
            text.contains(r#"buoy_vrrp_other_vrid_total{family="ipv4",interface="eth9"} 3"#),
            "{text}"
        );
        assert!(text.contains(
            r#"buoy_vrrp_interface_dropped_total{family="ipv4",interface="eth9",reason="bad_ip_header"} 4"#
        ));
    }
}
