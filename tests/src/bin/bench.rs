//! The benchmark report: runs Buoy's benchmarks, each as the `cargo bench` command a user would
//! type, and writes `docs/benchmarks.md` (the machine, the commands, their tables and what the
//! columns mean) and `docs/benchmarks/failover-timeline.svg` (the probes around a link cut, Buoy
//! against keepalived). Needs root, like the benchmarks (network namespaces).
//!
//!     cargo run -p buoy-tests --release --bin bench [-- --quick] [--only failover,proxy]
//!
//! A command, not a test: it measures wall-clock time on a machine that may be busy.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use plotters::prelude::*;

#[derive(Parser)]
#[command(about = "Runs Buoy's benchmarks and writes docs/benchmarks.md")]
struct Args {
    /// Fewer runs and shorter windows: a check that everything runs, not figures to quote.
    #[arg(long)]
    quick: bool,
    /// Only these benchmarks (comma-separated): failover, proxy, tls, bgp, agent_rss, connections,
    /// vrrp_cpu, services, scale.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The report to write; the timeline plot goes to `benchmarks/` beside it.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// More builds of the agent in the proxy benchmark's rounds, beside the profile-guided one
    /// from `dist/` (`LABEL=PATH`, repeatable): the build from before a change, say.
    #[arg(long = "proxy-compare")]
    proxy_compare: Vec<String>,
}

