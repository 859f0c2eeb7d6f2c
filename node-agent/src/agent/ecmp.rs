//! The node's BGP-announced VirtualIPs: the addresses of ECMP ones on the loopback (so that the
//! node accepts and serves traffic for them, with every other eligible node at once), whether
//! the node is eligible for each address (its listeners serve with a healthy backend and any
//! required local endpoint; for `ActiveStandby` ones, also VRRP master), fed to the BGP
//! [`Speaker`], and their status. The speaker drains an address before it is withdrawn; its
//! loopback address goes only once FRR no longer routes it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use buoy_crds::{BGPPeerNodeStatus, BfdSessionState, BgpSessionState};
use buoy_vrrp::machine::Role;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    agent::{NodeStatus, VipStatus},
    bgp::{
        Frr,
        speaker::{BgpNode, BgpStatus, Desired, Speaker, established},
    },
    net::{
        claim,
        handover::{Handover, Spread},
        netlink::{InterfaceAddress, Link, on_link},
    },
    node::{EcmpPlan, NodeConfig},
    proxy::service::ProxyService,
    vrrp::host::Host,
};

/// How the agent reaches FRR, from its flags.
#[derive(Clone, Debug)]
pub struct BgpSettings {
    /// FRR's configuration directory (`frr.conf` is written there).
    pub config_dir: PathBuf,
    /// FRR's pathspace (`-N`), when it runs as one of several on the host.
    pub pathspace: Option<String>,
    /// The directory of FRR's vty sockets, when not the default.
    pub vty_socket: Option<PathBuf>,
    /// The BGP router ID; `None`: the address this node reaches its first IPv4 peer from.
    pub router_id: Option<Ipv4Addr>,
    /// How long a route is announced with GRACEFUL_SHUTDOWN before a planned withdrawal.
    pub drain: Duration,
}

impl Default for BgpSettings {
    /// Debian's FRR service: `/etc/frr`, default sockets, a router ID of its own, 3 s drain.
    fn default() -> BgpSettings {
        BgpSettings {
            config_dir: PathBuf::from("/etc/frr"),
            pathspace: None,
            vty_socket: None,
            router_id: None,
            drain: crate::bgp::announce::DEFAULT_DRAIN,
        }
    }
}

impl BgpSettings {
    fn frr(&self) -> Frr {
        let mut frr = Frr::new(&self.config_dir);
        if let Some(p) = &self.pathspace {
            frr = frr.pathspace(p);
        }
        if let Some(d) = &self.vty_socket {
            frr = frr.vty_socket(d);
        }
        frr
    }
}

/// This node's side of each BGPPeer that selects it, by the peer's name: its entry of the
/// peer's `status.nodes` (the node name filled in by whoever writes it).
pub type BgpReport = BTreeMap<String, BGPPeerNodeStatus>;

/// The node's BGP-announced VirtualIPs.
pub(crate) struct Ecmp {
    settings: BgpSettings,
    speaker: Option<Speaker>,
    /// Addresses this agent put on the loopback.
    bound: BTreeSet<IpAddr>,
    desired: BTreeMap<String, EcmpPlan>,
    /// `ActiveStandby` VirtualIPs: their addresses, announced while their instance is master.
    active_standby: BTreeMap<String, Vec<IpAddr>>,
    /// The node's BGP sessions.
    node: Option<BgpNode>,
    /// BGPPeers selecting the node that it cannot use, and why.
    problems: BTreeMap<String, String>,
    /// Each peer's session, as last reported, and since when in that state.
    report: watch::Sender<BgpReport>,
    /// This node's address on the subnet of its first BGP peer: where the other nodes hand
    /// the connections they do not know (reported in the VirtualIPs' status).
    own_address: Option<IpAddr>,
    /// Handover peers on no subnet of the node, warned about once.
    warned_off_link: BTreeSet<IpAddr>,
}

