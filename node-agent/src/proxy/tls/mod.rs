//! TLS termination of HTTPS listeners (and TLS to backends: [`client`]), on pingora's rustls acceptor: certificates from Secrets
//! chosen by SNI ([`sni`]), the versions and ALPN protocols of the listener's `tls`, session
//! resumption by tickets and a session cache. The crypto provider is aws-lc-rs (faster full
//! handshakes than ring or OpenSSL 3; see docs/proxy.md).

use std::{sync::Arc, time::SystemTime};

use buoy_crds::{AlpnProtocol, TlsVersion};
use pingora_core::listeners::tls::Acceptor;
use rustls::{ServerConfig, crypto::CryptoProvider, server::ServerSessionMemoryCache};

pub mod certificate;
pub mod client;
mod sni;

pub use certificate::{Certificate, CertificateError};
pub use client::{BackendTls, CaError, Verify};
use sni::{Certificates, Resolver};

/// What an HTTPS listener serves with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The usable certificates, in the configuration's order (the first is the default).
    pub certificates: Vec<Certificate>,
    /// The lowest version accepted.
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<AlpnProtocol>,
}

impl TlsConfig {
    /// The same settings, whatever the certificates: a change of certificates alone is made in
    /// place ([`ServerTls::rotate`]), without reopening the listener.
    pub(crate) fn same_settings(&self, other: &TlsConfig) -> bool {
        self.min_version == other.min_version && self.alpn == other.alpn
    }

    /// Each certificate's problem at `now` (expired, or expiring soon).
    pub(crate) fn expiry_problems(&self, now: SystemTime) -> impl Iterator<Item = String> + '_ {
        self.certificates
            .iter()
            .filter_map(move |c| c.expiry_problem(now))
    }
}

/// The TLS side of a running HTTPS listener.
pub(crate) struct ServerTls {
    pub acceptor: Acceptor,
    resolver: Arc<Resolver>,
}

/// Sessions remembered for resumption by ID (clients without tickets); tickets need no memory.
const SESSION_CACHE: usize = 10_240;

impl ServerTls {
    /// An acceptor for `config`.
    pub(crate) fn new(config: &TlsConfig) -> Result<ServerTls, rustls::Error> {
        let resolver = Arc::new(Resolver::default());
        resolver.replace(Certificates::new(&config.certificates));
        let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // A connection whose client chose `h2` is served as HTTP/2 (see `proxy::http::h2`).
        server.alpn_protocols = config.alpn.iter().map(|p| p.wire().to_vec()).collect();
        server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(ServerTls {
            acceptor: Acceptor::from_server_config(Arc::new(server)),
            resolver,
        })
    }

    /// Handshakes from now on use `certificates`; connections already up keep theirs.
    pub(crate) fn rotate(&self, certificates: &[Certificate]) {
        self.resolver.replace(Certificates::new(certificates));
    }
}

/// Makes [`provider`] the process's default, for the TLS clients built without one (kube-rs's):
/// with two providers compiled in (pingora's ring, our aws-lc-rs), rustls would not choose.
/// Call before any client is built.
pub fn install_provider() {
    let _ = CryptoProvider::install_default((*provider()).clone());
}

/// The crypto provider of every TLS connection Buoy makes or takes.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
