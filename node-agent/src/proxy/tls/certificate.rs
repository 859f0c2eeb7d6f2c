//! A certificate of an HTTPS listener, read from a `kubernetes.io/tls` Secret's PEM (`tls.crt`:
//! the chain, leaf first; `tls.key`: its key) and checked before it is served: PEM that parses,
//! a key that matches the leaf. Pure: the plan reads Secrets, this turns their bytes into what
//! the handshake needs, and says what is wrong in words for the VirtualIP's status.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};

/// Why a Secret's certificate cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    /// `tls.crt` has no PEM certificate.
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    /// `tls.crt` is not valid PEM or DER.
    #[error("tls.crt is not a valid certificate: {0}")]
    BadCertificate(String),
    /// `tls.key` has no PEM private key.
    #[error("tls.key holds no PEM private key")]
    NoKey,
    /// `tls.key` is of a kind the TLS library cannot sign with.
    #[error("tls.key cannot be used: {0}")]
    BadKey(String),
    /// The key is not the leaf certificate's.
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
}

/// A certificate ready to serve.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// The Secret it came from, `namespace/name`.
    pub secret: String,
    /// The names it is valid for, lower case: DNS subject alternative names, else the subject's
    /// common name; wildcards as `*.example.com`.
    pub names: Vec<String>,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
    /// The chain and signing key, as the handshake uses them.
    pub(crate) key: Arc<CertifiedKey>,
    /// Of the PEM bytes: two certificates are the same when their Secrets' bytes are.
    digest: u64,
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret && self.digest == other.digest
    }
}

impl Eq for Certificate {}

impl Certificate {
    /// Reads and checks the PEM of Secret `secret` (`namespace/name`).
    pub fn parse(
        secret: &str,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Certificate, CertificateError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertificateError::BadCertificate(e.to_string()))?;
        let leaf = chain.first().ok_or(CertificateError::NoCertificate)?;
        let (names, not_after) = names_and_expiry(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => CertificateError::NoKey,
            e => CertificateError::BadKey(e.to_string()),
        })?;
        let provider = super::provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertificateError::BadKey(e.to_string()))?;
        let key = CertifiedKey::new(chain, signing);
        match key.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => return Err(CertificateError::KeyMismatch),
        }
        let mut h = DefaultHasher::new();
        (chain_pem, key_pem).hash(&mut h);
        Ok(Certificate {
            secret: secret.to_string(),
            names,
            not_after,
            key: Arc::new(key),
            digest: h.finish(),
        })
    }

    /// What the VirtualIP's status should say of it at `now`: expired, or expiring within
    /// [`EXPIRY_WARNING`] (cert-manager renews 30 days ahead: one still this close was not).
    pub fn expiry_problem(&self, now: SystemTime) -> Option<String> {
        match self.not_after.duration_since(now) {
            Err(_) => Some(format!("certificate of Secret {} has expired", self.secret)),
            Ok(left) if left < EXPIRY_WARNING => Some(format!(
                "certificate of Secret {} expires in {} days",
                self.secret,
                left.as_secs() / 86_400
            )),
            Ok(_) => None,
        }
    }
}

/// A certificate this close to its end is reported on the VirtualIP (and becomes an Event).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// The leaf's DNS names and `notAfter`.
fn names_and_expiry(
    leaf: &CertificateDer<'_>,
) -> Result<(Vec<String>, SystemTime), CertificateError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| CertificateError::BadCertificate(e.to_string()))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let not_after = cert.validity().not_after.timestamp();
    let not_after =
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(not_after).unwrap_or(0));
    Ok((names, not_after))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed ECDSA P-256 certificate for `names`, valid for 30 days, and its key, PEM
    /// (the tests' openssl helper).
    pub(crate) fn self_signed(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = buoy_tests::tls::certificate(dir.path(), "c", names);
        (std::fs::read(crt).unwrap(), std::fs::read(key).unwrap())
    }

    #[test]
    fn names_expiry_and_what_is_wrong() {
        let (crt, key) = self_signed(&["www.example.com", "*.example.org"]);
        let c = Certificate::parse("default/web", &crt, &key).unwrap();
        assert_eq!(c.names, ["www.example.com", "*.example.org"]);
        let now = SystemTime::now();
        assert!(c.not_after > now + Duration::from_secs(29 * 86_400));
        assert_eq!(c.expiry_problem(now), None);
        let later = now + Duration::from_secs(20 * 86_400);
        assert!(
            c.expiry_problem(later).unwrap().contains("expires in"),
            "{:?}",
            c.expiry_problem(later)
        );
        let past = now + Duration::from_secs(31 * 86_400);
        assert!(c.expiry_problem(past).unwrap().contains("has expired"));

        let (_, other_key) = self_signed(&["a.example"]);
        assert_eq!(
            Certificate::parse("default/web", &crt, &other_key).unwrap_err(),
            CertificateError::KeyMismatch
        );
        assert_eq!(
            Certificate::parse("default/web", b"not pem", &key).unwrap_err(),
            CertificateError::NoCertificate
        );
        assert_eq!(
            Certificate::parse("default/web", &crt, b"").unwrap_err(),
            CertificateError::NoKey
        );
        assert!(matches!(
            Certificate::parse(
                "default/web",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                &key
            ),
            Err(CertificateError::BadCertificate(_))
        ));
        assert_eq!(
            Certificate::parse("default/web", &crt, &key).unwrap(),
            c,
            "same bytes"
        );
    }
}
