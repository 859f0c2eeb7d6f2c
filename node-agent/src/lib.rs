//! The Buoy node agent: VRRP elections, VIP binding and announcement, the HTTP/TCP proxy, and
//! the agent that runs them for every VirtualIP of the node.

#![warn(unreachable_pub, missing_docs)]

mod admin;
pub mod agent;
pub mod bgp;
pub mod check;
pub mod cluster;
pub mod config;
pub mod control_plane;
pub mod dns;
mod endpoints;
pub mod files;
pub mod metrics;
pub mod net;
pub mod node;
pub mod probe;
pub mod proxy;
pub mod refresh;
pub mod runner;
mod secret_watch;
pub mod source;
pub mod track;
pub mod vrrp;
pub mod watch;
