//! In cluster mode, this node's side of each BGP session on its BGPPeer: the node's entry of
//! `status.nodes` (state, the router's reason, BFD, routes), applied under the node's field
//! manager, and an Event when the session comes up or goes down.

use std::{collections::BTreeMap, time::Duration};

use buoy_crds::{BGPPeer, contract::NodeEntries};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tokio::sync::watch;
use tracing::warn;

use super::{API_TIMEOUT, Identity, Stores, bounded, entry_unchanged};

/// Keeps this node's entry of each BGPPeer's `status.nodes` equal to its side of the session
/// (state, reason, BFD, routes; removed from peers that no longer select it), by server-side
/// apply under the node's field manager, and publishes an Event on the peer when the session
/// comes up or goes down.
pub(crate) async fn report(
    client: Client,
    identity: Identity,
    stores: Stores,
    mut report: watch::Receiver<crate::agent::ecmp::BgpReport>,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "buoy-agent".into(),
            instance: Some(identity.node.clone()),
        },
    );
    let params = PatchParams::apply(&identity.field_manager()).force();
    let api: Api<BGPPeer> = Api::all(client.clone());
    let mut written: BTreeMap<String, Option<buoy_crds::BGPPeerNodeStatus>> = BTreeMap::new();
    loop {
        let now = report.borrow_and_update().clone();
        for peer in stores.bgp_peers() {
            let name = peer.name_any();
            let mine = now.get(&name).cloned().map(|mut e| {
                e.node.clone_from(&identity.node);
                e
            });
            let has_entry = peer.has_entry_of(&identity.node);
            if entry_unchanged(written.get(&name), mine.as_ref(), has_entry) {
                continue;
            }
            let body = buoy_crds::contract::bgp_peer_entry_apply(&name, mine.as_ref());
            match tokio::time::timeout(
                API_TIMEOUT,
                api.patch_status(&name, &params, &Patch::Apply(&body)),
            )
            .await
            {
                Ok(Ok(_)) => {
                    let before = written.get(&name).cloned().flatten().map(|e| e.state);
                    if let Some(m) = &mine
                        && before != Some(m.state)
                        && (m.state == buoy_crds::BgpSessionState::Established
                            || before == Some(buoy_crds::BgpSessionState::Established))
                    {
                        publish_session(&recorder, &peer, &identity.node, m).await;
                    }
                    written.insert(name, mine);
                }
                Ok(Err(e)) => warn!(bgppeer = %name, error = %e, "cannot write status"),
                Err(_) => {
                    warn!(bgppeer = %name, "cannot write status: the API server did not answer in time")
                }
            }
        }
        // Wake on a change, or every few seconds to catch peers that were recreated.
        let _ = tokio::time::timeout(Duration::from_secs(5), report.changed()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An Event on `peer`: this node's session came up (`SessionEstablished`) or went down
/// (`SessionDown`, a warning, with the reason).
async fn publish_session(
    recorder: &Recorder,
    peer: &BGPPeer,
    node: &str,
    entry: &buoy_crds::BGPPeerNodeStatus,
) {
    let up = entry.state == buoy_crds::BgpSessionState::Established;
    let note = match (&entry.reason, up) {
        (_, true) => format!("node {node}: BGP session established"),
        (Some(why), false) => format!("node {node}: BGP session {}: {why}", entry.state.as_str()),
        (None, false) => format!("node {node}: BGP session {}", entry.state.as_str()),
    };
    let event = Event {
        type_: if up {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: if up {
            "SessionEstablished"
        } else {
            "SessionDown"
        }
        .into(),
        note: Some(bounded(&note)),
        action: "BGP".into(),
        secondary: None,
    };
    let reference: ObjectReference = peer.object_ref(&());
    match tokio::time::timeout(API_TIMEOUT, recorder.publish(&event, &reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "cannot publish an event"),
        Err(_) => warn!("cannot publish an event: the API server did not answer in time"),
    }
}
