//! Which addresses an agent may bind, whatever a VirtualIP asks: never one the node already has
//! that Buoy did not add (a node IP), never one of the node's routers, never a subnet's network
//! or broadcast address, no loopback, multicast or unspecified address, and no prefix that would
//! route a network the interface is not on. The address policy decides who may claim which
//! address; this is the floor under it, on every node, in every mode. Pure.

use std::net::IpAddr;

use super::netlink::{InterfaceAddress, in_subnet};

fn host_bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// `addr/prefix`'s network and broadcast (IPv4; `None` for prefixes above /30, which have
/// neither).
fn network_and_broadcast(addr: IpAddr, prefix: u8) -> Option<(IpAddr, IpAddr)> {
    let IpAddr::V4(a) = addr else { return None };
    if prefix > 30 {
        return None;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    let network = u32::from(a) & mask;
    Some((
        IpAddr::V4(network.into()),
        IpAddr::V4((network | !mask).into()),
    ))
}

/// Why `vip/prefix` must not be bound on the interface `link_index` of a node with `addresses`
/// (every interface's) and default `gateways`; `None` when it may.
pub(crate) fn refusal(
    vip: IpAddr,
    prefix: u8,
    link_index: u32,
    addresses: &[InterfaceAddress],
    gateways: &[IpAddr],
) -> Option<String> {
    let broadcast = IpAddr::V4(std::net::Ipv4Addr::BROADCAST);
    if vip.is_unspecified() || vip.is_multicast() || vip.is_loopback() || vip == broadcast {
        return Some(format!(
            "{vip} is not an address a VIP can use (loopback, multicast, broadcast or unspecified)"
        ));
    }
    if let Some(a) = addresses.iter().find(|a| a.address == vip && !a.buoys()) {
        return Some(format!(
            "{vip} is already an address of this node (interface index {}), not one Buoy added: a VIP must not take a node's own address",
            a.index
        ));
    }
    if gateways.contains(&vip) {
        return Some(format!("{vip} is this node's default gateway"));
    }
    for a in addresses.iter().filter(|a| !a.buoys()) {
        if let Some((network, bcast)) = network_and_broadcast(a.address, a.prefix_len) {
            if vip == network {
                return Some(format!(
                    "{vip} is the network address of {network}/{}",
                    a.prefix_len
                ));
            }
            if vip == bcast {
                return Some(format!(
                    "{vip} is the broadcast address of {network}/{}",
                    a.prefix_len
                ));
            }
        }
    }
    if prefix < host_bits(vip) {
        let on_link = addresses.iter().any(|a| {
            !a.buoys()
                && a.index == link_index
                && a.address.is_ipv4() == vip.is_ipv4()
                && a.prefix_len <= prefix
                && in_subnet(vip, a.address, a.prefix_len)
        });
        if !on_link {
            return Some(format!(
                "{vip}/{prefix} would route a network its interface is not on; use /{} or the interface's own prefix",
                host_bits(vip)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ledger::ADDRESS_PROTOCOL;

    fn a(index: u32, ip: &str, prefix: u8, buoy: bool) -> InterfaceAddress {
        InterfaceAddress {
            index,
            address: ip.parse().unwrap(),
            prefix_len: prefix,
            link_local: false,
            protocol: buoy.then_some(ADDRESS_PROTOCOL),
        }
    }

    #[test]
    fn node_addresses_gateways_networks_and_foreign_prefixes_are_refused() {
        let node = [
            a(1, "127.0.0.1", 8, false),
            a(2, "10.0.0.1", 24, false),
            a(2, "10.0.0.100", 32, true),
            a(3, "fd00::1", 64, false),
        ];
        let gw = ["10.0.0.254".parse().unwrap()];
        let ok = |ip: &str, p: u8| refusal(ip.parse().unwrap(), p, 2, &node, &gw);
        assert_eq!(ok("10.0.0.50", 32), None);
        // A VIP Buoy bound itself (a successor instance) is fine.
        assert_eq!(ok("10.0.0.100", 32), None);
        // The interface's own prefix is fine; a wider one is not.
        assert_eq!(ok("10.0.0.50", 24), None);
        assert_eq!(ok("10.0.0.50", 25), None);
        assert!(
            ok("10.0.0.50", 16)
                .unwrap()
                .contains("would route a network")
        );
        assert!(
            ok("10.9.0.50", 24)
                .unwrap()
                .contains("would route a network")
        );
        assert!(
            ok("10.0.0.1", 32)
                .unwrap()
                .contains("already an address of this node")
        );
        assert!(ok("10.0.0.254", 32).unwrap().contains("default gateway"));
        assert!(
            ok("10.0.0.0", 32)
                .unwrap()
                .contains("network address of 10.0.0.0/24")
        );
        assert!(
            ok("10.0.0.255", 32)
                .unwrap()
                .contains("broadcast address of 10.0.0.0/24")
        );
        assert!(ok("127.0.0.5", 32).unwrap().contains("loopback"));
        assert!(ok("224.0.0.18", 32).unwrap().contains("multicast"));
        assert!(ok("255.255.255.255", 32).is_some());
        assert!(ok("fd00::1", 128).unwrap().contains("already an address"));
        assert_eq!(ok("fd00::88", 128), None);
        assert_eq!(
            refusal("fd00::88".parse().unwrap(), 64, 3, &node, &gw),
            None
        );
    }
}