struct Bench {
    name: &'static str,
    title: &'static str,
    package: &'static str,
    /// Arguments after `--`, and environment, for the full and the quick run.
    args: &'static [&'static str],
    quick_args: &'static [&'static str],
    quick_env: &'static [(&'static str, &'static str)],
    /// What is measured and what each column means. No figures: those come from the run.
    reading: &'static str,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "failover",
        title: "Failover: client-visible outage, Buoy against keepalived",
        package: "buoy-agent",
        args: &[],
        quick_args: &["--runs", "1"],
        quick_env: &[],
        reading: "Two nodes on a LAN in network namespaces run VRRP for one VIP, with Buoy or with \
keepalived and the same settings; a client in its own namespace opens a TCP connection to the VIP \
at a fixed short interval (see the title line) and a responder on each node answers with the \
node's name. The outage is the longest stretch from the last answered probe before the fault to \
the first answered one after it, the median over the runs. `LinkCut` takes the master's link \
down, so the backup has to notice the missing adverts (Master_Down_Interval, three adverts and a \
skew); `GracefulStop` sends SIGTERM to the master, which resigns with a priority-0 advert so the \
backup takes over after its skew time, without waiting for missed adverts (Buoy's master also \
keeps the VIP until it hears the new master: see `docs/vrrp.md`). `Buoy / keepalived` below 1 \
means a shorter outage with Buoy; the last column is the median count of probes that got no \
answer.",
    },
    Bench {
        name: "proxy",
        title: "Proxy: Buoy against nginx and HAProxy",
        package: "buoy-agent",
        args: &[],
        quick_args: &["--seconds", "2", "--rounds", "1"],
        quick_env: &[],
        reading: "wrk in a client namespace keeps a fixed number of connections busy against each \
proxy in turn for the window in the title, in rounds (each proxy's figures are its medians over \
the rounds, the order rotating from round to round); every proxy runs one worker thread in the same \
namespace and forwards to the same backends, and client, proxies and backends share the machine's \
cores. The first table is one backend serving a small file; the second has four shapes, one \
backend or the seed's two (round robin, with the seed's `proxy_next_upstream` in every proxy), each \
backend (nginx, two workers) serving a small file or answering `return 200`, with every figure \
relative to nginx's in the same shape; `Buoy PGO` is the profile-guided build that ships \
(`scripts/release`), when `dist/` has one, measured in the same rounds. `× direct` is the throughput relative to wrk talking to the \
backend without a proxy (the ceiling of this setup), `× nginx` relative to nginx with the \
reference configuration (upstream keep-alive); p50 and p99 are wrk's latency percentiles, `p99 × \
nginx` their ratio; proxy RSS is the proxy's resident memory after its run; CPU/request is the \
proxy's user and system CPU time divided by the requests it served, the column least disturbed by \
whatever else runs on the machine. Then the same load through Buoy's TCP listener \
and HAProxy `mode tcp`, and HTTP/2 from clients: h2load (8 connections, 8 streams each: 64 requests in flight, as above, \
h2c with prior knowledge) through Buoy's same listener and nginx's `listen … http2` port, both \
proxying to the backend over HTTP/1.1; h2load reports a mean time per request, not percentiles.",
    },
    Bench {
        name: "tls",
        title: "HTTPS: Buoy's TLS termination against nginx and HAProxy",
        package: "buoy-agent",
        args: &[],
        quick_args: &["--seconds", "2", "--rounds", "1"],
        quick_env: &[],
        reading: "The proxy setup above with TLS in front: each proxy (one worker) terminates TLS \
with the same certificate, an ECDSA P-256 one and an RSA 2048 one, and forwards to the same \
plain-HTTP backend. The three are configured alike: TLS 1.2 and 1.3 (Debian 12's nginx 1.22 \
offers 1.3 only when told), the same TLS 1.3 suites in the server's order (AES-128-GCM/SHA-256 \
first, Buoy's default), session resumption on. The first table: requests/s, the proxy's CPU per \
request and p99 are wrk's over kept-alive HTTP/1.1 connections; HTTP/2 is h2load over TLS with \
ALPN h2 (8 connections, 8 streams each); RSS is the proxy's after its runs. The second table: \
new TLS 1.3 handshakes (X25519), every request a new TCP connection and handshake, made by a \
rustls client in the bench (32 connections at a time), not wrk: wrk's OpenSSL 3 spends about \
750 µs of CPU per full handshake, more than any of the servers, so on this 2-core machine wrk \
measured itself. Full: no session offered, so every handshake signs with the certificate; \
resumed: an earlier connection's session offered (a PSK, with a new X25519 exchange). The \
proxies' CPU per handshake, and its inverse, the handshakes one worker makes per CPU-second \
when it alone is the bottleneck, are the figures least disturbed by the client sharing the \
machine. Buoy's TLS is \
rustls on aws-lc-rs through pingora; nginx and HAProxy use Debian's OpenSSL 3.",
    },
    Bench {
        name: "bgp",
        title: "BGP mode: convergence and route churn, through FRR",
        package: "buoy-agent",
        args: &[],
        quick_args: &["--runs", "1", "--routes", "200"],
        quick_env: &[],
        reading: "A router namespace runs FRR (ECMP over up to 8 paths); each node runs FRR and \
`buoy-agent standalone`, whose ECMP VirtualIP it announces; a client behind the router opens a \
new connection to the VIP every 10 ms. The first table cuts one node's link: the connections \
hashed to it fail until the router drops its path, those hashed to the other node never do, so \
the figure is the time from the cut to the last failed connection, with BFD (100 ms × 3) and \
with BGP's hold time alone (FRR's shortest, 3 s, keepalive 1 s). The second adds announce-only \
VirtualIPs to one node's files (its session up): the time until the router's BGP table has every \
route, then, once they are removed, until it has none (each drains with GRACEFUL_SHUTDOWN for \
3 s first), with the CPU the agent and the node's FRR (zebra and bgpd) spent meanwhile.",
    },
    Bench {
        name: "agent_rss",
        title: "Idle memory: buoy-agent against keepalived + nginx",
        package: "buoy-agent",
        args: &[],
        quick_args: &[],
        quick_env: &[],
        reading: "The same job on two hosts of one namespaced LAN: the number of VIPs in the \
title, each with an HTTP listener proxying to one upstream, held by one `buoy-agent standalone` \
process on one host and by keepalived plus nginx on the other, idle after the settle time. `VIPs \
held` checks that each side really holds its addresses; RSS is resident memory (for keepalived + \
nginx the sum, with keepalived and nginx in parentheses); the last column is Buoy's memory as a \
multiple of the classic stack's.",
    },
    Bench {
        name: "connections",
        title: "Memory per client connection: Buoy against nginx and HAProxy",
        package: "buoy-agent",
        args: &[],
        quick_args: &["--connections", "300"],
        quick_env: &[],
        reading: "A client namespace opens the number of connections in the title to one proxy \
at a time, all of one kind, and keeps them: `idle` sends nothing, `slow` sends half a request \
header and stops (a slowloris client), `keep-alive` gets one answer and then waits. Each proxy runs \
one worker, starts fresh for each kind (an allocator keeps what it once freed) and is warmed up by \
50 requests; the figure is the growth of its resident memory divided by the connections held. \
`slow × nginx` compares the costliest kind. The last line multiplies Buoy's slow figure by the \
default connection limit of a listener (`client.maxConnections`), which is what the chart's memory \
limit for the agent is sized from.",
    },
    Bench {
        name: "vrrp_cpu",
        title: "VRRP CPU: many instances at short adverts, Buoy against keepalived",
        package: "buoy-agent",
        args: &[],
        quick_args: &["--seconds", "4"],
        quick_env: &[],
        reading: "Two hosts run the number of VRRP instances in the title, spread over several \
interfaces: one is master of every instance and sends all the adverts, the other is backup of \
every instance and receives them. The figures are the CPU time of the VRRP process on each side \
as a percentage of one core over the measurement window; `Buoy / keepalived` below 1 means Buoy \
spends less. The lines in parentheses say which host held a sample VIP during the run: the figures \
mean something only if it is the master host alone.",
    },
    Bench {
        name: "services",
        title: "LoadBalancer Services at scale",
        package: "buoy-operator",
        args: &[],
        quick_args: &[],
        quick_env: &[("BUOY_BENCH_SERVICES", "200")],
        reading: "The real `buoy-operator run` binary against the Kubernetes API test server: the \
number of `type: LoadBalancer` Services of class `buoy.io/vrrp` in the first line created at once \
(64 concurrent clients) in one namespace, one AddressPool on one LAN, 5 nodes; then twice as many \
on a fresh server and operator. The node agents' part is played by the bench at the API (the \
node with the operator's top priority writes its status entry as Master, as its agent would \
after the election; VRRP itself is measured by the failover bench). For each run: how long \
until every Service listed its address in `status.loadBalancer.ingress`, timed by a watch \
(target under 20 s at 1,000); the router IDs the Services' VirtualIPs use (VRRP groups of at \
most 16 addresses: target at most 64 at 1,000); the operator's resident memory (target under \
150 MB at 1,000), CPU, writes and requests. Then the ratios of the second run to the first \
(linear: 2; target at most 2.2). It has no peer: MetalLB and kube-vip cannot run here without a \
cluster.",
    },
    Bench {
        name: "scale",
        title: "Operator scale",
        package: "buoy-operator",
        args: &[],
        quick_args: &[],
        quick_env: &[("BUOY_BENCH_VIPS", "200")],
        reading: "The real `buoy-operator run` binary against the Kubernetes API test server, as a \
new user would try it: an AddressPool that admits the namespace, and the number of VirtualIPs in \
the first line applied at once, spread over 8 interfaces (router IDs are per interface, 255 \
each). Then the same again with twice as many, on a fresh server and operator. It has no peer: \
keepalived and nginx have no operator. For each run, in order: how long creating them took; how \
long until every VirtualIP was at steady state (VRID allocated, priorities and finalizer written, \
conditions set, the DaemonSet present, then a second without a write), timed by a watch; the \
operator's resident memory idle, at steady state and at peak; the API writes it needed and all \
its requests (watches and Events included); its reconcile passes and their mean duration; CPU \
time of the operator and of the test server (the bench's process); API writes after steady state \
(zero: the operator goes quiet); duplicate VRIDs on one interface (zero); how long one more \
VirtualIP then took to get its router ID; and the test server's own round trip, to read the rest \
against. Last, the second run's figures over the first's: 2 is linear.",
    },
];

