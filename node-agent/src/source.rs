//! Where a node's desired state comes from: YAML files (standalone mode, `files::FileSource`) or the
//! Kubernetes API (cluster mode, `cluster::ClusterSource`). Both turn what they see into the same
//! pure plan (`node::plan`); the agent's loop (`runner::run`) is the same for both.

use async_trait::async_trait;

use crate::{agent::Agent, dns::Resolutions, node::Plan};

/// Everything wrong with a configuration, one line per problem (file, document, field).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct Invalid(pub Vec<String>);

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
