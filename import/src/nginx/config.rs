//! What nginx files translate to: pools, and servers with their listens.

use std::net::IpAddr;

use buoy_crds::{AccessLog, ClientSettings, ListenerProtocol, PathMatch, UpstreamPoolSpec};

use crate::diagnostics::Loc;

/// The address a `listen` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenAddress {
    /// `listen 80;` (IPv4) or `listen [::]:80;` (IPv6): every address of that family.
    Any { ipv6: bool },
    /// `listen ADDRESS:PORT;`: that address only.
    Ip(IpAddr),
}

/// A `listen`.
#[derive(Clone, Debug)]
pub(crate) struct Listen {
    pub(crate) at: Loc,
    pub(crate) address: ListenAddress,
    pub(crate) port: u16,
    /// `listen … udp` (stream servers): a UDP listener.
    pub(crate) udp: bool,
    /// As written, for comments.
    pub(crate) text: String,
    /// `default_server`: the server of the port's requests that no `server_name` takes.
    pub(crate) default_server: bool,
    /// `proxy_protocol`: connections start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
}

/// A `location` other than `/` with a `proxy_pass` (`= /x` exact, `/x` and `^~ /x` prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) at: Loc,
    pub(crate) kind: PathMatch,
    pub(crate) path: String,
    pub(crate) pool: String,
}

/// A `server` block: its names, the pool of its `location /` and its other locations.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub(crate) at: Loc,
    pub(crate) protocol: ListenerProtocol,
    pub(crate) listens: Vec<Listen>,
    /// `server_name`s as routes' hosts (lower case; `.example.com` as two names).
    pub(crate) names: Vec<String>,
    /// The pool of `location /` (stream: of the server).
    pub(crate) pool: Option<String>,
    pub(crate) locations: Vec<Location>,
    pub(crate) client: Option<ClientSettings>,
    pub(crate) access_log: Option<AccessLog>,
}

/// An UpstreamPool to be.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) spec: UpstreamPoolSpec,
    pub(crate) comments: Vec<String>,
    pub(crate) at: Loc,
}

/// What nginx files translate to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    pub(crate) pools: Vec<Pool>,
    pub(crate) servers: Vec<Server>,
}
