//! A VirtualIP being built: what keepalived gives, before nginx's listeners are attached and the
//! objects are made.

use buoy_crds::VirtualIPSpec;

use crate::diagnostics::Loc;

/// A VirtualIP being built: the spec without listeners, and what the later steps need.
#[derive(Clone, Debug)]
pub(crate) struct VipDraft {
    /// Identity for attaching listeners.
    pub(crate) key: usize,
    pub(crate) name: String,
    pub(crate) spec: VirtualIPSpec,
    pub(crate) password: Option<(String, Loc)>,
    /// `track_script` of an nginx check: becomes `track.upstreams` if the VIP gets listeners.
    pub(crate) track_upstreams: Option<(i32, Loc)>,
    pub(crate) comments: Vec<String>,
}
