//! Crash safety: before an agent takes part in any election, and before it asks the API server
//! anything, it undoes what agents of its network namespace that are gone (SIGKILL, OOM, a
//! node's power cut to the agent's container only) left on the host: their addresses (so that a
//! VIP never stays on two nodes once this node's agent runs again), virtual-MAC links, handover
//! chains and, when no agent of the namespace is left, the shared policy routing.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use tracing::{info, warn};

use super::{
    handover::{self, remove_chains},
    ledger::{self, Entries, Ledger},
    netlink::{InterfaceAddress, Link, NetError, Netlink},
};

/// What was undone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Ledgers of agents that were gone.
    pub ledgers: usize,
    pub addresses: Vec<IpAddr>,
    pub links: Vec<String>,
    pub chains: Vec<String>,
    /// The handover's shared policy routing, in how many families.
    pub routing: usize,
}

impl Recovered {
    fn is_empty(&self) -> bool {
        self.addresses.is_empty()
            && self.links.is_empty()
            && self.chains.is_empty()
            && self.routing == 0
    }
}

/// The addresses of `entries` found in `present` (by interface name, address and prefix) that
/// Buoy may remove: tagged as Buoy's, or untagged on a kernel that tags nothing. Pure.
pub(crate) fn stale_addresses<'a>(
    entries: &Entries,
    present: &'a [InterfaceAddress],
    links: &[Link],
) -> Vec<&'a InterfaceAddress> {
    let kernel_tags = present.iter().any(|a| a.protocol.is_some());
    present
        .iter()
        .filter(|a| a.buoys() || (!kernel_tags && a.protocol.is_none()))
        .filter(|a| {
            entries.addresses.iter().any(|b| {
                b.address == a.address
                    && b.prefix == a.prefix_len
                    && links
                        .iter()
                        .any(|l| l.index == a.index && l.name == b.interface)
            })
        })
        .collect()
}

/// Undoes the ledgers in `dir` of this network namespace's agents that are gone, then creates
/// and locks this agent's ledger (`identity`). Without a usable directory, warns and returns a
/// ledger in memory: the agent runs, without crash cleanup.
pub(crate) async fn recover(dir: &Path, identity: &str) -> (Ledger, Recovered) {
    let mut done = Recovered::default();
    let (orphans, live) = match ledger::orphans(dir) {
        Ok(found) => found,
        Err(e) => {
            warn!(error = %e, "no crash cleanup: the state directory cannot be read");
            return (Ledger::in_memory(), done);
        }
    };
    if !orphans.is_empty() {
        match undo(&orphans, live).await {
            Ok(r) => done = r,
            Err(e) => warn!(error = %e, "cleaning up after an agent that did not exit cleanly"),
        }
        done.ledgers = orphans.len();
        for o in orphans {
            o.discard();
        }
    }
    if !done.is_empty() {
        info!(
            addresses = ?done.addresses,
            links = ?done.links,
            chains = ?done.chains,
            "removed what an agent that did not exit cleanly left on this node"
        );
    }
    let ledger = match Ledger::create(dir, identity) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "no crash cleanup for this run: cannot create the agent's ledger");
            Ledger::in_memory()
        }
    };
    (ledger, done)
}

async fn undo(orphans: &[ledger::Orphan], live: bool) -> Result<Recovered, NetError> {
    let netlink = Netlink::connect()?;
    let present = netlink.addresses().await?;
    let links = netlink.links().await?;
    let mut done = Recovered::default();
    for o in orphans {
        info!(agent = %o.identity, "undoing what a stopped agent left behind");
        for a in stale_addresses(&o.entries, &present, &links) {
            if netlink
                .remove_address_at(a.index, a.address, a.prefix_len)
                .await?
            {
                done.addresses.push(a.address);
            }
        }
        // Only links of Buoy's naming (`vrrp4.51`): a ledger is a file a hand could edit.
        for name in o.entries.links.iter().filter(|n| n.starts_with("vrrp")) {
            if links.iter().any(|l| &l.name == name) {
                netlink.delete_link(name).await?;
                done.links.push(name.clone());
            }
        }
        for chains in &o.entries.chains {
            match remove_chains(chains).await {
                Ok(()) => done.chains.push(chains.name.clone()),
                Err(e) => warn!(chain = %chains.name, error = %e, "cannot remove a handover chain"),
            }
        }
    }
    if !live {
        for ipv6 in [false, true] {
            if orphans
                .iter()
                .any(|o| o.entries.local_delivery.contains(&ipv6))
            {
                match handover::remove_local_delivery(&netlink, ipv6).await {
                    Ok(()) => done.routing += 1,
                    Err(e) => {
                        warn!(ipv6, error = %e, "cannot remove the handover's policy routing")
                    }
                }
            }
        }
    }
    Ok(done)
}

/// Whether an agent of this network namespace other than `identity` is running (holds its
/// ledger's lock): then the shared policy routing stays when this one exits.
pub(crate) fn others_alive(dir: &Path, identity: &str) -> bool {
    let suffix = format!("@{}.lock", ledger::netns().replace(':', "-"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path: PathBuf = e.path();
        // Only this namespace's ledgers.
        let Some(other) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(suffix.as_str()))
        else {
            return false;
        };
        if other == identity {
            return false;
        }
        let Ok(file) = std::fs::File::options().read(true).write(true).open(&path) else {
            return false;
        };
        // SAFETY: flock on a descriptor we own; the lock (if taken) goes with the file.
        let free = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            ) == 0
        };
        !free
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ledger::{ADDRESS_PROTOCOL, BoundAddress};

    fn address(index: u32, ip: &str, prefix: u8, protocol: Option<u8>) -> InterfaceAddress {
        InterfaceAddress {
            index,
            address: ip.parse().unwrap(),
            prefix_len: prefix,
            link_local: false,
            protocol,
        }
    }

    fn link(index: u32, name: &str) -> Link {
        Link {
            index,
            name: name.into(),
            mac: [0; 6],
            up: true,
        }
    }

    #[test]
    fn only_tagged_addresses_the_ledger_lists_are_stale() {
        let entries = Entries {
            addresses: [
                BoundAddress {
                    interface: "eth0".into(),
                    address: "10.0.0.100".parse().unwrap(),
                    prefix: 32,
                },
                BoundAddress {
                    interface: "eth0".into(),
                    address: "10.0.0.1".parse().unwrap(),
                    prefix: 24,
                },
            ]
            .into(),
            ..Entries::default()
        };
        let links = [link(2, "eth0"), link(3, "eth1")];
        let present = [
            address(2, "10.0.0.100", 32, Some(ADDRESS_PROTOCOL)),
            // The node's own address, listed by a tampered ledger: not Buoy's, kept.
            address(2, "10.0.0.1", 24, None),
            // Buoy's, but on another interface than the ledger says: kept.
            address(3, "10.0.0.100", 32, Some(ADDRESS_PROTOCOL)),
            address(1, "127.0.0.1", 8, Some(1)),
        ];
        let stale: Vec<IpAddr> = stale_addresses(&entries, &present, &links)
            .iter()
            .map(|a| a.address)
            .collect();
        assert_eq!(stale, ["10.0.0.100".parse::<IpAddr>().unwrap()]);
        // A kernel that tags nothing (before 6.1): the ledger decides.
        let untagged = [
            address(2, "10.0.0.100", 32, None),
            address(2, "10.0.0.1", 24, None),
        ];
        assert_eq!(stale_addresses(&entries, &untagged, &links).len(), 2);
    }
}
