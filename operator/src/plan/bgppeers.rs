//! The plan's BGPPeer phase, pure: each BGPPeer's status as the operator writes it, summed up
//! from the entries the agents write (`status.nodes[]`, one per peering node):
//! `status.established`, the entries whose session is `Established`, and the `Established`
//! condition, True while at least one is (reason `SessionsUp`), False otherwise (reason
//! `NoSession`), its message naming the nodes whose session is not up, with why.

use buoy_crds::{BGPPeer, BGPPeerNodeStatus, BgpSessionState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::conditions::{self, ESTABLISHED, Want};

/// The nodes a condition's message names at most (the rest are counted).
const NAMED_NODES: usize = 10;

/// The status the operator writes on a BGPPeer.
#[derive(Clone, Debug)]
pub(crate) struct BgpPeerPlan {
    pub(crate) name: String,
    pub(crate) established: i32,
    pub(crate) condition: Condition,
    /// Whether it differs from what the BGPPeer shows.
    pub(crate) changed: bool,
}

impl BgpPeerPlan {
    /// The server-side apply body for the status subresource: the operator's fields only, so
    /// that the agents' entries stay theirs.
    pub(crate) fn apply_body(&self) -> Value {
        json!({"apiVersion": buoy_crds::API_VERSION, "kind": "BGPPeer",
               "metadata": {"name": self.name},
               "status": {"established": self.established, "conditions": [self.condition]}})
    }
}

/// `node (State: reason)` for a node whose session is not established.
fn describe(n: &BGPPeerNodeStatus) -> String {
    let state = n.state.as_str();
    match n.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(reason) => format!("{} ({state}: {reason})", n.node),
        None => format!("{} ({state})", n.node),
    }
}

/// What the agents' entries add up to: the number of established sessions and the
/// `Established` condition wanted.
pub(crate) fn summary(nodes: &[BGPPeerNodeStatus]) -> (i32, Want) {
    let up = nodes
        .iter()
        .filter(|n| n.state == BgpSessionState::Established)
        .count();
    let mut down: Vec<&BGPPeerNodeStatus> = nodes
        .iter()
        .filter(|n| n.state != BgpSessionState::Established)
        .collect();
    down.sort_by(|a, b| a.node.cmp(&b.node));
    let mut named: Vec<String> = down.iter().take(NAMED_NODES).map(|n| describe(n)).collect();
    if down.len() > NAMED_NODES {
        named.push(format!("and {} more", down.len() - NAMED_NODES));
    }
    let established = i32::try_from(up).unwrap_or(i32::MAX);
    let want = if up > 0 {
        let mut message = format!("{up} of {} node(s) established", nodes.len());
        if !named.is_empty() {
            message.push_str(&format!("; not established: {}", named.join(", ")));
        }
        Want::new(ESTABLISHED, true, "SessionsUp", message)
    } else if nodes.is_empty() {
        Want::new(
            ESTABLISHED,
            false,
            "NoSession",
            "no node reports a session with this peer",
        )
    } else {
        Want::new(
            ESTABLISHED,
            false,
            "NoSession",
            format!("no session established: {}", named.join(", ")),
        )
    };
    (established, want)
}

