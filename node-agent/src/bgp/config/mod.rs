//! What FRR should run for the BGP mode, and its rendering as one `frr.conf` for bgpd and bfdd
//! (pure). The node announces each route as a /32 or /128 to every peer of its family, tags it
//! with the peer's communities and local preference on the way out, and learns nothing back.
//! Every value that lands in the file is checked first: a name or password that FRR would read
//! as several tokens or lines could otherwise add configuration of its own.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

/// FRR's whole BGP configuration on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrrConfig {
    /// The node's autonomous system (`router bgp ASN`).
    pub asn: u32,
    /// `bgp router-id`: usually the node's IPv4 address.
    pub router_id: Ipv4Addr,
    /// The routers to peer with.
    pub peers: Vec<PeerConfig>,
    /// The addresses to announce.
    pub routes: Vec<RouteConfig>,
}

/// One BGP session, from a BGPPeer. Its Debug form hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The BGPPeer's name: FRR's route-map and BFD profile names are made from it.
    pub name: String,
    /// The router's address; its family decides which routes the session carries.
    pub address: IpAddr,
    /// The router's autonomous system.
    pub asn: u32,
    /// The router's TCP port (179 unless it listens elsewhere).
    pub port: u16,
    /// Hold time, in whole seconds: 0 (none) or at least 3 s.
    pub hold_time: Duration,
    /// Keepalive interval, in whole seconds.
    pub keepalive: Duration,
    /// TCP-MD5 password (RFC 2385).
    pub password: Option<String>,
    /// BFD on the session, with these timers.
    pub bfd: Option<BfdConfig>,
    /// Communities added to every route sent to this peer: `A:B`, large `A:B:C`, or a
    /// well-known name such as `no-export`.
    pub communities: Vec<String>,
    /// LOCAL_PREF of every route sent to this peer (iBGP peers only read it).
    pub local_pref: Option<u32>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("asn", &self.asn)
            .field("port", &self.port)
            .field("hold_time", &self.hold_time)
            .field("keepalive", &self.keepalive)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("bfd", &self.bfd)
            .field("communities", &self.communities)
            .field("local_pref", &self.local_pref)
            .finish()
    }
}

/// BFD timers of a session (a bfdd profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdConfig {
    /// The slowest rate at which we accept the peer's packets (whole milliseconds, 10 ms–60 s).
    pub receive: Duration,
    /// The fastest rate at which we send ours (whole milliseconds, 10 ms–60 s).
    pub transmit: Duration,
    /// Packets missed before the session is down (2–255).
    pub multiplier: u8,
}

/// One address announced, as a host route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteConfig {
    /// The address, announced as /32 (IPv4) or /128 (IPv6).
    pub prefix: IpAddr,
    /// Announced with the GRACEFUL_SHUTDOWN community and LOCAL_PREF 0 (RFC 8326): routers
    /// move traffic away before the route is withdrawn.
    pub graceful_shutdown: bool,
}

/// A value FRR's configuration cannot carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A BGPPeer's field: only that peer is wrong.
    #[error("BGPPeer {peer}: {problem}")]
    Peer {
        /// The peer's name.
        peer: String,
        /// What is wrong, for a condition or an Event.
        problem: String,
    },
    /// The node's own settings (ASN, router ID), or peers that collide.
    #[error("BGP configuration: {0}")]
    Node(String),
}

/// The GRACEFUL_SHUTDOWN well-known community (RFC 8326), 65535:0.
pub const GRACEFUL_SHUTDOWN: &str = "graceful-shutdown";

/// The well-known community names FRR's `set community` accepts.
const WELL_KNOWN: &[&str] = &[
    "accept-own",
    "accept-own-nexthop",
    "blackhole",
    "graceful-shutdown",
    "internet",
    "llgr-stale",
    "local-AS",
    "no-advertise",
    "no-export",
    "no-llgr",
    "no-peer",
    "route-filter-translated-v4",
    "route-filter-translated-v6",
    "route-filter-v4",
    "route-filter-v6",
];

/// The longest TCP-MD5 key Linux takes (`TCP_MD5SIG_MAXKEYLEN`).
const MAX_PASSWORD: usize = 80;

/// The inbound route-map of every session: nodes learn no route from the routers.
const DENY_ALL: &str = "buoy-in";

/// A community of a peer, as FRR takes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Community {
    /// `A:B` or a well-known name (`set community`).
    Standard(String),
    /// `A:B:C` (`set large-community`).
    Large(String),
}