impl Ecmp {
    pub(crate) fn new(settings: BgpSettings) -> Ecmp {
        Ecmp {
            settings,
            speaker: None,
            bound: BTreeSet::new(),
            desired: BTreeMap::new(),
            active_standby: BTreeMap::new(),
            node: None,
            problems: BTreeMap::new(),
            report: watch::channel(BgpReport::new()).0,
            own_address: None,
            warned_off_link: BTreeSet::new(),
        }
    }

    /// Follows the node's side of its BGP sessions.
    pub(crate) fn report(&self) -> watch::Receiver<BgpReport> {
        self.report.subscribe()
    }

    /// Takes the node's new desired state: binds the ECMP addresses that are new (those that
    /// go stay until their routes are withdrawn: see [`Ecmp::refresh`]), points their unknown
    /// connections at their other nodes, and starts the speaker the first time anything is
    /// announced by BGP.
    pub(crate) async fn apply(
        &mut self,
        host: Option<&Arc<Host>>,
        handover: Option<&Handover>,
        desired: &NodeConfig,
    ) {
        self.desired = desired.ecmp.clone();
        self.node = desired.bgp.clone();
        self.problems = desired.bgp_problems.clone();
        self.active_standby = desired
            .vips
            .iter()
            .filter(|(_, p)| p.bgp)
            .map(|(k, p)| {
                (
                    k.clone(),
                    p.instance.addresses.iter().map(|(a, _)| *a).collect(),
                )
            })
            .collect();
        let wanted = !self.desired.is_empty() || !self.active_standby.is_empty();
        if self.speaker.is_none() && (wanted || desired.bgp.is_some()) {
            self.speaker = Some(Speaker::start(
                self.settings.frr(),
                self.settings.drain,
                self.settings.router_id,
            ));
        }
        let Some(host) = host else { return };
        let (links, addresses, gateways) = match (
            host.netlink.links().await,
            host.netlink.addresses().await,
            host.netlink.default_gateways().await,
        ) {
            (Ok(l), Ok(a), Ok(g)) => (l, a, g),
            (l, a, g) => {
                warn!(
                    links = ?l.err(), addresses = ?a.err(), gateways = ?g.err(),
                    "cannot read the node's interfaces; BGP addresses not bound"
                );
                return;
            }
        };
        self.own_address = self
            .node
            .iter()
            .flat_map(|n| &n.peers)
            .find_map(|p| on_link(p.address, &addresses))
            .map(|a| a.address);
        if let Some(handover) = handover {
            let (spread, off_link) = spread(&self.desired, &addresses, &links);
            for peer in off_link {
                if self.warned_off_link.insert(peer) {
                    warn!(%peer, "an ECMP handover peer is on no subnet of this node; connections a router moves to this node cannot be handed to it");
                }
            }
            handover.spread(spread);
            // Before anything is announced from here: a router that rehashes flows to this
            // node must find the rule that hands them on.
            handover.settled(Duration::from_secs(2)).await;
        }
        let Some(lo) = links.iter().find(|l| l.name == "lo") else {
            warn!("no loopback interface; BGP addresses not bound");
            return;
        };
        let new: Vec<IpAddr> = self
            .desired
            .values()
            .flat_map(|p| p.addresses.iter().copied())
            .filter(|a| !self.bound.contains(a))
            .collect();
        for address in new {
            if let Some(why) = claim::refusal(
                address,
                host_prefix(address),
                lo.index,
                &addresses,
                &gateways,
            ) {
                warn!(%address, %why, "not binding a BGP address");
                continue;
            }
            match host
                .netlink
                .add_address(lo, address, host_prefix(address))
                .await
            {
                Ok(()) => {
                    info!(%address, "BGP address bound on the loopback");
                    self.bound.insert(address);
                }
                Err(e) => warn!(%address, error = %e, "cannot bind a BGP address"),
            }
        }
    }

