//! The README's first command, `scripts/demo`, runs the `buoy-demo` binary: two standalone
//! agents in network namespaces. What it tells a newcomer must stay true, so it runs here too.
//! Needs root (namespaces), as the other lab tests.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

#[test]
fn the_demo_runs_and_says_what_happened() {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-demo"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let all = format!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the demo failed:\n{all}");
    for line in [
        "→ lb1 holds 10.77.0.100: it is the master.",
        "→ lb2 now holds 10.77.0.100.",
        "→ lb1 holds 10.77.0.100 again.",
        "→ lb2 holds 10.77.0.100; lb1 exited with code 0.",
    ] {
        assert!(text.contains(line), "missing {line:?}:\n{all}");
    }
    // Round robin over the two web servers, as it says.
    let answers: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("request "))
        .filter_map(|l| l.split_once(" answered by ").map(|(_, by)| by))
        .collect();
    assert_eq!(answers.len(), 6, "{all}");
    assert!(
        answers.iter().all(|a| *a == "web1" || *a == "web2")
            && answers.windows(2).all(|w| w[0] != w[1]),
        "{answers:?}"
    );
    // The planned stop loses nothing.
    let planned = text
        .lines()
        .find(|l| l.contains("requests failed; the longest time between two answers"))
        .unwrap_or_else(|| panic!("no planned-stop line:\n{all}"));
    assert!(planned.trim().starts_with("→ 0 of "), "{planned}");
}
