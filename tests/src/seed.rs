//! The reference architecture (examples/seed) on the lab's addresses, for the end-to-end tests
//! and the demo: lb1 = 10.77.0.1, lb2 = .2, web1 = .3, web2 = .4, the VIP 10.77.0.100.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub const VIP: &str = "10.77.0.100";

/// Writes examples/seed with the lab's addresses into `dir/config`; returns that directory.
pub fn lab_config(dir: &Path) -> Result<PathBuf> {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let out = dir.join("config");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for entry in std::fs::read_dir(&seed).with_context(|| format!("reading {}", seed.display()))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?
            .replace("192.168.60.88", VIP)
            .replace("192.168.60.91", "10.77.0.3")
            .replace("192.168.60.92", "10.77.0.4")
            .replace("192.168.60.93", "10.77.0.1")
            .replace("192.168.60.94", "10.77.0.2");
        if let Some(name) = path.file_name() {
            std::fs::write(out.join(name), text)?;
        }
    }
    Ok(out)
}
