//! Standalone mode's source of desired state ([`FileSource`]): VirtualIP, UpstreamPool, AddressPool
//! and Secret documents in YAML
//! files, validated as the API server would, planned for this node. A changed file is noticed by
//! its content, polled: inotify misses the symlink swaps of Kubernetes ConfigMap volumes and the
//! rename-over of editors, and a handful of small files is cheap to re-read every second.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use buoy_crds::policy::AddressPolicy;
use tokio::sync::Notify;

use crate::{
    config::BackendPolicy,
    dns::Resolutions,
    node::{Inputs, NodeConfig, NodeIdentity, Plan, plan},
    source::{Invalid, Source},
    watch::EndpointStores,
};

/// The files of a standalone agent.
pub struct Files {
    /// Files and directories of YAML objects, read in this order.
    pub paths: Vec<PathBuf>,
    /// This node, as the VirtualIPs' node selectors see it.
    pub node: NodeIdentity,
}

impl Files {
    /// Reads, validates and plans the configuration (no names resolved, no address policy).
    /// Any error rejects the whole configuration: a half-applied file set is worse than the
    /// running one.
    pub fn load(&self) -> Result<NodeConfig, Invalid> {
        self.plan(|p| p.clone(), &Resolutions::new(), AddressPolicy::Off)
            .map(|p| p.config)
    }

    /// Reads, validates and plans the configuration: `resolve` turns Service-backed pools into
    /// static ones (from a cluster's EndpointSlices when the agent is given a kubeconfig),
    /// `resolved` has the backends' host names, and AddressPools of the files apply under
    /// `policy`. A VirtualIP that cannot be served rejects the whole file set; a backend name
    /// that does not resolve does not (its pool runs short of it, as in a cluster).
    pub(crate) fn plan(
        &self,
        resolve: impl Fn(&buoy_crds::UpstreamPool) -> buoy_crds::UpstreamPool,
        resolved: &Resolutions,
        policy: AddressPolicy,
    ) -> Result<Plan, Invalid> {
        let objects = buoy_crds::manifest::load(&self.paths)
            .map_err(|errors| Invalid(errors.iter().map(ToString::to_string).collect()))?;
        if objects.is_empty() {
            return Err(Invalid(vec![format!(
                "no VirtualIP or UpstreamPool found in {}",
                self.paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )]));
        }
        let vips = buoy_crds::manifest::virtual_ips(&objects);
        let pools: Vec<buoy_crds::UpstreamPool> = buoy_crds::manifest::upstream_pools(&objects)
            .into_iter()
            .map(resolve)
            .collect();
        let pools: Vec<&buoy_crds::UpstreamPool> = pools.iter().collect();
        let secrets = buoy_crds::manifest::secrets(&objects);
        let address_pools = buoy_crds::manifest::address_pools(&objects);
        let bgp_peers = buoy_crds::manifest::bgp_peers(&objects);
        // The host's admin wrote these files: backends on the node itself are theirs to name.
        let backends = BackendPolicy::default();
        let planned = plan(Inputs {
            address_pools: &address_pools,
            bgp_peers: &bgp_peers,
            policy,
            resolved,
            backends: &backends,
            ..Inputs::simple(&self.node, &vips, &pools, &secrets)
        });
        let mut problems: Vec<String> = planned.errors.iter().map(ToString::to_string).collect();
        problems.extend(
            planned
                .config
                .faults
                .iter()
                .map(|(key, why)| format!("VirtualIP {key}: {why}")),
        );
        problems.extend(
            planned
                .config
                .bgp_problems
                .iter()
                .map(|(name, why)| format!("BGPPeer {name}: {why}")),
        );
        if problems.is_empty() {
            Ok(planned)
        } else {
            Err(Invalid(problems))
        }
    }

    /// A hash of the files' names and contents: changes when the configuration may have.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut errors = Vec::new();
        let mut h = DefaultHasher::new();
        for file in buoy_crds::manifest::files(&self.paths, &mut errors) {
            file.hash(&mut h);
            std::fs::read(&file).ok().hash(&mut h);
        }
        errors.len().hash(&mut h);
        h.finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_changes_the_fingerprint_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("buoy-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vip.yaml");
        let good = "apiVersion: buoy.io/v1alpha1\nkind: VirtualIP\nmetadata: {name: a}\nspec: {addresses: [10.0.0.1], virtualRouterID: 5}\n";
        std::fs::write(&file, good).unwrap();
        let files = Files {
            paths: vec![dir.clone()],
            node: NodeIdentity::default(),
        };
        let before = files.fingerprint();
        assert_eq!(files.load().unwrap().vips.len(), 1);
        assert_eq!(files.fingerprint(), before, "stable while nothing changes");
        std::fs::write(
            &file,
            good.replace("virtualRouterID: 5", "virtualRouterID: 0"),
        )
        .unwrap();
        assert_ne!(files.fingerprint(), before);
        let e = files.load().unwrap_err().to_string();
        assert!(
            e.contains("vip.yaml") && e.contains("spec.virtualRouterID"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
