//! The BGP announcement mode's FRR side: the configuration FRR should run and its rendering
//! ([`config`], pure), and what FRR's JSON says about the sessions ([`state`], pure). Buoy does
//! not speak BGP itself: FRR (bgpd, bfdd) does, beside the agent.

pub mod config;
pub mod state;

pub use config::{BfdConfig, ConfigError, FrrConfig, PeerConfig, RouteConfig, render};
pub use state::{SessionPhase, SessionState};
