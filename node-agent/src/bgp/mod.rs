//! The BGP announcement mode's FRR side: the configuration FRR should run and its rendering
//! ([`config`], pure), what FRR's JSON says about the sessions ([`state`], pure), and the IO
//! shell that applies the one and reads the other ([`driver`]). Buoy does not speak BGP itself:
//! FRR (bgpd, bfdd) does, beside the agent.

pub mod announce;
pub mod config;
pub mod driver;
pub mod speaker;
pub mod state;

pub use config::{BfdConfig, ConfigError, FrrConfig, PeerConfig, RouteConfig, render};
pub use driver::{Frr, FrrError};
pub use state::SessionState;
