//! Buoy's public API, group `buoy.io`, version `v1alpha1`: the `VirtualIP`, `UpstreamPool`,
//! `AddressPool` and `BGPPeer` custom resources, their validation (the same in a cluster and in standalone
//! mode), the address policy, CRD generation and the loader for YAML manifests.

#![warn(missing_docs, unreachable_pub)]

pub mod addresspool;
pub mod bgppeer;
pub mod contract;
pub mod crdgen;
pub mod duration;
pub mod manifest;
pub mod names;
pub mod placement;
pub mod policy;
pub mod reference;
pub mod route;
pub mod service;
pub mod structural;
pub mod tls;
pub mod upstreampool;
pub mod validation;
pub mod virtualip;
pub mod yaml11;

pub use addresspool::*;
pub use bgppeer::*;
pub use duration::Duration;
pub use route::*;
pub use tls::*;
pub use upstreampool::*;
pub use validation::{FieldError, ValidationErrors};
pub use virtualip::*;

/// The API group of Buoy's resources.
pub const GROUP: &str = "buoy.io";
/// The API version of Buoy's resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "buoy.io/v1alpha1";
