//! The demo: the reference "keepalived + nginx" architecture, run by two Buoy agents in network
//! namespaces on this machine, with a live failover. Run by `scripts/demo` (as root).

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use buoy_tests::{
    backend::{Backend, Behaviour, request},
    netlab::{Lab, in_netns},
    probe::{Probe, report},
    process::workspace_bin,
    seed::{VIP, lab_config},
};

fn say(text: &str) {
    println!("{text}");
}

/// Waits `d` unless Ctrl-C was pressed (then the lab is dropped and cleaned up).
fn pause(stop: &AtomicBool, d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits (up to 10 s, or until Ctrl-C) until `host` alone holds `vip`.
fn sole_holder(lab: &Lab, stop: &AtomicBool, vip: IpAddr, host: &str) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stable = 0;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        stable = if lab.holders(vip) == [host] {
            stable + 1
        } else {
            0
        };
        if stable == 3 {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    Ok(false)
}

fn holder(lab: &Lab, vip: IpAddr) -> String {
    match lab.holders(vip).as_slice() {
        [] => "nobody".into(),
        [one] => one.clone(),
        many => format!("{} (more than one!)", many.join(" and ")),
    }
}

fn main() {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    let result = run(&stop);
    say("\nCleaning up: the namespaces and every process of the demo are removed.");
    if let Err(e) = result {
        eprintln!("demo stopped: {e:#}");
        std::process::exit(1);
    }
}

fn run(stop: &AtomicBool) -> Result<()> {
    let vip: IpAddr = VIP.parse()?;
    let http = SocketAddr::new(vip, 80);
    say("Buoy demo: two load balancers share one virtual IP; each proxies to two web servers.");
    say("This is the classic keepalived + nginx setup (examples/seed), run by Buoy alone.\n");
    let mut lab = Lab::new(&["lb1", "lb2", "web1", "web2", "client"])?;
    say("A small LAN of network namespaces on this machine:");
    say("  lb1 10.77.0.1 and lb2 10.77.0.2   Buoy agents (VRRP + HTTP proxy), sharing 10.77.0.100");
    say("  web1 10.77.0.3 and web2 10.77.0.4  web servers");
    say("  client 10.77.0.5                  sends the requests\n");
    let config = lab_config(lab.dir())?;
    let mut backends = Vec::new();
    for web in ["web1", "web2"] {
        let name = web.to_string();
        let b = in_netns(&lab.host(web).ns, move || {
            Backend::http("0.0.0.0:80", &name, Behaviour::Echo)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("backend thread failed"))??;
        backends.push(b);
    }
    let agent = workspace_bin("buoy-agent");
    let mut agents = Vec::new();
    for node in ["lb1", "lb2"] {
        agents.push(lab.spawn(
            node,
            agent.to_str().context("agent path")?,
            &[
                "standalone",
                "--config",
                config.to_str().context("config path")?,
                "--node-name",
                node,
                "--metrics-address",
                "127.0.0.1:9901",
            ],
        )?);
    }
    say(&format!(
        "Started `buoy-agent standalone --config {}` on lb1 and lb2 (priority 100 and 99, VRRPv2 with",
        config.display()
    ));
    say("the password of the reference keepalived.conf, adverts every second).");
    say("Waiting for the election (a new node listens for 3 adverts before it claims the VIP)…");
    if !sole_holder(&lab, stop, vip, "lb1")? {
        bail!("lb1 did not become master:\n{}", lab.logs());
    }
    say(&format!(
        "  → {} holds {VIP}: it is the master.\n",
        holder(&lab, vip)
    ));

    say("Six requests from the client to http://10.77.0.100/ :");
    let answers = in_netns(&lab.host("client").ns, move || {
        (0..6)
            .map(|_| request(http, "GET", "/", &[], "").map(|r| r.served_by().to_string()))
            .collect::<Vec<_>>()
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("client thread failed"))?;
    for (i, a) in answers.iter().enumerate() {
        say(&format!(
            "  request {} answered by {}",
            i + 1,
            a.as_deref().unwrap_or("nobody (failed)")
        ));
    }
    say("  → lb1 proxies them to web1 and web2 in turn (round robin, like nginx's upstream).\n");
    pause(stop, Duration::from_secs(1))?;

    say("Now we unplug lb1's network cable. The client keeps sending a request every 10 ms.");
    let probe = Probe::start_http(
        &lab.host("client").ns,
        http,
        Duration::from_millis(10),
        Duration::from_secs(30),
    )?;
    pause(stop, Duration::from_millis(500))?;
    let cut = probe.started().elapsed();
    lab.cut("lb1")?;
    if !sole_holder(&lab, stop, vip, "lb2")? {
        bail!("lb2 did not take over:\n{}", lab.logs());
    }
    pause(stop, Duration::from_millis(500))?;
    let samples = probe.finish();
    let r = report(&samples);
    let back = samples
        .iter()
        .find(|s| s.at > cut && s.served_by.is_some())
        .map(|s| s.at - cut);
    say(&format!("  → {} now holds {VIP}.", holder(&lab, vip)));
    if let Some(back) = back {
        say(&format!(
            "  → Requests were answered again {:.2} s after the cut ({} of {} failed meanwhile).",
            back.as_secs_f64(),
            r.failed,
            r.total
        ));
    }
    say("    lb2 waited for 3 missed adverts (3 s) plus a short skew, exactly as VRRP says;");
    say("    with advertisementInterval: 100ms the same takes about 0.35 s.\n");
    pause(stop, Duration::from_secs(1))?;

    say("Plugging lb1 back in: it has the higher priority, so it takes the VIP back (preempt).");
    lab.restore("lb1")?;
    if !sole_holder(&lab, stop, vip, "lb1")? {
        bail!("lb1 did not take the VIP back:\n{}", lab.logs());
    }
    say(&format!("  → {} holds {VIP} again.\n", holder(&lab, vip)));
    pause(stop, Duration::from_secs(1))?;

    say("A planned stop: `systemctl stop` or a Kubernetes rolling update sends SIGTERM to lb1.");
    say("lb1 hands the VIP over first (VRRP priority 0) and keeps serving until lb2 has it.");
    let probe = Probe::start_http(
        &lab.host("client").ns,
        http,
        Duration::from_millis(10),
        Duration::from_secs(30),
    )?;
    pause(stop, Duration::from_millis(500))?;
    lab.proc(agents[0]).signal(libc::SIGTERM);
    if !sole_holder(&lab, stop, vip, "lb2")? {
        bail!("lb2 did not take over:\n{}", lab.logs());
    }
    let exit = lab.proc(agents[0]).wait_exit(Duration::from_secs(15));
    pause(stop, Duration::from_millis(500))?;
    let r = report(&probe.finish());
    say(&format!(
        "  → {} holds {VIP}; lb1 exited with code {}.",
        holder(&lab, vip),
        exit.map_or("?".into(), |c| c.to_string())
    ));
    say(&format!(
        "  → {} of {} requests failed; the longest time between two answers was {} ms \
         (a request every 10 ms).",
        r.failed,
        r.total,
        r.widest_between_answers.as_millis()
    ));
    say("\nThat is the whole tutorial architecture, with no keepalived and no nginx.");
    say("Next: README.md (Kubernetes install, the API, migrating from keepalived + nginx).");
    drop(backends);
    Ok(())
}
