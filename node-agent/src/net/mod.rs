//! The host's network: interfaces and addresses (rtnetlink) and announcements (ARP / NA).

pub mod announce;
pub mod netlink;
