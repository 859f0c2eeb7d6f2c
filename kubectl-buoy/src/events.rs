//! `kubectl buoy events NAME`: a VirtualIP's history from its Events, oldest first: each
//! agent's state changes (reason `Master`, `Backup`, `Fault`, `NotServing`; the node is the
//! Event's reporting instance) and the operator's (conflicts, addresses not allowed, router IDs
//! allocated). Events outlive the VirtualIP (an hour by default), so a deleted one has its
//! history too.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, api::ListParams};

use crate::{ApiError, Listing, table};

/// The reporting controller of the agents' Events, whose reporting instance is the node.
const AGENT: &str = "buoy-agent";

/// The Events of the VirtualIP `namespace/name` as a table, oldest first.
pub async fn events(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Listing, ApiError> {
    let api: Api<Event> = Api::namespaced(client, namespace);
    let selector = format!("regarding.kind=VirtualIP,regarding.name={name}");
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(ApiError::from_list)?;
    Ok(match render(&list.items, name) {
        Some(table) => Listing::Table(table),
        None => Listing::Empty(format!("No events found for VirtualIP {namespace}/{name}.")),
    })
}

/// The table of the Events among `events` that regard Buoy's VirtualIP `name`; `None` when
/// there are none.
pub fn render(events: &[Event], name: &str) -> Option<String> {
    let mut mine: Vec<(Timestamp, &Event)> = events
        .iter()
        .filter(|e| {
            let r = &e.regarding;
            r.as_ref().and_then(|r| r.kind.as_deref()) == Some("VirtualIP")
                && r.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && r.as_ref()
                    .and_then(|r| r.api_version.as_deref())
                    .is_some_and(|v| v.starts_with("buoy.io/"))
        })
        .map(|e| (first_seen(e), e))
        .collect();
    if mine.is_empty() {
        return None;
    }
    mine.sort_by_key(|(t, e)| (*t, e.metadata.name.clone()));
    let rows: Vec<Vec<String>> = mine.into_iter().map(|(t, e)| row(t, e)).collect();
    Some(table::render(
        &["TIME", "NODE", "TYPE", "REASON", "MESSAGE"],
        &rows,
    ))
}

fn row(first: Timestamp, e: &Event) -> Vec<String> {
    let node = match (e.reporting_controller.as_deref(), &e.reporting_instance) {
        (Some(AGENT), Some(node)) => node.clone(),
        _ => "<none>".into(),
    };
    let mut message = e.note.clone().unwrap_or_default();
    let count = e
        .series
        .as_ref()
        .map(|s| s.count)
        .or(e.deprecated_count)
        .unwrap_or(1);
    if count > 1 {
        let last = e
            .series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0));
        message.push_str(&format!(" ({count} times"));
        if let Some(last) = last {
            message.push_str(&format!(", last at {}", time(last)));
        }
        message.push(')');
    }
    vec![
        time(first),
        node,
        e.type_.clone().unwrap_or_default(),
        e.reason.clone().unwrap_or_default(),
        message,
    ]
}

/// When the Event first happened: its `eventTime`, else the older API's first timestamp, else
/// when it was stored.
fn first_seen(e: &Event) -> Timestamp {
    e.event_time
        .as_ref()
        .map(|t| t.0)
        .or(e.deprecated_first_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// RFC 3339 in UTC, to the second: a time to put beside logs.
fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).expect("an Event")
    }

    fn regarding(name: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "buoy.io/v1alpha1", "kind": "VirtualIP", "namespace": "shop", "name": name})
    }

    #[test]
    fn the_history_is_oldest_first_with_node_and_repeats() {
        let events = [
            event(serde_json::json!({
                "metadata": {"name": "b", "namespace": "shop"},
                "eventTime": "2026-12-06T03:00:02.500000Z",
                "reportingController": "buoy-agent", "reportingInstance": "lb2",
                "regarding": regarding("web"), "type": "Normal", "reason": "Master",
                "note": "node lb2 is Master (priority 99): no advert within Master_Down_Interval",
                "series": {"count": 3, "lastObservedTime": "2026-12-06T04:10:00.000000Z"},
            })),
            event(serde_json::json!({
                "metadata": {"name": "a", "namespace": "shop"},
                "eventTime": "2026-12-06T03:00:00.000000Z",
                "reportingController": "buoy-agent", "reportingInstance": "lb1",
                "regarding": regarding("web"), "type": "Warning", "reason": "Fault",
                "note": "node lb1 is Fault (priority 0): interface eth0 is down",
            })),
            event(serde_json::json!({
                "metadata": {"name": "c", "namespace": "shop"},
                "eventTime": "2026-12-06T02:00:00.000000Z",
                "reportingController": "buoy-operator", "reportingInstance": "buoy-operator-0",
                "regarding": regarding("web"), "type": "Normal", "reason": "VirtualRouterIDAllocated",
                "note": "virtual router ID 7",
            })),
            event(serde_json::json!({
                "metadata": {"name": "d", "namespace": "shop"},
                "eventTime": "2026-12-06T01:00:00.000000Z",
                "regarding": regarding("other"), "reason": "Master",
            })),
            event(serde_json::json!({
                "metadata": {"name": "e", "namespace": "shop"},
                "eventTime": "2026-12-06T01:00:00.000000Z",
                "regarding": {"apiVersion": "v1", "kind": "Service", "name": "web"}, "reason": "Master",
            })),
        ];
        let table = render(&events, "web").expect("a table");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let words = |i: usize| lines[i].split_whitespace().take(4).collect::<Vec<_>>();
        assert_eq!(words(0), ["TIME", "NODE", "TYPE", "REASON"]);
        assert_eq!(
            words(1),
            [
                "2026-12-06T02:00:00Z",
                "<none>",
                "Normal",
                "VirtualRouterIDAllocated"
            ]
        );
        assert_eq!(
            words(2),
            ["2026-12-06T03:00:00Z", "lb1", "Warning", "Fault"]
        );
        assert_eq!(
            words(3),
            ["2026-12-06T03:00:02Z", "lb2", "Normal", "Master"]
        );
        assert!(
            lines[3].ends_with(
                "no advert within Master_Down_Interval (3 times, last at 2026-12-06T04:10:00Z)"
            ),
            "{table}"
        );
        assert!(render(&events, "gone").is_none());
    }
}
