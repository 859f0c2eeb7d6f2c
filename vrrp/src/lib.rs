//! Buoy's VRRP core, sans IO: the wire format ([`packet`]), the RFC 5798 state machine
//! ([`machine`]) and keepalived's tracking weights ([`track`]). Everything here is fed events
//! with the current time and answers with what to do; the IO shell (`buoy-agent`'s
//! `vrrp::instance`) owns the sockets, netlink and the clock, and only does what it is told.

pub mod machine;
pub mod packet;
pub mod track;
