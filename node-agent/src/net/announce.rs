//! Telling the LAN where the VIP lives now: gratuitous ARP (IPv4) and unsolicited neighbour
//! advertisements with the override flag (IPv6). Frame building is pure; sending is a thin shell.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use socket2::{Domain, Protocol, Socket, Type};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// All-nodes multicast (ff02::1), where unsolicited NAs go.
pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A gratuitous ARP request (sender = target = the VIP) in an Ethernet broadcast frame, as
/// keepalived sends it: neighbours that have the VIP in their cache update it to `mac`.
pub(crate) fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&[0; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `target` (ICMPv6 type 136, Override set, with the
/// target link-layer address option). The kernel fills in the ICMPv6 checksum.
pub(crate) fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136;
    p[4] = 0x20; // Override; not Router, not Solicited
    p[8..24].copy_from_slice(&target.octets());
    p[24] = 2; // option: target link-layer address
    p[25] = 1; // length in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

/// Sends announcements out of one interface.
pub(crate) struct Announcer {
    ifindex: u32,
    mac: [u8; 6],
    packet: Option<OwnedFd>,
    icmpv6: Option<Socket>,
}

impl Announcer {
    /// Opens the sockets needed for the families in use.
    pub(crate) fn open(
        ifindex: u32,
        ifname: &str,
        mac: [u8; 6],
        ipv4: bool,
        ipv6: bool,
    ) -> io::Result<Self> {
        let packet = if ipv4 {
            // Protocol 0: this socket only sends. Bound to ETH_P_ARP it would also receive a copy
            // of every ARP frame on the host, once per instance.
            // SAFETY: plain socket(2) call; the result is checked before it is owned.
            let fd =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            None
        };
        let icmpv6 = if ipv6 {
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
            s.bind_device(Some(ifname.as_bytes()))?;
            s.set_multicast_hops_v6(255)?;
            s.set_multicast_if_v6(ifindex)?;
            s.set_unicast_hops_v6(255)?;
            Some(s)
        } else {
            None
        };
        Ok(Announcer {
            ifindex,
            mac,
            packet,
            icmpv6,
        })
    }

    /// Sends one announcement for `ip`.
    pub(crate) fn announce(&self, ip: IpAddr) -> io::Result<()> {
        match ip {
            IpAddr::V4(v4) => {
                let fd = self
                    .packet
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no ARP socket"))?;
                let frame = gratuitous_arp(self.mac, v4);
                // SAFETY: sockaddr_ll is plain data; zeroed is a valid starting value.
                let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = ETH_P_ARP.to_be();
                addr.sll_ifindex = self.ifindex as i32;
                addr.sll_halen = 6;
                addr.sll_addr[..6].copy_from_slice(&BROADCAST_MAC);
                // SAFETY: the frame and address outlive the call; lengths are theirs.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }
            IpAddr::V6(v6) => {
                let s = self
                    .icmpv6
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no ICMPv6 socket"))?;
                let na = unsolicited_na(self.mac, v6);
                let dst = SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex);
                s.send_to(&na, &dst.into())?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_arp_frame_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x01];
        let f = gratuitous_arp(mac, Ipv4Addr::new(192, 168, 60, 88));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "ARP request");
        assert_eq!(&f[22..28], &mac, "sender MAC");
        assert_eq!(&f[28..32], &[192, 168, 60, 88], "sender IP is the VIP");
        assert_eq!(&f[38..42], &[192, 168, 60, 88], "target IP is the VIP");
    }

    #[test]
    fn unsolicited_na_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x01];
        let target: Ipv6Addr = "fd00::88".parse().unwrap();
        let p = unsolicited_na(mac, target);
        assert_eq!((p[0], p[1]), (136, 0));
        assert_eq!(p[4], 0x20, "override, unsolicited");
        assert_eq!(&p[8..24], &target.octets());
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..32], &mac);
    }
}