    /// Feeds the speaker what the node can serve now, releases the loopback addresses whose
    /// routes are gone, and writes the ECMP VirtualIPs' status.
    pub(crate) async fn refresh(
        &mut self,
        host: Option<&Arc<Host>>,
        proxy: &ProxyService,
        status: &watch::Sender<NodeStatus>,
    ) {
        let Some(speaker) = &self.speaker else { return };
        let mut want = Desired {
            node: None,
            eligible: BTreeSet::new(),
            ineligible: BTreeSet::new(),
        };
        let mut why_not: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (key, plan) in &self.desired {
            let path = proxy.data_path(&plan.listeners);
            let why = if !path.listening || !path.upstreams_healthy {
                Some(
                    proxy
                        .why_not_serving(&plan.listeners)
                        .unwrap_or_else(|| "no healthy backend".into()),
                )
            } else if plan.local_endpoint == Some(false) {
                Some("no ready endpoint on this node (externalTrafficPolicy: Local)".into())
            } else {
                None
            };
            let set = if why.is_none() {
                &mut want.eligible
            } else {
                &mut want.ineligible
            };
            set.extend(plan.addresses.iter().copied());
            why_not.insert(key.clone(), why);
        }
        {
            let all = status.borrow();
            for (key, addresses) in &self.active_standby {
                let master_serving = all
                    .get(key)
                    .is_some_and(|s| s.state == Role::Master && s.serving);
                let set = if master_serving {
                    &mut want.eligible
                } else {
                    &mut want.ineligible
                };
                set.extend(addresses.iter().copied());
            }
        }
        want.node = self.node.clone();
        speaker.set(want);
        let seen = speaker.status().borrow().clone();
        self.write_status(status, &seen, &why_not);
        let now = SystemTime::now();
        self.report.send_if_modified(|report| {
            let next = peer_report(self.node.as_ref(), &self.problems, &seen, report, now);
            let changed = *report != next;
            *report = next;
            changed
        });
        // Addresses no longer wanted, once FRR stopped routing them to this node.
        let gone: Vec<IpAddr> = self
            .bound
            .iter()
            .copied()
            .filter(|a| {
                !self.desired.values().any(|p| p.addresses.contains(a)) && !seen.has_route(*a)
            })
            .collect();
        if let Some(host) = host {
            release(host, &gone).await;
        }
        for a in gone {
            self.bound.remove(&a);
        }
    }

    fn write_status(
        &self,
        status: &watch::Sender<NodeStatus>,
        seen: &BgpStatus,
        why_not: &BTreeMap<String, Option<String>>,
    ) {
        let established = seen.sessions.iter().filter(|s| established(s)).count();
        status.send_if_modified(|all| {
            let mut changed = false;
            for (key, plan) in &self.desired {
                let why = why_not.get(key).cloned().flatten();
                let announced = plan.addresses.iter().all(|a| seen.announces(*a));
                let (state, reason) = match (&why, announced, &seen.error) {
                    (Some(why), _, _) => (Role::Fault, format!("not announced: {why}")),
                    (None, true, _) => (
                        Role::Master,
                        format!("announced by BGP to {established} established peer(s)"),
                    ),
                    (None, false, Some(e)) => (Role::Backup, format!("not announced: {e}")),
                    (None, false, None) if self.node.is_none() => (
                        Role::Backup,
                        "not announced: no BGPPeer selects this node".to_string(),
                    ),
                    (None, false, None) => (
                        Role::Backup,
                        "not announced yet: no BGP session established".to_string(),
                    ),
                };
                let entry = all
                    .entry(key.clone())
                    .or_insert_with(|| VipStatus::new(state));
                let serving = why.is_none();
                if entry.state != state
                    || entry.reason != reason
                    || entry.serving != serving
                    || entry.warnings != plan.warnings
                    || entry.address != self.own_address
                {
                    entry.address = self.own_address;
                    if entry.state != state {
                        entry.since = SystemTime::now();
                    }
                    entry.state = state;
                    entry.reason = reason;
                    entry.serving = serving;
                    entry.not_serving = why;
                    entry.warnings.clone_from(&plan.warnings);
                    changed = true;
                }
            }
            changed
        });
    }

