//! Debian's keepalived as a test and benchmark peer: its configuration written from a few fields,
//! and started in a lab host with its own pid files (several may run at once).

use std::path::PathBuf;

use anyhow::Result;

use crate::netlab::Lab;

/// One `vrrp_instance`.
#[derive(Clone, Debug)]
pub struct Instance {
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    /// advert_int in seconds (0.1 for 100 ms).
    pub advert_int: f64,
    /// `virtual_ipaddress` entries, such as `10.77.0.100/24`.
    pub addresses: Vec<String>,
    /// auth_type PASS with this password.
    pub password: Option<String>,
    /// `(unicast_src_ip, unicast_peer)`.
    pub unicast: Option<(String, String)>,
}

impl Instance {
    fn block(&self, name: &str) -> String {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!("  authentication {{\n    auth_type PASS\n    auth_pass {p}\n  }}\n"))
            .unwrap_or_default();
        let unicast = self
            .unicast
            .as_ref()
            .map(|(me, peer)| {
                format!("  unicast_src_ip {me}\n  unicast_peer {{\n    {peer}\n  }}\n")
            })
            .unwrap_or_default();
        let addresses: String = self
            .addresses
            .iter()
            .map(|a| format!("    {a}\n"))
            .collect();
        format!(
            "vrrp_instance {name} {{\n  state BACKUP\n  interface {}\n  virtual_router_id {}\n  priority {}\n  advert_int {}\n{auth}{unicast}  virtual_ipaddress {{\n{addresses}  }}\n}}\n",
            self.interface, self.vrid, self.priority, self.advert_int
        )
    }
}

/// A whole keepalived.conf with these instances.
pub fn config(version: u8, instances: &[Instance]) -> String {
    let mut c = format!("global_defs {{\n  vrrp_version {version}\n}}\n");
    for (i, inst) in instances.iter().enumerate() {
        c.push_str(&inst.block(&format!("VI_{i}")));
    }
    c
}

/// Starts `keepalived --vrrp` with `config` on `host`; returns the process index in the lab and
/// the file where keepalived writes its VRRP child's pid.
pub fn start(lab: &mut Lab, host: &str, config: &str, log: bool) -> Result<(usize, PathBuf)> {
    let dir = lab.dir().to_path_buf();
    let conf = dir.join(format!("{host}.keepalived.conf"));
    std::fs::write(&conf, config)?;
    let (main_pid, vrrp_pid) = (
        dir.join(format!("{host}.keepalived.pid")),
        dir.join(format!("{host}.vrrp.pid")),
    );
    let (c, m, v) = (
        conf.display().to_string(),
        main_pid.display().to_string(),
        vrrp_pid.display().to_string(),
    );
    let mut args = vec![
        "--vrrp",
        "--dont-fork",
        "--use-file",
        &c,
        "--pid",
        &m,
        "--vrrp_pid",
        &v,
    ];
    if log {
        args.push("--log-console");
    }
    Ok((lab.spawn(host, "keepalived", &args)?, vrrp_pid))
}
