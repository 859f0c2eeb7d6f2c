//! A whole keepalived.conf: the definitions first (keepalived reads the whole file before it
//! starts instances), then every instance; the blocks of other subsystems are reported.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{
    defs::{Globals, Script, global_defs, vrrp_script},
    instance::{Instance, vrrp_instance},
    parse,
};
use crate::diagnostics::{ImportError, Loc, Warnings};

/// One keepalived.conf, translated.
#[derive(Clone, Debug)]
pub(crate) struct File {
    pub(crate) path: PathBuf,
    pub(crate) router_id: Option<(String, Loc)>,
    pub(crate) instances: Vec<Instance>,
}

/// Reads and translates one keepalived.conf (one host's).
pub(crate) fn parse_file(path: &Path, warnings: &mut Warnings) -> Result<File, ImportError> {
    let stmts = parse::read(path, warnings)?;
    let mut globals = Globals::default();
    let mut scripts: BTreeMap<String, Script> = BTreeMap::new();
    // Definitions first (keepalived reads the whole file before it starts instances).
    for s in &stmts {
        match s.keyword() {
            "global_defs" => global_defs(s, &mut globals, warnings)?,
            "vrrp_script" => {
                let (name, script) = vrrp_script(s, warnings)?;
                scripts.insert(name, script);
            }
            _ => {}
        }
    }
    let mut file = File {
        path: path.to_path_buf(),
        router_id: globals.router_id.clone(),
        instances: Vec::new(),
    };
    for s in &stmts {
        match s.keyword() {
            "global_defs" | "vrrp_script" => {}
            "vrrp_instance" => {
                let inst = vrrp_instance(s, &globals, &scripts, warnings)?;
                file.instances.push(inst);
            }
            "vrrp_sync_group" => warnings.add(
                &s.at,
                "vrrp_sync_group",
                "each VirtualIP elects its master on its own; to move addresses together, put them in one VirtualIP (up to 16 addresses)",
            ),
            "virtual_server" | "virtual_server_group" => warnings.add(
                &s.at,
                s.keyword(),
                "Buoy does not drive IPVS; balance with an UpstreamPool and a TCP or HTTP listener instead",
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => warnings.add(
                &s.at,
                s.keyword(),
                "configure the host's own addresses and routes outside Buoy",
            ),
            "vrrp_track_process" | "vrrp_track_file" | "track_file" | "track_process"
            | "track_bfd" | "bfd_instance" | "garp_group" | "linkbeat_interfaces" => {
                warnings.add(&s.at, s.keyword(), "Buoy has no equivalent")
            }
            k if s.block.is_some() => {
                return Err(ImportError::at(
                    &s.at,
                    format!("unknown block \"{k}\" (expected global_defs, vrrp_script, vrrp_instance, vrrp_sync_group, virtual_server, …)"),
                ));
            }
            k => warnings.add(&s.at, k, "unknown keyword"),
        }
    }
    Ok(file)
}
