//! `buoy-agent vrrp`: one VRRP instance alone, for debugging (like `keepalived --vrrp`).

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, bail};
use buoy_agent::vrrp::instance::{self, InstanceEvent, Stats};
use tokio::sync::{mpsc, watch};
use tracing::info;

#[derive(clap::Args)]
pub(super) struct VrrpArgs {
    /// Interface that carries the addresses and the adverts.
    #[arg(long)]
    interface: String,
    /// Virtual router ID, 1..255.
    #[arg(long)]
    vrid: u8,
    /// Priority, 1..254 (255: address owner).
    #[arg(long)]
    priority: u8,
    /// Virtual address, optionally with a prefix length (default /32 or /128); repeatable.
    #[arg(long = "address", value_name = "IP/PREFIX", required = true)]
    addresses: Vec<String>,
    /// Advertisement interval (v3: 10ms steps; v2: whole seconds).
    #[arg(long, default_value = "1s")]
    advert_interval: String,
    /// Adverts sent per interval while master, the advert then copies 20 ms apart, 1..4 (each carries the interval).
    #[arg(long, default_value_t = 2)]
    adverts_per_interval: u8,
    /// VRRP version.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    version: u8,
    /// Send adverts by unicast to this peer instead of multicast; repeatable.
    #[arg(long = "unicast-peer", value_name = "IP")]
    unicast_peers: Vec<IpAddr>,
    /// Do not take the VIP from a lower-priority master.
    #[arg(long)]
    no_preempt: bool,
    /// VRRPv2 simple password (keepalived auth_type PASS).
    #[arg(long, value_name = "SECRET")]
    auth_pass: Option<String>,
}

/// The flags as a VirtualIP, validated by the API's own rules so that the debug command accepts
/// exactly what a VirtualIP would.
fn vrrp_spec(args: &VrrpArgs) -> Result<buoy_crds::VirtualIP> {
    let mut vrrp = serde_json::json!({
        "version": args.version,
        "advertisementInterval": args.advert_interval,
        "advertisementsPerInterval": args.adverts_per_interval,
        "preempt": !args.no_preempt,
        "unicast": !args.unicast_peers.is_empty(),
    });
    if !args.unicast_peers.is_empty() {
        vrrp["unicastPeers"] = args.unicast_peers.iter().map(|p| p.to_string()).collect();
    }
    if args.auth_pass.is_some() {
        vrrp["authentication"] = serde_json::json!({"type": "Password", "secretRef": {"name": "cli", "key": "password"}});
    }
    let object = serde_json::json!({
        "apiVersion": buoy_crds::API_VERSION,
        "kind": "VirtualIP",
        "metadata": {"name": "cli"},
        "spec": {
            "addresses": args.addresses,
            "interface": args.interface,
            "virtualRouterID": args.vrid,
            "vrrp": vrrp,
        }
    });
    if let Err(errors) = buoy_crds::validation::validate_value::<buoy_crds::VirtualIP>(&object) {
        bail!("invalid flags:\n{errors}");
    }
    if args.priority == 0 {
        bail!("--priority must be 1..255");
    }
    serde_json::from_value(object).context("decoding the flags")
}

pub(super) async fn vrrp(args: VrrpArgs) -> Result<()> {
    let vip = vrrp_spec(&args)?;
    let config = buoy_agent::config::vrrp_instance(
        &vip.spec,
        &vip.spec.addresses,
        args.priority,
        args.auth_pass.as_deref().map(str::as_bytes),
        None,
    )?;
    let (shutdown_tx, shutdown_rx) = watch::channel(None);
    // No proxy runs here, so there is nothing to track: upstreams count as healthy.
    let (_data_path_tx, data_path) = watch::channel(instance::DataPath::SERVING);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
            // The first signal hands over gracefully, another stops at once.
            shutdown_tx.send_modify(|s| {
                *s = Some(match s {
                    None => instance::Stop::Gracefully,
                    Some(_) => instance::Stop::Now,
                })
            });
        }
    });
    tokio::spawn(async move {
        // State changes are logged by the instance; collisions are worth a line of their own too.
        while let Some(event) = events_rx.recv().await {
            if let InstanceEvent::Collision { from, reason } = event {
                info!(%from, %reason, "collision reported");
            }
        }
    });
    let controls = instance::Controls {
        shutdown: shutdown_rx,
        data_path,
        events: events_tx,
        stats: stats.clone(),
        handover: None,
        successor: false,
        // No handover here: nothing is forwarded anywhere.
        peers: None,
        addresses: None,
    };
    let result = instance::run(config, controls).await;
    if let Ok(s) = stats.lock() {
        info!(
            sent = s.adverts_sent,
            received = s.adverts_received,
            other_vrid = s.other_vrid,
            drops = ?s.drops,
            collisions = ?s.collisions,
            "exiting"
        );
    }
    result.map(|_| ()).map_err(Into::into)
}
