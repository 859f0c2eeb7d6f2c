//! `kubectl buoy status`: one line per VirtualIP and node, from the `status.nodes[]` entries
//! the agents write: state, priority, since when, whether the node serves the listeners, and
//! why. A VirtualIP that no node reports yet gets one line that says why (its `Ready`
//! condition's message).

use buoy_crds::{NodeStatus, VirtualIP, VrrpState};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt, api::ListParams};

use crate::{ApiError, Listing, age, table};

/// Which VirtualIPs: those of one namespace, or of every one (`-A`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace.
    All,
}

const NONE: &str = "<none>";

/// The VirtualIPs of `scope` (only `name`, when given) as the status table at `now`.
pub async fn status(
    client: kube::Client,
    scope: &Scope,
    name: Option<&str>,
    now: Timestamp,
) -> Result<Listing, ApiError> {
    let vips = match (scope, name) {
        (Scope::Namespace(ns), Some(name)) => {
            let api: Api<VirtualIP> = Api::namespaced(client, ns);
            vec![
                api.get(name)
                    .await
                    .map_err(|e| ApiError::from_get(e, ns, name))?,
            ]
        }
        (Scope::Namespace(ns), None) => {
            let api: Api<VirtualIP> = Api::namespaced(client, ns);
            api.list(&ListParams::default())
                .await
                .map_err(ApiError::from_list)?
                .items
        }
        (Scope::All, _) => {
            let api: Api<VirtualIP> = Api::all(client);
            api.list(&ListParams::default())
                .await
                .map_err(ApiError::from_list)?
                .items
        }
    };
    Ok(match render(&vips, *scope == Scope::All, now) {
        Some(table) => Listing::Table(table),
        None => Listing::Empty(match scope {
            Scope::All => "No VirtualIPs found.".into(),
            Scope::Namespace(ns) => format!("No VirtualIPs found in {ns} namespace."),
        }),
    })
}

