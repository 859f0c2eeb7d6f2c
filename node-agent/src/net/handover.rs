//! Connection handover between nodes, so that a VIP moving between two live nodes (a graceful
//! stop, a preemption) breaks no TCP connection.
//!
//! A client whose handshake straddles the new master's gratuitous ARP has its SYN answered by
//! the old master and its next packets sent to the new one, which knows no such connection and
//! would reset it; keep-alive connections opened before the move meet the same fate. So:
//! - on the new master, packets to a VIP it holds that are not SYNs and belong to no connection
//!   it tracks are cloned to the previous master (`TEE --gateway`, unchanged: the destination is
//!   still the VIP) and dropped here, for a window after the takeover;
//! - on every node, packets to a VIP that is not local but match one of our transparent sockets
//!   (the proxy's listeners set IP_TRANSPARENT) are marked and routed to the local stack, so the
//!   old master keeps serving the connections it accepted after its address is gone.
//!
//! Netfilter has no maintained Rust crate that writes iptables rules, and every node tool in the
//! field (kube-proxy, kube-vip, MetalLB) runs `iptables-restore`: so do we, into one chain of our
//! own in the mangle table, rewritten whole on every change. Policy routing goes through netlink.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
    process::Stdio,
};

use tokio::{io::AsyncWriteExt, process::Command, sync::watch};
use tracing::{debug, info, warn};

use super::{
    ledger::{Chains, Ledger},
    netlink::Netlink,
};

/// The chain of a standalone agent in the mangle table, jumped to first from PREROUTING; its
/// `-OUT` twin is jumped to first from POSTROUTING and tags what we forward. An agent of a
/// cluster placement has chains of its own ([`chain_name`]), so that two agents on one node (two
/// placements) never rewrite each other's rules.
pub(crate) const CHAIN: &str = "BUOY-HANDOVER";

/// The chain of an agent identity: [`CHAIN`] for `standalone`, `BUOY-HO-<identity>` otherwise
/// (iptables allows 28 characters; placement keys have 10).
pub(crate) fn chain_name(identity: &str) -> String {
    if identity == "standalone" {
        CHAIN.to_string()
    } else {
        let short: String = identity
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        format!("BUOY-HO-{short}")
    }
}
/// The DSCP of packets a new master forwards to the old one (unassigned in the IANA registry).
/// The old node routes a packet it has no socket for back to the VIP's holder (nodes forward
/// IP), which would forward it again until its TTL ran out; the tag lets the new master drop
/// what comes back.
pub(crate) const FORWARDED_DSCP: u8 = 0x2d;
/// The fwmark bit that sends a packet for one of our sockets to the local stack. Chosen clear
/// of kube-proxy's (0x4000, 0x8000) and Cilium's (0x0f00) bits.
pub(crate) const MARK: u32 = 0x0010_0000;
/// The routing table holding the `local default dev lo` route for marked packets.
pub(crate) const TABLE: u32 = 0x4255;
/// Preference of the fwmark rule: after `local` (0), before `main` (32766).
pub(crate) const RULE_PREFERENCE: u32 = 1900;

/// What the chain must say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rules {
    /// VIPs whose packets reach our sockets even where the VIP is not local (the old master).
    pub deliver: BTreeSet<IpAddr>,
    /// VIP → (previous master, interface towards it): where packets of connections we do not
    /// know go while the VIP is ours.
    pub forward: BTreeMap<IpAddr, (IpAddr, String)>,
    /// ECMP VIP → the other nodes announcing it, each with the interface towards it: packets of
    /// connections we do not know go to all of them (the one that has the connection takes it,
    /// the others drop it), for as long as the VIP is announced from here.
    pub spread: Spread,
}

/// ECMP VIP → its other nodes, each with the interface towards it.
pub(crate) type Spread = BTreeMap<IpAddr, BTreeSet<(IpAddr, String)>>;

/// How many unknown packets per second and VIP one peer is sent (and the burst): a router's
/// rehash moves a few packets of each connection; a flood of stray ACKs is not multiplied by the
/// number of nodes onto the LAN. (10,000/s is the most iptables' `limit` takes.)
pub(crate) const SPREAD_LIMIT: u32 = 10_000;