fn parse_community(text: &str) -> Result<Community, String> {
    if WELL_KNOWN.contains(&text) {
        return Ok(Community::Standard(text.to_string()));
    }
    let parts: Vec<&str> = text.split(':').collect();
    let numbers = |max: u64| {
        parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u64>().is_ok_and(|n| n <= max)
        })
    };
    match parts.len() {
        2 if numbers(u64::from(u16::MAX)) => Ok(Community::Standard(text.to_string())),
        3 if numbers(u64::from(u32::MAX)) => Ok(Community::Large(text.to_string())),
        _ => Err(format!(
            "community {text:?} is neither A:B (16-bit numbers), A:B:C (32-bit numbers) nor a well-known name ({})",
            WELL_KNOWN.join(", ")
        )),
    }
}

/// Whole units of `d` (milliseconds or seconds), if `d` is a whole number of them.
fn whole(d: Duration, unit: Duration) -> Option<u64> {
    d.as_nanos()
        .is_multiple_of(unit.as_nanos())
        .then(|| (d.as_nanos() / unit.as_nanos()) as u64)
}

fn seconds(d: Duration) -> Option<u64> {
    whole(d, Duration::from_secs(1))
}

fn millis(d: Duration) -> Option<u64> {
    whole(d, Duration::from_millis(1))
}

impl PeerConfig {
    /// Checks every field FRR would read: a wrong peer can be left out and reported on its own
    /// while the others are rendered.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|problem| ConfigError::Peer {
            peer: self.name.clone(),
            problem,
        })
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 253
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(format!(
                "the name {:?} is not a DNS name (lowercase letters, digits, '-' and '.')",
                self.name
            ));
        }
        if self.asn == 0 {
            return Err("peerASN must be between 1 and 4294967295".into());
        }
        if self.address.is_unspecified() || self.address.is_multicast() {
            return Err(format!("{} cannot be a BGP peer's address", self.address));
        }
        if self.port == 0 {
            return Err("peerPort must be between 1 and 65535".into());
        }
        let hold = seconds(self.hold_time)
            .filter(|h| *h == 0 || (3..=65535).contains(h))
            .ok_or_else(|| {
                format!(
                    "holdTime {:?} must be 0 or 3 to 65535 whole seconds",
                    self.hold_time
                )
            })?;
        if !seconds(self.keepalive).is_some_and(|k| k <= 65535 && (hold == 0 || k <= hold)) {
            return Err(format!(
                "keepaliveTime {:?} must be whole seconds, at most holdTime",
                self.keepalive
            ));
        }
        if let Some(password) = &self.password {
            // FRR reads a password as one token: no whitespace, no control characters.
            if password.is_empty()
                || password.len() > MAX_PASSWORD
                || !password.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "the password must be 1 to {MAX_PASSWORD} printable ASCII characters without spaces"
                ));
            }
        }
        if let Some(bfd) = &self.bfd {
            for (field, d) in [
                ("receiveInterval", bfd.receive),
                ("transmitInterval", bfd.transmit),
            ] {
                if !millis(d).is_some_and(|ms| (10..=60_000).contains(&ms)) {
                    return Err(format!(
                        "bfd.{field} {d:?} must be 10 to 60000 whole milliseconds"
                    ));
                }
            }
            if bfd.multiplier < 2 {
                return Err("bfd.detectMultiplier must be between 2 and 255".into());
            }
        }
        for c in &self.communities {
            parse_community(c)?;
        }
        Ok(())
    }

    /// Standard communities (with well-known names) and large ones, each sorted and once.
    fn communities(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut standard, mut large) = (BTreeSet::new(), BTreeSet::new());
        for c in self
            .communities
            .iter()
            .filter_map(|c| parse_community(c).ok())
        {
            match c {
                Community::Standard(s) => standard.insert(s),
                Community::Large(l) => large.insert(l),
            };
        }
        (standard, large)
    }
}

impl FrrConfig {
    /// Checks the node's settings and every peer (the first error found).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.asn == 0 {
            return Err(ConfigError::Node(
                "the node's ASN must be between 1 and 4294967295".into(),
            ));
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::Node("the router ID cannot be 0.0.0.0".into()));
        }
        let (mut addresses, mut names) = (BTreeMap::new(), BTreeMap::new());
        for p in &self.peers {
            p.validate()?;
            if let Some(other) = addresses.insert(p.address, &p.name) {
                return Err(ConfigError::Node(format!(
                    "BGPPeers {other} and {} both peer with {}",
                    p.name, p.address
                )));
            }
            if names.insert(&p.name, ()).is_some() {
                return Err(ConfigError::Node(format!("two peers are named {}", p.name)));
            }
        }
        Ok(())
    }
}

