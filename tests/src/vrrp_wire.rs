//! VRRP packets as another router (or an attacker) on the test LAN sends them: an encoder of
//! VRRPv3 adverts independent of the agent's, and a raw sender whose TTL the test chooses, for
//! injecting malformed and foreign adverts.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

/// 224.0.0.18, where IPv4 VRRP adverts go.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// The Internet checksum (RFC 1071).
pub(crate) fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A VRRPv3 advertisement (RFC 5798 section 5.2) from `src` to the VRRP group, with its
/// checksum over the IPv4 pseudo-header.
pub fn advert_v3(
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addresses: &[Ipv4Addr],
    src: Ipv4Addr,
) -> Vec<u8> {
    let mut msg = vec![0x31, vrid, priority, addresses.len() as u8];
    msg.extend_from_slice(&(interval_cs & 0x0fff).to_be_bytes());
    msg.extend_from_slice(&[0, 0]);
    for a in addresses {
        msg.extend_from_slice(&a.octets());
    }
    let mut pseudo = Vec::with_capacity(12 + msg.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&GROUP.octets());
    pseudo.extend_from_slice(&[0, 112]);
    pseudo.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&msg);
    let sum = checksum(&pseudo);
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
    msg
}

/// A raw IP-protocol-112 socket on `eth0` of the namespace it is made in (make it on a thread of
/// [`crate::netlab::in_netns`]); the kernel writes the IP header.
pub struct Sender {
    socket: Socket,
}

impl Sender {
    pub fn open() -> Result<Sender> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
            .context("raw VRRP socket")?;
        socket.bind_device(Some(b"eth0")).context("bind to eth0")?;
        Ok(Sender { socket })
    }

    /// A sender whose packets leave from `src`, one of the namespace's addresses (a raw socket
    /// bound to it): many such senders stand for many routers, or one spoofing router.
    pub fn open_from(src: Ipv4Addr) -> Result<Sender> {
        let sender = Sender::open()?;
        sender
            .socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())
            .with_context(|| format!("bind to {src}"))?;
        Ok(sender)
    }

    /// Sends `payload` to the VRRP group with this TTL (adverts must carry 255).
    pub fn send(&self, payload: &[u8], ttl: u32) -> Result<()> {
        self.socket.set_multicast_ttl_v4(ttl)?;
        let dst = SocketAddr::V4(SocketAddrV4::new(GROUP, 0));
        self.socket.send_to(payload, &dst.into())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v3_advert_checks_out_with_its_pseudo_header() {
        let src = Ipv4Addr::new(10, 77, 0, 6);
        let msg = advert_v3(7, 254, 10, &[Ipv4Addr::new(10, 77, 0, 100)], src);
        assert_eq!(msg.len(), 12);
        assert_eq!(&msg[..6], &[0x31, 7, 254, 1, 0, 10]);
        let mut pseudo = [src.octets(), GROUP.octets()].concat();
        pseudo.extend_from_slice(&[0, 112, 0, 12]);
        pseudo.extend_from_slice(&msg);
        assert_eq!(checksum(&pseudo), 0, "a valid checksum sums to zero");
    }
}
