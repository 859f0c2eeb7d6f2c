//! Raw IP sockets for VRRP (protocol 112): bound to the interface, in the multicast group, TTL /
//! hop limit 255. IPv4 packets are sent with our own header (IP_HDRINCL) so the source address is
//! exactly the configured one, as keepalived does; IPv6 uses IPV6_PKTINFO for the same purpose.

use std::{
    io,
    mem::{MaybeUninit, size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
};

use buoy_vrrp::packet::{DropReason, IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6, TTL, split_ipv4};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// A received VRRP message and what the IP layer said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Incoming {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub payload: Vec<u8>,
}

pub(crate) struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ipv6: bool,
    ifindex: u32,
}

impl VrrpSocket {
    /// Opens a socket on interface `ifname` (`ifindex`) for one address family, and joins the VRRP
    /// multicast group unless `unicast`.
    pub(crate) fn open(ifname: &str, ifindex: u32, ipv6: bool, unicast: bool) -> io::Result<Self> {
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        s.bind_device(Some(ifname.as_bytes()))?;
        if ipv6 {
            s.set_multicast_hops_v6(u32::from(TTL))?;
            s.set_unicast_hops_v6(u32::from(TTL))?;
            s.set_multicast_loop_v6(false)?;
            s.set_multicast_if_v6(ifindex)?;
            set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            if !unicast {
                s.join_multicast_v6(&MULTICAST_V6, ifindex)?;
            }
        } else {
            s.set_header_included_v4(true)?;
            s.set_multicast_loop_v4(false)?;
            s.set_multicast_ttl_v4(u32::from(TTL))?;
            if !unicast {
                s.join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
            }
        }
        s.set_nonblocking(true)?;
        // SAFETY: the Socket owns its descriptor, which stays open and unchanged until the
        // AsyncFd (which owns the Socket) is dropped.
        let fd = unsafe { AsyncFd::register(s) }?;
        Ok(VrrpSocket { fd, ipv6, ifindex })
    }

    /// Receives the next packet. The outer error is an IO failure; the inner one a packet whose IP
    /// header is unusable (to be counted and dropped).
    pub(crate) async fn recv(&self) -> io::Result<Result<Incoming, DropReason>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                if self.ipv6 {
                    recv_v6(inner.get_ref())
                } else {
                    recv_v4(inner.get_ref())
                }
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends a VRRP message from `src` to `dst`.
    pub(crate) fn send(&self, payload: &[u8], src: IpAddr, dst: IpAddr) -> io::Result<()> {
        let s = self.fd.get_ref();
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let packet = ipv4_packet(payload, src, dst);
                s.send_to(&packet, &SocketAddr::V4(SocketAddrV4::new(dst, 0)).into())?;
                Ok(())
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => send_v6(s, payload, src, dst, self.ifindex),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "source and destination families differ",
            )),
        }
    }
}

/// A control-message buffer aligned for `cmsghdr` (the CMSG macros dereference it as such).
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

fn set_int(s: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live i32 and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The IPv4 header we send: TOS "internetwork control" as keepalived, TTL 255. The kernel fills
/// in the identification and the header checksum.
fn ipv4_packet(payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0xc0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, TTL, IPPROTO_VRRP, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

fn recv_v4(s: &Socket) -> io::Result<Result<Incoming, DropReason>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let (n, _) = s.recv_from(&mut buf)?;
    // SAFETY: recv_from initialised the first n bytes.
    let data: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    Ok(split_ipv4(&data).and_then(|(h, payload)| {
        if h.protocol != IPPROTO_VRRP {
            return Err(DropReason::NotVrrp);
        }
        Ok(Incoming {
            src: IpAddr::V4(h.src),
            dst: IpAddr::V4(h.dst),
            ttl: h.ttl,
            payload: payload.to_vec(),
        })
    }))
}

fn recv_v6(s: &Socket) -> io::Result<Result<Incoming, DropReason>> {
    let mut buf = [0u8; 2048];
    let mut control = ControlBuffer([0u8; 128]);
    // SAFETY: zeroed sockaddr_in6 / msghdr are valid initial values for recvmsg.
    let mut from: libc::sockaddr_in6 = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: every pointer in msg refers to a live buffer of the stated length.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut dst = None;
    let mut hop_limit = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel just filled, within controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    hop_limit = Some(std::ptr::read_unaligned(data.cast::<i32>()));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let (Some(dst), Some(hop)) = (dst, hop_limit) else {
        return Ok(Err(DropReason::BadIpHeader));
    };
    Ok(Ok(Incoming {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst: IpAddr::V6(dst),
        ttl: u8::try_from(hop).unwrap_or(0),
        payload: buf[..n as usize].to_vec(),
    }))
}

fn send_v6(
    s: &Socket,
    payload: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ifindex: u32,
) -> io::Result<()> {
    let scope = if dst.is_multicast() || dst.is_unicast_link_local() {
        ifindex
    } else {
        0
    };
    let to = SocketAddrV6::new(dst, 0, 0, scope);
    let to: socket2::SockAddr = to.into();
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) } as usize;
    let mut control = ControlBuffer([0u8; 128]);
    let space = space.min(control.0.len());
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // SAFETY: zeroed msghdr is a valid initial value; the pointers set below stay alive during sendmsg.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = to.as_ptr() as *mut _;
    msg.msg_namelen = to.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one in6_pktinfo cmsg (CMSG_SPACE above).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::IPPROTO_IPV6;
        (*c).cmsg_type = libc::IPV6_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_we_send() {
        let p = ipv4_packet(&[1, 2, 3, 4], Ipv4Addr::new(10, 0, 0, 1), MULTICAST_V4);
        assert_eq!(p.len(), 24);
        assert_eq!(&p[..4], &[0x45, 0xc0, 0, 24]);
        assert_eq!((p[8], p[9]), (255, 112));
        assert_eq!(&p[12..20], &[10, 0, 0, 1, 224, 0, 0, 18]);
        let (h, payload) = split_ipv4(&p).unwrap();
        assert_eq!((h.ttl, payload), (255, &[1u8, 2, 3, 4][..]));
    }
}