/// The routes to announce, each address once (marked for graceful shutdown if any entry is).
fn routes(config: &FrrConfig) -> BTreeMap<IpAddr, bool> {
    let mut out = BTreeMap::new();
    for r in &config.routes {
        *out.entry(r.prefix).or_insert(false) |= r.graceful_shutdown;
    }
    out
}

fn host_prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// The two address families: FRR's name, and whether an address is in it.
const FAMILIES: [(&str, bool); 2] = [("ipv4", true), ("ipv6", false)];

/// Prefix-list of the routes in graceful shutdown, per family.
fn shutdown_list(ipv4: bool) -> &'static str {
    if ipv4 {
        "buoy-graceful-shutdown-v4"
    } else {
        "buoy-graceful-shutdown-v6"
    }
}

/// A complete frr.conf for bgpd and bfdd, the same for the same configuration (peers and
/// routes sorted), or the first value FRR could not take.
pub fn render(config: &FrrConfig) -> Result<String, ConfigError> {
    config.validate()?;
    let mut peers: Vec<&PeerConfig> = config.peers.iter().collect();
    peers.sort_by_key(|p| p.address);
    let routes = routes(config);
    // bgpd applies changed route-maps and prefix-lists (a route going into graceful
    // shutdown) after this delay: 5 s by default, and 0 would never apply them.
    let mut out = String::from(
        "! Written by buoy-agent for its BGP mode: changes made here are overwritten.\nfrr defaults datacenter\nbgp route-map delay-timer 1\n!\n",
    );
    // What the sessions name comes first: FRR warns of a route-map or profile it lacks.
    render_policy(&mut out, &peers, &routes);
    render_bfd(&mut out, &peers);
    render_router(&mut out, config, &peers, &routes);
    Ok(out)
}

/// vtysh commands that withdraw at once the routes `old` announces and `new` does not (None
/// when there are none, or the node's AS changed). frr-reload.py removes lines one vtysh run
/// each, about 40 ms a route: these go first, in one run, and leave it nothing to remove.
pub fn withdrawals(old: &FrrConfig, new: &FrrConfig) -> Option<String> {
    let (before, after) = (routes(old), routes(new));
    let gone: Vec<IpAddr> = before
        .keys()
        .filter(|r| !after.contains_key(r))
        .copied()
        .collect();
    if gone.is_empty() || old.asn != new.asn {
        return None;
    }
    let mut out = format!("router bgp {}\n", new.asn);
    for (family, ipv4) in FAMILIES {
        let family_gone: Vec<_> = gone.iter().filter(|r| r.is_ipv4() == ipv4).collect();
        if family_gone.is_empty() {
            continue;
        }
        let _ = writeln!(out, " address-family {family} unicast");
        for r in family_gone {
            let _ = writeln!(out, "  no network {}", host_prefix(*r));
        }
        out.push_str(" exit-address-family\n");
    }
    out.push_str("exit\n");
    Some(out)
}

fn render_router(
    out: &mut String,
    config: &FrrConfig,
    peers: &[&PeerConfig],
    routes: &BTreeMap<IpAddr, bool>,
) {
    let _ = writeln!(out, "router bgp {}", config.asn);
    let _ = writeln!(out, " bgp router-id {}", config.router_id);
    // The announcements are policed by our own route-maps; the /32s are not in the node's
    // RIB; and a session carries only its own family (not IPv4 on every session).
    out.push_str(" no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n no bgp network import-check\n");
    for p in peers {
        let a = p.address;
        let _ = writeln!(out, " neighbor {a} remote-as {}", p.asn);
        let _ = writeln!(out, " neighbor {a} port {}", p.port);
        let _ = writeln!(
            out,
            " neighbor {a} timers {} {}",
            p.keepalive.as_secs(),
            p.hold_time.as_secs()
        );
        if let Some(password) = &p.password {
            let _ = writeln!(out, " neighbor {a} password {password}");
        }
        if p.bfd.is_some() {
            // FRR shows both lines: with the profile's alone, frr-reload.py would remove
            // `bfd` at every reload, and the session with it.
            let _ = writeln!(
                out,
                " neighbor {a} bfd\n neighbor {a} bfd profile buoy-{}",
                p.name
            );
        }
    }
    for (family, ipv4) in FAMILIES {
        let family_peers: Vec<_> = peers
            .iter()
            .filter(|p| p.address.is_ipv4() == ipv4)
            .collect();
        let family_routes: Vec<_> = routes.keys().filter(|r| r.is_ipv4() == ipv4).collect();
        if family_peers.is_empty() && family_routes.is_empty() {
            continue;
        }
        let _ = writeln!(out, " !\n address-family {family} unicast");
        for r in family_routes {
            let _ = writeln!(out, "  network {}", host_prefix(*r));
        }
        for p in family_peers {
            let a = p.address;
            let _ = writeln!(out, "  neighbor {a} activate");
            let _ = writeln!(out, "  neighbor {a} route-map {DENY_ALL} in");
            let _ = writeln!(out, "  neighbor {a} route-map buoy-{}-out out", p.name);
        }
        out.push_str(" exit-address-family\n");
    }
    out.push_str("exit\n!\n");
}