/// A benchmark's output: table and text blocks, in order.
enum Block {
    Text(String),
    Table(Vec<Vec<String>>),
}

fn parse_blocks(stdout: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    for line in stdout.lines() {
        if line.trim_start().starts_with('|') {
            let cells: Vec<String> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            let separator = cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
            match blocks.last_mut() {
                Some(Block::Table(rows)) => {
                    if !separator {
                        rows.push(cells);
                    }
                }
                _ => blocks.push(Block::Table(vec![cells])),
            }
        } else {
            blocks.push(Block::Text(line.to_string()));
        }
    }
    blocks
}

/// The cell in column `column` of the first row whose first cell starts with `row`, in the first
/// table that has such a column.
fn cell(blocks: &[Block], row: &str, column: &str) -> Option<String> {
    blocks.iter().find_map(|b| match b {
        Block::Table(rows) => {
            let col = rows.first()?.iter().position(|h| h == column)?;
            rows.iter()
                .skip(1)
                .find(|r| r.first().is_some_and(|c| c.starts_with(row)))?
                .get(col)
                .cloned()
        }
        Block::Text(_) => None,
    })
}

/// Like [`cell`], for a table whose rows are named by their first two cells (the proxy bench's
/// shapes: the shape, then the proxy).
fn cell2(blocks: &[Block], first: &str, second: &str, column: &str) -> Option<String> {
    blocks.iter().find_map(|b| match b {
        Block::Table(rows) => {
            let col = rows.first()?.iter().position(|h| h == column)?;
            rows.iter()
                .skip(1)
                .find(|r| {
                    r.first().is_some_and(|c| c == first) && r.get(1).is_some_and(|c| c == second)
                })?
                .get(col)
                .cloned()
        }
        Block::Text(_) => None,
    })
}

