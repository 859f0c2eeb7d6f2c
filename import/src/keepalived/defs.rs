//! The definitions that keepalived's instances refer to: `global_defs` (the router ID, the VRRP
//! version and gratuitous ARP defaults) and `vrrp_script` (checks, of which only one of nginx
//! has a translation).

use buoy_crds::GratuitousArp;

use super::{
    parse::Stmt,
    values::{number, one_arg, repeat, seconds, version_of},
};
use crate::diagnostics::{ImportError, Loc, Warnings};

/// Why mail and notify scripts have no translation, and what to do instead.
pub(crate) const EVENTS: &str = "Buoy sends no mail and runs no notify scripts: each agent records every state change as a Kubernetes Event and in status.nodes[], and exports it on /metrics; alert on those";

/// A `vrrp_script`, as far as Buoy can use it.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    pub(crate) at: Loc,
    /// Whether its name or command mentions nginx: then Buoy's own proxy health replaces it.
    pub(crate) checks_nginx: bool,
    pub(crate) weight: i32,
}

/// `global_defs`: what applies to every instance of the file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Globals {
    pub(crate) router_id: Option<(String, Loc)>,
    pub(crate) version: Option<u8>,
    pub(crate) garp: GratuitousArp,
}

/// Reads a `global_defs` block into `g` (a later block overrides what it sets).
pub(crate) fn global_defs(
    s: &Stmt,
    g: &mut Globals,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    for d in s.block.iter().flatten() {
        let k = d.keyword();
        match k {
            "router_id" => g.router_id = Some((one_arg(d)?.to_string(), d.at.clone())),
            "notification_email"
            | "notification_email_from"
            | "smtp_server"
            | "smtp_connect_timeout"
            | "smtp_helo_name"
            | "email_faults"
            | "smtp_alert"
            | "smtp_alert_vrrp" => warnings.add(&d.at, k, EVENTS),
            "vrrp_version" => g.version = Some(version_of(d)?),
            "vrrp_garp_master_delay" => g.garp.delay = seconds(d)?,
            "vrrp_garp_master_repeat" => g.garp.repeat = repeat(d)?,
            "vrrp_garp_master_refresh" => g.garp.refresh_interval = seconds(d)?,
            "vrrp_garp_master_refresh_repeat" => g.garp.refresh_repeat = repeat(d)?,
            "enable_script_security" | "script_user" => {
                warnings.add(&d.at, k, "Buoy runs no scripts")
            }
            _ => warnings.add(&d.at, k, "Buoy has no equivalent"),
        }
    }
    Ok(())
}

/// A `vrrp_script` block: its name and what Buoy makes of it.
pub(crate) fn vrrp_script(
    s: &Stmt,
    warnings: &mut Warnings,
) -> Result<(String, Script), ImportError> {
    let name = one_arg(s)?.to_string();
    let mut script = Script {
        at: s.at.clone(),
        checks_nginx: name.to_ascii_lowercase().contains("nginx"),
        weight: 0,
    };
    let mut pending = Vec::new();
    for d in s.block.iter().flatten() {
        let k = d.keyword();
        match k {
            "script" => {
                let command = d.args().join(" ");
                script.checks_nginx |= command.to_ascii_lowercase().contains("nginx");
                pending.push((d.at.clone(), k.to_string()));
            }
            "weight" => {
                script.weight = number(d, d.args().first(), -253, 253)? as i32;
                if d.args().get(1).map(String::as_str) == Some("reverse") {
                    warnings.add(&d.at, "weight", "\"reverse\" has no equivalent: the weight applies as keepalived applies it without reverse");
                }
            }
            _ => pending.push((d.at.clone(), k.to_string())),
        }
    }
    for (at, k) in pending {
        let why = match (script.checks_nginx, k.as_str()) {
            (true, "script") => "Buoy runs no scripts; this one checks nginx, whose job Buoy's own proxy now does, so track.upstreams replaces it (the node's priority moves by the weight while it has a healthy backend for its listeners)".to_string(),
            (true, _) => "the proxy is part of the agent: its health (a healthy backend for every listener) is known continuously, with the pools' health-check timing".to_string(),
            (false, "script") => format!("Buoy runs no scripts; vrrp_script {name} does not check nginx, so nothing replaces it"),
            (false, _) => format!("part of vrrp_script {name}, which is not translated"),
        };
        warnings.add(&at, &k, why);
    }
    Ok((name, script))
}
