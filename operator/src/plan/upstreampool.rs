//! Each UpstreamPool's status, pure: its backends counted (static ones not marked down, or the
//! ready endpoints of its Service's EndpointSlices), `Ready` while some backend is available and
//! some node has a usable one, `Degraded` with the problems the agents report.

use std::collections::{BTreeMap, BTreeSet};

use buoy_crds::{BackendCounts, UpstreamPool, contract};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::conditions::{self, DEGRADED, READY, Want};

/// The plan for one UpstreamPool's status.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamPoolPlan {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) observed_generation: Option<i64>,
    pub(crate) backends: BackendCounts,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) changed: bool,
}

impl UpstreamPoolPlan {
    /// The pool's `namespace/name` ([`contract::key`]).
    pub(crate) fn key(&self) -> String {
        contract::key(Some(&self.namespace), Some(&self.name))
    }

    /// The server-side apply body for the status subresource.
    pub(crate) fn apply_body(&self) -> Value {
        let mut status = json!({"conditions": self.conditions, "backends": self.backends});
        if let Some(g) = self.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        json!({"apiVersion": buoy_crds::API_VERSION, "kind": "UpstreamPool",
               "metadata": {"name": self.name, "namespace": self.namespace}, "status": status})
    }
}

/// The UpstreamPools by [`contract::key`], for the listeners that name them.
pub(super) fn keys(pools: &[&UpstreamPool]) -> BTreeSet<String> {
    pools
        .iter()
        .filter(|p| p.metadata.name.is_some())
        .map(|p| contract::key_of(&p.metadata))
        .collect()
}

/// `p`'s backends: static ones (those not marked down ready), else its Service's endpoints.
fn backends(
    p: &UpstreamPool,
    namespace: &str,
    endpoints: &BTreeMap<String, BackendCounts>,
) -> BackendCounts {
    match (&p.spec.backends, &p.spec.service) {
        (Some(b), _) => BackendCounts {
            total: u32::try_from(b.len()).unwrap_or(u32::MAX),
            ready: u32::try_from(b.iter().filter(|b| !b.down).count()).unwrap_or(u32::MAX),
        },
        (None, Some(s)) => endpoints
            .get(&contract::key(Some(namespace), Some(&s.name)))
            .cloned()
            .unwrap_or(BackendCounts { total: 0, ready: 0 }),
        (None, None) => BackendCounts { total: 0, ready: 0 },
    }
}

/// `Ready` and `Degraded` of `p` with `backends`, from what the nodes that run the pool report
/// (names resolved, health checked).
fn wants(p: &UpstreamPool, backends: &BackendCounts) -> [Want; 2] {
    let reports = p
        .status
        .as_ref()
        .map(|s| s.nodes.as_slice())
        .unwrap_or_default();
    let problems: Vec<String> = reports
        .iter()
        .filter_map(|n| Some(format!("{}: {}", n.node, n.message.as_ref()?)))
        .collect();
    let ready = if backends.ready == 0 {
        Want::new(
            READY,
            false,
            "NoBackends",
            format!("none of {} backends is available", backends.total),
        )
    } else if !reports.is_empty() && reports.iter().all(|n| n.backends.ready == 0) {
        let detail: Vec<String> = reports
            .iter()
            .map(|n| match &n.message {
                Some(m) => format!("{}: {m}", n.node),
                None => format!("{}: 0 of {} ready", n.node, n.backends.total),
            })
            .collect();
        Want::new(
            READY,
            false,
            "NoHealthyBackends",
            format!("no node has a usable backend ({})", detail.join("; ")),
        )
    } else {
        Want::new(
            READY,
            true,
            "BackendsAvailable",
            format!(
                "{} of {} backends available",
                backends.ready, backends.total
            ),
        )
    };
    let degraded = if problems.is_empty() {
        Want::new(
            DEGRADED,
            false,
            "NoProblems",
            "every backend of the spec is there on every node",
        )
    } else {
        Want::new(DEGRADED, true, "BackendProblems", problems.join("; "))
    };
    [ready, degraded]
}

