//! Prometheus metrics of the node's VRRP instances, refreshed from their state and counters,
//! registered in the registry the caller hands over.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buoy_vrrp::machine::Role;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Registry, core::Collector, opts};

use super::{host::PortStats, instance::Stats};

/// The VRRP metric families of an agent.
#[derive(Clone)]
pub(crate) struct VrrpMetrics {
    state: IntGaugeVec,
    since: GaugeVec,
    interval: GaugeVec,
    priority: IntGaugeVec,
    sent: IntCounterVec,
    received: IntCounterVec,
    drops: IntCounterVec,
    collisions: IntCounterVec,
    interface_drops: IntCounterVec,
    other_vrid: IntCounterVec,
}

impl VrrpMetrics {
    /// The families, registered in `registry` (an error if they already are).
    pub(crate) fn new(registry: &Registry) -> Result<VrrpMetrics, prometheus::Error> {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| IntGaugeVec::new(opts!(name, help), labels);
        let counter =
            |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(opts!(name, help), labels);
        let m = VrrpMetrics {
            state: gauge(
                "buoy_vrrp_state",
                "1 for the VRRP state this node is in for a VirtualIP",
                &["virtualip", "state"],
            )?,
            // A timestamp, not an age: `time() - x` in queries (the Prometheus idiom; an age
            // would be stale between scrapes).
            since: GaugeVec::new(
                opts!(
                    "buoy_vrrp_last_transition_timestamp_seconds",
                    "When this node entered its current VRRP state for a VirtualIP (Unix time)"
                ),
                &["virtualip"],
            )?,
            interval: GaugeVec::new(
                opts!(
                    "buoy_vrrp_advert_interval_seconds",
                    "The VRRP advertisement interval this node runs a VirtualIP with"
                ),
                &["virtualip"],
            )?,
            priority: gauge(
                "buoy_vrrp_priority",
                "Effective VRRP priority (after tracking)",
                &["virtualip"],
            )?,
            sent: counter(
                "buoy_vrrp_adverts_sent_total",
                "VRRP advertisements sent",
                &["virtualip"],
            )?,
            received: counter(
                "buoy_vrrp_adverts_received_total",
                "VRRP advertisements accepted",
                &["virtualip"],
            )?,
            drops: counter(
                "buoy_vrrp_dropped_total",
                "VRRP packets dropped, by reason",
                &["virtualip", "reason"],
            )?,
            // No label per foreign router: spoofed adverts from many source addresses would make
            // as many series. Their addresses are in /status and the VirtualIP's status.
            collisions: counter(
                "buoy_vrrp_collisions_total",
                "Advertisements for our router ID from routers that are not ours",
                &["virtualip"],
            )?,
            interface_drops: counter(
                "buoy_vrrp_interface_dropped_total",
                "VRRP packets dropped before any VirtualIP could be told (bad IP header, truncated, \
                 an instance's queue full), by interface, family and reason",
                &["interface", "family", "reason"],
            )?,
            other_vrid: counter(
                "buoy_vrrp_other_vrid_total",
                "VRRP advertisements for router IDs no VirtualIP here uses (normal on a shared LAN)",
                &["interface", "family"],
            )?,
        };
        for c in [
            Box::new(m.state.clone()) as Box<dyn Collector>,
            Box::new(m.since.clone()),
            Box::new(m.interval.clone()),
            Box::new(m.priority.clone()),
            Box::new(m.sent.clone()),
            Box::new(m.received.clone()),
            Box::new(m.drops.clone()),
            Box::new(m.collisions.clone()),
            Box::new(m.interface_drops.clone()),
            Box::new(m.other_vrid.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(m)
    }

    /// The state of this node for a VirtualIP, since when, and its effective priority.
    pub(crate) fn record_state(&self, vip: &str, state: Role, since: SystemTime, priority: u8) {
        self.since.with_label_values(&[vip]).set(
            since
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        for role in Role::ALL {
            self.state
                .with_label_values(&[vip, role.name()])
                .set(i64::from(state == role));
        }
        self.priority
            .with_label_values(&[vip])
            .set(i64::from(priority));
    }

    /// The advertisement interval a VirtualIP's instance runs with.
    pub(crate) fn record_interval(&self, vip: &str, interval: Duration) {
        self.interval
            .with_label_values(&[vip])
            .set(interval.as_secs_f64());
    }

    /// The counters of a VirtualIP's instance.
    pub(crate) fn record_counters(&self, vip: &str, stats: &Stats) {
        raise(&self.sent.with_label_values(&[vip]), stats.adverts_sent);
        raise(
            &self.received.with_label_values(&[vip]),
            stats.adverts_received,
        );
        for (reason, n) in &stats.drops {
            raise(&self.drops.with_label_values(&[vip, reason]), *n);
        }
        raise(
            &self.collisions.with_label_values(&[vip]),
            stats.collisions_total(),
        );
    }

    /// The counters of the VRRP socket on `interface` (one per family).
    pub(crate) fn record_port(&self, interface: &str, ipv6: bool, stats: &PortStats) {
        let family = if ipv6 { "ipv6" } else { "ipv4" };
        for (reason, n) in &stats.drops {
            raise(
                &self
                    .interface_drops
                    .with_label_values(&[interface, family, reason]),
                *n,
            );
        }
        raise(
            &self
                .interface_drops
                .with_label_values(&[interface, family, "queue_full"]),
            stats.queue_full,
        );
        raise(
            &self.other_vrid.with_label_values(&[interface, family]),
            stats.other_vrid,
        );
    }

    /// Removes the series of a VirtualIP this node no longer serves.
    pub(crate) fn forget(&self, vip: &str) {
        for role in Role::ALL {
            let _ = self.state.remove_label_values(&[vip, role.name()]);
        }
        let _ = self.priority.remove_label_values(&[vip]);
        let _ = self.since.remove_label_values(&[vip]);
        let _ = self.interval.remove_label_values(&[vip]);
    }
}

/// Raises a counter to `value` (a VirtualIP removed and added again starts from zero: then the
/// counter stays where it is rather than going back).
fn raise(counter: &prometheus::IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::encode;

    #[test]
    fn state_and_counters_are_exported() {
        let registry = Registry::new();
        let metrics = VrrpMetrics::new(&registry).unwrap();
        let mut stats = Stats {
            adverts_sent: 5,
            ..Stats::default()
        };
        stats.drops.insert("bad_ttl", 2);
        let since = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        metrics.record_state("t/vip", Role::Master, since, 101);
        metrics.record_interval("t/vip", Duration::from_millis(100));
        metrics.record_counters("t/vip", &stats);
        stats.adverts_sent = 7;
        metrics.record_state("t/vip", Role::Master, since, 101);
        metrics.record_counters("t/vip", &stats);
        let text = encode(&registry);
        assert!(
            text.contains(r#"buoy_vrrp_state{state="MASTER",virtualip="t/vip"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"buoy_vrrp_state{state="BACKUP",virtualip="t/vip"} 0"#));
        assert!(text.contains(r#"buoy_vrrp_priority{virtualip="t/vip"} 101"#));
        assert!(
            text.contains(
                r#"buoy_vrrp_last_transition_timestamp_seconds{virtualip="t/vip"} 1700000000.25"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"buoy_vrrp_advert_interval_seconds{virtualip="t/vip"} 0.1"#));
        assert!(text.contains(r#"buoy_vrrp_adverts_sent_total{virtualip="t/vip"} 7"#));
        assert!(text.contains(r#"buoy_vrrp_dropped_total{reason="bad_ttl",virtualip="t/vip"} 2"#));
        let mut port = PortStats {
            other_vrid: 3,
            ..PortStats::default()
        };
        port.drops.insert("bad_ip_header", 4);
        metrics.record_port("eth9", false, &port);
        let text = encode(&registry);
        assert!(
            text.contains(r#"buoy_vrrp_other_vrid_total{family="ipv4",interface="eth9"} 3"#),
            "{text}"
        );
        assert!(text.contains(
            r#"buoy_vrrp_interface_dropped_total{family="ipv4",interface="eth9",reason="bad_ip_header"} 4"#
        ));
        metrics.forget("t/vip");
        let text = encode(&registry);
        assert!(
            !text.contains("buoy_vrrp_last_transition_timestamp_seconds{"),
            "{text}"
        );
        assert!(
            !text.contains("buoy_vrrp_advert_interval_seconds{"),
            "{text}"
        );
        assert!(
            VrrpMetrics::new(&registry).is_err(),
            "registered once per registry"
        );
    }
}
