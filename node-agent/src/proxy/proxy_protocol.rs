//! HAProxy's PROXY protocol, both ends: the header a load balancer in front of a listener starts
//! each connection with (versions 1 and 2), read without taking a byte of what follows it, and
//! the header written at the start of a backend connection. The format is the `ppp` crate's.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use buoy_crds::ProxyProtocolVersion;
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::{io::AsyncReadExt, net::TcpStream};

/// The signature a version 2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header (the specification's 107 bytes).
const V1_MAX: usize = 107;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("the connection closed before a PROXY protocol header")]
    Closed,
    #[error("no PROXY protocol header within {0:?}")]
    TimedOut(Duration),
    #[error("not a valid PROXY protocol header")]
    Invalid,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// The client a connection's header names: source and destination, or `None` when it names
/// none (V1 `UNKNOWN`, V2 `LOCAL`: the connection's own addresses stand).
pub(crate) type Named = Option<(SocketAddr, SocketAddr)>;

/// Reads the PROXY protocol header (version 1 or 2) a connection starts with, within `timeout`.
/// Only the header's bytes are taken from the socket: what follows is the client's.
pub(crate) async fn read(tcp: &mut TcpStream, timeout: Duration) -> Result<Named, HeaderError> {
    let started = Instant::now();
    tokio::time::timeout(timeout, read_header(tcp))
        .await
        .map_err(|_| HeaderError::TimedOut(started.elapsed()))?
}

async fn read_header(tcp: &mut TcpStream) -> Result<Named, HeaderError> {
    let mut header = Vec::with_capacity(V1_MAX + 1);
    let mut chunk = [0u8; 512];
    loop {
        // A peek shows what has come without taking it; each round takes at least one byte of
        // the header, so a client that trickles it costs a wakeup per segment, not a spin.
        let n = tcp.peek(&mut chunk).await?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        let take = header_part(&header, &chunk[..n]);
        if take == 0 {
            return Err(HeaderError::Invalid);
        }
        tcp.read_exact(&mut chunk[..take]).await?;
        header.extend_from_slice(&chunk[..take]);
        let parsed = HeaderResult::parse(&header);
        if parsed.is_incomplete() {
            // A version 1 line that ended, or ran past its length, and still does not parse.
            if !is_v2(&header) && (header.ends_with(b"\n") || header.len() >= V1_MAX) {
                return Err(HeaderError::Invalid);
            }
            continue;
        }
        return named(parsed);
    }
}

/// Whether `bytes` start as a version 2 header does (as far as they go).
fn is_v2(bytes: &[u8]) -> bool {
    let n = bytes.len().min(V2_SIGNATURE.len());
    bytes[..n] == V2_SIGNATURE[..n]
}

/// How many of the `peeked` bytes, after the `header` bytes already taken, belong to the header:
/// up to the length a version 2 header declares, or to the end of a version 1 line.
fn header_part(header: &[u8], peeked: &[u8]) -> usize {
    let mut all = header.to_vec();
    all.extend_from_slice(peeked);
    if is_v2(&all) {
        let total = match all.get(14..16) {
            Some(len) => 16 + usize::from(u16::from_be_bytes([len[0], len[1]])),
            None => 16,
        };
        return total.saturating_sub(header.len()).min(peeked.len());
    }
    let line = peeked
        .iter()
        .position(|&b| b == b'\n')
        .map_or(peeked.len(), |i| i + 1);
    line.min(V1_MAX.saturating_sub(header.len()))
}

/// The addresses a complete parse names.
fn named(parsed: HeaderResult<'_>) -> Result<Named, HeaderError> {
    let pair = |src: SocketAddr, dst: SocketAddr| Some((src, dst));
    match parsed {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => pair(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ),
            v1::Addresses::Tcp6(a) => pair(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => pair(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ),
            (_, v2::Addresses::IPv6(a)) => pair(
                (a.source_address, a.source_port).into(),
                (a.destination_address, a.destination_port).into(),
            ),
            // A UNIX socket or no family: no IP client to speak of.
            (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
        }),
        _ => Err(HeaderError::Invalid),
    }
}

/// The header a backend connection starts with: for the client `client` (source, destination),
/// or for none (a health check: V1 `UNKNOWN`, V2 `LOCAL`).
pub(crate) fn header(version: ProxyProtocolVersion, client: Named) -> std::io::Result<Vec<u8>> {
    match version {
        ProxyProtocolVersion::V1 => {
            let addresses = client.map_or(v1::Addresses::Unknown, v1::Addresses::from);
            Ok(addresses.to_string().into_bytes())
        }
        ProxyProtocolVersion::V2 => match client.map(v2::Addresses::from) {
            Some(a @ (v2::Addresses::IPv4(_) | v2::Addresses::IPv6(_))) => {
                v2::Builder::with_addresses(
                    v2::Version::Two | v2::Command::Proxy,
                    v2::Protocol::Stream,
                    a,
                )
                .build()
            }
            // No client, or one whose two addresses are of different families.
            _ => v2::Builder::with_addresses(
                v2::Version::Two | v2::Command::Local,
                v2::Protocol::Unspecified,
                v2::Addresses::Unspecified,
            )
            .build(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_are_written_as_the_specification_says() {
        let client = Some((addr("192.0.2.7:40000"), addr("198.51.100.1:80")));
        assert_eq!(
            header(ProxyProtocolVersion::V1, client).unwrap(),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n"
        );
        assert_eq!(
            header(ProxyProtocolVersion::V1, None).unwrap(),
            b"PROXY UNKNOWN\r\n"
        );
        let v2 = header(ProxyProtocolVersion::V2, client).unwrap();
        assert_eq!(&v2[..12], V2_SIGNATURE);
        // Version 2, PROXY; TCP over IPv4; 12 address bytes.
        assert_eq!(&v2[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(
            &v2[16..],
            &[192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0, 80]
        );
        let local = header(ProxyProtocolVersion::V2, None).unwrap();
        assert_eq!(&local[12..16], &[0x20, 0, 0, 0]);
    }

    #[test]
    fn only_the_header_is_taken() {
        let v1 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\nGET / HTTP/1.1\r\n";
        assert_eq!(header_part(b"", v1), 40);
        // In pieces: the rest of the line, then nothing more.
        assert_eq!(header_part(b"PROXY TCP6", &v1[10..]), 30);
        let v2 = header(
            ProxyProtocolVersion::V2,
            Some((addr("[2001:db8::1]:1"), addr("[2001:db8::2]:2"))),
        )
        .unwrap();
        let mut stream = v2.clone();
        stream.extend_from_slice(b"payload");
        assert_eq!(header_part(b"", &stream), v2.len());
        assert_eq!(header_part(b"", &stream[..5]), 5);
        assert_eq!(header_part(&stream[..5], &stream[5..]), v2.len() - 5);
    }

    #[test]
    fn written_headers_read_back() {
        let client = Some((addr("[2001:db8::1]:1000"), addr("[2001:db8::2]:443")));
        for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
            let bytes = header(version, client).unwrap();
            assert_eq!(named(HeaderResult::parse(&bytes)).unwrap(), client);
            let local = header(version, None).unwrap();
            assert_eq!(named(HeaderResult::parse(&local)).unwrap(), None);
        }
        assert!(named(HeaderResult::parse(b"GET / HTTP/1.1\r\n")).is_err());
    }
}