/// The `iptables-restore --noflush` input that makes the chain `chain` say `rules` (one family).
pub(crate) fn restore_input(rules: &Rules, ipv6: bool, chain: &str) -> String {
    let host = if ipv6 { 128 } else { 32 };
    let out_chain = format!("{chain}-OUT");
    let (chain, out_chain) = (chain, out_chain.as_str());
    let mut out =
        format!("*mangle\n:{chain} - [0:0]\n:{out_chain} - [0:0]\n-F {chain}\n-F {out_chain}\n");
    for (vip, (gateway, interface)) in rules.forward.iter().filter(|(v, _)| v.is_ipv6() == ipv6) {
        // The VIP is ours, so a packet for it leaving by the LAN is one we forward: tag it, and
        // drop it if the old node routes it back.
        let _ = writeln!(
            out,
            "-A {out_chain} -d {vip}/{host} -o {interface} -p tcp -m addrtype --dst-type LOCAL \
             -j DSCP --set-dscp {FORWARDED_DSCP:#x}"
        );
        let _ = writeln!(
            out,
            "-A {chain} -d {vip}/{host} -i {interface} -p tcp -m dscp --dscp {FORWARDED_DSCP:#x} \
             -m addrtype --dst-type LOCAL -j DROP"
        );
        // Not a SYN, no connection tracked here, and the VIP is ours now (a backup never
        // forwards: the packet came from a new master, and would bounce back).
        let unknown = format!(
            "-A {chain} -d {vip}/{host} -p tcp ! --syn -m addrtype --dst-type LOCAL \
             -m conntrack --ctstate NEW,INVALID"
        );
        let _ = writeln!(
            out,
            "{unknown} -j TEE --gateway {gateway} --oif {interface}"
        );
        let _ = writeln!(out, "{unknown} -j DROP");
    }
    for (vip, peers) in rules.spread.iter().filter(|(v, _)| v.is_ipv6() == ipv6) {
        let interfaces: BTreeSet<&str> = peers.iter().map(|(_, i)| i.as_str()).collect();
        for interface in interfaces {
            let _ = writeln!(
                out,
                "-A {out_chain} -d {vip}/{host} -o {interface} -p tcp -m addrtype --dst-type LOCAL \
                 -j DSCP --set-dscp {FORWARDED_DSCP:#x}"
            );
        }
        // Sent here by another node and not ours either: dropped, neither reset nor sent on.
        let _ = writeln!(
            out,
            "-A {chain} -d {vip}/{host} -p tcp -m dscp --dscp {FORWARDED_DSCP:#x} \
             -m conntrack --ctstate NEW,INVALID -j DROP"
        );
        let unknown =
            format!("-A {chain} -d {vip}/{host} -p tcp ! --syn -m conntrack --ctstate NEW,INVALID");
        for (gateway, interface) in peers {
            let _ = writeln!(
                out,
                "{unknown} -m limit --limit {SPREAD_LIMIT}/sec --limit-burst {SPREAD_LIMIT} \
                 -j TEE --gateway {gateway} --oif {interface}"
            );
        }
        let _ = writeln!(out, "{unknown} -j DROP");
        // As for `deliver`: tracked from the SYN, so that "unknown" means another node's.
        let _ = writeln!(
            out,
            "-A {chain} -d {vip}/{host} -p tcp -m conntrack --ctstate NEW"
        );
    }
    for vip in rules.deliver.iter().filter(|v| v.is_ipv6() == ipv6) {
        let _ = writeln!(
            out,
            "-A {chain} -d {vip}/{host} -p tcp -m addrtype ! --dst-type LOCAL \
             -m socket --transparent -j MARK --set-xmark {MARK:#x}/{MARK:#x}"
        );
        // No target: a conntrack match turns connection tracking on from the start, so every
        // connection this node accepts on the VIP is tracked from its SYN, and "tracked
        // nowhere" above means another node's (a VIP that comes back to us must not forward
        // our own older connections away).
        let _ = writeln!(
            out,
            "-A {chain} -d {vip}/{host} -p tcp -m conntrack --ctstate NEW"
        );
    }
    out.push_str("COMMIT\n");
    out
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    #[error("running {command}: {source}")]
    Spawn {
        command: &'static str,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed {
        command: &'static str,
        stderr: String,
    },
    #[error("policy routing: {0}")]
    Routing(#[from] rtnetlink::Error),
}

/// The agent's handle on the node's handover rules; instances add their VIPs. Cloning shares
/// the same rules.
#[derive(Clone)]
pub struct Handover {
    desired: watch::Sender<Desired>,
    /// The `seq` of the last rules the task applied (or failed to).
    applied: watch::Receiver<u64>,
}

/// The rules wanted now, numbered so that a caller can wait for its own change to be applied
/// (not for an earlier one that was being applied when it asked).
#[derive(Clone, Default)]
struct Desired {
    rules: Rules,
    seq: u64,
    /// No chain at all (the agent is exiting): removed by the same task, so that a removal
    /// never runs beside an `iptables-restore` that would declare the chains again.
    removed: bool,
    /// With `removed`: the policy routing goes too (no other agent of this network namespace
    /// uses it).
    last_agent: bool,
}

impl Handover {
    /// Starts the task that applies changes (on the current runtime, in this network namespace)
    /// to the chain `chain` (see [`chain_name`]), recorded in `ledger` before they exist.
    pub fn start(chain: String, ledger: Ledger) -> Result<Handover, super::netlink::NetError> {
        let netlink = Netlink::connect()?.with_ledger(ledger);
        let (desired, mut changes) = watch::channel(Desired::default());
        let (applied_tx, applied) = watch::channel(0u64);
        tokio::spawn(async move {
            let mut routing_ready = [false, false];
            let mut failing = false;
            while changes.changed().await.is_ok() {
                let Desired {
                    rules,
                    seq,
                    removed,
                    last_agent,
                } = changes.borrow_and_update().clone();
                if removed {
                    for ipv6 in [false, true] {
                        let chains = Chains {
                            name: chain.clone(),
                            ipv6,
                            legacy: variant().await == Variant::Legacy,
                        };
                        if let Err(e) = remove_chains(&chains).await {
                            debug!(ipv6, error = %e, "removing the handover chain");
                        }
                        netlink.ledger().update(|e| {
                            e.chains.remove(&chains);
                        });
                        if last_agent
                            && let Err(e) = netlink
                                .remove_local_delivery(ipv6, MARK, TABLE, RULE_PREFERENCE)
                                .await
                        {
                            debug!(ipv6, error = %e, "removing the handover's policy routing");
                        }
                    }
                    routing_ready = [false, false];
                } else {
                    match apply(&netlink, &rules, &chain, &mut routing_ready).await {
                        Ok(()) => {
                            if failing {
                                info!("connection handover rules applied again");
                            }
                            failing = false;
                            debug!(?rules, "connection handover rules applied");
                        }
                        Err(e) => {
                            // Once per failing spell: the rules are rewritten on the next change.
                            if !failing {
                                warn!(error = %e, "cannot apply the connection handover rules; a VIP moving between live nodes may reset connections");
                            }
                            failing = true;
                        }
                    }
                }
                let _ = applied_tx.send(seq);
            }
        });
        Ok(Handover { desired, applied })
    }

    /// Keeps `vips` reachable by our sockets after they leave this node (until [`clear`]).
    ///
    /// [`clear`]: Handover::clear
    pub(crate) fn deliver(&self, vips: &[IpAddr]) {
        self.change(false, |r| r.deliver.extend(vips.iter().copied()));
    }

    /// Points `vips`' unknown connections at `to` (`None`: nowhere).
    pub(crate) fn forward(&self, vips: &[IpAddr], to: Option<(IpAddr, String)>) {
        self.change(false, |r| {
            for vip in vips {
                match &to {
                    Some(target) => r.forward.insert(*vip, target.clone()),
                    None => r.forward.remove(vip),
                };
            }
        });
    }

    /// Spreads unknown connections of each ECMP VIP to its other nodes (replacing what was
    /// spread before; a VIP left out is no longer).
    pub(crate) fn spread(&self, spread: Spread) {
        self.change(false, |r| r.spread = spread);
    }

    /// Waits up to `limit` until every change asked for so far is applied; returns whether it
    /// was. A new master that forwards calls it before it binds and announces the VIP, so that
    /// no packet of the old master's connections reaches it before the rule that sends them on
    /// (it would reset them): `iptables-restore` takes milliseconds, longer on a loaded host or
    /// behind kube-proxy's hold of the xtables lock.
    pub(crate) async fn settled(&self, limit: std::time::Duration) -> bool {
        let wanted = self.desired.borrow().seq;
        self.applied_by(wanted, limit).await
    }

    /// Changes the desired rules (`removed`: the chain goes altogether); returns the change's
    /// number if anything changed.
    fn change(&self, removed: bool, f: impl FnOnce(&mut Rules)) -> Option<u64> {
        self.change_all(removed, false, f)
    }

    fn change_all(
        &self,
        removed: bool,
        last_agent: bool,
        f: impl FnOnce(&mut Rules),
    ) -> Option<u64> {
        let mut seq = None;
        self.desired.send_if_modified(|d| {
            let before = d.rules.clone();
            f(&mut d.rules);
            let changed = d.rules != before || d.removed != removed || d.last_agent != last_agent;
            if changed {
                d.removed = removed;
                d.last_agent = last_agent;
                d.seq += 1;
                seq = Some(d.seq);
            }
            changed
        });
        seq
    }

    /// Waits up to `limit` for change `seq` to be applied; returns whether it was.
    async fn applied_by(&self, seq: u64, limit: std::time::Duration) -> bool {
        let mut applied = self.applied.clone();
        matches!(
            tokio::time::timeout(limit, applied.wait_for(|&done| done >= seq)).await,
            Ok(Ok(_))
        )
    }

    /// Removes every rule and the chain, and the policy routing if this is the `last_agent` of
    /// the network namespace (the agent is exiting, its connections drained). Waits for the
    /// removal.
    pub(crate) async fn clear(&self, last_agent: bool) {
        // After any change still being applied (each a few `iptables-restore` runs at most).
        if let Some(seq) = self.change_all(true, last_agent, |r| *r = Rules::default())
            && !self
                .applied_by(seq, std::time::Duration::from_secs(10))
                .await
        {
            warn!("the connection handover rules were not removed in time");
        }
    }
}

/// Which iptables backend the rules go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// The image's `iptables` (Debian's: nft).
    Default,
    /// The host's tools (kube-proxy in legacy mode) write the legacy backend.
    Legacy,
}

