//! The request as a backend gets it: the client's header without hop-by-hop fields, with the
//! fields the reference nginx configuration sets (`Host $host`, `X-Real-IP`,
//! `X-Forwarded-For`, `X-Forwarded-Proto`), and the key for consistent hashing.

use std::net::SocketAddr;

use buoy_crds::HashKey;
use http::{HeaderMap, HeaderName, HeaderValue, Version, header};
use pingora_error::{ErrorType, OrErr};
use pingora_http::RequestHeader;

use crate::proxy::pool::Pool;

/// Whether the client waits for `100 Continue` before it sends the body.
pub(super) fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Hop-by-hop fields a proxy must not forward (RFC 9110 7.6.1), as pingora-proxy strips them.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// The request as the backend gets it: the client's, without hop-by-hop fields, with the headers
/// the reference nginx config sets. `Host` is added per attempt when it names the backend.
pub(super) fn upstream_request(
    original: &RequestHeader,
    pool: &Pool,
    peer: &super::request::Peer,
    has_body: bool,
) -> pingora_error::Result<RequestHeader> {
    let client_ip = peer.header.as_ref();
    // Edited as plain `http` parts, without pingora's case-preserving second map (half the work
    // of every copy and insert, and pingora's insert parses each name again): names reach the
    // backend in canonical case for common fields and in lower case otherwise, as HAProxy sends
    // them (field names are case-insensitive). Clients get the backend's case.
    //
    // Fields the client's Connection header names are hop-by-hop too.
    let nominated: Vec<String> = original
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    // A new map with room for the fields added below, filled without the hop-by-hop ones, in
    // the client's order. Removing them from a copy moved the last field into each hole, and
    // the copy, often at its usable capacity, grew and rehashed when our fields were added.
    let mut headers = HeaderMap::with_capacity(original.headers.len() + 6);
    for (name, value) in &original.headers {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !nominated.iter().any(|t| t == n) {
            // No more fields than the client's map held: cannot reach its limit.
            let _ = headers.try_append(name.clone(), value.clone());
        }
    }
    let websocket = original.version == Version::HTTP_11
        && original
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    if has_body && !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let h = &pool.config.headers;
    if h.preserve_host {
        // nginx's `proxy_set_header Host $host`: the client's host, lower case, no port. An
        // HTTP/2 client names it in `:authority` (the URI) rather than a Host field.
        match original.headers.get(header::HOST) {
            Some(host) => {
                headers.insert(header::HOST, nginx_host_value(host));
            }
            None => {
                if let Some(a) = original.uri.authority()
                    && let Ok(v) = HeaderValue::from_str(a.as_str())
                {
                    headers.insert(header::HOST, nginx_host_value(&v));
                }
            }
        }
    }
    let ip = client_ip
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""));
    if h.x_real_ip {
        // Never trust a client's X-Real-IP.
        headers.insert(const { HeaderName::from_static("x-real-ip") }, ip.clone());
    }
    if h.x_forwarded_for {
        let name = const { HeaderName::from_static("x-forwarded-for") };
        let value = forwarded_for(&original.headers, ip)?;
        headers.insert(name, value);
    }
    if h.x_forwarded_proto {
        headers.insert(
            const { HeaderName::from_static("x-forwarded-proto") },
            HeaderValue::from_static(if peer.https { "https" } else { "http" }),
        );
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = original.method.clone();
    parts.uri = original.uri.clone();
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    let mut req = RequestHeader::from(parts);
    let target = original.raw_path();
    if req.raw_path() != target {
        // Kept verbatim (absolute-form, non-UTF-8), as the client sent it.
        req.set_raw_path(target)?;
    }
    Ok(req)
}

/// nginx's `$proxy_add_x_forwarded_for`: the client's X-Forwarded-For, then the client address.
fn forwarded_for(original: &HeaderMap, ip: HeaderValue) -> pingora_error::Result<HeaderValue> {
    let name = const { HeaderName::from_static("x-forwarded-for") };
    let mut prior = original.get_all(name).iter().peekable();
    if prior.peek().is_none() {
        return Ok(ip);
    }
    let mut joined = Vec::new();
    for v in prior {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ip.as_bytes());
    HeaderValue::try_from(joined).or_err(
        ErrorType::InvalidHTTPHeader,
        "invalid X-Forwarded-For value",
    )
}

/// nginx's `$host` as a header value; the client's own value when it already is one.
fn nginx_host_value(v: &HeaderValue) -> HeaderValue {
    let raw = v.as_bytes();
    // The usual `name` or `name:port`, lower case, plain ASCII: sliced, no string built.
    let simple = !raw
        .iter()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii_graphic() || *b == b'[');
    if simple {
        let host = match raw.iter().rposition(|b| *b == b':') {
            Some(i) if raw[i + 1..].iter().all(u8::is_ascii_digit) => &raw[..i],
            _ => return v.clone(),
        };
        if let Ok(h) = HeaderValue::from_bytes(host) {
            return h;
        }
    }
    v.to_str()
        .ok()
        .map(nginx_host)
        .and_then(|h| HeaderValue::from_str(&h).ok())
        .unwrap_or_else(|| v.clone())
}

/// The consistent-hashing key of a request, as the pool's `hashKey` says.
pub(super) fn hash_key(pool: &Pool, req: &RequestHeader, client: SocketAddr) -> Option<Vec<u8>> {
    match pool.config.hash_key {
        HashKey::ClientIp => Some(client.ip().to_string().into_bytes()),
        HashKey::Header => {
            let name = pool.config.hash_key_name.as_deref()?;
            req.headers.get(name).map(|v| v.as_bytes().to_vec())
        }
        HashKey::Cookie => {
            let name = pool.config.hash_key_name.as_deref()?;
            req.headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (k, v) = c.trim().split_once('=')?;
                    (k == name).then(|| v.as_bytes().to_vec())
                })
        }
    }
}

/// nginx's `$host` from a Host header: lower case, without the port (IPv6 keeps its brackets).
pub(crate) fn nginx_host(header: &str) -> String {
    let h = header.trim();
    let without_port = if h.starts_with('[') {
        h.find(']').map_or(h, |end| &h[..=end])
    } else {
        h.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map_or(h, |(host, _)| host)
    };
    without_port.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_like_nginx() {
        assert_eq!(nginx_host("Example.COM:8080"), "example.com");
        assert_eq!(nginx_host("example.com"), "example.com");
        assert_eq!(nginx_host("[fd00::1]:80"), "[fd00::1]");
        assert_eq!(nginx_host("10.0.0.1:80"), "10.0.0.1");
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(nginx_host_value(&v("example.com")), "example.com");
        assert_eq!(nginx_host_value(&v("Example.com:80")), "example.com");
        assert_eq!(nginx_host_value(&v("[fd00::1]:80")), "[fd00::1]");
        assert_eq!(nginx_host_value(&v("10.0.0.1:8080")), "10.0.0.1");
        assert_eq!(nginx_host_value(&v("example.com:")), "example.com");
        assert_eq!(nginx_host_value(&v("example.com:x1")), "example.com:x1");
        assert_eq!(nginx_host_value(&v("a b:80")), "a b");
        // The fast path and the general one agree.
        for h in ["example.com:80", "a:1:2", "x.y", "x:"] {
            assert_eq!(nginx_host_value(&v(h)), nginx_host(h), "{h}");
        }
    }
}
