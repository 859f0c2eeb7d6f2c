//! TLS to backends (an UpstreamPool's `tls`, nginx's `proxy_pass https://`): what a pool
//! verifies backend certificates with ([`BackendTls`], part of the pool's configuration, built
//! by the plan from its Secret), and the client side of the handshake ([`Connector`], one per
//! pool configuration, on pingora's rustls streams). Only `http/1.1` is offered by ALPN, and
//! sessions are resumed (rustls's client session cache, one per connector).

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, OnceLock},
};

use pingora_core::protocols::tls::{TlsStream, client::handshake};
use pingora_error::{Error, ErrorType};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

use crate::{probe::AnyCertificate, proxy::buffered::Buffered};

/// How backend certificates are verified.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verify {
    /// Against the host's CA certificates (`/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`).
    SystemRoots,
    /// Against these CA certificates (DER) of the pool's `caSecretName`.
    Ca(Vec<CertificateDer<'static>>),
    /// Not at all (`insecureSkipVerify`): the handshake still checks that the backend holds the
    /// key of the certificate it presents.
    Insecure,
}

/// A pool's TLS to its backends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendTls {
    /// The name sent by SNI and verified for every backend, if the pool sets one.
    pub server_name: Option<String>,
    /// How certificates are verified.
    pub verify: Verify,
}

/// Why a Secret's `ca.crt` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaError {
    /// Not PEM.
    #[error("ca.crt is not valid PEM: {0}")]
    BadPem(String),
    /// PEM without a certificate that can be a trust anchor.
    #[error("ca.crt holds no usable CA certificate")]
    NoCertificate,
}

impl Verify {
    /// The CA certificates of a `ca.crt` (PEM, one or more certificates).
    pub fn ca_from_pem(pem: &[u8]) -> Result<Verify, CaError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::BadPem(e.to_string()))?;
        let mut store = RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(certs.iter().cloned());
        if added == 0 {
            return Err(CaError::NoCertificate);
        }
        Ok(Verify::Ca(certs))
    }
}

/// The TLS client of one pool configuration: its rustls configuration (and so its session
/// cache), built once when the pool's configuration changes.
pub(crate) struct Connector {
    tls: pingora_core::tls::TlsConnector,
    /// Of the settings: connections made with other settings are never reused for these.
    digest: u64,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("digest", &self.digest)
            .finish()
    }
}

/// The host's CA certificates, read once (an update of them takes a restart, as for nginx).
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_string(), |e| e.to_string());
                return Err(format!(
                    "no CA certificates on the host ({why}): install ca-certificates, or set caSecretName"
                ));
            }
            Ok(Arc::new(store))
        })
        .clone()
}

impl Connector {
    /// The connector for `config`; `Err` says why it cannot be had (the host has no CA
    /// certificates, rustls refuses the settings).
    pub(crate) fn new(config: &BackendTls) -> Result<Connector, String> {
        let provider = super::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut client = match &config.verify {
            Verify::SystemRoots => builder
                .with_root_certificates(system_roots()?)
                .with_no_client_auth(),
            Verify::Ca(certs) => {
                let mut store = RootCertStore::empty();
                store.add_parsable_certificates(certs.iter().cloned());
                builder.with_root_certificates(store).with_no_client_auth()
            }
            Verify::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        };
        // The backend speaks HTTP/1.1 to us whatever it offers (TCP pools: the ALPN is the
        // same, and a backend that wants none ignores it).
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut h = DefaultHasher::new();
        config.hash(&mut h);
        Ok(Connector {
            tls: Arc::new(client).into(),
            digest: h.finish(),
        })
    }

    /// Identifies connections to `name` made by this connector's settings (never 0, which
    /// stands for plain connections).
    pub(crate) fn key(&self, name: &str) -> u64 {
        let mut h = DefaultHasher::new();
        (self.digest, name).hash(&mut h);
        h.finish().max(1)
    }

    /// The TLS handshake over `tcp` for `name` (SNI, and the name verified): a failure is a
    /// `TLSHandshakeFailure` whose context says why, in rustls's words.
    pub(crate) async fn handshake(
        &self,
        name: &str,
        tcp: Buffered,
    ) -> Result<TlsStream<Buffered>, Box<Error>> {
        handshake(&self.tls, name, tcp).await.map_err(|e| {
            Error::explain(
                ErrorType::TLSHandshakeFailure,
                format!("TLS handshake with {name} failed: {}", reason(&e)),
            )
        })
    }
}

/// rustls's reason in pingora's handshake error, whose context reads
/// `TLS connect() failed: … cause: REASON, SNI: NAME` (the error keeps no cause to read it
/// from); the whole context if it does not.
fn reason(e: &Error) -> String {
    let context = e.context.as_ref().map(|c| c.as_str()).unwrap_or_default();
    let tail = context
        .rsplit_once("cause: ")
        .map_or(context, |(_, tail)| tail);
    let reason = tail.rsplit_once(", SNI: ").map_or(tail, |(r, _)| r).trim();
    if reason.is_empty() {
        e.etype().as_str().to_string()
    } else {
        reason.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_pem_is_checked() {
        assert!(matches!(
            Verify::ca_from_pem(b"not pem"),
            Err(CaError::NoCertificate)
        ));
        assert!(matches!(
            Verify::ca_from_pem(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            Err(CaError::BadPem(_))
        ));
    }

    #[test]
    fn the_reason_is_rustls_s() {
        let e = Error::explain(
            ErrorType::TLSHandshakeFailure,
            "TLS connect() failed:  TLSHandshakeFailure context: tls connect error cause: invalid peer certificate: UnknownIssuer, SNI: backend.test",
        );
        assert_eq!(reason(&e), "invalid peer certificate: UnknownIssuer");
        let e = Error::explain(ErrorType::TLSHandshakeFailure, "something else");
        assert_eq!(reason(&e), "something else");
    }

    #[test]
    fn keys_differ_by_settings_and_name() {
        let a = Connector::new(&BackendTls {
            server_name: None,
            verify: Verify::Insecure,
        })
        .unwrap();
        let b = Connector::new(&BackendTls {
            server_name: Some("x".into()),
            verify: Verify::Insecure,
        })
        .unwrap();
        assert_ne!(a.key("n"), b.key("n"));
        assert_ne!(a.key("n"), a.key("m"));
        assert_ne!(a.key("n"), 0);
    }
}