/// The backend holding more of the host's rules, as kube-proxy's `iptables-wrapper` decides:
/// rules in both backends all apply, but each tool sees and orders only its own backend's.
/// `None`: that variant's save failed or is not installed.
fn choose(legacy_save: Option<&str>, nft_save: Option<&str>) -> Variant {
    let rules =
        |save: Option<&str>| save.map_or(0, |s| s.lines().filter(|l| l.starts_with("-A ")).count());
    if rules(legacy_save) > rules(nft_save) {
        Variant::Legacy
    } else {
        Variant::Default
    }
}

/// The host's variant, looked at once per process.
async fn variant() -> Variant {
    static VARIANT: tokio::sync::OnceCell<Variant> = tokio::sync::OnceCell::const_new();
    *VARIANT
        .get_or_init(|| async {
            let save = |command: &'static str| async move {
                let out = Command::new(command)
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                    .await
                    .ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            };
            let legacy = save("iptables-legacy-save").await;
            let nft = save("iptables-nft-save").await;
            let chosen = choose(legacy.as_deref(), nft.as_deref());
            if chosen == Variant::Legacy {
                info!("the host's iptables rules are in the legacy backend; handover rules go there too");
            }
            chosen
        })
        .await
}

fn tables(ipv6: bool, variant: Variant) -> (&'static str, &'static str) {
    match (ipv6, variant) {
        (false, Variant::Default) => ("iptables", "iptables-restore"),
        (true, Variant::Default) => ("ip6tables", "ip6tables-restore"),
        (false, Variant::Legacy) => ("iptables-legacy", "iptables-legacy-restore"),
        (true, Variant::Legacy) => ("ip6tables-legacy", "ip6tables-legacy-restore"),
    }
}