/// Every BGPPeer's status (peers without a name, which the API server never returns, are
/// left out).
pub(crate) fn statuses(peers: &[&BGPPeer], now: Timestamp) -> Vec<BgpPeerPlan> {
    peers
        .iter()
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            let observed = p.status.clone().unwrap_or_default();
            let (established, want) = summary(&observed.nodes);
            let condition =
                conditions::build(&want, p.metadata.generation, now, &observed.conditions);
            // Only the operator's own fields count: other conditions are not its to compare.
            let changed = observed.established != established
                || conditions::find(&observed.conditions, ESTABLISHED) != Some(&condition);
            Some(BgpPeerPlan {
                name,
                established,
                condition,
                changed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn entry(node: &str, state: BgpSessionState, reason: Option<&str>) -> BGPPeerNodeStatus {
        BGPPeerNodeStatus {
            node: node.into(),
            state,
            since: None,
            reason: reason.map(String::from),
            bfd: None,
            routes: vec![],
        }
    }

    fn peer(nodes: Value) -> BGPPeer {
        serde_json::from_value(json!({
            "apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": "tor1", "generation": 2},
            "spec": {"peerAddress": "192.168.60.1", "peerASN": 64512, "myASN": 64513},
            "status": {"nodes": nodes},
        }))
        .unwrap()
    }

    #[test]
    fn established_counts_the_sessions_that_are_up_and_names_the_others() {
        use BgpSessionState::*;
        let (n, want) = summary(&[
            entry("n3", Active, Some("Notification: Cease/Bad Peer AS")),
            entry("n1", Established, None),
            entry("n2", Idle, None),
            entry("n4", Established, Some("ignored when up")),
        ]);
        assert_eq!(n, 2);
        assert_eq!(
            want,
            Want::new(
                ESTABLISHED,
                true,
                "SessionsUp",
                "2 of 4 node(s) established; not established: n2 (Idle), n3 (Active: Notification: Cease/Bad Peer AS)"
            )
        );
        let (n, want) = summary(&[entry("n1", Established, None)]);
        assert_eq!(n, 1);
        assert_eq!(want.message, "1 of 1 node(s) established");
        let (n, want) = summary(&[
            entry("n1", Connect, Some("FRR not running")),
            entry("n2", Unknown, Some("  ")),
        ]);
        assert_eq!(n, 0);
        assert_eq!(
            want,
            Want::new(
                ESTABLISHED,
                false,
                "NoSession",
                "no session established: n1 (Connect: FRR not running), n2 (Unknown)"
            )
        );
        let (n, want) = summary(&[]);
        assert_eq!(
            (n, want.status, want.reason.as_str()),
            (0, false, "NoSession")
        );
        assert_eq!(want.message, "no node reports a session with this peer");
    }

    #[test]
    fn a_long_list_of_nodes_down_is_cut_short() {
        let mut nodes: Vec<BGPPeerNodeStatus> = (0..25)
            .map(|i| entry(&format!("n{i:02}"), BgpSessionState::Active, None))
            .collect();
        nodes.push(entry("up", BgpSessionState::Established, None));
        let (n, want) = summary(&nodes);
        assert_eq!(n, 1);
        assert!(
            want.message.ends_with("n09 (Active), and 15 more"),
            "{}",
            want.message
        );
        assert!(!want.message.contains("n10"), "{}", want.message);
    }

    #[test]
    fn the_status_is_written_only_when_it_changes() {
        let p = peer(json!([
            {"node": "n1", "state": "Established", "bfd": "Up", "routes": ["10.96.0.1/32"]},
            {"node": "n2", "state": "OpenSent"},
        ]));
        let plans = statuses(&[&p], now());
        assert_eq!(plans.len(), 1);
        let plan = &plans[0];
        assert!(plan.changed);
        assert_eq!(plan.established, 1);
        assert_eq!(plan.condition.type_, "Established");
        assert_eq!(plan.condition.status, "True");
        assert_eq!(plan.condition.reason, "SessionsUp");
        assert_eq!(plan.condition.observed_generation, Some(2));
        assert_eq!(
            plan.apply_body(),
            json!({"apiVersion": "buoy.io/v1alpha1", "kind": "BGPPeer",
                   "metadata": {"name": "tor1"},
                   "status": {"established": 1, "conditions": [{
                       "type": "Established", "status": "True", "reason": "SessionsUp",
                       "message": "1 of 2 node(s) established; not established: n2 (OpenSent)",
                       "observedGeneration": 2, "lastTransitionTime": "2026-11-25T12:00:00Z"}]}})
        );
        // Written: nothing changes, even beside a condition someone else keeps.
        let mut written = p.clone();
        let status = written.status.as_mut().unwrap();
        status.established = 1;
        status.conditions = vec![plan.condition.clone()];
        let mut other = plan.condition.clone();
        other.type_ = "Other".into();
        status.conditions.insert(0, other);
        let later: Timestamp = "2026-11-25T12:05:00Z".parse().unwrap();
        let again = statuses(&[&written], later);
        assert!(!again[0].changed);
        // The last session goes down: False, with a new transition time.
        let status = written.status.as_mut().unwrap();
        status.nodes[0].state = BgpSessionState::Idle;
        status.nodes[0].reason = Some("Hold Timer Expired".into());
        let down = statuses(&[&written], later);
        assert!(down[0].changed);
        assert_eq!(down[0].established, 0);
        assert_eq!(down[0].condition.status, "False");
        assert_eq!(down[0].condition.reason, "NoSession");
        assert_eq!(
            down[0].condition.message,
            "no session established: n1 (Idle: Hold Timer Expired), n2 (OpenSent)"
        );
        assert_eq!(down[0].condition.last_transition_time.0, later);
    }
}
