//! Buoy's VRRP core, sans IO: the wire format ([`packet`]) and the receive checks
//! ([`receive`]), the RFC 5798 state machine ([`machine`]), and around it in [`router`] what the
//! RFC leaves to the implementation: announcements ([`announce`]), bind retries, and the ranking
//! of faults with keepalived's tracking weights ([`fault`], [`track`]). Everything here is fed
//! events with the current time and answers with what to do, every deadline a named timer; the
//! IO shell (`buoy-agent`'s `vrrp::instance`) owns the sockets, netlink and the clock, and only
//! does what it is told.

#![warn(missing_docs, unreachable_pub)]

pub mod announce;
pub mod fault;
pub mod machine;
pub mod packet;
pub mod receive;
pub mod router;
pub mod track;