    /// Drains and withdraws every route (GRACEFUL_SHUTDOWN first). The listeners still serve
    /// meanwhile, and the addresses stay bound: connections the routers moved to other nodes
    /// are handed back here until they end (see [`Ecmp::release`]).
    pub(crate) async fn withdraw(&mut self) {
        if let Some(speaker) = self.speaker.take() {
            info!(drain = ?self.settings.drain, "withdrawing the BGP routes");
            speaker
                .stop(self.settings.drain + Duration::from_secs(10))
                .await;
        }
    }

    /// Releases the loopback addresses, once their connections are done.
    pub(crate) async fn release(&mut self, host: Option<&Arc<Host>>) {
        let all: Vec<IpAddr> = std::mem::take(&mut self.bound).into_iter().collect();
        if let Some(host) = host {
            release(host, &all).await;
        }
    }
}

/// Each peer's entry from what FRR said (`seen`): its session's state (kept with its `since`
/// from `before` while unchanged, so that an unchanged session is not written again), why it
/// is not established, BFD, and the routes announced to it (draining ones too: FRR still
/// sends them). Peers the node cannot use are `Idle` with the reason.
fn peer_report(
    node: Option<&BgpNode>,
    problems: &BTreeMap<String, String>,
    seen: &BgpStatus,
    before: &BgpReport,
    now: SystemTime,
) -> BgpReport {
    let mut out = BgpReport::new();
    let mut entry = |name: &str, state, reason: Option<String>, bfd, routes: Vec<String>| {
        let since = before
            .get(name)
            .filter(|b| b.state == state)
            .and_then(|b| b.since.clone())
            .unwrap_or_else(|| time(now));
        out.insert(
            name.to_string(),
            BGPPeerNodeStatus {
                node: String::new(),
                state,
                since: Some(since),
                reason,
                bfd,
                routes,
            },
        );
    };
    for peer in node.iter().flat_map(|n| &n.peers) {
        let session = seen.sessions.iter().find(|s| s.address == peer.address);
        let (state, reason) = match (session, &seen.error) {
            (Some(s), _) => (s.state, s.reason.clone()),
            (None, Some(e)) => (BgpSessionState::Unknown, Some(e.clone())),
            (None, None) => (
                BgpSessionState::Unknown,
                Some("not configured in FRR yet".to_string()),
            ),
        };
        let bfd = match (&peer.bfd, session.and_then(|s| s.bfd)) {
            (None, _) => BfdSessionState::Disabled,
            (Some(_), Some(true)) => BfdSessionState::Up,
            (Some(_), _) => BfdSessionState::Down,
        };
        let routes = seen
            .announced
            .iter()
            .filter(|r| r.address.is_ipv4() == peer.address.is_ipv4())
            .map(|r| format!("{}/{}", r.address, host_prefix(r.address)))
            .collect();
        let reason = reason.filter(|_| state != BgpSessionState::Established);
        entry(&peer.name, state, reason, Some(bfd), routes);
    }
    for (name, why) in problems {
        entry(
            name,
            BgpSessionState::Idle,
            Some(why.clone()),
            None,
            Vec::new(),
        );
    }
    out
}

