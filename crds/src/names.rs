//! Name patterns shared by the schema and the docs. Kubernetes' own patterns, so that the
//! API server and standalone mode accept exactly the same names.

/// RFC 1123 label (Kubernetes `DNS_LABEL`), for listener names.
pub(crate) const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// RFC 1123 subdomain (Kubernetes object names, node names).
pub(crate) const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Linux interface names: 1 to 15 bytes, no `/`, no white space (IFNAMSIZ is 16 with the NUL).
pub(crate) const INTERFACE_PATTERN: &str = r"^[A-Za-z0-9_.:@+-]{1,15}$";

/// A backend host: an IP address or a DNS name.
pub const HOST_PATTERN: &str = r"^([0-9a-fA-F:.]+|[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*)$";

/// An HTTP status code or an inclusive range of them: `200`, `200-399`.
pub const STATUS_RANGE_PATTERN: &str = r"^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$";

/// An HTTP header or cookie name (RFC 9110 token).
pub(crate) const TOKEN_PATTERN: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/// A route's host (nginx `server_name`): a DNS name, or a wildcard on its left (`*.example.com`).
pub const ROUTE_HOST_PATTERN: &str = r"^(\*\.)?[a-zA-Z0-9_]([-a-zA-Z0-9_]*[a-zA-Z0-9_])?(\.[a-zA-Z0-9_]([-a-zA-Z0-9_]*[a-zA-Z0-9_])?)*$";

/// A route's path: starts with `/`, without white space, query (`?`) or fragment (`#`).
pub const ROUTE_PATH_PATTERN: &str = r"^/[^?#\s]*$";
