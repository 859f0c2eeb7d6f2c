//! What keeps a router from being master, ranked, and its effective priority: the interface it
//! runs on, binding the VIP, the node's data path (listeners, healthy upstreams) and the tracked
//! interfaces, with keepalived's weights ([`crate::track`]). Sans IO: the shell reports what it
//! sees, this decides what it means.

use crate::track::{Condition, effective_priority};

/// What the node says about serving the VIP, from its proxy's listeners and its probes: a
/// master must be able to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPath {
    /// Every listener has a healthy backend (for `track.upstreams`).
    pub upstreams_healthy: bool,
    /// Every listener is open; a node that cannot listen goes to Fault and gives up mastership.
    pub listening: bool,
    /// A LoadBalancer Service with `externalTrafficPolicy: Local` has a ready endpoint on this
    /// node (true when there is no such requirement): only such nodes may be master.
    pub local_endpoint: bool,
    /// The VIP's HTTP GET probe passes (for `track.httpGet`; true without one).
    pub http_get_ok: bool,
}

impl DataPath {
    /// Listeners open with healthy backends (also: nothing to track).
    pub const SERVING: DataPath = DataPath {
        upstreams_healthy: true,
        listening: true,
        local_endpoint: true,
        http_get_ok: true,
    };
}

/// An interface whose state moves the priority (keepalived's `track_interface`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedInterface {
    /// Its index (how link-state updates name it).
    pub index: u32,
    /// Its name (for the log).
    pub name: String,
    /// keepalived's weight (see [`crate::track`]).
    pub weight: i32,
    /// Whether it is up now.
    pub up: bool,
}

/// A link-state update: interface `index` is up or down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// The interface index.
    pub index: u32,
    /// Whether it is up.
    pub up: bool,
}

/// Why a router is in Fault, most fundamental first: only the first that holds is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The interface the router runs on is down.
    InterfaceDown,
    /// Adding the virtual addresses failed (retried after a while).
    BindFailed,
    /// A listener of the VIP cannot open.
    NotListening,
    /// `externalTrafficPolicy: Local` and no ready endpoint of the Service on this node. The
    /// only fault that yields gracefully ([`Fault::graceful`]).
    NoLocalEndpoint,
    /// `track.upstreams` with weight 0, and a listener has no healthy backend.
    NoHealthyUpstream,
    /// `track.httpGet` with weight 0, and its probe fails.
    HttpGetFailing,
    /// A tracked interface with weight 0 is down.
    TrackedInterfaceDown,
}

impl Fault {
    /// The reason logged and reported with the transition to Fault.
    pub fn reason(self) -> &'static str {
        match self {
            Fault::InterfaceDown => "interface down",
            Fault::BindFailed => "cannot bind the virtual addresses",
            Fault::NotListening => "cannot open a listener",
            Fault::NoLocalEndpoint => "no ready local endpoint (externalTrafficPolicy: Local)",
            Fault::NoHealthyUpstream => "no healthy upstream",
            Fault::HttpGetFailing => "tracked HTTP GET failing",
            Fault::TrackedInterfaceDown => "tracked interface down",
        }
    }
}

impl Fault {
    /// Whether a master under this fault hands over with make-before-break (it can still serve
    /// for a moment) rather than letting go at once.
    pub fn graceful(self) -> bool {
        self == Fault::NoLocalEndpoint
    }
}

/// The name of the upstream condition among the tracked ones.
const UPSTREAMS: &str = "upstreams";
/// The name of the HTTP GET condition among the tracked ones.
const HTTP_GET: &str = "httpGet";

/// Everything a router's fault and effective priority are decided from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The interface the router runs on is up.
    pub link_up: bool,
    /// Binding the virtual addresses failed, and has not been retried yet.
    pub bind_failed: bool,
    /// What the node's proxy says about the VIP's listeners.
    pub data_path: DataPath,
    /// The tracked interfaces, as last reported.
    pub tracked: Vec<TrackedInterface>,
    /// Weight of the "this node has healthy upstreams" condition (`track.upstreams`).
    pub track_upstreams: Option<i32>,
    /// Weight of the "the HTTP GET probe passes" condition (`track.httpGet`).
    pub track_http_get: Option<i32>,
}

/// What [`Health::assess`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// The effective priority; `None` when a tracked condition with weight 0 failed (the
    /// priority is then left as it was).
    pub priority: Option<u8>,
    /// The fault that holds, if any.
    pub fault: Option<Fault>,
}