/// Where each ECMP address's unknown connections go: to its VirtualIP's other nodes of the
/// same family, the node's own addresses left out, each with the interface whose subnet holds
/// it. Also the peers on no subnet of the node (a packet handed on unchanged needs a neighbour).
fn spread(
    plans: &BTreeMap<String, EcmpPlan>,
    addresses: &[InterfaceAddress],
    links: &[Link],
) -> (Spread, BTreeSet<IpAddr>) {
    let own: BTreeSet<IpAddr> = addresses.iter().map(|a| a.address).collect();
    let mut spread = Spread::new();
    let mut off_link = BTreeSet::new();
    for plan in plans.values() {
        for address in &plan.addresses {
            for peer in &plan.peers {
                if own.contains(peer) || peer.is_ipv4() != address.is_ipv4() {
                    continue;
                }
                let interface = on_link(*peer, addresses)
                    .and_then(|a| links.iter().find(|l| l.index == a.index));
                match interface {
                    Some(link) => {
                        spread
                            .entry(*address)
                            .or_default()
                            .insert((*peer, link.name.clone()));
                    }
                    None => {
                        off_link.insert(*peer);
                    }
                }
            }
        }
    }
    (spread, off_link)
}

/// `t` as an API time, to the second (as the API server keeps it).
fn time(t: SystemTime) -> Time {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
}

fn host_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

