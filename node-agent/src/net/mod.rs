//! The host's network: interfaces and addresses (rtnetlink), announcements (ARP / NA),
//! connection handover rules (netfilter + policy routing), and the ledger of what the agent put
//! on the host, undone after a crash.

pub(crate) mod announce;
pub(crate) mod claim;
pub(crate) mod cleanup;
pub(crate) mod handover;
pub(crate) mod ledger;
pub mod netlink;
