//! The nginx directives that have no translation, and why: every one is reported with its
//! reason, none is dropped silently.

use super::parse::Directive;
use crate::diagnostics::Warnings;

/// Warns that `d` is not translated, with the reason for its kind.
pub(crate) fn untranslated(warnings: &mut Warnings, d: &Directive) {
    if let Some(why) = tls(&d.name) {
        warnings.add(&d.at, &d.name, why);
        return;
    }
    let why = match d.name.as_str() {
        "worker_processes" => {
            "the agent's proxy threads are set with `buoy-agent --threads` (default: one per core)"
        }
        "user"
        | "pid"
        | "daemon"
        | "master_process"
        | "worker_rlimit_nofile"
        | "worker_cpu_affinity"
        | "worker_priority"
        | "load_module"
        | "env"
        | "pcre_jit"
        | "thread_pool" => {
            "a setting of the nginx process; the agent runs as a DaemonSet or under systemd"
        }
        "use" | "multi_accept" | "accept_mutex" => "the agent's event loop needs no tuning",
        "default_type"
        | "types"
        | "sendfile"
        | "tcp_nopush"
        | "root"
        | "index"
        | "autoindex"
        | "try_files"
        | "alias"
        | "charset"
        | "etag"
        | "expires"
        | "open_file_cache"
        | "types_hash_max_size"
        | "aio"
        | "directio" => {
            "serves files, which a proxy does not; Buoy passes the backend's Content-Type through"
        }
        "error_log" | "log_not_found" | "rewrite_log" => {
            "the agent logs to stderr and exports request counters on /metrics"
        }
        "log_format" => {
            "the access log's formats are nginx's combined and JSON (listeners[].accessLog.format)"
        }
        "server_names_hash_bucket_size" | "server_names_hash_max_size" => {
            "a table size of nginx's; Buoy's routes need no tuning"
        }
        "server_tokens" => "Buoy adds no Server header",
        "tcp_nodelay" => "Buoy sets TCP_NODELAY itself",
        n if n.starts_with("gzip") => {
            "Buoy does not compress responses; the backend's encoding passes through"
        }
        "return"
        | "rewrite"
        | "if"
        | "set"
        | "allow"
        | "deny"
        | "auth_basic"
        | "auth_basic_user_file"
        | "add_header"
        | "error_page"
        | "limit_except" => "Buoy does not rewrite, filter or answer requests itself",
        n if n.starts_with("limit_") => {
            "Buoy has no rate or connection limits per key (listeners[].client.maxConnections bounds a listener)"
        }
        "proxy_protocol_timeout" => {
            "the PROXY header must arrive within the listener's client.headerTimeout (TCP: client.idleTimeout)"
        }
        n if n.starts_with("proxy_cache") => "Buoy does not cache",
        n if n.starts_with("proxy_") => "Buoy has no equivalent of this proxy setting",
        "map" | "geo" | "split_clients" => "variables do not exist in Buoy",
        "mail" => "Buoy does not proxy mail protocols",
        "resolver" | "resolver_timeout" => {
            "backend host names are resolved when the configuration is loaded"
        }
        n if n.starts_with("http2_") => {
            "Buoy's HTTP/2 limits are nginx's defaults (128 concurrent streams) and the listener's client settings"
        }
        "keepalive_requests" => "Buoy does not limit requests per client connection",
        "set_real_ip_from" | "real_ip_header" | "real_ip_recursive" => {
            "with `listen … proxy_protocol` (listeners[].proxyProtocol) Buoy takes the client address from the PROXY header, from anyone; it reads no other source of it"
        }
        _ => "Buoy has no equivalent",
    };
    warnings.add(&d.at, &d.name, why);
}

/// Why a TLS directive (`ssl_*`, `proxy_ssl*`) is not translated, and what Buoy does instead;
/// None for another directive.
fn tls(name: &str) -> Option<&'static str> {
    Some(match name {
        "ssl_ciphers"
        | "ssl_prefer_server_ciphers"
        | "ssl_ecdh_curve"
        | "ssl_dhparam"
        | "ssl_conf_command" => {
            "Buoy's TLS is rustls's: only AEAD cipher suites with forward secrecy (ECDHE), in the server's order of preference, and rustls's key exchange groups"
        }
        "ssl_session_cache"
        | "ssl_session_timeout"
        | "ssl_session_tickets"
        | "ssl_session_ticket_key" => {
            "Buoy always resumes TLS sessions: tickets (keys of its own, rotated) and a session cache are on"
        }
        "ssl_stapling"
        | "ssl_stapling_verify"
        | "ssl_stapling_file"
        | "ssl_stapling_responder"
        | "ssl_trusted_certificate" => "Buoy does not staple OCSP responses",
        "ssl_client_certificate" | "ssl_verify_client" | "ssl_verify_depth" | "ssl_crl" => {
            "Buoy does not ask clients for certificates"
        }
        "http3" | "http3_hq" | "http3_max_concurrent_streams" | "http3_stream_buffer_size" => {
            "Buoy does not offer HTTP/3 (QUIC): clients use HTTP/2 or HTTP/1.1 over TLS"
        }
        n if n.starts_with("quic_") => {
            "Buoy does not offer HTTP/3 (QUIC): clients use HTTP/2 or HTTP/1.1 over TLS"
        }
        "ssl_early_data" => "Buoy accepts no TLS 1.3 early data (0-RTT)",
        "ssl_password_file" => {
            "Buoy reads unencrypted keys only: decrypt the key before it goes into the Secret"
        }
        "ssl_preread" => {
            "Buoy does not route TCP connections by SNI (an HTTPS listener chooses certificates by it)"
        }
        n if n.starts_with("ssl") => {
            "Buoy terminates TLS for HTTP servers only (listen … ssl), with no equivalent of this setting"
        }
        "proxy_ssl" => "Buoy speaks TLS to the backends of HTTP servers only (proxy_pass https://)",
        "proxy_ssl_certificate" | "proxy_ssl_certificate_key" | "proxy_ssl_password_file" => {
            "Buoy presents no client certificate to backends"
        }
        "proxy_ssl_protocols" | "proxy_ssl_ciphers" | "proxy_ssl_conf_command" => {
            "Buoy's TLS to backends is rustls's: TLS 1.2 and 1.3, AEAD cipher suites with forward secrecy"
        }
        "proxy_ssl_session_reuse" => "Buoy resumes TLS sessions with backends",
        "proxy_ssl_verify_depth" | "proxy_ssl_crl" => {
            "Buoy verifies the whole chain to tls.caSecretName's certificates, with no depth limit or CRL"
        }
        n if n.starts_with("proxy_ssl") => {
            "Buoy has no equivalent of this setting of TLS to backends"
        }
        _ => return None,
    })
}