async fn release(host: &Host, addresses: &[IpAddr]) {
    if addresses.is_empty() {
        return;
    }
    let lo: Link = match host.netlink.link_by_name("lo").await {
        Ok(lo) => lo,
        Err(e) => {
            warn!(error = %e, "cannot find the loopback; BGP addresses left bound");
            return;
        }
    };
    for address in addresses {
        match host
            .netlink
            .remove_address(&lo, *address, host_prefix(*address))
            .await
        {
            Ok(_) => info!(%address, "BGP address released"),
            Err(e) => warn!(%address, error = %e, "cannot release a BGP address"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bgp::{BfdConfig, PeerConfig, SessionState, announce::Announced};

    fn peer(name: &str, address: &str, bfd: bool) -> PeerConfig {
        PeerConfig {
            bfd: bfd.then_some(BfdConfig {
                receive: Duration::from_millis(100),
                transmit: Duration::from_millis(100),
                multiplier: 3,
            }),
            ..crate::bgp::config::tests::peer(name, address)
        }
    }

    fn session(address: &str, state: BgpSessionState, reason: Option<&str>) -> SessionState {
        SessionState {
            address: address.parse().unwrap(),
            state,
            established_for: None,
            reason: reason.map(String::from),
            bfd: Some(state == BgpSessionState::Established),
            prefixes_sent: 1,
        }
    }

    fn plan(addresses: &[&str], peers: &[&str]) -> EcmpPlan {
        let ip = |a: &&str| a.parse::<IpAddr>().unwrap();
        EcmpPlan {
            key: "default/web".into(),
            addresses: addresses.iter().map(ip).collect(),
            listeners: Vec::new(),
            local_endpoint: None,
            warnings: Vec::new(),
            peers: peers.iter().map(ip).collect(),
        }
    }

    #[test]
    fn unknown_connections_go_to_the_other_nodes_on_a_subnet_of_this_one() {
        let interface = |index: u32, address: &str, prefix_len: u8| InterfaceAddress {
            index,
            address: address.parse().unwrap(),
            prefix_len,
            link_local: false,
            protocol: None,
        };
        let link = |index: u32, name: &str| Link {
            index,
            name: name.into(),
            mac: [0; 6],
            up: true,
        };
        let addresses = [
            interface(1, "127.0.0.1", 8),
            interface(1, "10.99.0.10", 32),
            interface(2, "10.77.0.2", 24),
            interface(3, "fd77::2", 64),
        ];
        let links = [link(1, "lo"), link(2, "eth0"), link(3, "eth1")];
        let plans = BTreeMap::from([(
            "default/web".to_string(),
            plan(
                &["10.99.0.10", "fd99::10"],
                // Itself, a neighbour of each family, and one behind a router.
                &["10.77.0.2", "10.77.0.3", "fd77::3", "10.88.0.5"],
            ),
        )]);
        let (spread, off_link) = spread(&plans, &addresses, &links);
        let to = |peer: &str, interface: &str| (peer.parse().unwrap(), interface.to_string());
        assert_eq!(
            spread,
            BTreeMap::from([
                (
                    "10.99.0.10".parse().unwrap(),
                    BTreeSet::from([to("10.77.0.3", "eth0")])
                ),
                (
                    "fd99::10".parse().unwrap(),
                    BTreeSet::from([to("fd77::3", "eth1")])
                ),
            ])
        );
        assert_eq!(off_link, BTreeSet::from(["10.88.0.5".parse().unwrap()]));
    }

    #[test]
    fn each_peer_gets_its_session_its_routes_and_a_stable_since() {
        let node = BgpNode {
            asn: 64512,
            peers: vec![
                peer("tor-a", "10.77.0.1", true),
                peer("tor-b", "10.77.0.9", false),
                peer("tor-v6", "fd77::1", false),
            ],
        };
        let problems = BTreeMap::from([(
            "tor-c".to_string(),
            "password: Secret buoy/x cannot be read".to_string(),
        )]);
        let seen = BgpStatus {
            announced: vec![
                Announced {
                    address: "10.99.0.10".parse().unwrap(),
                    draining: false,
                },
                Announced {
                    address: "fd99::10".parse().unwrap(),
                    draining: true,
                },
            ],
            sessions: vec![
                session("10.77.0.1", BgpSessionState::Established, None),
                session(
                    "10.77.0.9",
                    BgpSessionState::Active,
                    Some("no answer from the peer"),
                ),
            ],
            error: None,
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = peer_report(Some(&node), &problems, &seen, &BgpReport::new(), t0);
        let a = &first["tor-a"];
        assert_eq!(
            (a.state, a.bfd, a.reason.as_deref()),
            (
                BgpSessionState::Established,
                Some(BfdSessionState::Up),
                None
            )
        );
        assert_eq!(a.routes, ["10.99.0.10/32"], "IPv4 routes to an IPv4 peer");
        let b = &first["tor-b"];
        assert_eq!(
            (b.state, b.bfd),
            (BgpSessionState::Active, Some(BfdSessionState::Disabled))
        );
        assert_eq!(b.reason.as_deref(), Some("no answer from the peer"));
        let v6 = &first["tor-v6"];
        assert_eq!(
            v6.state,
            BgpSessionState::Unknown,
            "not in FRR's answer yet"
        );
        assert_eq!(
            v6.routes,
            ["fd99::10/128"],
            "a draining route is still sent"
        );
        assert_eq!(first["tor-c"].state, BgpSessionState::Idle);
        assert!(
            first["tor-c"]
                .reason
                .as_deref()
                .unwrap()
                .contains("cannot be read")
        );

        // Later, nothing changed: the same entries, `since` included (nothing to write).
        let later = peer_report(
            Some(&node),
            &problems,
            &seen,
            &first,
            t0 + Duration::from_secs(60),
        );
        assert_eq!(later, first);
        // tor-b comes up: only its `since` moves.
        let mut up = seen.clone();
        up.sessions[1] = session("10.77.0.9", BgpSessionState::Established, None);
        let t2 = t0 + Duration::from_secs(120);
        let next = peer_report(Some(&node), &problems, &up, &first, t2);
        assert_eq!(next["tor-b"].since, Some(time(t2)));
        assert_eq!(next["tor-a"].since, first["tor-a"].since);

        // FRR not answering: every configured peer Unknown with the reason.
        let down = BgpStatus {
            error: Some("FRR not running: bgpd does not answer".into()),
            sessions: vec![],
            ..seen
        };
        let r = peer_report(Some(&node), &BTreeMap::new(), &down, &next, t2);
        assert!(r.values().all(|e| e.state == BgpSessionState::Unknown));
        assert_eq!(
            r["tor-a"].reason.as_deref(),
            Some("FRR not running: bgpd does not answer")
        );
    }
}
