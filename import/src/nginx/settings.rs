//! The proxy_* and client settings of nginx, inherited from `http` to `server` to `location`
//! as nginx does, and what they become: a pool's timeouts, retries and headers, a listener's
//! client settings.

use buoy_crds::{
    AccessLog, AccessLogFormat, ClientSettings, Duration, HttpSettings, ListenerProtocol,
    ProxyProtocolVersion, RetryOn, UpstreamPoolSpec,
};

use super::{
    parse::Directive,
    tls::{ProxySsl, is_proxy_ssl_setting, proxy_ssl_setting, upstream_tls},
    values::{first, number, on_off, one, size, time},
};
use crate::diagnostics::{ImportError, Loc, Warnings};

/// proxy_* settings, inherited from http to server to location as nginx does.
#[derive(Clone, Debug, Default)]
pub(crate) struct Proxy {
    next_upstream: Option<(Vec<String>, Loc)>,
    tries: Option<u32>,
    connect: Option<Duration>,
    read: Option<Duration>,
    send: Option<Duration>,
    /// proxy_timeout (stream).
    idle: Option<Duration>,
    /// Replaced as a whole by an inner level that has any (nginx's rule for proxy_set_header).
    pub(crate) headers: Option<Vec<(String, String, Loc)>>,
    /// access_log (stream; in `http` it is a client setting).
    access_log: Option<AccessLog>,
    /// The `log_format`s of `stream` that escape as JSON.
    pub(crate) json_formats: Vec<String>,
    /// proxy_protocol (stream): send a PROXY protocol header (version 1) to the backends.
    send_proxy: Option<bool>,
    /// proxy_ssl_* (http), for `proxy_pass https://`.
    ssl: ProxySsl,
}

/// Client-side settings, inherited likewise.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Client {
    keepalive: Option<Duration>,
    header_timeout: Option<Duration>,
    body_timeout: Option<Duration>,
    max_body: Option<u64>,
    max_header: Option<u32>,
    send_timeout: Option<Duration>,
    /// access_log (`off` or none: no log).
    pub(crate) access_log: Option<AccessLog>,
    /// The `log_format`s of `http` that escape as JSON.
    pub(crate) json_formats: Vec<String>,
}

impl Client {
    /// A stream server's: its proxy_timeout bounds an idle connection.
    pub(crate) fn stream(proxy: &Proxy) -> Self {
        Client {
            body_timeout: proxy.idle,
            access_log: proxy.access_log.clone(),
            ..Client::default()
        }
    }
}

/// The proxy_* directives that [`proxy_setting`] reads in that context.
pub(crate) fn is_proxy_setting(name: &str, stream: bool) -> bool {
    match name {
        "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_connect_timeout" => true,
        "proxy_read_timeout" | "proxy_send_timeout" | "proxy_set_header" | "proxy_http_version" => {
            !stream
        }
        "proxy_timeout" | "access_log" | "proxy_protocol" => stream,
        n => !stream && is_proxy_ssl_setting(n),
    }
}