/// Sentences with this run's figures, read from the tables; a row or column that is not there
/// (the benchmark changed) leaves its sentence out rather than failing the report.
fn figures(name: &str, blocks: &[Block], stdout: &str) -> String {
    let c = |row: &str, col: &str| cell(blocks, row, col);
    let mut out = Vec::new();
    match name {
        "failover" => {
            let rows: Vec<String> = blocks
                .iter()
                .filter_map(|b| match b {
                    Block::Table(rows) => Some(rows),
                    Block::Text(_) => None,
                })
                .flat_map(|rows| {
                    let h = rows.first().cloned().unwrap_or_default();
                    let at = |r: &Vec<String>, name: &str| {
                        let i = h.iter().position(|c| c == name)?;
                        r.get(i).cloned()
                    };
                    rows.iter()
                        .skip(1)
                        .filter_map(|r| {
                            Some(format!(
                                "{} with {} adverts: {} with Buoy, {} with keepalived",
                                at(r, "fault")?,
                                at(r, "advert interval")?,
                                at(r, "Buoy")?,
                                at(r, "keepalived")?
                            ))
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            if !rows.is_empty() {
                out.push(format!(
                    "In this run the median outages were: {}.",
                    rows.join("; ")
                ));
            }
        }
        "proxy" => {
            let line = |who: &str| {
                Some(format!(
                    "{who} {} requests/s at p99 {} and {} of CPU per request",
                    c(who, "requests/s")?,
                    c(who, "p99")?,
                    c(who, "proxy CPU/request (user + sys)")?
                        .split(" (")
                        .next()?
                ))
            };
            let all: Vec<String> = ["Buoy", "nginx", "HAProxy"]
                .iter()
                .filter_map(|w| line(w))
                .collect();
            if !all.is_empty() {
                out.push(format!("In this run: {}.", all.join("; ")));
            }
            if let (Some(x), Some(d)) = (c("Buoy", "× nginx"), c("Buoy", "× direct")) {
                out.push(format!(
                    "Buoy's throughput was {x} × nginx's and {d} × the direct one."
                ));
            }
            let seed = "2 backends round robin, return 200 (the seed)";
            let s = |who: &str, col: &str| cell2(blocks, seed, who, col);
            if let (Some(x), Some(cpu), Some(p99)) = (
                s("Buoy", "× nginx"),
                s("Buoy", "CPU × nginx"),
                s("Buoy", "p99 × nginx"),
            ) {
                out.push(format!(
                    "In the seed's shape with `return 200` backends, Buoy served {x} × nginx's requests/s with {cpu} × its CPU per request and {p99} × its p99."
                ));
            }
            if let (Some(x), Some(cpu)) = (s("Buoy PGO", "× nginx"), s("Buoy PGO", "CPU × nginx"))
            {
                out.push(format!(
                    "The profile-guided build (`scripts/release`) in the same shape: {x} × nginx's requests/s, {cpu} × its CPU per request."
                ));
            }
            if let Some(x) = c("Buoy TCP", "× HAProxy") {
                out.push(format!(
                    "Over TCP, Buoy reached {x} × HAProxy's requests/s."
                ));
            }
        }
        "agent_rss" => {
            if let (Some(b), Some(k), Some(x)) = (
                c("buoy-agent", "RSS"),
                c("keepalived", "RSS"),
                c("buoy-agent", "× keepalived+nginx"),
            ) {
                out.push(format!(
                    "In this run buoy-agent used {b} against {k} for keepalived + nginx ({x} ×)."
                ));
            }
        }
        "connections" => {
            if let (Some(slow), Some(idle), Some(x)) = (
                c("Buoy", "slow (half a header: slowloris)"),
                c("Buoy", "idle (nothing sent)"),
                c("Buoy", "slow × nginx"),
            ) {
                out.push(format!(
                    "In this run Buoy held a slow connection in {slow} ({x} × nginx) and an idle one in {idle}."
                ));
            }
        }
        "vrrp_cpu" => {
            let side = |s: &str| {
                Some(format!(
                    "{s}, {} of a core with Buoy and {} with keepalived",
                    c(s, "Buoy")?,
                    c(s, "keepalived")?
                ))
            };
            let all: Vec<String> = ["master", "backup"]
                .iter()
                .filter_map(|s| side(s))
                .collect();
            if !all.is_empty() {
                out.push(format!("In this run: {}.", all.join("; ")));
            }
        }
        "scale" => {
            // Two runs (N and 2N VirtualIPs), each printing the same labels, then the ratios.
            let values = |label: &str| -> Vec<String> {
                stdout
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                    .collect()
            };
            let counts: Vec<String> = values("buoy-operator scale bench:")
                .iter()
                .filter_map(|v| v.split_whitespace().next().map(str::to_string))
                .collect();
            let steady = values("steady state after");
            let ratio = values("steady state")
                .into_iter()
                .find(|v| v.parse::<f64>().is_ok());
            if let ([a, b], [n, m]) = (steady.as_slice(), counts.as_slice()) {
                let mut s = format!(
                    "In this run every VirtualIP was at steady state {a} after the start with {n} VirtualIPs and {b} with {m}"
                );
                if let Some(r) = ratio {
                    s.push_str(&format!(
                        ": {r} times as long for twice as many (linear: 2; the target is at most 2.2)"
                    ));
                }
                out.push(s + ".");
            }
            let memory = values("operator RSS idle / steady / peak");
            if !memory.is_empty() {
                out.push(format!(
                    "The operator's memory (idle / steady / peak) was {}.",
                    memory.join(" and ")
                ));
            }
            let one_more = values("one more VirtualIP's router ID in");
            if !one_more.is_empty() {
                out.push(format!(
                    "One more VirtualIP then got its router ID in {}.",
                    one_more.join(" and ")
                ));
            }
        }
        _ => {}
    }
    out.join(" ")
}

/// Markdown for a benchmark's stdout: its tables verbatim, text lines as paragraphs, and output
/// with no table at all (the scale benchmark's aligned lines) as a code block.
fn render(stdout: &str, blocks: &[Block]) -> String {
    if !blocks.iter().any(|b| matches!(b, Block::Table(_))) {
        return format!("```text\n{}\n```\n", stdout.trim_end());
    }
    let mut md = String::new();
    for b in blocks {
        match b {
            Block::Text(t) if t.trim().is_empty() => {}
            Block::Text(t) => {
                let _ = writeln!(md, "{}\n", t.trim());
            }
            Block::Table(rows) => {
                for (i, r) in rows.iter().enumerate() {
                    let _ = writeln!(md, "| {} |", r.join(" | "));
                    if i == 0 {
                        let _ = writeln!(md, "|{}", "---|".repeat(r.len()));
                    }
                }
                md.push('\n');
            }
        }
    }
    md
}

/// One line of a command's output (stdout, else stderr), or "not found".
fn version(cmd: &str, args: &[&str], root: &Path) -> String {
    match Command::new(cmd).args(args).current_dir(root).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(_) => "not found".into(),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn machine(root: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown");
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1048576.0)
        });
    let hypervisor = if cpuinfo.contains(" hypervisor") {
        " (virtual machine)"
    } else {
        ""
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "- CPU: {model}, {cores} logical CPUs{hypervisor}\n- Memory: {mem_gib}"
    );
    let _ = writeln!(md, "- Kernel: Linux {}", version("uname", &["-r"], root));
    for (what, cmd, args) in [
        ("Rust", "rustc", &["--version"][..]),
        ("nginx", "nginx", &["-v"][..]),
        ("HAProxy", "haproxy", &["-v"][..]),
        ("keepalived", "keepalived", &["--version"][..]),
        ("wrk", "wrk", &["-v"][..]),
    ] {
        let _ = writeln!(md, "- {what}: `{}`", version(cmd, args, root));
    }
    md
}

/// A probe sample from the failover benchmark's `--timeline` CSV.
struct Sample {
    implementation: String,
    ms: f64,
    served_by: Option<String>,
}

fn read_timeline(path: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split(',');
            let (Some(i), Some(ms), Some(by)) = (f.next(), f.next(), f.next()) else {
                bail!("{}: bad line {l:?}", path.display());
            };
            Ok(Sample {
                implementation: i.to_string(),
                ms: ms.parse().with_context(|| format!("bad time in {l:?}"))?,
                served_by: (!by.is_empty()).then(|| by.to_string()),
            })
        })
        .collect()
}

