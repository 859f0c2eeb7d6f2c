//! Watching a LAN for a node's announcement of an address (gratuitous ARP, unsolicited
//! neighbour advertisement), to act at the moment clients learn that the address moved.

use std::{
    io::Read,
    net::IpAddr,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

use crate::netlab::in_netns;

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;

/// A capture in one namespace, started before the announcement can happen.
pub struct AnnouncementWatch {
    seen: mpsc::Receiver<Result<()>>,
}

impl AnnouncementWatch {
    /// Listens in `ns` for an announcement of `addr` sent from `mac`.
    pub fn start(ns: &str, addr: IpAddr, mac: [u8; 6], within: Duration) -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (seen_tx, seen) = mpsc::channel();
        in_netns(ns, move || {
            let socket = Socket::new(
                Domain::PACKET,
                Type::RAW,
                Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
            )
            .and_then(|s| {
                s.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok(s)
            });
            let socket = match socket {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let deadline = Instant::now() + within;
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                let Ok(n) = (&socket).read(&mut buf) else {
                    continue;
                };
                if announces(&buf[..n], addr, mac) {
                    let _ = seen_tx.send(Ok(()));
                    return;
                }
            }
            let _ = seen_tx.send(Err(anyhow::anyhow!(
                "no announcement of {addr} within {within:?}"
            )));
        })?;
        ready_rx
            .recv()
            .context("the capture thread ended")?
            .context("opening a packet socket")?;
        Ok(AnnouncementWatch { seen })
    }

    /// Blocks until the announcement was seen (or the watch's time ran out).
    pub fn wait(self) -> Result<()> {
        match self.seen.recv() {
            Ok(r) => r,
            Err(_) => bail!("the capture thread ended"),
        }
    }
}

/// Whether an Ethernet frame from `mac` announces `addr`: an ARP packet whose sender is `addr`,
/// or a neighbour advertisement whose target is.
pub fn announces(frame: &[u8], addr: IpAddr, mac: [u8; 6]) -> bool {
    if frame.len() < 14 || frame[6..12] != mac {
        return false;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let payload = &frame[14..];
    match addr {
        // ARP for IPv4 over Ethernet: the sender's protocol address at 14..18.
        IpAddr::V4(a) => ethertype == ETH_P_ARP && payload.get(14..18) == Some(&a.octets()[..]),
        // IPv6 header (40 bytes), then ICMPv6: type, code, checksum, flags, target at 8..24.
        IpAddr::V6(a) => {
            ethertype == ETH_P_IPV6
                && payload.get(6) == Some(&ICMPV6)
                && payload.get(40) == Some(&NEIGHBOR_ADVERTISEMENT)
                && payload.get(48..64) == Some(&a.octets()[..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_gratuitous_arp_and_an_advertisement() {
        let mac = [2, 0, 0, 0, 0, 1];
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&mac);
        arp.extend_from_slice(&ETH_P_ARP.to_be_bytes());
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&mac);
        arp.extend_from_slice(&[10, 77, 0, 100]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[10, 77, 0, 100]);
        let vip: IpAddr = "10.77.0.100".parse().unwrap();
        assert!(announces(&arp, vip, mac));
        assert!(!announces(&arp, "10.77.0.101".parse().unwrap(), mac));
        assert!(!announces(&arp, vip, [2, 0, 0, 0, 0, 2]));
        assert!(!announces(&arp[..20], vip, mac));

        let v6: std::net::Ipv6Addr = "fd77::100".parse().unwrap();
        let mut na = vec![0x33, 0x33, 0, 0, 0, 1];
        na.extend_from_slice(&mac);
        na.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
        let mut ip = [0u8; 40];
        ip[6] = ICMPV6;
        na.extend_from_slice(&ip);
        na.extend_from_slice(&[NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x20, 0, 0, 0]);
        na.extend_from_slice(&v6.octets());
        assert!(announces(&na, IpAddr::V6(v6), mac));
        assert!(!announces(&na, "fd77::1".parse().unwrap(), mac));
    }
}
