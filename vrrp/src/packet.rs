//! VRRP advertisements on the wire: VRRPv3 (RFC 5798) over IPv4 and IPv6, VRRPv2 (RFC 3768) over
//! IPv4 with simple-password authentication. Encoding and decoding are pure; decoding never panics
//! and says why a packet was dropped, so the IO shell can count drops by reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group of VRRP (224.0.0.18).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP (ff02::12).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Adverts must be sent, and received, with TTL / hop limit 255 (they never cross a router).
pub const TTL: u8 = 255;
/// Length of the VRRPv2 authentication data.
pub const AUTH_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// The protocol version.
pub enum Version {
    /// RFC 3768, IPv4 only, whole seconds, optional simple password.
    V2,
    /// RFC 5798, IPv4 and IPv6, centiseconds.
    V3,
}

impl Version {
    /// The version number in the header.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// One advertisement, as sent or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    /// The protocol version.
    pub version: Version,
    /// The virtual router ID.
    pub vrid: u8,
    /// The sender's priority (0: it resigns; 255: it owns the addresses).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2 carries whole seconds: stored × 100).
    pub interval_cs: u16,
    /// v2 simple-text password (auth type 1), padded with zeros to 8 bytes; `None` is type 0.
    pub auth: Option<[u8; AUTH_LEN]>,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

/// Why a received packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum DropReason {
    /// Packet too short.
    #[error("packet too short")]
    Truncated,
    /// Malformed IP header.
    #[error("malformed IP header")]
    BadIpHeader,
    /// Not VRRP (IP protocol is not 112).
    #[error("not VRRP (IP protocol is not 112)")]
    NotVrrp,
    /// TTL or hop limit is not 255.
    #[error("TTL or hop limit is not 255")]
    BadTtl,
    /// Unknown VRRP version.
    #[error("unknown VRRP version")]
    BadVersion,
    /// VRRP version differs from ours.
    #[error("VRRP version differs from ours")]
    WrongVersion,
    /// Not an advertisement (type is not 1).
    #[error("not an advertisement (type is not 1)")]
    BadType,
    /// Bad checksum.
    #[error("bad checksum")]
    BadChecksum,
    /// Address count does not match the packet length.
    #[error("address count does not match the packet length")]
    BadLength,
    /// Advertisement interval is zero.
    #[error("advertisement interval is zero")]
    ZeroInterval,
    /// Unsupported authentication type.
    #[error("unsupported authentication type")]
    UnsupportedAuth,
    /// Authentication failed.
    #[error("authentication failed")]
    AuthMismatch,
    /// Addresses of the wrong family.
    #[error("addresses of the wrong family")]
    WrongFamily,
    /// Sent from one of our own addresses.
    #[error("sent from one of our own addresses")]
    OwnAddress,
    /// Address list differs from ours.
    #[error("address list differs from ours")]
    AddressMismatch,
    /// From a router that is not a known peer.
    #[error("from a router that is not a known peer")]
    UnknownPeer,
}

impl DropReason {
    /// Stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::NotVrrp => "not_vrrp",
            DropReason::BadTtl => "bad_ttl",
            DropReason::BadVersion => "bad_version",
            DropReason::WrongVersion => "wrong_version",
            DropReason::BadType => "bad_type",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadLength => "bad_length",
            DropReason::ZeroInterval => "zero_interval",
            DropReason::UnsupportedAuth => "unsupported_auth",
            DropReason::AuthMismatch => "auth_mismatch",
            DropReason::WrongFamily => "wrong_family",
            DropReason::OwnAddress => "own_address",
            DropReason::AddressMismatch => "address_mismatch",
            DropReason::UnknownPeer => "unknown_peer",
        }
    }
}

/// The parts of an IPv4 header that VRRP checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// The IP protocol number.
    pub protocol: u8,
}