/// The longest stretch without an answer, as the benchmark measures it (and the tests, with
/// [`buoy_tests::probe::report`]): from the last answer before a failure to the first answer
/// after it, in milliseconds.
fn longest_outage(samples: &[&Sample]) -> f64 {
    let probes: Vec<buoy_tests::probe::Sample> = samples
        .iter()
        .map(|s| buoy_tests::probe::Sample {
            at: std::time::Duration::from_secs_f64(s.ms.max(0.0) / 1000.0),
            served_by: s.served_by.clone(),
        })
        .collect();
    buoy_tests::probe::report(&probes)
        .longest_outage
        .as_secs_f64()
        * 1000.0
}

/// Rows of the plot: which node answered a probe, or none.
fn row(served_by: &Option<String>) -> f64 {
    match served_by.as_deref() {
        None => 0.0,
        Some("n1") => 2.0,
        Some(_) => 1.0,
    }
}

/// One panel per implementation: each probe as a dot in the row of the node that answered it (or
/// "no answer"), over time from the link cut. Returns a sentence with the plotted outages.
fn plot_timeline(samples: &[Sample], svg: &Path) -> Result<String> {
    let implementations = ["Buoy", "Keepalived"];
    let from = samples
        .iter()
        .map(|s| s.ms)
        .fold(f64::MAX, f64::min)
        .max(-500.0);
    let to = samples.iter().map(|s| s.ms).fold(f64::MIN, f64::max);
    if samples.is_empty() || to <= from {
        bail!("no timeline samples");
    }
    let root = SVGBackend::new(svg, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Probes around a link cut of the VRRP master (one TCP probe per dot)",
        ("sans-serif", 18),
    )?;
    let panels = root.split_evenly((implementations.len(), 1));
    let mut sentence = Vec::new();
    for (panel, name) in panels.iter().zip(implementations) {
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.implementation == name)
            .collect();
        let outage = longest_outage(&mine);
        let label = if name == "Keepalived" {
            "keepalived"
        } else {
            name
        };
        sentence.push(format!("{outage:.0} ms with {label}"));
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{label}: longest outage {outage:.0} ms"),
                ("sans-serif", 15),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(110)
            .build_cartesian_2d(from..to, -0.5f64..2.5)?;
        chart
            .configure_mesh()
            .x_desc("ms since the link cut")
            .x_label_formatter(&|v| format!("{v:.0}"))
            // Probes every few ms: a minor grid line per label step is enough.
            .light_line_style(TRANSPARENT)
            .y_labels(7)
            .y_label_formatter(&|v| {
                match (v * 2.0).round() as i64 {
                    0 => "no answer",
                    2 => "n2 (backup)",
                    4 => "n1 (master)",
                    _ => "",
                }
                .to_string()
            })
            .disable_y_mesh()
            .draw()?;
        chart.draw_series(mine.iter().filter(|s| s.ms >= from).map(|s| {
            let colour = if s.served_by.is_some() {
                RGBColor(0, 140, 0)
            } else {
                RGBColor(210, 0, 0)
            };
            Circle::new((s.ms, row(&s.served_by)), 2, colour.filled())
        }))?;
        chart.draw_series(LineSeries::new(
            [(0.0, -0.5), (0.0, 2.5)],
            BLACK.stroke_width(1),
        ))?;
    }
    root.present()?;
    Ok(format!(
        "In the plotted runs clients went without an answer for {}.",
        sentence.join(" and ")
    ))
}

