//! Where a node's desired state comes from: YAML files (standalone mode, [`FileSource`]) or the
//! Kubernetes API (cluster mode, `cluster::ClusterSource`). Both turn what they see into the same
//! pure plan (`node::plan`); the agent's loop (`runner::run`) is the same for both.

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use buoy_crds::policy::AddressPolicy;
use tokio::sync::Notify;

use crate::{
    agent::Agent,
    cluster::EndpointStores,
    dns::Resolutions,
    files::{Files, Invalid},
    node::{NodeIdentity, Plan},
};

/// A source of desired state.
#[async_trait]
pub trait Source: Send {
    /// Waits until the source can plan (the cluster: every watch has listed once; a plan from
    /// half the objects would stop VIPs).
    async fn ready(&mut self);

    /// Resolves when the desired state may have changed, with why.
    async fn changed(&mut self) -> &'static str;

    /// The node's plan now, with the backends' names as `resolved` has them; or why the source's
    /// objects are refused as a whole (the running state stays).
    fn plan(&mut self, resolved: &Resolutions) -> Result<Plan, Invalid>;

    /// Starts reporting the agent's status where the source's users look (the cluster: each
    /// VirtualIP's and UpstreamPool's entry of this node, Events).
    fn report(&mut self, _agent: &Agent) {}

    /// The agent is exiting (its VIPs handed over): withdraw what was reported. Bounded in
    /// time: an API server that does not answer does not keep the agent.
    async fn finish(&mut self) {}
}

/// Standalone mode: VirtualIP, UpstreamPool, AddressPool and Secret documents in files,
/// re-read when one changes (polled every second) or on SIGHUP, and, with a kubeconfig, the
/// Service endpoints of Service-backed pools.
pub struct FileSource {
    files: Files,
    fingerprint: u64,
    poll: tokio::time::Interval,
    endpoints: Option<EndpointStores>,
    endpoints_changed: Arc<Notify>,
    policy: AddressPolicy,
}

impl FileSource {
    /// The files at `paths` as seen by `node`, AddressPools in them applying under `policy`;
    /// `endpoints`: a cluster's Services and EndpointSlices (notifying `endpoints_changed`).
    pub fn new(
        paths: Vec<PathBuf>,
        node: NodeIdentity,
        policy: AddressPolicy,
        endpoints: Option<(EndpointStores, Arc<Notify>)>,
    ) -> FileSource {
        let files = Files { paths, node };
        let (endpoints, endpoints_changed) = match endpoints {
            Some((e, n)) => (Some(e), n),
            None => (None, Arc::new(Notify::new())),
        };
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        FileSource {
            fingerprint: files.fingerprint(),
            files,
            poll,
            endpoints,
            endpoints_changed,
            policy,
        }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn ready(&mut self) {
        if let Some(e) = &self.endpoints {
            e.services_and_slices_ready().await;
        }
    }

    async fn changed(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.poll.tick() => {
                    let now = self.files.fingerprint();
                    if now != self.fingerprint {
                        self.fingerprint = now;
                        return "a file changed";
                    }
                }
                () = self.endpoints_changed.notified() => return "the Service endpoints changed",
            }
        }
    }

    fn plan(&mut self, resolved: &Resolutions) -> Result<Plan, Invalid> {
        self.fingerprint = self.files.fingerprint();
        match &self.endpoints {
            Some(e) => {
                let now = e.snapshot();
                self.files.plan(|p| now.resolve(p), resolved, self.policy)
            }
            None => self.files.plan(|p| p.clone(), resolved, self.policy),
        }
    }
}
