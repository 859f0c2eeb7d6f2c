//! One VirtualIP's record through the plan's phases, in one place rather than in vectors side
//! by side: the address phase admits a VirtualIP ([`Admitted`]: its spec with the addresses in
//! effect, and the AddressPool it is served from) or refuses it ([`Refused`]); the router ID
//! phase makes an admitted one a [`ServedVip`], whose conflict and node assignment the next
//! phases fill in.

use std::collections::BTreeMap;

use buoy_crds::{Announcement, VipAddress, VirtualIP};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::addresses::Standing;
use super::router_ids::RouterId;

/// A VirtualIP the address policy serves.
#[derive(Clone, Debug)]
pub(super) struct Admitted {
    /// The VirtualIP with the addresses in effect in its spec: the rest of the plan sees no
    /// other.
    pub(super) vip: VirtualIP,
    /// The AddressPool it is served from: its name, for `status.addressPool`.
    pub(super) pool: Option<String>,
    /// The AddressPool's `nodeSelector`, part of the placement.
    pub(super) pool_selector: Option<LabelSelector>,
    /// The AddressPool's `announcement` (`L2` without a pool).
    pub(super) announcement: Announcement,
}

impl Admitted {
    /// Whether it runs VRRP, and so needs a router ID (not a BGP VirtualIP in ECMP mode).
    pub(super) fn uses_vrrp(&self) -> bool {
        self.vip.spec.uses_vrrp(self.announcement)
    }
}

/// A VirtualIP the address policy does not let be served: why.
#[derive(Clone, Debug)]
pub(super) struct Refused<'a> {
    pub(super) vip: &'a VirtualIP,
    /// `AddressNotAllowed` or `PoolExhausted`.
    pub(super) reason: &'static str,
    pub(super) message: String,
}

/// Why a VirtualIP cannot be served next to an earlier one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Conflict {
    /// `AddressInUse`, `VirtualRouterIDInUse` or `PortInUse`.
    pub(super) reason: &'static str,
    /// Names the other VirtualIP; also the conflict annotation's value.
    pub(super) message: String,
}

/// The nodes a VirtualIP runs on and the priorities the operator gives them.
#[derive(Clone, Debug, Default)]
pub(super) struct Assignment {
    /// The nodes it selects, sorted.
    pub(super) nodes: Vec<String>,
    /// `{node: priority}` for the priorities annotation; `None` with `spec.priorities`, in
    /// conflict, or without nodes.
    pub(super) priorities: Option<BTreeMap<String, u8>>,
}

/// A served VirtualIP and what the phases decided for it.
#[derive(Clone, Debug)]
pub(super) struct ServedVip {
    /// The VirtualIP with the addresses in effect in its spec.
    pub(super) vip: VirtualIP,
    pub(super) pool: Option<String>,
    pub(super) pool_selector: Option<LabelSelector>,
    /// The router ID phase.
    pub(super) router_id: RouterId,
    /// The conflicts phase (`None` until it runs, and when it finds none).
    pub(super) conflict: Option<Conflict>,
    /// The priorities phase (empty until it runs).
    pub(super) assignment: Assignment,
}

impl Admitted {
    /// The admitted VirtualIP with its router ID; nothing else decided yet.
    pub(super) fn with_router_id(self, router_id: RouterId) -> ServedVip {
        ServedVip {
            vip: self.vip,
            pool: self.pool,
            pool_selector: self.pool_selector,
            router_id,
            conflict: None,
            assignment: Assignment::default(),
        }
    }
}

/// Splits `vips` by their standing (one per VirtualIP, in the same order): the admitted ones
/// with their addresses in effect, and the refused ones with why. Each keeps its order.
pub(super) fn split<'a>(
    vips: &[&'a VirtualIP],
    standings: Vec<Standing>,
) -> (Vec<Admitted>, Vec<Refused<'a>>) {
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for (v, standing) in vips.iter().zip(standings) {
        match standing {
            Standing::Served {
                addresses,
                pool,
                pool_selector,
                announcement,
            } => {
                let mut vip = (*v).clone();
                vip.spec.addresses = addresses.into_iter().map(VipAddress).collect();
                admitted.push(Admitted {
                    vip,
                    pool,
                    pool_selector,
                    announcement,
                });
            }
            Standing::NotServed { reason, message } => refused.push(Refused {
                vip: v,
                reason,
                message,
            }),
        }
    }
    (admitted, refused)
}
