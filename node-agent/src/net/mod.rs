//! The host's network: interfaces and addresses (rtnetlink), announcements (ARP / NA) and
//! connection handover rules (netfilter + policy routing).

pub mod announce;
pub mod handover;
pub mod netlink;
