//! Buoy's operator: VirtualIPs, UpstreamPools and AddressPools in; node agent DaemonSets,
//! allocations, annotations and status out. The decisions are pure functions (`plan`, and
//! below it `allocate`, `selection`, `daemonset`, `conditions`; `leader::Elector`);
//! `controller`, `leader` and `telemetry` are the thin IO shells around them, and `app` wires
//! the process from its flags. `docs/operator.md` maps the modules.
//!
//! The public surface is what the `buoy-operator` binary uses: [`Flags`] and [`run`].

#![warn(unreachable_pub, missing_docs)]

mod allocate;
mod app;
mod applied;
mod conditions;
mod controller;
mod daemonset;
mod events;
mod leader;
mod plan;
mod selection;
mod telemetry;

pub use app::{Error, Flags, run};
