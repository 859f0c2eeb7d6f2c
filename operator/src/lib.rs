//! Buoy's operator: VirtualIPs and UpstreamPools in, node agent DaemonSets, allocations,
//! annotations and status out. The decisions are pure functions ([`plan`], [`allocate`],
//! [`selection`], [`daemonset`], [`conditions`], [`leader::Elector`]); [`controller`] and
//! [`leader`] are the thin IO shells around them, and [`app`] wires the process from its flags.

pub mod allocate;
pub mod app;
pub mod conditions;
pub mod controller;
pub mod daemonset;
pub mod leader;
pub mod plan;
pub mod selection;
pub mod telemetry;

pub use app::{Error, Flags, run};
