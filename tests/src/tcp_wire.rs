//! A TCP segment of a connection nobody has, sent raw from a lab host: what a client whose
//! connection died elsewhere keeps sending, for tests of what nodes do with such packets.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::vrrp_wire::checksum;

/// A bare ACK from `src`:`src_port` to `dst`, with its checksum over the pseudo-header.
pub fn ack(src: IpAddr, src_port: u16, dst: SocketAddr) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src_port.to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes()); // sequence
    tcp.extend_from_slice(&1u32.to_be_bytes()); // acknowledgement
    tcp.extend_from_slice(&[5 << 4, 0x10]); // 20-byte header, ACK
    tcp.extend_from_slice(&1024u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let mut pseudo = Vec::with_capacity(40 + tcp.len());
    match (src, dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        }
        (s, d) => {
            let octets = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            pseudo.extend_from_slice(&octets(s));
            pseudo.extend_from_slice(&octets(d));
            pseudo.extend_from_slice(&(tcp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
        }
    }
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    tcp
}

/// Sends `count` stray ACKs from `src` (an address of the namespace `ns`) to `dst`.
pub fn send_stray_acks(ns: &str, src: IpAddr, dst: SocketAddr, count: usize) -> Result<()> {
    crate::netlab::in_netns(ns, move || -> Result<()> {
        let domain = if dst.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let socket =
            Socket::new(domain, Type::RAW, Some(Protocol::TCP)).context("raw TCP socket")?;
        for i in 0..count {
            let segment = ack(src, 40000 + i as u16, dst);
            socket
                .send_to(&segment, &SocketAddr::new(dst.ip(), 0).into())
                .context("sending a stray ACK")?;
        }
        Ok(())
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("the sending thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_checks_out_with_its_pseudo_header() {
        let src: IpAddr = "10.77.0.5".parse().unwrap();
        let dst: SocketAddr = "10.77.0.100:80".parse().unwrap();
        let seg = ack(src, 40000, dst);
        assert_eq!(seg.len(), 20);
        assert_eq!(seg[13], 0x10, "ACK only");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&[10, 77, 0, 5, 10, 77, 0, 100, 0, 6, 0, 20]);
        pseudo.extend_from_slice(&seg);
        assert_eq!(
            checksum(&pseudo),
            0,
            "a segment with its checksum sums to zero"
        );
    }
}