/// The table of `vips` at `now`, with a NAMESPACE column when `all_namespaces`; `None` for no
/// VirtualIP.
pub fn render(vips: &[VirtualIP], all_namespaces: bool, now: Timestamp) -> Option<String> {
    if vips.is_empty() {
        return None;
    }
    let mut vips: Vec<&VirtualIP> = vips.iter().collect();
    vips.sort_by_key(|v| (v.namespace(), v.name_any()));
    let mut header = vec![
        "NAME",
        "ADDRESSES",
        "NODE",
        "STATE",
        "PRIORITY",
        "SINCE",
        "SERVING",
        "LISTENERS",
        "MESSAGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = Vec::new();
    for vip in vips {
        for mut row in rows_of(vip, now) {
            if all_namespaces {
                row.insert(0, vip.namespace().unwrap_or_default());
            }
            rows.push(row);
        }
    }
    Some(table::render(&header, &rows))
}

/// One VirtualIP's rows: its nodes, the master first; or one line without a node.
fn rows_of(vip: &VirtualIP, now: Timestamp) -> Vec<Vec<String>> {
    let status = vip.status.as_ref();
    let addresses = match status.map(|s| s.addresses.clone()).unwrap_or_default() {
        admitted if !admitted.is_empty() => admitted,
        _ => vip.spec.addresses.iter().map(|a| a.0.clone()).collect(),
    };
    let addresses = or_none(addresses.join(","));
    let listeners = or_none(
        vip.spec
            .listeners
            .iter()
            .map(|l| format!("{}:{}/{:?}", l.name, l.port, l.protocol))
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut nodes: Vec<&NodeStatus> = status.map(|s| s.nodes.iter().collect()).unwrap_or_default();
    nodes.sort_by_key(|n| (rank(n.state), n.node.clone()));
    if nodes.is_empty() {
        let why = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "no node reports this VirtualIP".into());
        return vec![vec![
            vip.name_any(),
            addresses,
            NONE.into(),
            NONE.into(),
            NONE.into(),
            NONE.into(),
            NONE.into(),
            listeners,
            why,
        ]];
    }
    nodes
        .into_iter()
        .map(|n| {
            vec![
                vip.name_any(),
                addresses.clone(),
                n.node.clone(),
                n.state.as_str().into(),
                n.priority.map_or_else(|| NONE.into(), |p| p.to_string()),
                n.last_transition_time
                    .as_ref()
                    .map_or_else(|| "<unknown>".into(), |t| age::human(seconds(now, t.0))),
                match n.serving {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "<unknown>".into(),
                },
                listeners.clone(),
                message(n),
            ]
        })
        .collect()
}

/// The node's reason, and the routers it saw using the VirtualIP's router ID (a collision).
fn message(n: &NodeStatus) -> String {
    let mut m = n.message.clone().unwrap_or_default();
    if !n.foreign_routers.is_empty() {
        if !m.is_empty() {
            m.push_str("; ");
        }
        m.push_str(&format!(
            "VRID collision with {}",
            n.foreign_routers.join(", ")
        ));
    }
    or_none(m)
}

fn or_none(s: String) -> String {
    if s.is_empty() { NONE.into() } else { s }
}

/// Master first, then Backup, Fault, Initialize.
fn rank(state: VrrpState) -> u8 {
    match state {
        VrrpState::Master => 0,
        VrrpState::Backup => 1,
        VrrpState::Fault => 2,
        VrrpState::Initialize => 3,
    }
}

/// Whole seconds from `then` to `now` (negative when `then` is ahead).
pub(crate) fn seconds(now: Timestamp, then: Timestamp) -> i64 {
    now.as_second() - then.as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(yaml: &str) -> VirtualIP {
        serde_yaml::from_str(yaml).expect("a VirtualIP")
    }

    #[test]
    fn one_line_per_node_master_first_with_age_and_reason() {
        let now: Timestamp = "2026-12-06T18:00:00Z".parse().expect("a time");
        let web = vip(r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: web, namespace: shop}
spec:
  addresses: [192.168.60.88/24]
  listeners: [{name: http, port: 80}, {name: db, port: 5432, protocol: TCP}]
status:
  addresses: [192.168.60.88]
  nodes:
  - {node: lb2, state: Backup, priority: 99, lastTransitionTime: "2026-12-06T17:55:00Z", message: "higher priority master seen", serving: true}
  - {node: lb1, state: Master, priority: 102, lastTransitionTime: "2026-12-06T17:59:15Z", message: "no advert within Master_Down_Interval", serving: true, foreignRouters: [192.168.60.7]}
"#);
        let idle = vip(r#"
apiVersion: buoy.io/v1alpha1
kind: VirtualIP
metadata: {name: idle, namespace: shop}
spec: {addresses: [10.0.0.1]}
status:
  conditions:
  - {type: Ready, status: "False", reason: AddressNotAllowed, message: "address 10.0.0.1 is not allowed", lastTransitionTime: "2026-12-06T17:00:00Z"}
"#);
        let table = render(&[web, idle], true, now).expect("a table");
        let lines: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            [
                "NAMESPACE",
                "NAME",
                "ADDRESSES",
                "NODE",
                "STATE",
                "PRIORITY",
                "SINCE",
                "SERVING",
                "LISTENERS",
                "MESSAGE"
            ]
        );
        assert_eq!(
            lines[1][..9],
            [
                "shop", "idle", "10.0.0.1", "<none>", "<none>", "<none>", "<none>", "<none>",
                "<none>"
            ]
        );
        assert!(
            table
                .lines()
                .nth(1)
                .is_some_and(|l| l.ends_with("   address 10.0.0.1 is not allowed")),
            "{table}"
        );
        assert_eq!(
            lines[2][..9],
            [
                "shop",
                "web",
                "192.168.60.88",
                "lb1",
                "Master",
                "102",
                "45s",
                "yes",
                "http:80/HTTP,db:5432/TCP"
            ]
        );
        assert!(
            table.contains(
                "no advert within Master_Down_Interval; VRID collision with 192.168.60.7"
            ),
            "{table}"
        );
        assert_eq!(lines[3][3..7], ["lb2", "Backup", "99", "5m"]);
        assert!(render(&[], false, now).is_none());
    }
}
