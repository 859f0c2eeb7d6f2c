//! What nginx files translate to: pools, and servers with their listens.

use std::net::IpAddr;

use buoy_crds::{AccessLog, ClientSettings, ListenerProtocol, UpstreamPoolSpec};

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
    /// `proxy_protocol`: connections start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
}

/// A `server` block that proxies everything to one pool.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub(crate) at: Loc,
    pub(crate) protocol: ListenerProtocol,
    pub(crate) listens: Vec<Listen>,
    pub(crate) pool: String,
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