fn render_bfd(out: &mut String, peers: &[&PeerConfig]) {
    let profiles: Vec<_> = peers
        .iter()
        .filter_map(|p| p.bfd.map(|b| (&p.name, b)))
        .collect();
    if profiles.is_empty() {
        return;
    }
    out.push_str("bfd\n");
    for (name, b) in profiles {
        let _ = writeln!(out, " profile buoy-{name}");
        let _ = writeln!(out, "  detect-multiplier {}", b.multiplier);
        let _ = writeln!(out, "  receive-interval {}", b.receive.as_millis());
        let _ = writeln!(out, "  transmit-interval {}", b.transmit.as_millis());
        out.push_str(" exit\n !\n");
    }
    out.push_str("exit\n!\n");
}

/// How the routes of one family are announced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    None,
    /// Those in the family's prefix-list are in graceful shutdown.
    Some,
    /// All are: no prefix-list (FRR takes a long list slowly: zebra gets it too, about 20 ms
    /// an entry, and frr-reload.py removes entries one vtysh run each).
    All,
}

fn render_policy(out: &mut String, peers: &[&PeerConfig], routes: &BTreeMap<IpAddr, bool>) {
    let mut drain = [Drain::None; 2];
    for (i, (_, ipv4)) in FAMILIES.iter().enumerate() {
        let family: Vec<_> = routes
            .iter()
            .filter(|(r, _)| r.is_ipv4() == *ipv4)
            .collect();
        let shut: Vec<_> = family.iter().filter(|(_, shut)| **shut).collect();
        drain[i] = match shut.len() {
            0 => Drain::None,
            n if n == family.len() => Drain::All,
            _ => Drain::Some,
        };
        if drain[i] != Drain::Some {
            continue;
        }
        let keyword = if *ipv4 { "ip" } else { "ipv6" };
        for (n, (prefix, _)) in shut.iter().enumerate() {
            let _ = writeln!(
                out,
                "{keyword} prefix-list {} seq {} permit {}",
                shutdown_list(*ipv4),
                (n + 1) * 5,
                host_prefix(**prefix)
            );
        }
    }
    if drain.contains(&Drain::Some) {
        out.push_str("!\n");
    }
    let _ = writeln!(out, "route-map {DENY_ALL} deny 10\nexit\n!");
    for p in peers {
        let ipv4 = p.address.is_ipv4();
        let (standard, large) = p.communities();
        let name = format!("buoy-{}-out", p.name);
        let family_drain = drain[usize::from(!ipv4)];
        if family_drain != Drain::None {
            let mut with_shutdown = standard.clone();
            with_shutdown.insert(GRACEFUL_SHUTDOWN.to_string());
            let _ = writeln!(out, "route-map {name} permit 10");
            if family_drain == Drain::Some {
                let keyword = if ipv4 { "ip" } else { "ipv6" };
                let _ = writeln!(
                    out,
                    " match {keyword} address prefix-list {}",
                    shutdown_list(ipv4)
                );
            }
            set_lines(out, &with_shutdown, &large, Some(0));
            out.push_str("exit\n!\n");
        }
        let _ = writeln!(out, "route-map {name} permit 20");
        set_lines(out, &standard, &large, p.local_pref);
        out.push_str("exit\n!\n");
    }
}

fn set_lines(
    out: &mut String,
    standard: &BTreeSet<String>,
    large: &BTreeSet<String>,
    local_pref: Option<u32>,
) {
    if !standard.is_empty() {
        let list: Vec<&str> = standard.iter().map(String::as_str).collect();
        let _ = writeln!(out, " set community {} additive", list.join(" "));
    }
    if !large.is_empty() {
        let list: Vec<&str> = large.iter().map(String::as_str).collect();
        let _ = writeln!(out, " set large-community {} additive", list.join(" "));
    }
    if let Some(pref) = local_pref {
        let _ = writeln!(out, " set local-preference {pref}");
    }
}

#[cfg(test)]
pub(crate) mod tests;