async fn apply(
    netlink: &Netlink,
    rules: &Rules,
    chain: &str,
    routing_ready: &mut [bool; 2],
) -> Result<(), HandoverError> {
    for ipv6 in [false, true] {
        let used = rules.deliver.iter().any(|v| v.is_ipv6() == ipv6)
            || rules.forward.keys().any(|v| v.is_ipv6() == ipv6)
            || rules.spread.keys().any(|v| v.is_ipv6() == ipv6);
        if !used && !routing_ready[usize::from(ipv6)] {
            continue;
        }
        let variant = variant().await;
        // In the ledger before it exists: a crash right after must not leave it behind.
        netlink.ledger().update(|e| {
            e.chains.insert(Chains {
                name: chain.to_string(),
                ipv6,
                legacy: variant == Variant::Legacy,
            });
        });
        let (iptables, restore) = tables(ipv6, variant);
        run(
            restore,
            &["-w", "--noflush"],
            Some(&restore_input(rules, ipv6, chain)),
        )
        .await?;
        if !routing_ready[usize::from(ipv6)] {
            let out_chain = format!("{chain}-OUT");
            for (hook, chain) in [("PREROUTING", chain), ("POSTROUTING", out_chain.as_str())] {
                let jump = ["-w", "-t", "mangle", "-C", hook, "-j", chain];
                if run(iptables, &jump, None).await.is_err() {
                    run(
                        iptables,
                        &["-w", "-t", "mangle", "-I", hook, "1", "-j", chain],
                        None,
                    )
                    .await?;
                }
            }
            netlink
                .ensure_local_delivery(ipv6, MARK, TABLE, RULE_PREFERENCE)
                .await?;
            routing_ready[usize::from(ipv6)] = true;
        }
    }
    Ok(())
}

