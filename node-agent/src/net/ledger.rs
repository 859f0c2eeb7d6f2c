//! What this agent process has put on the host, written down before it is put there: the
//! addresses it bound, the virtual-MAC links it created, the iptables chains of its connection
//! handover. A file per agent identity (`standalone`, or the operator's placement key) and
//! network namespace in a state directory on the host (`/run/buoy`), locked with `flock` while
//! the agent lives. An agent
//! killed with SIGKILL cannot clean up; the next agent of this network namespace finds its
//! ledger unlocked and undoes it before anything else (`net::cleanup`), so that a VIP left bound
//! by a dead master never stays on two nodes.

use std::{
    collections::BTreeSet,
    fs::File,
    io::Write,
    net::IpAddr,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};
use tracing::warn;

/// The address protocol (`IFA_PROTO`, Linux 6.1+; `ip address show` prints `proto 0xb0`) that
/// marks the addresses Buoy adds, so that it never removes one it did not add (a node IP, an
/// address another tool manages). Outside the kernel's (0-3) and iproute2's named values.
pub(crate) const ADDRESS_PROTOCOL: u8 = 0xb0;

/// An address this agent bound.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct BoundAddress {
    /// The interface, by name: an index may be reused by another interface after a restart.
    pub interface: String,
    pub address: IpAddr,
    pub prefix: u8,
}

/// An iptables chain pair of the connection handover.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Chains {
    /// The chain jumped to from PREROUTING; the POSTROUTING one is [`Chains::out`].
    pub name: String,
    pub ipv6: bool,
    /// The `iptables-legacy` backend rather than the default one.
    pub legacy: bool,
}

impl Chains {
    /// The POSTROUTING chain's name.
    pub(crate) fn out(&self) -> String {
        format!("{}-OUT", self.name)
    }
}

/// Everything one agent has put on the host that is still there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entries {
    /// The network namespace (`st_dev:st_ino` of /proc/self/ns/net): agents of other
    /// namespaces sharing the directory (test labs, containers with the host's /run) leave
    /// each other's ledgers alone.
    pub netns: String,
    #[serde(default)]
    pub addresses: BTreeSet<BoundAddress>,
    /// Virtual-MAC (macvlan) interfaces.
    #[serde(default)]
    pub links: BTreeSet<String>,
    #[serde(default)]
    pub chains: BTreeSet<Chains>,
    /// Whether the shared policy routing of the handover (fwmark rule, local route) was set up.
    #[serde(default)]
    pub local_delivery: BTreeSet<bool>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LedgerError {
    #[error("state directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("another buoy-agent with identity {0:?} holds {1} in this network namespace")]
    Busy(String, PathBuf),
}

/// This process's ledger. Cloning shares it. Writes are best effort: a full disk must not stop
/// a takeover, it only weakens crash cleanup (logged once).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    entries: Entries,
    /// Held (flocked) for the process's life; closing it releases the lock.
    _lock: Option<File>,
    write_failed: bool,
}

/// The network namespace of this process, as `dev:ino`.
pub(crate) fn netns() -> String {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| format!("{}:{}", m.dev(), m.ino()))
        .unwrap_or_default()
}

/// The ledger's name: the identity and the network namespace, so that agents of other
/// namespaces sharing the directory (test labs, containers with the host's /run) have their
/// own.
fn file_stem(identity: &str) -> String {
    format!("{identity}@{}", netns().replace(':', "-"))
}

fn lock_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.lock"))
}

fn data_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.json"))
}

/// Tries to take the exclusive lock of `file` without waiting.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A ledger whose agent is gone (its lock was free), with its files.
pub(crate) struct Orphan {
    pub(crate) identity: String,
    pub(crate) entries: Entries,
    lock: File,
    lock_path: PathBuf,
    data_path: PathBuf,
}

impl Orphan {
    /// Forgets the ledger once what it lists is undone.
    pub(crate) fn discard(self) {
        let _ = std::fs::remove_file(&self.data_path);
        let _ = std::fs::remove_file(&self.lock_path);
        drop(self.lock);
    }
}

/// The ledgers in `dir` of this network namespace whose agents are gone, locked (so that no
/// other agent undoes them at the same time), and whether a live agent of this namespace
/// remains (one whose lock is held).
pub(crate) fn orphans(dir: &Path) -> Result<(Vec<Orphan>, bool), LedgerError> {
    let mut out = Vec::new();
    let mut live = false;
    let here = netns();
    let suffix = format!("@{}.lock", here.replace(':', "-"));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, live)),
        Err(e) => return Err(LedgerError::Dir(dir.to_path_buf(), e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Only this namespace's ledgers.
        let Some(identity) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(suffix.as_str()))
            .map(str::to_string)
        else {
            continue;
        };
        let data = data_path(dir, &file_stem(&identity));
        let recorded: Option<Entries> = std::fs::read(&data)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if recorded.as_ref().is_some_and(|e| e.netns != here) {
            continue;
        }
        let Ok(lock) = File::options().read(true).write(true).open(&path) else {
            continue;
        };
        if !try_lock(&lock) {
            live = true;
            continue;
        }
        // Read again under the lock: the owner may have written since.
        let entries: Entries = std::fs::read(&data)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if !entries.netns.is_empty() && entries.netns != here {
            continue;
        }
        out.push(Orphan {
            identity,
            entries,
            lock,
            lock_path: path,
            data_path: data,
        });
    }
    Ok((out, live))
}