/// Runs one benchmark as `cargo bench`, its stdout echoed to stderr as it comes and returned.
fn run(cargo: &str, root: &Path, env: &[(&str, &str)], args: &[String]) -> Result<(String, bool)> {
    let mut child = Command::new(cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {cargo}"))?;
    let mut stdout = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the benchmark's output")?;
            eprintln!("{line}");
            stdout.push_str(&line);
            stdout.push('\n');
        }
    }
    let status = child.wait().context("waiting for the benchmark")?;
    Ok((stdout, status.success()))
}

fn shell_quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
    {
        arg.to_string()
    } else {
        format!("\"{arg}\"")
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    for name in &args.only {
        if !BENCHES.iter().any(|b| b.name == name) {
            bail!("unknown benchmark {name:?}");
        }
    }
    // The workspace root: benchmarks run from there, and the report's paths are relative to it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let out = root.join(&args.out);
    let assets = out.with_file_name("benchmarks");
    std::fs::create_dir_all(&assets).with_context(|| format!("{}", assets.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let timeline_csv = assets.join("failover-timeline.csv");
    let timeline_svg = assets.join("failover-timeline.svg");

    let started = Instant::now();
    let date = version("date", &["-u", "+%Y-%m-%d %H:%M UTC"], &root);
    let load_before = loadavg();
    let mut sections = String::new();
    let mut failed = Vec::new();
    for b in BENCHES
        .iter()
        .filter(|b| args.only.is_empty() || args.only.iter().any(|o| o == b.name))
    {
        let mut extra: Vec<String> = if args.quick { b.quick_args } else { b.args }
            .iter()
            .map(|s| s.to_string())
            .collect();
        // What the report shows: the same path, relative to where the user runs it from.
        let mut shown_extra = extra.clone();
        if b.name == "failover" {
            // A failed run must not leave the previous run's samples to be plotted as this one's.
            let _ = std::fs::remove_file(&timeline_csv);
            extra.extend(["--timeline".into(), timeline_csv.display().to_string()]);
            let rel = timeline_csv.strip_prefix(&root).unwrap_or(&timeline_csv);
            shown_extra.extend(["--timeline".into(), format!("$PWD/{}", rel.display())]);
        }
        let pgo = root.join("dist/amd64/buoy-agent");
        if b.name == "proxy" {
            // The profile-guided build that ships (scripts/release), and any others asked for,
            // measured in the same rounds.
            let (mut given, mut shown_given) = (Vec::new(), Vec::new());
            if pgo.exists() {
                given.push(format!("Buoy PGO={}", pgo.display()));
                // cargo runs a bench in its package's directory.
                shown_given.push("Buoy PGO=../dist/amd64/buoy-agent".to_string());
            }
            given.extend(args.proxy_compare.iter().cloned());
            shown_given.extend(args.proxy_compare.iter().cloned());
            if !given.is_empty() {
                extra.extend(["--compare".into(), given.join(",")]);
                shown_extra.extend(["--compare".into(), shown_given.join(",")]);
            }
        }
        let env: &[(&str, &str)] = if args.quick { b.quick_env } else { &[] };
        let mut cargo_args: Vec<String> = ["bench", "-p", b.package, "--bench", b.name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        shown.push("cargo".into());
        shown.extend(cargo_args.iter().cloned());
        if !extra.is_empty() {
            cargo_args.push("--".into());
            cargo_args.extend(extra);
            shown.push("--".into());
            shown.extend(shown_extra.iter().map(|a| {
                if a.starts_with("$PWD") {
                    format!("\"{a}\"")
                } else {
                    shell_quote(a)
                }
            }));
        }
        let command = shown.join(" ");
        eprintln!("== {command}");
        let t = Instant::now();
        let (stdout, ok) = run(&cargo, &root, env, &cargo_args)?;
        let took = t.elapsed().as_secs_f64();
        let blocks = parse_blocks(&stdout);
        let _ = writeln!(sections, "## {}\n\n```sh\n{command}\n```\n", b.title);
        if !ok {
            failed.push(b.name);
            let _ = writeln!(
                sections,
                "**This benchmark failed** (see its error output); what it printed before:\n"
            );
        }
        sections.push_str(&render(&stdout, &blocks));
        let _ = writeln!(sections, "\n{}", b.reading);
        let figs = figures(b.name, &blocks, &stdout);
        if !figs.is_empty() {
            let _ = writeln!(sections, "{figs}");
        }
        if b.name == "failover" && ok {
            let samples = read_timeline(&timeline_csv)?;
            let sentence = plot_timeline(&samples, &timeline_svg)
                .with_context(|| format!("plotting {}", timeline_svg.display()))?;
            let rel = timeline_svg
                .strip_prefix(out.parent().unwrap_or(&root))
                .unwrap_or(&timeline_svg);
            let _ = writeln!(
                sections,
                "\n![Probes around a link cut, Buoy and keepalived]({})\n\nThe plot shows every probe of one run per implementation, a link cut at the shorter advert interval (the run with the median outage): a green dot is an answer, in the row of the node that gave it, a red dot a probe with no answer; the vertical line is the cut. {sentence} The samples are in [`{}`]({}).",
                rel.display(),
                timeline_csv
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default(),
                timeline_csv
                    .strip_prefix(out.parent().unwrap_or(&root))
                    .unwrap_or(&timeline_csv)
                    .display()
            );
        }
        let _ = writeln!(
            sections,
            "\n_This benchmark took {took:.0} s, build included._\n"
        );
    }

    // `--only` on an existing full report replaces just those sections: the others keep
    // their figures, and each regenerated one says when and under what load it ran.
    let previous = std::fs::read_to_string(&out).ok();
    if !args.only.is_empty()
        && !args.quick
        && let Some(previous) = previous.filter(|p| is_full_report(p))
    {
        let note = format!(
            "_Regenerated alone on {date} (`cargo run -p buoy-tests --release --bin bench -- --only {}`); load average at the start: {load_before}; at the end: {}._\n",
            args.only.join(","),
            loadavg()
        );
        let md = splice_sections(&previous, &sections, &note);
        std::fs::write(&out, md.trim_end().to_string() + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("updated {}", out.display());
        if !failed.is_empty() {
            bail!("benchmarks failed: {}", failed.join(", "));
        }
        return Ok(());
    }
    let mut flags = Vec::new();
    if args.quick {
        flags.push("--quick".to_string());
    }
    if !args.only.is_empty() {
        flags.push(format!("--only {}", args.only.join(",")));
    }
    let invocation = if flags.is_empty() {
        String::new()
    } else {
        format!(" -- {}", flags.join(" "))
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
Generated by `cargo run -p buoy-tests --release --bin bench{}` on {date}; do not edit by hand, run it again.\n\n\
What is measured: how long clients lose a VIP when its master fails (Buoy against keepalived), how \
fast and how cheaply Buoy's proxy forwards HTTP and TCP (against nginx and HAProxy), how much \
memory and CPU the node agent needs (against keepalived + nginx), and how the operator copes with \
many VirtualIPs. The peers are measured in the same run, on the same machine, with the same \
settings and traffic, so the ratios compare like with like; absolute figures depend on the machine \
and on whatever else it was doing. Each section gives the exact `cargo bench` command (run from \
the workspace root, as root: the benchmarks build network namespaces) and prints its tables as the \
command printed them. These are commands, not tests: they assert nothing about the figures.\n",
        invocation
    );
    if args.quick {
        md.push_str(
            "**A quick run**: fewer runs and shorter windows than the defaults; a check that \
everything runs, not figures to quote.\n\n",
        );
    }
    let _ = writeln!(
        md,
        "## Machine\n\n{}- Load average (1, 5, 15 min) at the start: {load_before}; at the end: {}\n- Total time: {:.0} min\n- Build: the `bench` profile (as `release`: see `[profile.release]` in `Cargo.toml`)\n",
        machine(&root),
        loadavg(),
        started.elapsed().as_secs_f64() / 60.0
    );
    md.push_str(&sections);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    std::fs::write(&out, md.trim_end().to_string() + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Whether `report` is a full run's: its header names no `--only` and it is not a quick run
/// (a section regenerated alone says `--only` further down; that does not count).
fn is_full_report(report: &str) -> bool {
    let header = report.split("\n## ").next().unwrap_or("");
    !header.contains("--only") && !header.contains("**A quick run**")
}

/// `report` with each `## ` section of `sections` in place of the section of the same title
/// (appended when it has none), `note` added to each of them.
fn splice_sections(report: &str, sections: &str, note: &str) -> String {
    fn split(text: &str) -> (String, Vec<(String, String)>) {
        let mut parts = text.split("\n## ");
        let head = parts.next().unwrap_or("").to_string();
        let sections = parts
            .map(|p| {
                let title = p.lines().next().unwrap_or("").to_string();
                (title, format!("## {p}"))
            })
            .collect();
        (head, sections)
    }
    // The first section of `sections` starts at its beginning, without a newline before it.
    let (_, new) = split(&format!("\n{sections}"));
    let (head, mut old) = split(report);
    for (title, body) in new {
        let body = format!("{}\n\n{note}", body.trim_end());
        match old.iter_mut().find(|(t, _)| *t == title) {
            Some(slot) => slot.1 = body,
            None => old.push((title, body)),
        }
    }
    let mut md = head.trim_end().to_string();
    for (_, body) in old {
        md.push_str("\n\n");
        md.push_str(body.trim_end());
    }
    md
}

#[cfg(test)]
mod tests {
    use super::{figures, is_full_report, parse_blocks, splice_sections};

    #[test]
    fn a_report_with_sections_regenerated_alone_is_still_a_full_one() {
        let full = "# Benchmarks\n\nGenerated by `cargo run -p buoy-tests --release --bin bench` on d\n\n## A\n\n_Regenerated alone (`bench -- --only a`)._\n";
        assert!(is_full_report(full));
        assert!(!is_full_report(
            "# Benchmarks\n\nGenerated by `cargo run -p buoy-tests --release --bin bench -- --only a` on d\n\n## A\n"
        ));
    }

    #[test]
    fn only_the_regenerated_sections_are_replaced() {
        let report =
            "# Benchmarks\n\nintro\n\n## Machine\n\n- CPU\n\n## A\n\nold a\n\n## B\n\nold b\n";
        let md = splice_sections(report, "## B\n\nnew b\n\n## C\n\nnew c\n", "_again_");
        assert_eq!(
            md,
            "# Benchmarks\n\nintro\n\n## Machine\n\n- CPU\n\n## A\n\nold a\n\n## B\n\nnew b\n\n_again_\n\n## C\n\nnew c\n\n_again_"
        );
    }

    /// The scale benchmark's output, as it printed it.
    const SCALE: &str = "\
buoy-operator scale bench: 1000 VirtualIPs on 5 nodes, 8 interfaces
  created (64 concurrent clients)       0.83 s
  steady state after                    3.42 s
  operator RSS idle / steady / peak    11 / 73 / 73 MiB
  API writes to steady state            2036
  API requests to steady state          3055
  reconcile passes / mean duration         5 / 0.663 s
  CPU: operator / API test server       0.98 / 4.09 s
  API writes in the 3 s after              0
  duplicate (interface, VRID) pairs        0
  one more VirtualIP's router ID in     0.11 s
  test server round trip GET / PATCH     0.4 / 1.7 ms (sequential)
buoy-operator scale bench: 2000 VirtualIPs on 5 nodes, 8 interfaces
  created (64 concurrent clients)       1.70 s
  steady state after                    6.70 s
  operator RSS idle / steady / peak    11 / 134 / 134 MiB
  API writes to steady state            4018
  API requests to steady state          6027
  reconcile passes / mean duration         5 / 1.347 s
  CPU: operator / API test server       1.80 / 8.18 s
  API writes in the 3 s after              0
  duplicate (interface, VRID) pairs        0
  one more VirtualIP's router ID in     0.24 s
  test server round trip GET / PATCH     0.5 / 1.9 ms (sequential)
scaling: 2000 against 1000 VirtualIPs (linear: 2.00; target: at most 2.2 for steady state)
  steady state                          1.96
  operator CPU                          1.84
  API test server CPU                   2.00
  API writes / requests                 1.97 / 1.97
  operator RSS at steady state          1.82
";

    #[test]
    fn the_scale_figures_name_both_runs_and_their_ratio() {
        let text = figures("scale", &parse_blocks(SCALE), SCALE);
        assert_eq!(
            text,
            "In this run every VirtualIP was at steady state 3.42 s after the start with 1000 \
VirtualIPs and 6.70 s with 2000: 1.96 times as long for twice as many (linear: 2; the target is \
at most 2.2). The operator's memory (idle / steady / peak) was 11 / 73 / 73 MiB and 11 / 134 / \
134 MiB. One more VirtualIP then got its router ID in 0.11 s and 0.24 s."
        );
    }
}