/// Removes the jumps to `chains` and the chains themselves (what is missing already is fine).
pub(crate) async fn remove_chains(chains: &Chains) -> Result<(), HandoverError> {
    let variant = if chains.legacy {
        Variant::Legacy
    } else {
        Variant::Default
    };
    let (iptables, _) = tables(chains.ipv6, variant);
    let out = chains.out();
    for (hook, chain) in [
        ("PREROUTING", chains.name.as_str()),
        ("POSTROUTING", out.as_str()),
    ] {
        let jump = ["-w", "-t", "mangle", "-D", hook, "-j", chain];
        while run(iptables, &jump, None).await.is_ok() {}
        let exists = run(iptables, &["-w", "-t", "mangle", "-L", chain, "-n"], None).await;
        if exists.is_ok() {
            run(iptables, &["-w", "-t", "mangle", "-F", chain], None).await?;
            run(iptables, &["-w", "-t", "mangle", "-X", chain], None).await?;
        }
    }
    Ok(())
}

/// Removes the policy routing of the handover in one family (no agent of this network
/// namespace uses it any more).
pub(crate) async fn remove_local_delivery(
    netlink: &Netlink,
    ipv6: bool,
) -> Result<(), HandoverError> {
    netlink
        .remove_local_delivery(ipv6, MARK, TABLE, RULE_PREFERENCE)
        .await?;
    Ok(())
}

