//! `buoy-agent manifest control-plane`: the static Pod and the Buoy configuration of a
//! control-plane VIP ([`buoy_agent::control_plane`]), printed or written to a directory.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use buoy_agent::control_plane::{self, ControlPlane, ControlPlaneNode, Mode};

#[derive(clap::Subcommand)]
pub(super) enum ManifestArgs {
    /// A VIP in front of the cluster's API servers (kubeadm's `controlPlaneEndpoint`), that
    /// needs no cluster: prints the static Pod for /etc/kubernetes/manifests and the Buoy
    /// configuration it mounts (or writes them with --output-dir). The same on every
    /// control-plane node.
    ControlPlane(ControlPlaneArgs),
}

#[derive(clap::Args)]
pub(super) struct ControlPlaneArgs {
    /// The VIP, IP/PREFIX (192.168.1.10/24).
    #[arg(long, value_name = "IP/PREFIX")]
    address: String,
    /// The interface that carries it on every control-plane node.
    #[arg(long, value_name = "IF")]
    interface: String,
    /// A control-plane node: its name (the kubelet's node name, usually the host name) and
    /// VRRP priority; in proxy mode also the address its API server listens on. Repeatable.
    #[arg(long = "node", value_name = "NAME=PRIORITY[@ADDRESS]", required = true)]
    nodes: Vec<ControlPlaneNode>,
    /// The port clients use on the VIP (default: 6443 in announce mode, 8443 in proxy mode).
    #[arg(long)]
    port: Option<u16>,
    /// The port every API server listens on (tracked on 127.0.0.1).
    #[arg(long, default_value_t = 6443)]
    apiserver_port: u16,
    /// `announce`: VRRP only, the master's API server answers on the VIP. `proxy`: a TCP
    /// listener on the VIP forwards to every healthy API server (checked on /livez).
    #[arg(long, value_enum, default_value_t = Mode::Announce)]
    mode: Mode,
    /// VRRP virtual router ID, unique on the LAN.
    #[arg(long, default_value_t = 51)]
    virtual_router_id: u8,
    /// VRRP advertisement interval (a backup takes over after about 3 of them).
    #[arg(long, default_value = "1s")]
    advertisement_interval: buoy_crds::Duration,
    /// The agent's image.
    #[arg(long, default_value = concat!("ghcr.io/buoy-io/buoy-agent:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// Where each node keeps the configuration (mounted into the Pod from the host).
    #[arg(long, default_value = "/etc/buoy/control-plane", value_name = "DIR")]
    config_dir: String,
    /// Write `config/control-plane.yaml` (for --config-dir) and
    /// `manifests/buoy-control-plane.yaml` (for /etc/kubernetes/manifests) under DIR instead of
    /// printing both.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

pub(super) fn manifest(args: ManifestArgs) -> ExitCode {
    let ManifestArgs::ControlPlane(args) = args;
    match control_plane_files(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn control_plane_files(args: ControlPlaneArgs) -> Result<()> {
    let control_plane = ControlPlane {
        address: args.address,
        interface: args.interface,
        nodes: args.nodes,
        port: args.port.unwrap_or(match args.mode {
            Mode::Announce => 6443,
            Mode::Proxy => 8443,
        }),
        apiserver_port: args.apiserver_port,
        mode: args.mode,
        virtual_router_id: args.virtual_router_id,
        advertisement_interval: args.advertisement_interval,
        image: args.image,
        config_dir: args.config_dir,
    };
    let config = control_plane::to_yaml(&control_plane.objects().map_err(anyhow::Error::msg)?)
        .map_err(anyhow::Error::msg)?;
    let pod = control_plane::to_yaml(&[control_plane.pod()]).map_err(anyhow::Error::msg)?;
    let Some(dir) = args.output_dir else {
        print!(
            "# {}/control-plane.yaml on every control-plane node\n{config}---\n# /etc/kubernetes/manifests/buoy-control-plane.yaml on every control-plane node\n{pod}",
            control_plane.config_dir
        );
        return Ok(());
    };
    for (sub, file, text) in [
        ("config", "control-plane.yaml", config),
        ("manifests", "buoy-control-plane.yaml", pod),
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let path = d.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