impl Ledger {
    /// Creates and locks the ledger of `identity` in `dir` (made if missing). Fails if a live
    /// agent of this identity holds it. Orphans must have been undone first (see
    /// `net::cleanup`): this overwrites the file.
    pub(crate) fn create(dir: &Path, identity: &str) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir).map_err(|e| LedgerError::Dir(dir.to_path_buf(), e))?;
        let stem = file_stem(identity);
        let lock_path = lock_path(dir, &stem);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LedgerError::File(lock_path.clone(), e))?;
        if !try_lock(&lock) {
            return Err(LedgerError::Busy(identity.to_string(), lock_path));
        }
        let ledger = Ledger {
            inner: Arc::new(Mutex::new(Inner {
                path: data_path(dir, &stem),
                entries: Entries {
                    netns: netns(),
                    ..Entries::default()
                },
                _lock: Some(lock),
                write_failed: false,
            })),
        };
        ledger.update(|_| {});
        Ok(ledger)
    }

    /// A ledger that remembers nothing on disk (no state directory: crash cleanup is off).
    pub(crate) fn in_memory() -> Ledger {
        Ledger {
            inner: Arc::new(Mutex::new(Inner {
                path: PathBuf::new(),
                entries: Entries::default(),
                _lock: None,
                write_failed: false,
            })),
        }
    }

    /// What the ledger lists now.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> Entries {
        self.lock().entries.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the entries and writes them (atomically: a temporary file renamed over).
    pub(crate) fn update(&self, f: impl FnOnce(&mut Entries)) {
        let mut inner = self.lock();
        let before = inner.entries.clone();
        f(&mut inner.entries);
        if inner.path.as_os_str().is_empty() || (inner.entries == before && inner.path.exists()) {
            return;
        }
        let result = (|| -> std::io::Result<()> {
            let tmp = inner.path.with_extension("json.tmp");
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(&inner.entries).unwrap_or_default())?;
            std::fs::rename(&tmp, &inner.path)
        })();
        match result {
            Ok(()) => inner.write_failed = false,
            Err(e) if !inner.write_failed => {
                warn!(path = %inner.path.display(), error = %e, "cannot write the agent's ledger; what this run adds may outlive a crash");
                inner.write_failed = true;
            }
            Err(_) => {}
        }
    }

    /// Records an address before it is bound.
    pub(crate) fn binding(&self, interface: &str, address: IpAddr, prefix: u8) {
        self.update(|e| {
            e.addresses.insert(BoundAddress {
                interface: interface.to_string(),
                address,
                prefix,
            });
        });
    }

    /// Forgets an address once it is removed.
    pub(crate) fn released(&self, interface: &str, address: IpAddr, prefix: u8) {
        self.update(|e| {
            e.addresses.remove(&BoundAddress {
                interface: interface.to_string(),
                address,
                prefix,
            });
        });
    }

    /// Removes the files (the agent exits having undone everything).
    pub fn close(&self) {
        let mut inner = self.lock();
        if !inner.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&inner.path);
            if let Some(dir) = inner.path.parent()
                && let Some(stem) = inner.path.file_stem().and_then(|s| s.to_str())
            {
                let _ = std::fs::remove_file(lock_path(dir, stem));
            }
            inner.path = PathBuf::new();
        }
        inner._lock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_ledger_is_not_an_orphan_and_a_closed_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let a = Ledger::create(dir.path(), "standalone").unwrap();
        a.binding("eth0", "10.0.0.100".parse().unwrap(), 32);
        assert!(matches!(
            Ledger::create(dir.path(), "standalone"),
            Err(LedgerError::Busy(..))
        ));
        let (found, live) = orphans(dir.path()).unwrap();
        assert!(found.is_empty() && live);
        let written: Entries = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{}.json", file_stem("standalone")))).unwrap(),
        )
        .unwrap();
        assert_eq!(written.addresses.len(), 1);
        assert_eq!(written.netns, netns());
        a.released("eth0", "10.0.0.100".parse().unwrap(), 32);
        assert!(a.entries().addresses.is_empty());
        a.close();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_dead_agents_ledger_is_found_with_what_it_left() {
        let dir = tempfile::tempdir().unwrap();
        // What a SIGKILLed agent leaves: the files, with nobody holding the lock.
        let entries = Entries {
            netns: netns(),
            addresses: [BoundAddress {
                interface: "eth0".into(),
                address: "10.0.0.100".parse().unwrap(),
                prefix: 32,
            }]
            .into(),
            links: ["vrrp4.51".to_string()].into(),
            ..Entries::default()
        };
        let abc = file_stem("abc");
        std::fs::write(
            dir.path().join(format!("{abc}.json")),
            serde_json::to_vec(&entries).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join(format!("{abc}.lock")), b"").unwrap();
        // Another namespace's ledger is left alone.
        let other = Entries {
            netns: "0:1".into(),
            ..entries.clone()
        };
        std::fs::write(
            dir.path().join("x@0-1.json"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("x@0-1.lock"), b"").unwrap();
        let (found, live) = orphans(dir.path()).unwrap();
        assert!(!live);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].identity, "abc");
        assert_eq!(found[0].entries, entries);
        for o in found {
            o.discard();
        }
        assert!(!dir.path().join(format!("{abc}.json")).exists());
        assert!(dir.path().join("x@0-1.json").exists());
    }
}
