//! The Buoy node agent: VRRP elections, VIP binding and announcement, and (soon) the proxy.

pub mod config;
pub mod net;
pub mod proxy;
pub mod vrrp;