async fn run(
    command: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(), HandoverError> {
    let mut child = Command::new(command)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A command still running when the agent exits is killed with it (a restore killed
        // before its COMMIT changes nothing).
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HandoverError::Spawn { command, source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|source| HandoverError::Spawn { command, source })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| HandoverError::Spawn { command, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HandoverError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_go_to_the_backend_the_host_uses() {
        let kube = "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\nCOMMIT\n";
        let empty = "*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(choose(Some(kube), Some(empty)), Variant::Legacy);
        assert_eq!(choose(Some(empty), Some(kube)), Variant::Default);
        // A fresh host, or one without the legacy tools: the image's default.
        assert_eq!(choose(Some(empty), Some(empty)), Variant::Default);
        assert_eq!(choose(None, Some(empty)), Variant::Default);
        assert_eq!(choose(None, None), Variant::Default);
        assert_eq!(tables(true, Variant::Legacy).1, "ip6tables-legacy-restore");
    }

    #[test]
    fn an_ecmp_vip_spreads_unknown_connections_to_its_other_nodes() {
        let mut rules = Rules::default();
        rules.spread.insert(
            "10.99.0.10".parse().unwrap(),
            [
                ("10.77.0.3".parse().unwrap(), "eth0".to_string()),
                ("10.78.0.3".parse().unwrap(), "eth1".to_string()),
            ]
            .into(),
        );
        let v4 = restore_input(&rules, false, CHAIN);
        assert_eq!(
            v4,
            "*mangle\n:BUOY-HANDOVER - [0:0]\n:BUOY-HANDOVER-OUT - [0:0]\n-F BUOY-HANDOVER\n-F BUOY-HANDOVER-OUT\n\
             -A BUOY-HANDOVER-OUT -d 10.99.0.10/32 -o eth0 -p tcp -m addrtype --dst-type LOCAL -j DSCP --set-dscp 0x2d\n\
             -A BUOY-HANDOVER-OUT -d 10.99.0.10/32 -o eth1 -p tcp -m addrtype --dst-type LOCAL -j DSCP --set-dscp 0x2d\n\
             -A BUOY-HANDOVER -d 10.99.0.10/32 -p tcp -m dscp --dscp 0x2d -m conntrack --ctstate NEW,INVALID -j DROP\n\
             -A BUOY-HANDOVER -d 10.99.0.10/32 -p tcp ! --syn -m conntrack --ctstate NEW,INVALID -m limit --limit 10000/sec --limit-burst 10000 -j TEE --gateway 10.77.0.3 --oif eth0\n\
             -A BUOY-HANDOVER -d 10.99.0.10/32 -p tcp ! --syn -m conntrack --ctstate NEW,INVALID -m limit --limit 10000/sec --limit-burst 10000 -j TEE --gateway 10.78.0.3 --oif eth1\n\
             -A BUOY-HANDOVER -d 10.99.0.10/32 -p tcp ! --syn -m conntrack --ctstate NEW,INVALID -j DROP\n\
             -A BUOY-HANDOVER -d 10.99.0.10/32 -p tcp -m conntrack --ctstate NEW\n\
             COMMIT\n"
        );
        assert!(!restore_input(&rules, true, CHAIN).contains("10.99.0.10"));
    }

    #[test]
    fn the_chain_forwards_unknown_connections_and_delivers_to_our_sockets() {
        let mut rules = Rules::default();
        rules.deliver.insert("10.0.0.100".parse().unwrap());
        rules.deliver.insert("fd00::100".parse().unwrap());
        rules.forward.insert(
            "10.0.0.100".parse().unwrap(),
            ("10.0.0.2".parse().unwrap(), "eth0".into()),
        );
        let v4 = restore_input(&rules, false, CHAIN);
        assert_eq!(
            v4,
            "*mangle\n:BUOY-HANDOVER - [0:0]\n:BUOY-HANDOVER-OUT - [0:0]\n-F BUOY-HANDOVER\n-F BUOY-HANDOVER-OUT\n\
             -A BUOY-HANDOVER-OUT -d 10.0.0.100/32 -o eth0 -p tcp -m addrtype --dst-type LOCAL -j DSCP --set-dscp 0x2d\n\
             -A BUOY-HANDOVER -d 10.0.0.100/32 -i eth0 -p tcp -m dscp --dscp 0x2d -m addrtype --dst-type LOCAL -j DROP\n\
             -A BUOY-HANDOVER -d 10.0.0.100/32 -p tcp ! --syn -m addrtype --dst-type LOCAL -m conntrack --ctstate NEW,INVALID -j TEE --gateway 10.0.0.2 --oif eth0\n\
             -A BUOY-HANDOVER -d 10.0.0.100/32 -p tcp ! --syn -m addrtype --dst-type LOCAL -m conntrack --ctstate NEW,INVALID -j DROP\n\
             -A BUOY-HANDOVER -d 10.0.0.100/32 -p tcp -m addrtype ! --dst-type LOCAL -m socket --transparent -j MARK --set-xmark 0x100000/0x100000\n\
             -A BUOY-HANDOVER -d 10.0.0.100/32 -p tcp -m conntrack --ctstate NEW\n\
             COMMIT\n"
        );
        let v6 = restore_input(&rules, true, CHAIN);
        assert!(
            v6.contains("-d fd00::100/128 -p tcp -m addrtype ! --dst-type LOCAL"),
            "{v6}"
        );
        assert!(!v6.contains("TEE"), "{v6}");
        // Nothing left: the chain is emptied.
        assert_eq!(
            restore_input(&Rules::default(), false, CHAIN),
            "*mangle\n:BUOY-HANDOVER - [0:0]\n:BUOY-HANDOVER-OUT - [0:0]\n-F BUOY-HANDOVER\n-F BUOY-HANDOVER-OUT\nCOMMIT\n"
        );
    }
}