/// Splits a raw IPv4 packet (as a raw socket delivers it, header included) into its header and
/// payload.
pub fn split_ipv4(packet: &[u8]) -> Result<(Ipv4Header, &[u8]), DropReason> {
    let first = *packet.first().ok_or(DropReason::Truncated)?;
    if first >> 4 != 4 {
        return Err(DropReason::BadIpHeader);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || packet.len() < header_len {
        return Err(DropReason::BadIpHeader);
    }
    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total_len < header_len || total_len > packet.len() {
        return Err(DropReason::BadIpHeader);
    }
    let header = Ipv4Header {
        ttl: packet[8],
        protocol: packet[9],
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
    };
    Ok((header, &packet[header_len..total_len]))
}

/// The Internet checksum (RFC 1071) over several slices, as if concatenated.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The VRRPv3 pseudo-header (RFC 5798 section 5.2.8: the upper-layer checksum of RFC 8200 for
/// IPv6 and the equivalent IPv4 pseudo-header).
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, IPPROTO_VRRP]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (s, d) => {
            p.extend_from_slice(&ipv6_octets(s));
            p.extend_from_slice(&ipv6_octets(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
        }
    }
    p
}

fn ipv6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

fn is_v4(a: &IpAddr) -> bool {
    a.is_ipv4()
}

/// Encodes `advert` as the VRRP message (the IP payload) sent from `src` to `dst`. The checksum of
/// a v3 message covers the pseudo-header, so it depends on both addresses.
pub fn encode(advert: &Advertisement, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let v4 = is_v4(&src);
    let addr_len = if v4 { 4 } else { 16 };
    let count = advert.addresses.len().min(255);
    let mut msg = Vec::with_capacity(8 + count * addr_len + AUTH_LEN);
    msg.push((advert.version.number() << 4) | 1);
    msg.push(advert.vrid);
    msg.push(advert.priority);
    msg.push(count as u8);
    match advert.version {
        Version::V3 => {
            let cs = advert.interval_cs & 0x0fff;
            msg.extend_from_slice(&cs.to_be_bytes());
        }
        Version::V2 => {
            msg.push(u8::from(advert.auth.is_some()));
            msg.push((advert.interval_cs / 100).min(255) as u8);
        }
    }
    msg.extend_from_slice(&[0, 0]);
    for a in advert.addresses.iter().take(count) {
        match a {
            IpAddr::V4(a) if v4 => msg.extend_from_slice(&a.octets()),
            IpAddr::V6(a) if !v4 => msg.extend_from_slice(&a.octets()),
            // A mixed list cannot be configured (validation rejects it); encode what fits.
            _ if v4 => msg.extend_from_slice(&[0u8; 4]),
            other => msg.extend_from_slice(&ipv6_octets(*other)),
        }
    }
    if advert.version == Version::V2 {
        msg.extend_from_slice(&advert.auth.unwrap_or([0; AUTH_LEN]));
    }
    let sum = match advert.version {
        Version::V2 => checksum(&[&msg]),
        Version::V3 => checksum(&[&pseudo_header(src, dst, msg.len()), &msg]),
    };
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
    msg
}

/// Decodes a VRRP message received from `src` to `dst`, checking everything that does not depend on
/// configuration: version and type, checksum, length, address family, a non-zero interval and the
/// authentication type.
pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advertisement, DropReason> {
    if msg.len() < 8 {
        return Err(DropReason::Truncated);
    }
    let version = match msg[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        _ => return Err(DropReason::BadVersion),
    };
    if msg[0] & 0x0f != 1 {
        return Err(DropReason::BadType);
    }
    let v4 = is_v4(&src);
    if version == Version::V2 && !v4 {
        return Err(DropReason::WrongFamily);
    }
    let count = usize::from(msg[3]);
    let addr_len = if v4 { 4 } else { 16 };
    let trailer = if version == Version::V2 { AUTH_LEN } else { 0 };
    let expected = 8 + count * addr_len + trailer;
    if msg.len() < expected {
        return Err(DropReason::Truncated);
    }
    // Trailing bytes beyond the message are not allowed (they would change the checksum's meaning).
    if msg.len() != expected {
        return Err(DropReason::BadLength);
    }
    let valid = match version {
        Version::V2 => checksum(&[msg]) == 0,
        Version::V3 => checksum(&[&pseudo_header(src, dst, msg.len()), msg]) == 0,
    };
    if !valid {
        return Err(DropReason::BadChecksum);
    }
    let (interval_cs, auth) = match version {
        Version::V3 => (u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff, None),
        Version::V2 => {
            let auth = match msg[4] {
                0 => None,
                1 => {
                    let mut a = [0u8; AUTH_LEN];
                    a.copy_from_slice(&msg[expected - AUTH_LEN..expected]);
                    Some(a)
                }
                _ => return Err(DropReason::UnsupportedAuth),
            };
            (u16::from(msg[5]) * 100, auth)
        }
    };
    if interval_cs == 0 {
        return Err(DropReason::ZeroInterval);
    }
    if count == 0 {
        return Err(DropReason::BadLength);
    }
    let addresses = msg[8..8 + count * addr_len]
        .chunks_exact(addr_len)
        .map(|c| match c.try_into() {
            Ok::<[u8; 4], _>(b) => IpAddr::V4(Ipv4Addr::from(b)),
            Err(_) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(b))
            }
        })
        .collect();
    Ok(Advertisement {
        version,
        vrid: msg[1],
        priority: msg[2],
        interval_cs,
        auth,
        addresses,
    })
}

