//! `buoy-agent import` as a user runs it: the reference tutorial's configs print examples/seed
//! and their warnings, the output passes `buoy-agent check` and loads as standalone mode's
//! configuration, malformed input fails with file and line, and docs/migration.md shows the real
//! output. The importer's own fixtures are tested against the library in import/tests/import.rs.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[path = "../../import/tests/support/mod.rs"]
mod support;

use std::{path::Path, process::Command};

use support::{assert_same, examples_seed, fixtures, parse_yaml};

/// The binary prints the same objects on stdout and the warnings on stderr, and its output passes
/// `buoy-agent check` and loads as standalone mode's configuration on both nodes.
#[test]
fn the_binary_prints_yaml_and_warnings() {
    let dir = fixtures().join("seed");
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .current_dir(&dir)
        .args([
            "import",
            "--keepalived",
            "lb1.conf",
            "lb2.conf",
            "--nginx",
            "nginx.conf",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_same(&parse_yaml("stdout", &stdout), &examples_seed(), "binary");
    assert!(
        stdout.contains("kubectl"),
        "the Secret tells how to create it in a cluster"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() > 10);
    for l in &lines {
        assert!(
            l.starts_with("warning: ")
                && l.contains(": directive \"")
                && l.contains("\" is not translated: "),
            "{l}"
        );
    }
    assert!(lines.contains(&"warning: lb1.conf:17: directive \"state\" is not translated: MASTER is only keepalived's initial state; in Buoy every node starts in Initialize and the priorities decide (lb1: 100)"));

    let tmp = tempfile::Builder::new()
        .prefix("buoy-import-")
        .tempdir()
        .unwrap();
    let file = tmp.path().join("seed.yaml");
    std::fs::write(&file, &stdout).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .args(["check", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for node in ["lb1", "lb2"] {
        let files = buoy_agent::files::Files {
            paths: vec![file.clone()],
            node: buoy_agent::node::NodeIdentity {
                name: node.into(),
                labels: Default::default(),
            },
        };
        let desired = files.load().unwrap();
        assert_eq!(desired.vips.len(), 1, "{node}");
        assert_eq!(desired.proxy.listeners.len(), 1, "{node}");
    }
}

/// The binary exits non-zero with `error: FILE:LINE: …` on malformed input.
#[test]
fn the_binary_fails_on_malformed_input() {
    let dir = fixtures().join("malformed/nginx-missing-semicolon");
    let out = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
        .current_dir(&dir)
        .args(["import", "--nginx", "nginx.conf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(out.stdout, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: nginx.conf:"), "{stderr}");
}

/// The migration guide shows the tutorial's import as it really runs: the command, its
/// warnings, `check`, and the YAML, verbatim. `BUOY_BLESS=1` rewrites the guide's block.
#[test]
fn the_migration_guide_shows_the_real_output() {
    let dir = fixtures().join("seed");
    let run = |args: &[&str], cwd: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_buoy-agent"))
            .current_dir(cwd)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (yaml, warnings) = run(
        &[
            "import",
            "--keepalived",
            "lb1.conf",
            "lb2.conf",
            "--nginx",
            "nginx.conf",
        ],
        &dir,
    );
    let tmp = tempfile::Builder::new()
        .prefix("buoy-guide-")
        .tempdir()
        .unwrap();
    std::fs::write(tmp.path().join("buoy.yaml"), &yaml).unwrap();
    let (checked, _) = run(&["check", "--config", "buoy.yaml"], tmp.path());
    let start =
        "$ buoy-agent import --keepalived lb1.conf lb2.conf --nginx nginx.conf > buoy.yaml\n";
    let block = format!(
        "{start}{warnings}$ buoy-agent check --config buoy.yaml\n{checked}$ cat buoy.yaml\n{yaml}"
    );
    let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/migration.md");
    let guide = std::fs::read_to_string(&guide_path).unwrap();
    let at = guide
        .find(start)
        .expect("the guide shows the import command");
    let end = at + guide[at..].find("```\n").expect("the block ends");
    if std::env::var_os("BUOY_BLESS").is_some() {
        let rewritten = format!("{}{block}{}", &guide[..at], &guide[end..]);
        std::fs::write(&guide_path, rewritten).unwrap();
        return;
    }
    assert!(
        guide[at..end] == block,
        "docs/migration.md shows another output than the importer's; run \
         BUOY_BLESS=1 cargo test -p buoy-agent --test import the_migration_guide to rewrite it"
    );
}
