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
        let server = server_config(config, resolver.clone())?;
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

/// The suites an HTTPS listener offers, in its order of preference: Mozilla's "intermediate"
/// order, AES-128-GCM with SHA-256 first (the cheapest key schedule where SHA-256 is in
/// hardware, as on current x86 and Arm, and the suite every TLS 1.3 client must implement),
/// then AES-256-GCM, then ChaCha20-Poly1305. All of them are rustls's defaults; only the order
/// differs.
const SERVER_SUITES: [rustls::SupportedCipherSuite; 9] = {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    [
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
};

/// [`provider`] with the listeners' suite order ([`SERVER_SUITES`]).
fn server_provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                cipher_suites: SERVER_SUITES.to_vec(),
                ..(*provider()).clone()
            })
        })
        .clone()
}

/// The rustls configuration of a listener with `config`, its certificates from `resolver`.
fn server_config(
    config: &TlsConfig,
    resolver: Arc<Resolver>,
) -> Result<ServerConfig, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut server = ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // A connection whose client chose `h2` is served as HTTP/2 (see `proxy::http::h2`).
    server.alpn_protocols = config.alpn.iter().map(|p| p.wire().to_vec()).collect();
    // The server's order, not the client's: OpenSSL clients ask for AES-256/SHA-384 first,
    // whose key schedule hashes with SHA-512, which x86 CPUs do not accelerate (a fifth of a
    // handshake's CPU); AES-128/SHA-256 runs on the SHA extensions (see `SERVER_SUITES`).
    server.ignore_client_order = true;
    server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(server)
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

#[cfg(test)]
mod tests {
    use rustls::{ClientConfig, ClientConnection, ServerConnection, pki_types::ServerName};

    use super::{certificate::tests::self_signed, *};
    use crate::probe::AnyCertificate;

    /// A handshake in memory between a listener with `min_version` and a rustls client that
    /// prefers `client_suites` in that order (aws-lc-rs's default: AES-256 first, as OpenSSL);
    /// the suite and version chosen.
    fn handshake(
        min_version: TlsVersion,
        client_suites: Vec<rustls::SupportedCipherSuite>,
        client_versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (rustls::SupportedCipherSuite, rustls::ProtocolVersion) {
        let (crt, key) = self_signed(&["web.example"]);
        let config = TlsConfig {
            certificates: vec![Certificate::parse("ns/web", &crt, &key).unwrap()],
            min_version,
            alpn: vec![AlpnProtocol::Http11],
        };
        let resolver = Arc::new(Resolver::default());
        resolver.replace(Certificates::new(&config.certificates));
        let server = Arc::new(server_config(&config, resolver).unwrap());
        let client_provider = Arc::new(CryptoProvider {
            cipher_suites: client_suites,
            ..(*provider()).clone()
        });
        let client = ClientConfig::builder_with_provider(client_provider.clone())
            .with_protocol_versions(client_versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(client_provider)))
            .with_no_client_auth();
        let name = ServerName::try_from("web.example").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!s.is_handshaking(), "handshake incomplete");
        (
            s.negotiated_cipher_suite().unwrap(),
            s.protocol_version().unwrap(),
        )
    }

    #[test]
    fn the_server_orders_the_suites() {
        use rustls::crypto::aws_lc_rs::{DEFAULT_CIPHER_SUITES, cipher_suite::*};
        let all = DEFAULT_CIPHER_SUITES.to_vec();
        let (suite, version) = handshake(TlsVersion::V1_2, all.clone(), &[&rustls::version::TLS13]);
        assert_eq!(
            (suite.suite(), version),
            (
                TLS13_AES_128_GCM_SHA256.suite(),
                rustls::ProtocolVersion::TLSv1_3
            ),
            "a client that prefers AES-256 gets AES-128 with SHA-256"
        );
        let (suite, _) = handshake(TlsVersion::V1_2, all, &[&rustls::version::TLS12]);
        assert_eq!(
            suite.suite(),
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite(),
            "the same in TLS 1.2"
        );
        let (suite, _) = handshake(
            TlsVersion::V1_3,
            vec![TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_256_GCM_SHA384],
            &[&rustls::version::TLS13],
        );
        assert_eq!(
            suite.suite(),
            TLS13_AES_256_GCM_SHA384.suite(),
            "without AES-128, the next in the server's order"
        );
        // Every suite of rustls's defaults stays offered: only the order differs.
        let mut ours: Vec<_> = SERVER_SUITES.iter().map(|s| s.suite()).collect();
        let mut defaults: Vec<_> = DEFAULT_CIPHER_SUITES.iter().map(|s| s.suite()).collect();
        ours.sort_by_key(|s| u16::from(*s));
        defaults.sort_by_key(|s| u16::from(*s));
        assert_eq!(ours, defaults);
    }
}
