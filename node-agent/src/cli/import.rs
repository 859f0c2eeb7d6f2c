//! `buoy-agent import`: keepalived.conf and nginx.conf, MetalLB's configuration or
//! kube-vip-cloud-provider's into Buoy objects.

use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Args)]
pub(super) struct ImportArgs {
    /// keepalived.conf files, one per host (their instances merge into one VirtualIP per
    /// virtual_router_id and addresses, with one priority per host).
    #[arg(long = "keepalived", value_name = "FILE", num_args = 1..)]
    keepalived: Vec<PathBuf>,
    /// nginx.conf files (includes are followed).
    #[arg(long = "nginx", value_name = "FILE", num_args = 1..)]
    nginx: Vec<PathBuf>,
    /// YAML files with MetalLB's IPAddressPools, L2Advertisements and BGP objects (`kubectl get
    /// ipaddresspools,l2advertisements,bgpadvertisements,bgppeers,bfdprofiles,communities -A -o
    /// yaml`), and the LoadBalancer Services it serves: AddressPools, BGPPeers (a plain-text
    /// password as a Secret in --namespace), and the Services with Buoy's class and annotations.
    #[arg(long = "metallb", value_name = "FILE", num_args = 1..)]
    metallb: Vec<PathBuf>,
    /// YAML files with kube-vip-cloud-provider's ConfigMap (`kubectl -n kube-system get
    /// configmap kubevip -o yaml`), and the LoadBalancer Services it serves.
    #[arg(long = "kube-vip", value_name = "FILE", num_args = 1..)]
    kube_vip: Vec<PathBuf>,
    /// Namespace of the objects.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Node names: keepalived's router_id (the file name where it is missing or shared), or
    /// always the file name without extension (lb1.conf → lb1).
    #[arg(long, default_value = "router_id", value_parser = ["router_id", "hostname-of-file"])]
    node_name_from: String,
    /// Write no Secret that holds a private key (nginx's ssl_certificate_key): the HTTPS
    /// listeners still name their certificate Secrets, and comments give the `kubectl create
    /// secret tls` commands that make them from the PEM files. Without it, the output holds the
    /// keys: keep it private.
    #[arg(long)]
    secrets_as_references: bool,
}

pub(super) fn import(args: ImportArgs) -> ExitCode {
    use buoy_import::{NodeNameFrom, Options};
    let options = Options {
        keepalived: args.keepalived,
        nginx: args.nginx,
        metallb: args.metallb,
        kube_vip: args.kube_vip,
        namespace: args.namespace,
        node_name_from: if args.node_name_from == "hostname-of-file" {
            NodeNameFrom::FileName
        } else {
            NodeNameFrom::RouterId
        },
        secrets_as_references: args.secrets_as_references,
    };
    match buoy_import::import(&options).and_then(|i| Ok((i.to_yaml()?, i.warnings))) {
        Ok((yaml, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
