//! The inputs of an import: the files (keepalived and nginx; MetalLB; kube-vip), the namespace,
//! and where node names come from.

use std::path::PathBuf;

/// Where node names come from when several keepalived files are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NodeNameFrom {
    /// `global_defs { router_id … }`; the file's name when a file has none, or when two files
    /// share one (the keepalived sample's `LVS_DEVEL` is often left as is on every host).
    #[default]
    RouterId,
    /// The file's name without its extension (`lb1.conf` → `lb1`), or its directory's when files
    /// share a name (`lb1/keepalived.conf` → `lb1`).
    FileName,
}

/// The inputs of an import.
#[derive(Clone, Debug)]
pub struct Options {
    /// One keepalived.conf per host.
    pub keepalived: Vec<PathBuf>,
    /// nginx.conf files (the same upstreams in several files are merged).
    pub nginx: Vec<PathBuf>,
    /// YAML files with MetalLB's objects (`IPAddressPool`, `L2Advertisement`, …) and Services.
    pub metallb: Vec<PathBuf>,
    /// YAML files with kube-vip-cloud-provider's ConfigMap (`kubevip`) and Services.
    pub kube_vip: Vec<PathBuf>,
    /// The namespace of the VirtualIPs, UpstreamPools and Secret.
    pub namespace: String,
    /// Where the keepalived files' node names come from.
    pub node_name_from: NodeNameFrom,
    /// Leave out the Secrets that would hold private keys (nginx's `ssl_certificate_key`): the
    /// listeners still name them, and the VirtualIP's comments give the `kubectl create secret
    /// tls` commands that make them from the files.
    pub secrets_as_references: bool,
}
