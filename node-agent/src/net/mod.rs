//! The host's network: interfaces and addresses (rtnetlink), announcements (ARP / NA),
//! connection handover rules (netfilter + policy routing), and the ledger of what the agent put
//! on the host, undone after a crash.

pub mod announce;
pub mod claim;
pub mod cleanup;
pub mod handover;
pub mod ledger;
pub mod netlink;
