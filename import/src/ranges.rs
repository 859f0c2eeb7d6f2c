//! Address ranges as MetalLB and kube-vip write them, as AddressPool's `addresses` takes them: a
//! CIDR without host bits (`192.168.10.0/24`) or an inclusive range without blanks
//! (`192.168.10.10-192.168.10.20`), each of one family.

use std::net::IpAddr;

/// An inclusive range of one family, as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    first: u128,
    last: u128,
    ipv6: bool,
}

impl Span {
    /// Whether `ip` is in the range.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.ipv6 && (self.first..=self.last).contains(&number(ip))
    }
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn address(n: u128, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(n.into())
    } else {
        // An IPv4 span never holds a number above u32::MAX.
        IpAddr::V4(u32::try_from(n).unwrap_or(u32::MAX).into())
    }
}

/// A CIDR as written (`192.168.10.5/24`): its address and prefix length.
fn cidr(text: &str) -> Result<(IpAddr, u32), String> {
    let bad = || format!("{text:?} is neither a CIDR nor a range first-last");
    let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
    let prefix: u32 = prefix.trim().parse().map_err(|_| bad())?;
    let bits = if ip.is_ipv6() { 128 } else { 32 };
    if prefix > bits {
        return Err(format!("{text:?}: the prefix length is above {bits}"));
    }
    Ok((ip, prefix))
}

/// The span of a CIDR, host bits ignored (as Go's `net.ParseCIDR` and netipx read it).
fn cidr_span(ip: IpAddr, prefix: u32) -> Span {
    let bits = if ip.is_ipv6() { 128 } else { 32 };
    let host = bits - prefix;
    let mask = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    let first = number(ip) & !mask;
    Span {
        first,
        last: first | mask,
        ipv6: ip.is_ipv6(),
    }
}

/// A range `first-last` (blanks around the addresses allowed, as MetalLB trims them).
fn range(text: &str) -> Result<Span, String> {
    let bad = || format!("{text:?} is neither a CIDR nor a range first-last");
    let (first, last) = text.split_once('-').ok_or_else(bad)?;
    let first: IpAddr = first.trim().parse().map_err(|_| bad())?;
    let last: IpAddr = last.trim().parse().map_err(|_| bad())?;
    if first.is_ipv6() != last.is_ipv6() {
        return Err(format!("{text:?}: both ends must be of one family"));
    }
    if number(first) > number(last) {
        return Err(format!("{text:?}: the first address comes after the last"));
    }
    Ok(Span {
        first: number(first),
        last: number(last),
        ipv6: first.is_ipv6(),
    })
}

/// A span as a range `first-last`.
fn written(span: Span) -> String {
    format!(
        "{}-{}",
        address(span.first, span.ipv6),
        address(span.last, span.ipv6)
    )
}

/// A CIDR's span as a CIDR, host bits cleared.
fn written_cidr(span: Span, prefix: u32) -> String {
    format!("{}/{prefix}", address(span.first, span.ipv6))
}

/// One entry of MetalLB's `addresses`, as an AddressPool writes it, its span, and a note when
/// it does not mean what it seems: MetalLB reads `192.168.10.5/24` as all of `192.168.10.0/24`
/// (Go's `net.ParseCIDR`), and so does the translation, saying so.
pub(crate) fn metallb(text: &str) -> Result<(String, Span, Option<String>), String> {
    if text.contains('-') {
        let span = range(text)?;
        return Ok((written(span), span, None));
    }
    let (ip, prefix) = cidr(text.trim())?;
    let span = cidr_span(ip, prefix);
    let out = written_cidr(span, prefix);
    let note = (number(ip) != span.first).then(|| {
        format!(
            "MetalLB reads it as the whole {out} (host bits are ignored): written {out}, which \
             hands out every address of the subnet; write {ip}/{} for the one address",
            if ip.is_ipv6() { 128 } else { 32 }
        )
    });
    Ok((out, span, note))
}

/// One CIDR of kube-vip's `cidr-*` keys, as an AddressPool writes it: kube-vip hands out the
/// hosts of an IPv4 CIDR, without its network and broadcast addresses (all of a /31 and /32),
/// and every address of an IPv6 one; host bits are ignored.
pub(crate) fn kube_vip_cidr(text: &str) -> Result<(String, Span), String> {
    let (ip, prefix) = cidr(text.trim())?;
    let mut span = cidr_span(ip, prefix);
    if span.ipv6 || prefix >= 31 {
        return Ok((written_cidr(span, prefix), span));
    }
    span.first += 1;
    span.last -= 1;
    Ok((written(span), span))
}

/// One range of kube-vip's `range-*` keys (`first-last`), as an AddressPool writes it.
pub(crate) fn kube_vip_range(text: &str) -> Result<(String, Span), String> {
    let span = range(text)?;
    Ok((written(span), span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metallb_cidrs_and_ranges() {
        let w = |t: &str| metallb(t).map(|(s, _, note)| (s, note.is_some()));
        assert_eq!(w("192.168.10.0/24"), Ok(("192.168.10.0/24".into(), false)));
        assert_eq!(w("192.168.10.5/24"), Ok(("192.168.10.0/24".into(), true)));
        assert_eq!(w("192.168.10.5/32"), Ok(("192.168.10.5/32".into(), false)));
        assert_eq!(
            w("192.168.10.10 - 192.168.10.20"),
            Ok(("192.168.10.10-192.168.10.20".into(), false))
        );
        assert_eq!(
            w("fd00::10-fd00::1F"),
            Ok(("fd00::10-fd00::1f".into(), false))
        );
        assert_eq!(w("fd00:0::/120"), Ok(("fd00::/120".into(), false)));
        assert_eq!(w("::/0"), Ok(("::/0".into(), false)));
        assert!(w("192.168.10.5").unwrap_err().contains("neither a CIDR"));
        assert!(w("192.168.10.0/33").unwrap_err().contains("above 32"));
        assert!(
            w("192.168.10.9-192.168.10.1")
                .unwrap_err()
                .contains("after")
        );
        assert!(
            w("192.168.10.1-fd00::1")
                .unwrap_err()
                .contains("one family")
        );
        let (_, span, _) = metallb("192.168.10.10-192.168.10.20").unwrap();
        assert!(span.contains("192.168.10.20".parse().unwrap()));
        assert!(!span.contains("192.168.10.21".parse().unwrap()));
        assert!(!span.contains("::ffff:192.168.10.15".parse().unwrap()));
    }

    #[test]
    fn kube_vip_leaves_out_network_and_broadcast() {
        let c = |t: &str| kube_vip_cidr(t).map(|(s, _)| s);
        assert_eq!(
            c("192.168.0.200/29"),
            Ok("192.168.0.201-192.168.0.206".into())
        );
        assert_eq!(c("10.0.0.0/23"), Ok("10.0.0.1-10.0.1.254".into()));
        assert_eq!(c("10.0.0.4/31"), Ok("10.0.0.4/31".into()));
        assert_eq!(c("10.0.0.4/32"), Ok("10.0.0.4/32".into()));
        assert_eq!(c("fd00::/120"), Ok("fd00::/120".into()));
        let r = |t: &str| kube_vip_range(t).map(|(s, _)| s);
        assert_eq!(r("10.0.0.10-10.0.0.20"), Ok("10.0.0.10-10.0.0.20".into()));
        assert!(r("10.0.0.10").is_err());
    }
}
