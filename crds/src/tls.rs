//! TLS of an HTTPS listener (nginx's `listen … ssl`, `ssl_certificate`, `ssl_protocols`): the
//! API types. Certificates come from `kubernetes.io/tls` Secrets (`tls.crt`, `tls.key`), in the
//! VirtualIP's namespace in a cluster and among the files in standalone mode.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::DNS_SUBDOMAIN_PATTERN;

/// The TLS settings of an HTTPS listener.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// Certificates, each a `kubernetes.io/tls` Secret. A client's SNI name picks the
    /// certificate whose names (subject alternative names, else the common name) match it
    /// exactly, else by wildcard (`*.example.com`); a client without SNI, or with a name no
    /// certificate has, gets the first one (nginx: the first `server`'s certificate). A Secret
    /// that is missing, not PEM, whose key does not match or that has expired is reported on
    /// the VirtualIP; the listener serves with the others.
    #[schemars(length(min = 1, max = 64))]
    pub certificates: Vec<CertificateRef>,
    /// The lowest TLS version accepted: `"1.2"` (the default; nginx's since 1.23.4) or `"1.3"`.
    /// Older versions are never offered. Cipher suites are rustls's: only AEAD suites with
    /// forward secrecy.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Protocols offered by ALPN, in order of preference: `h2` (HTTP/2) and `http/1.1`
    /// (default both, `h2` first). A client that offers none of them speaks HTTP/1.1.
    #[serde(default = "default_alpn")]
    #[schemars(length(min = 1, max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub alpn: Vec<AlpnProtocol>,
}

/// A `kubernetes.io/tls` Secret holding a certificate chain (`tls.crt`) and its key (`tls.key`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRef {
    /// The Secret's name, in the VirtualIP's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
}

/// A TLS protocol version.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// An ALPN protocol name.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum AlpnProtocol {
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "http/1.1")]
    Http11,
}

impl AlpnProtocol {
    /// The protocol's name on the wire.
    pub fn wire(self) -> &'static [u8] {
        match self {
            AlpnProtocol::H2 => b"h2",
            AlpnProtocol::Http11 => b"http/1.1",
        }
    }
}

fn default_alpn() -> Vec<AlpnProtocol> {
    vec![AlpnProtocol::H2, AlpnProtocol::Http11]
}

/// The keys of a `kubernetes.io/tls` Secret.
pub mod secret_keys {
    /// The certificate chain, PEM, leaf first.
    pub const CERTIFICATE: &str = "tls.crt";
    /// The private key, PEM.
    pub const KEY: &str = "tls.key";
    /// The CA certificates of an UpstreamPool's `tls.caSecretName`, PEM (cert-manager's key).
    pub const CA_CERTIFICATE: &str = "ca.crt";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_wire_names() {
        let t: ListenerTls =
            serde_json::from_value(serde_json::json!({"certificates": [{"secretName": "a"}]}))
                .unwrap();
        assert_eq!(t.min_version, TlsVersion::V1_2);
        assert_eq!(t.alpn, vec![AlpnProtocol::H2, AlpnProtocol::Http11]);
        let t: ListenerTls = serde_json::from_value(serde_json::json!({
            "certificates": [{"secretName": "a"}], "minVersion": "1.3", "alpn": ["http/1.1"]
        }))
        .unwrap();
        assert_eq!(
            (t.min_version, t.alpn),
            (TlsVersion::V1_3, vec![AlpnProtocol::Http11])
        );
        assert!(
            serde_json::from_value::<ListenerTls>(serde_json::json!({
                "certificates": [{"secretName": "a"}], "minVersion": "1.1"
            }))
            .is_err()
        );
    }
}