impl Health {
    /// The effective priority from `base` and the fault, ranked (see [`Fault`]).
    pub fn assess(&self, base: u8) -> Assessment {
        let mut conditions: Vec<Condition> = self
            .tracked
            .iter()
            .map(|t| Condition {
                name: format!("interface {}", t.name),
                weight: t.weight,
                ok: t.up,
            })
            .collect();
        if let Some(weight) = self.track_upstreams {
            conditions.push(Condition {
                name: UPSTREAMS.into(),
                weight,
                ok: self.data_path.upstreams_healthy,
            });
        }
        if let Some(weight) = self.track_http_get {
            conditions.push(Condition {
                name: HTTP_GET.into(),
                weight,
                ok: self.data_path.http_get_ok,
            });
        }
        let tracked = effective_priority(base, &conditions);
        let fault = if !self.link_up {
            Some(Fault::InterfaceDown)
        } else if self.bind_failed {
            Some(Fault::BindFailed)
        } else if !self.data_path.listening {
            Some(Fault::NotListening)
        } else if !self.data_path.local_endpoint {
            Some(Fault::NoLocalEndpoint)
        } else {
            match &tracked {
                Err(name) if name == UPSTREAMS => Some(Fault::NoHealthyUpstream),
                Err(name) if name == HTTP_GET => Some(Fault::HttpGetFailing),
                Err(_) => Some(Fault::TrackedInterfaceDown),
                Ok(_) => None,
            }
        };
        Assessment {
            priority: tracked.ok(),
            fault,
        }
    }

    /// Applies a link-state update to the router's interface (`link`) and the tracked ones;
    /// returns whether the router's own interface changed, and whether anything did.
    pub fn update_link(&mut self, link: u32, update: LinkState) -> (bool, bool) {
        let mut own = false;
        if update.index == link && update.up != self.link_up {
            self.link_up = update.up;
            own = true;
        }
        let mut changed = own;
        for t in self
            .tracked
            .iter_mut()
            .filter(|t| t.index == update.index && t.up != update.up)
        {
            t.up = update.up;
            changed = true;
        }
        (own, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Health {
        Health {
            link_up: true,
            bind_failed: false,
            data_path: DataPath::SERVING,
            tracked: vec![TrackedInterface {
                index: 7,
                name: "uplink".into(),
                weight: 0,
                up: true,
            }],
            track_upstreams: Some(2),
            track_http_get: Some(0),
        }
    }

    #[test]
    fn healthy_tracking_adds_its_weight() {
        assert_eq!(
            healthy().assess(100),
            Assessment {
                priority: Some(102),
                fault: None
            }
        );
    }

    #[test]
    fn faults_are_ranked_most_fundamental_first() {
        let mut h = healthy();
        h.tracked[0].up = false;
        h.track_upstreams = Some(0);
        h.data_path.upstreams_healthy = false;
        assert_eq!(h.assess(100).fault, Some(Fault::TrackedInterfaceDown));
        assert_eq!(h.assess(100).priority, None);
        h.tracked[0].up = true;
        h.data_path.http_get_ok = false;
        assert_eq!(h.assess(100).fault, Some(Fault::NoHealthyUpstream));
        h.data_path.upstreams_healthy = true;
        assert_eq!(h.assess(100).fault, Some(Fault::HttpGetFailing));
        assert_eq!(h.assess(100).priority, None);
        h.track_http_get = Some(-50);
        assert_eq!(
            h.assess(100),
            Assessment {
                priority: Some(50),
                fault: None
            },
            "a failing probe with a negative weight lowers the priority"
        );
        h.data_path.upstreams_healthy = false;
        assert_eq!(h.assess(100).fault, Some(Fault::NoHealthyUpstream));
        h.data_path.listening = false;
        assert_eq!(h.assess(100).fault, Some(Fault::NotListening));
        h.bind_failed = true;
        assert_eq!(h.assess(100).fault, Some(Fault::BindFailed));
        h.link_up = false;
        assert_eq!(h.assess(100).fault, Some(Fault::InterfaceDown));
        assert_eq!(Fault::InterfaceDown.reason(), "interface down");
    }

    #[test]
    fn link_updates_reach_the_interface_and_the_tracked_ones() {
        let mut h = healthy();
        assert_eq!(
            h.update_link(
                3,
                LinkState {
                    index: 7,
                    up: false
                }
            ),
            (false, true)
        );
        assert!(!h.tracked[0].up);
        assert_eq!(
            h.update_link(
                3,
                LinkState {
                    index: 3,
                    up: false
                }
            ),
            (true, true)
        );
        assert!(!h.link_up);
        assert_eq!(
            h.update_link(
                3,
                LinkState {
                    index: 3,
                    up: false
                }
            ),
            (false, false),
            "no change"
        );
    }
}
