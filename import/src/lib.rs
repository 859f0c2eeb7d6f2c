//! Buoy's importer (`buoy-agent import`): translates a classic keepalived + nginx setup (one
//! keepalived.conf per host, and nginx.conf) into VirtualIP, UpstreamPool and Secret objects
//! (VRRP passwords; certificates and keys read from the PEM files nginx names);
//! and MetalLB's L2 and BGP configuration (`--metallb`) or kube-vip-cloud-provider's ConfigMap
//! (`--kube-vip`) into AddressPools, with the LoadBalancer Services they serve handed over to
//! Buoy (its class and annotations).
//!
//! Every directive is either translated or reported as a [`Warning`] with its file and line; none
//! is dropped silently. Malformed input is an [`ImportError`] with file and line. The result is
//! checked with the API's own validation ([`buoy_crds::manifest::parse`]) before it is returned.
//!
//! How the two halves meet: keepalived gives the VirtualIPs (one per `virtual_router_id` and
//! address set, with one priority per host file); nginx gives the UpstreamPools and the listeners.
//! nginx listens on every address of the host, so a `listen 80;` server becomes a listener on
//! every IPv4 VirtualIP (`listen [::]:80;` on every IPv6 one), and `listen 192.168.60.88:80;` only
//! on the VirtualIP that holds 192.168.60.88. Without keepalived files, the addresses of
//! `listen ADDRESS:PORT` make the VirtualIP, or a documentation address (192.0.2.1) stands in
//! with a warning that it must be replaced.
//!
//! The modules by floor, lowest first: `diagnostics`, `options`, `names` (what every other
//! module uses); `syntax` (reading files and includes), `draft` (a VirtualIP being built) and
//! `certificates` (the Secrets of the PEM files nginx names);
//! `manifests` (Kubernetes objects read from YAML), `ranges` (address ranges) and `selectors`
//! (label selectors merged); `keepalived` and `nginx`, each from parsing through translating to
//! merging its files; `listeners` (nginx's servers onto keepalived's VirtualIPs); `objects` and
//! `yaml` (the output); `services` (LoadBalancer Services handed over to Buoy), `metallb` and
//! `kubevip` (their configurations into AddressPools); `pipeline` (the import from end to end).

#![warn(unreachable_pub, missing_docs)]

mod certificates;
mod diagnostics;
mod draft;
mod keepalived;
mod kubevip;
mod listeners;
mod manifests;
mod metallb;
mod names;
mod nginx;
mod objects;
mod options;
mod pipeline;
mod ranges;
mod selectors;
mod services;
mod syntax;
mod yaml;

pub use diagnostics::{ImportError, Loc, Warning};
pub use objects::Import;
pub use options::{NodeNameFrom, Options};
pub use pipeline::import;
