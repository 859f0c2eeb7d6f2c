//! What nginx files translate to: pools, and servers with their listens and TLS.

use std::{net::IpAddr, path::PathBuf};

use buoy_crds::{
    AccessLog, ClientSettings, ListenerProtocol, PathMatch, TlsVersion, UpstreamPoolSpec,
};

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
    /// `ssl`: TLS on this port (for every server on it, as in nginx).
    pub(crate) ssl: bool,
    /// `http2` (the parameter nginx 1.25.1 deprecated for `http2 on`): HTTP/2 on this port.
    pub(crate) http2: bool,
}

/// A certificate and its key (`ssl_certificate`, `ssl_certificate_key`), their paths resolved
/// as nginx does (against the directory of the main nginx.conf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertificatePair {
    pub(crate) certificate: PathBuf,
    pub(crate) key: PathBuf,
    /// The `ssl_certificate` directive.
    pub(crate) at: Loc,
}

/// The TLS settings of an HTTP server (`ssl_certificate`, `ssl_protocols`, `http2`), with
/// those inherited from `http`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ServerTls {
    pub(crate) certificates: Vec<CertificatePair>,
    /// From `ssl_protocols`, where it is written.
    pub(crate) min_version: Option<(TlsVersion, Loc)>,
    /// `http2 on` / `off`, where it is written.
    pub(crate) http2: Option<(bool, Loc)>,
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
    pub(crate) tls: ServerTls,
}

impl ServerTls {
    /// The same settings (wherever they are written).
    pub(crate) fn same(&self, other: &ServerTls) -> bool {
        let pairs = |t: &ServerTls| -> Vec<(PathBuf, PathBuf)> {
            t.certificates
                .iter()
                .map(|c| (c.certificate.clone(), c.key.clone()))
                .collect()
        };
        pairs(self) == pairs(other)
            && self.min_version.as_ref().map(|v| v.0) == other.min_version.as_ref().map(|v| v.0)
            && self.http2.as_ref().map(|v| v.0) == other.http2.as_ref().map(|v| v.0)
    }
}

/// An UpstreamPool to be.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) spec: UpstreamPoolSpec,
    pub(crate) comments: Vec<String>,
    pub(crate) at: Loc,
    /// `proxy_ssl_trusted_certificate` (resolved), for `spec.tls.caSecretName`.
    pub(crate) ca: Option<(PathBuf, Loc)>,
}

/// What nginx files translate to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    pub(crate) pools: Vec<Pool>,
    pub(crate) servers: Vec<Server>,
}