/// Reads a proxy_* setting into `p`; false if `d` is not one.
pub(crate) fn proxy_setting(
    d: &Directive,
    p: &mut Proxy,
    stream: bool,
    warnings: &mut Warnings,
) -> Result<bool, ImportError> {
    if !stream && proxy_ssl_setting(d, &mut p.ssl)? {
        return Ok(true);
    }
    match d.name.as_str() {
        "proxy_next_upstream" => p.next_upstream = Some((d.args.clone(), d.at.clone())),
        "proxy_next_upstream_tries" => p.tries = Some(number(d, one(d)?, 0, 1000)? as u32),
        "proxy_connect_timeout" => p.connect = Some(time(d, one(d)?)?),
        "proxy_read_timeout" if !stream => p.read = Some(time(d, one(d)?)?),
        "proxy_send_timeout" if !stream => p.send = Some(time(d, one(d)?)?),
        "proxy_timeout" if stream => p.idle = Some(time(d, one(d)?)?),
        "access_log" if stream => p.access_log = access_log(d, &p.json_formats, warnings)?,
        "proxy_protocol" if stream => p.send_proxy = Some(on_off(d)?),
        "proxy_set_header" if !stream => {
            let [name, value] = d.args.as_slice() else {
                return Err(ImportError::at(
                    &d.at,
                    "proxy_set_header takes a header name and a value",
                ));
            };
            p.headers.get_or_insert_with(Vec::new).push((
                name.clone(),
                value.clone(),
                d.at.clone(),
            ));
        }
        "proxy_http_version" if !stream => {
            if one(d)? != "1.1" {
                warnings.add(
                    &d.at,
                    "proxy_http_version",
                    "Buoy always speaks HTTP/1.1 to backends",
                );
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The client directives that [`client_setting`] reads.
pub(crate) fn is_client_setting(name: &str) -> bool {
    matches!(
        name,
        "keepalive_timeout"
            | "client_header_timeout"
            | "client_body_timeout"
            | "client_max_body_size"
            | "large_client_header_buffers"
            | "send_timeout"
            | "access_log"
    )
}

/// Reads a client setting into `c`; false if `d` is not one.
pub(crate) fn client_setting(
    d: &Directive,
    c: &mut Client,
    warnings: &mut Warnings,
) -> Result<bool, ImportError> {
    match d.name.as_str() {
        "keepalive_timeout" => {
            c.keepalive = Some(time(d, first(d)?)?);
            if d.args.len() > 1 {
                warnings.add(
                    &d.at,
                    "keepalive_timeout",
                    "the second value (the Keep-Alive response header) has no equivalent",
                );
            }
        }
        "client_header_timeout" => c.header_timeout = Some(time(d, one(d)?)?),
        "client_body_timeout" => c.body_timeout = Some(time(d, one(d)?)?),
        "client_max_body_size" => c.max_body = Some(size(d, one(d)?)?),
        "access_log" => c.access_log = access_log(d, &c.json_formats, warnings)?,
        "send_timeout" => c.send_timeout = Some(time(d, one(d)?)?),
        "large_client_header_buffers" => {
            let [n, s] = d.args.as_slice() else {
                return Err(ImportError::at(
                    &d.at,
                    "large_client_header_buffers takes a number and a size",
                ));
            };
            let total = number(d, n, 1, 1024)? as u64 * size(d, s)?;
            let clamped = total.clamp(1024, 1_048_576);
            if clamped != total {
                warnings.add(
                    &d.at,
                    "large_client_header_buffers",
                    format!("{total} bytes of headers is outside Buoy's range; {clamped} is used"),
                );
            }
            c.max_header = Some(clamped as u32);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The names of the `log_format`s among `block` that escape as JSON (`escape=json`): their
/// access logs become Buoy's JSON lines.
pub(crate) fn json_formats(block: &[Directive]) -> Vec<String> {
    block
        .iter()
        .filter(|d| d.name == "log_format" && d.args.get(1).is_some_and(|e| e == "escape=json"))
        .filter_map(|d| d.args.first().cloned())
        .collect()
}

/// `access_log off` (None), or `access_log PATH [FORMAT] [PARAMETERS]`: the access log on the
/// agent's standard output, JSON for a format in `json` (`escape=json`) and Combined otherwise,
/// with a warning for what does not carry over.
fn access_log(
    d: &Directive,
    json: &[String],
    warnings: &mut Warnings,
) -> Result<Option<AccessLog>, ImportError> {
    let path = first(d)?;
    if path == "off" {
        return Ok(None);
    }
    if path.starts_with("syslog:") {
        warnings.add(
            &d.at,
            "access_log",
            format!("{path}: Buoy writes the access log to the agent's standard output"),
        );
    }
    let mut rest = d.args[1..].iter();
    let mut params: Vec<&String> = Vec::new();
    let mut format = AccessLogFormat::Combined;
    match rest.next() {
        Some(f) if f.contains('=') || f == "gzip" => params.push(f),
        Some(f) if json.contains(f) => {
            format = AccessLogFormat::JSON;
            warnings.add(
                &d.at,
                "access_log",
                format!("log_format {f} escapes as JSON: the JSON format is used, with Buoy's fields (time, client, listener, host, method, path, status, bytes, duration, upstream, attempts)"),
            );
        }
        Some(f) if f != "combined" => warnings.add(
            &d.at,
            "access_log",
            format!("log_format {f} is not translated; the Combined format is used"),
        ),
        _ => {}
    }
    params.extend(rest);
    for p in params {
        warnings.add(
            &d.at,
            "access_log",
            format!("the parameter {p} has no equivalent (lines are written as they come)"),
        );
    }
    Ok(Some(AccessLog { format }))
}

/// A listener's client settings (those of its protocol), None when all are defaults.
pub(crate) fn client_settings(
    c: &Client,
    max_connections: Option<u32>,
    protocol: ListenerProtocol,
) -> Option<ClientSettings> {
    let http = protocol == ListenerProtocol::HTTP;
    let s = ClientSettings {
        max_connections,
        keepalive_timeout: c.keepalive.filter(|_| http),
        header_timeout: c.header_timeout.filter(|_| http),
        idle_timeout: c.body_timeout,
        max_request_header_bytes: c.max_header.filter(|_| http),
        max_request_body_bytes: c.max_body.filter(|_| http),
        send_timeout: c.send_timeout,
    };
    (s != ClientSettings::default()).then_some(s)
}

/// The upstream's spec with the settings of the location that proxies to it, and the CA file
/// (as written) its `tls.caSecretName` is to hold. `https`: the `proxy_pass https://` (its
/// `$proxy_host` and place) when it is one.
pub(crate) fn pool_settings(
    base: &UpstreamPoolSpec,
    servers: u32,
    p: &Proxy,
    stream: bool,
    https: Option<(&str, &Loc)>,
    warnings: &mut Warnings,
) -> (UpstreamPoolSpec, Option<(String, Loc)>) {
    let mut spec = base.clone();
    let mut ca = None;
    if let Some((host, at)) = https {
        let (tls, file) = upstream_tls(&p.ssl, host, at, warnings);
        spec.tls = Some(tls);
        ca = file;
    }
    if let Some(c) = p.connect {
        spec.timeouts.connect = c;
    }
    if let Some(r) = p.read {
        spec.timeouts.read = r;
    }
    if let Some(w) = p.send {
        spec.timeouts.write = w;
    }
    if let Some(i) = p.idle {
        spec.timeouts.idle = i;
    }
    if let Some(on) = p.send_proxy {
        // nginx's stream module sends version 1.
        spec.proxy_protocol = on.then_some(ProxyProtocolVersion::V1);
    }
    let mut attempts = servers;
    if let Some((values, at)) = &p.next_upstream {
        let mut on = Vec::new();
        for v in values {
            let r = match v.as_str() {
                "error" => Some(RetryOn::ConnectFailure),
                "timeout" => Some(RetryOn::Timeout),
                "invalid_header" => Some(RetryOn::InvalidHeader),
                "http_500" => Some(RetryOn::Http500),
                "http_502" => Some(RetryOn::Http502),
                "http_503" => Some(RetryOn::Http503),
                "http_504" => Some(RetryOn::Http504),
                "http_429" => Some(RetryOn::Http429),
                "non_idempotent" => {
                    spec.retry.non_idempotent = true;
                    None
                }
                "off" => {
                    attempts = 1;
                    None
                }
                // stream: `proxy_next_upstream on` is nginx's default.
                "on" if stream => None,
                other => {
                    warnings.add(at, other, "this retry condition has no equivalent");
                    None
                }
            };
            if let Some(r) = r
                && !on.contains(&r)
            {
                on.push(r);
            }
        }
        if !stream {
            spec.retry.retry_on = on;
        }
    }
    if let Some(t) = p.tries
        && t > 0
    {
        attempts = attempts.min(t);
    }
    spec.retry.attempts = attempts.clamp(1, 10);
    if !stream {
        spec.http = headers(
            p.headers.as_deref().unwrap_or_default(),
            &base.http,
            warnings,
        );
    }
    (spec, ca)
}

/// proxy_set_header → the four header switches. Without any, nginx sends `Host: $proxy_host` and
/// none of the others, so all four are off.
fn headers(
    list: &[(String, String, Loc)],
    base: &HttpSettings,
    warnings: &mut Warnings,
) -> HttpSettings {
    let mut h = HttpSettings {
        preserve_host: false,
        x_forwarded_for: false,
        x_real_ip: false,
        x_forwarded_proto: false,
        keepalive_connections: base.keepalive_connections,
    };
    for (name, value, at) in list {
        match (name.to_ascii_lowercase().as_str(), value.as_str()) {
            ("host", "$host" | "$http_host") => h.preserve_host = true,
            ("host", "$proxy_host") => h.preserve_host = false,
            ("x-real-ip", "$remote_addr") => h.x_real_ip = true,
            ("x-forwarded-for", "$proxy_add_x_forwarded_for") => h.x_forwarded_for = true,
            ("x-forwarded-for", "$remote_addr") => {
                h.x_forwarded_for = true;
                warnings.add(at, "proxy_set_header", "X-Forwarded-For $remote_addr replaces the list; Buoy appends the client address to it ($proxy_add_x_forwarded_for)");
            }
            ("x-forwarded-proto", "$scheme" | "http") => h.x_forwarded_proto = true,
            // Buoy manages hop-by-hop headers and upstream keep-alive itself.
            ("connection", "") => {}
            _ => warnings.add(at, "proxy_set_header", format!("{name} {value:?}: Buoy sets only Host, X-Real-IP, X-Forwarded-For and X-Forwarded-Proto (as nginx's $host, $remote_addr, $proxy_add_x_forwarded_for and $scheme)")),
        }
    }
    h
}