/// The status plan of `p`; `None` without a name or namespace (the API server never returns
/// such an object).
fn status(
    p: &UpstreamPool,
    endpoints: &BTreeMap<String, BackendCounts>,
    now: Timestamp,
) -> Option<UpstreamPoolPlan> {
    let namespace = p.metadata.namespace.clone()?;
    let name = p.metadata.name.clone()?;
    let backends = backends(p, &namespace, endpoints);
    let observed = p.status.clone().unwrap_or_default();
    let generation = p.metadata.generation;
    // Ready first; compared by type (a list-map keeps no order that matters).
    let conditions: Vec<Condition> = wants(p, &backends)
        .iter()
        .map(|w| conditions::build(w, generation, now, &observed.conditions))
        .collect();
    let mut before: Vec<&Condition> = observed
        .conditions
        .iter()
        .filter(|c| c.type_ == READY || c.type_ == DEGRADED)
        .collect();
    before.sort_by(|a, b| a.type_.cmp(&b.type_));
    let mut now_sorted: Vec<&Condition> = conditions.iter().collect();
    now_sorted.sort_by(|a, b| a.type_.cmp(&b.type_));
    let changed = observed.observed_generation != generation
        || observed.backends.as_ref() != Some(&backends)
        || before != now_sorted;
    Some(UpstreamPoolPlan {
        namespace,
        name,
        observed_generation: generation,
        backends,
        conditions,
        changed,
    })
}

/// The status plans of `pools`. `endpoints`: endpoint counts of Services by
/// [`contract::key`].
pub(super) fn statuses(
    pools: &[&UpstreamPool],
    endpoints: &BTreeMap<String, BackendCounts>,
    now: Timestamp,
) -> Vec<UpstreamPoolPlan> {
    pools
        .iter()
        .filter_map(|p| status(p, endpoints, now))
        .collect()
}

/// Endpoint counts of Services from their EndpointSlices, by [`contract::key`]: `total`
/// endpoints, `ready` those whose `conditions.ready` is not false (the Kubernetes convention:
/// unknown means ready).
pub(crate) fn endpoint_counts<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<String, BackendCounts> {
    let mut out: BTreeMap<String, BackendCounts> = BTreeMap::new();
    for s in slices {
        let (Some(ns), Some(svc)) = (
            s.metadata.namespace.as_deref(),
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name")),
        ) else {
            continue;
        };
        let c = out
            .entry(contract::key(Some(ns), Some(svc)))
            .or_insert(BackendCounts { total: 0, ready: 0 });
        for e in &s.endpoints {
            let n = u32::try_from(e.addresses.len()).unwrap_or(u32::MAX);
            c.total = c.total.saturating_add(n);
            if e.conditions.as_ref().and_then(|c| c.ready) != Some(false) {
                c.ready = c.ready.saturating_add(n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use buoy_crds::BackendCounts;
    use serde_json::json;

    use super::endpoint_counts;
    use crate::conditions::READY;
    use crate::plan::fixture::{Fixture, cond, of, pool, reasons, vip};

    #[test]
    fn missing_pool_then_pool_created() {
        let mut f = Fixture::new(vec![vip(
            "a",
            "web",
            30,
            json!({"addresses": ["10.0.0.1"], "listeners": [{"name": "http", "port": 80, "upstreamPool": "backends"}]}),
        )]);
        f.pools.push(pool("other", "backends"));
        let p = f.settle();
        let r = cond(&p, "web", READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "UpstreamPoolNotFound")
        );
        assert_eq!(
            r.message,
            "listener http: UpstreamPool backends not found in namespace a"
        );
        assert!(reasons(&p, "web").contains(&"UpstreamPoolNotFound".to_string()));
        f.pools.push(pool("a", "backends"));
        f.report("web", json!([{"node": "n1", "state": "Master", "serving": true}, {"node": "n2", "state": "Backup"}]));
        let p = f.settle();
        let r = cond(&p, "web", READY);
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "Serving"));
        assert!(
            of(&p, "web")
                .events
                .iter()
                .any(|e| !e.warning && e.reason == "Serving")
        );
        // The pool's own status: static backends, one marked down.
        let pp = p.pools.iter().find(|p| p.namespace == "a").unwrap();
        assert_eq!((pp.backends.total, pp.backends.ready), (2, 1));
        assert_eq!(pp.conditions[0].status, "True");
        assert!(pp.changed);
    }

    #[test]
    fn endpoint_slices_count_ready_endpoints() {
        let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "a", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.2.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.2.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.2.0.3"]},
            ],
        }))
        .unwrap();
        let counts = endpoint_counts([&slice]);
        assert_eq!(counts["a/web"], BackendCounts { total: 3, ready: 2 });
    }
}
