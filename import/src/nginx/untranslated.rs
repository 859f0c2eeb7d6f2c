//! The nginx directives that have no translation, and why: every one is reported with its
//! reason, none is dropped silently.

use super::parse::Directive;
use crate::diagnostics::Warnings;

/// Warns that `d` is not translated, with the reason for its kind.
pub(crate) fn untranslated(warnings: &mut Warnings, d: &Directive) {
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
        n if n.starts_with("ssl") => "Buoy does not terminate TLS",
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
        "http2" => {
            "every HTTP listener takes HTTP/2 with prior knowledge next to HTTP/1: there is nothing to turn on or off"
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