/// Decodes a whole IPv4 packet from a raw socket: header checks (protocol, TTL 255), then the
/// VRRP message.
pub fn decode_ipv4_packet(packet: &[u8]) -> Result<(Ipv4Header, Advertisement), DropReason> {
    let (header, payload) = split_ipv4(packet)?;
    if header.protocol != IPPROTO_VRRP {
        return Err(DropReason::NotVrrp);
    }
    if header.ttl != TTL {
        return Err(DropReason::BadTtl);
    }
    let advert = decode(payload, IpAddr::V4(header.src), IpAddr::V4(header.dst))?;
    Ok((header, advert))
}

/// Pads or truncates a password to the 8 bytes VRRPv2 carries.
pub fn auth_data(password: &[u8]) -> [u8; AUTH_LEN] {
    let mut a = [0u8; AUTH_LEN];
    let n = password.len().min(AUTH_LEN);
    a[..n].copy_from_slice(&password[..n]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sample(version: Version) -> Advertisement {
        Advertisement {
            version,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            auth: (version == Version::V2).then(|| auth_data(b"1111")),
            addresses: vec![v4("192.168.60.88")],
        }
    }

    #[test]
    fn v3_ipv4_roundtrip_with_pseudo_header_checksum() {
        let (src, dst) = (v4("192.168.60.93"), IpAddr::V4(MULTICAST_V4));
        let a = sample(Version::V3);
        let bytes = encode(&a, src, dst);
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..6], &[0x31, 51, 100, 1, 0x00, 100]);
        assert_eq!(decode(&bytes, src, dst), Ok(a));
        // The same bytes from another source fail: the pseudo-header is covered.
        assert_eq!(
            decode(&bytes, v4("192.168.60.94"), dst),
            Err(DropReason::BadChecksum)
        );
    }

    #[test]
    fn v2_roundtrip_with_password() {
        let (src, dst) = (v4("192.168.60.93"), IpAddr::V4(MULTICAST_V4));
        let a = sample(Version::V2);
        let bytes = encode(&a, src, dst);
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[..6], &[0x21, 51, 100, 1, 1, 1]);
        assert_eq!(&bytes[12..], b"1111\0\0\0\0");
        // v2's checksum does not cover addresses outside the message.
        assert_eq!(decode(&bytes, v4("10.0.0.1"), v4("10.0.0.2")), Ok(a));
    }

    #[test]
    fn v3_ipv6_roundtrip() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        let a = Advertisement {
            version: Version::V3,
            vrid: 7,
            priority: 200,
            interval_cs: 10,
            auth: None,
            addresses: vec!["fd00::88".parse().unwrap(), "fd00::89".parse().unwrap()],
        };
        let bytes = encode(&a, src, dst);
        assert_eq!(bytes.len(), 8 + 32);
        assert_eq!(decode(&bytes, src, dst), Ok(a));
    }

    #[test]
    fn known_good_keepalived_v2_packet_decodes() {
        // VRRPv2 advert, VRID 51, priority 100, 1 address 192.168.60.88, PASS "1111", 1 s, as
        // keepalived sends it (checksum computed by hand over the message).
        let mut msg = vec![
            0x21, 0x33, 0x64, 0x01, 0x01, 0x01, 0x00, 0x00, 192, 168, 60, 88,
        ];
        msg.extend_from_slice(b"1111\0\0\0\0");
        let sum = checksum(&[&msg]);
        msg[6..8].copy_from_slice(&sum.to_be_bytes());
        let a = decode(&msg, v4("192.168.60.93"), IpAddr::V4(MULTICAST_V4)).unwrap();
        assert_eq!((a.vrid, a.priority, a.interval_cs), (51, 100, 100));
        assert_eq!(a.auth, Some(auth_data(b"1111")));
    }

    #[test]
    fn every_malformation_has_its_reason() {
        let (src, dst) = (v4("192.168.60.93"), IpAddr::V4(MULTICAST_V4));
        let good = encode(&sample(Version::V3), src, dst);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            decode(&b, src, dst)
        };
        assert_eq!(decode(&good[..7], src, dst), Err(DropReason::Truncated));
        assert_eq!(with(&|b| b[0] = 0x41), Err(DropReason::BadVersion));
        assert_eq!(with(&|b| b[0] = 0x32), Err(DropReason::BadType));
        assert_eq!(with(&|b| b[2] = 99), Err(DropReason::BadChecksum));
        assert_eq!(with(&|b| b[3] = 2), Err(DropReason::Truncated));
        assert_eq!(with(&|b| b.push(0)), Err(DropReason::BadLength));
        let zero = Advertisement {
            interval_cs: 0,
            ..sample(Version::V3)
        };
        assert_eq!(
            decode(&encode(&zero, src, dst), src, dst),
            Err(DropReason::ZeroInterval)
        );
        let mut ah = encode(&sample(Version::V2), src, dst);
        ah[4] = 2;
        ah[6..8].copy_from_slice(&[0, 0]);
        let sum = checksum(&[&ah]);
        ah[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(decode(&ah, src, dst), Err(DropReason::UnsupportedAuth));
        let v6src: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            decode(
                &encode(&sample(Version::V2), src, dst),
                v6src,
                IpAddr::V6(MULTICAST_V6)
            ),
            Err(DropReason::WrongFamily)
        );
    }

    #[test]
    fn ipv4_header_is_checked() {
        let (src, dst) = (Ipv4Addr::new(192, 168, 60, 93), MULTICAST_V4);
        let payload = encode(&sample(Version::V3), IpAddr::V4(src), IpAddr::V4(dst));
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 255, IPPROTO_VRRP, 0, 0];
        packet.extend_from_slice(&src.octets());
        packet.extend_from_slice(&dst.octets());
        packet.extend_from_slice(&payload);
        let total = packet.len() as u16;
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        let (h, a) = decode_ipv4_packet(&packet).unwrap();
        assert_eq!((h.src, h.ttl, a.vrid), (src, 255, 51));
        let mut ttl = packet.clone();
        ttl[8] = 64;
        assert_eq!(decode_ipv4_packet(&ttl), Err(DropReason::BadTtl));
        let mut proto = packet.clone();
        proto[9] = 6;
        assert_eq!(decode_ipv4_packet(&proto), Err(DropReason::NotVrrp));
        assert_eq!(
            decode_ipv4_packet(&packet[..10]),
            Err(DropReason::BadIpHeader)
        );
        assert_eq!(decode_ipv4_packet(&[]), Err(DropReason::Truncated));
    }

    #[test]
    fn random_input_never_panics() {
        use rand::{RngExt, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(7);
        let (src, dst) = (v4("10.0.0.1"), IpAddr::V4(MULTICAST_V4));
        let good = encode(&sample(Version::V3), src, dst);
        for _ in 0..200_000 {
            let len = rng.random_range(0..80);
            let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if rng.random_bool(0.5) && len >= good.len() {
                b[..good.len()].copy_from_slice(&good);
                let i = rng.random_range(0..len);
                b[i] = rng.random();
            }
            let _ = decode(&b, src, dst);
            let _ = decode_ipv4_packet(&b);
        }
    }
}
