//! TLS to the backends of an UpstreamPool (nginx's `proxy_pass https://`, `proxy_ssl_name`,
//! `proxy_ssl_trusted_certificate`, `proxy_ssl_verify`): the API type.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::DNS_SUBDOMAIN_PATTERN;

/// TLS to the pool's backends: connections and active health checks are encrypted, and the
/// backend's certificate is verified unless `insecureSkipVerify`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTls {
    /// The name sent by SNI and verified in the backend's certificate (nginx:
    /// `proxy_ssl_name` with `proxy_ssl_server_name on`); default: the backend's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub server_name: Option<String>,
    /// A Secret in the pool's namespace whose `ca.crt` holds the PEM certificates that the
    /// backends' certificates must chain to (nginx: `proxy_ssl_trusted_certificate`); default:
    /// the system's trusted roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub ca_secret_name: Option<String>,
    /// Accept any certificate from the backends (nginx's default, `proxy_ssl_verify off`): the
    /// connection is encrypted but not authenticated. Default false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The key of the CA certificates in the Secret that `caSecretName` names.
pub const CA_CERTIFICATE_KEY: &str = "ca.crt";
