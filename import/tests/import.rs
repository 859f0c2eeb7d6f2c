//! The importer on its fixtures: the reference tutorial's configs become examples/seed; every
//! fixture under tests/fixtures/cases gives its expected objects and warnings; every malformed
//! one gives its error with file and line. (node-agent/tests/import.rs runs the `buoy-agent
//! import` binary.)
//!
//! A case is a directory with `args` (the command line after `import`, one argument per line,
//! paths relative to the case), `expected.yaml` and `expected-warnings.txt` (stderr without the
//! `warning: ` prefix, paths relative to the case). A malformed case has `args` and
//! `expected-error.txt`. `BUOY_BLESS=1` rewrites the expected files from the current output (read
//! the diff before committing it).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::path::{Path, PathBuf};

use buoy_import::{self as import, Import, NodeNameFrom, Options};
use support::{assert_same, examples_seed, fixtures, parse_yaml};

fn seed_options() -> Options {
    let dir = fixtures().join("seed");
    Options {
        keepalived: vec![dir.join("lb1.conf"), dir.join("lb2.conf")],
        nginx: vec![dir.join("nginx.conf")],
        metallb: Vec::new(),
        kube_vip: Vec::new(),
        namespace: "default".into(),
        node_name_from: NodeNameFrom::RouterId,
        secrets_as_references: false,
    }
}

#[test]
fn the_tutorial_imports_into_examples_seed() {
    let import = import::import(&seed_options()).unwrap();
    let got = parse_yaml("import", &import.to_yaml().unwrap());
    assert_same(&got, &examples_seed(), "seed");
    // What is left out is said, with file and line: mail, the script itself, its interval,
    // router_id, state, and nginx's file-serving directives. (Its one server's `server_name` is
    // translated: alone on its port, it takes every host, as the listener does.)
    let listed: Vec<String> = import
        .warnings
        .iter()
        .map(|w| {
            format!(
                "{}:{} {}",
                w.at.file.file_name().unwrap().to_string_lossy(),
                w.at.line,
                w.directive
            )
        })
        .collect();
    for expected in [
        "lb1.conf:3 notification_email",
        "lb1.conf:9 router_id",
        "lb1.conf:12 script",
        "lb1.conf:13 interval",
        "lb1.conf:17 state",
        "lb2.conf:17 state",
        "nginx.conf:1 worker_processes",
        "nginx.conf:6 include",
    ] {
        assert!(
            listed.iter().any(|l| l == expected),
            "{expected} not in {listed:#?}"
        );
    }
}

fn options_from_args(dir: &Path) -> Options {
    let text = std::fs::read_to_string(dir.join("args")).unwrap();
    let mut options = Options {
        keepalived: Vec::new(),
        nginx: Vec::new(),
        metallb: Vec::new(),
        kube_vip: Vec::new(),
        namespace: "default".into(),
        node_name_from: NodeNameFrom::RouterId,
        secrets_as_references: false,
    };
    let mut flag = String::new();
    for arg in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if arg == "--secrets-as-references" {
            options.secrets_as_references = true;
            continue;
        }
        if arg.starts_with("--") {
            flag = arg.to_string();
            continue;
        }
        match flag.as_str() {
            "--keepalived" => options.keepalived.push(dir.join(arg)),
            "--nginx" => options.nginx.push(dir.join(arg)),
            "--metallb" => options.metallb.push(dir.join(arg)),
            "--kube-vip" => options.kube_vip.push(dir.join(arg)),
            "--namespace" => options.namespace = arg.to_string(),
            "--node-name-from" => {
                options.node_name_from = match arg {
                    "hostname-of-file" => NodeNameFrom::FileName,
                    _ => NodeNameFrom::RouterId,
                }
            }
            other => panic!("{}: unknown flag {other}", dir.display()),
        }
    }
    options
}

fn relative(text: &str, dir: &Path) -> String {
    text.replace(&format!("{}/", dir.display()), "")
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn warnings_text(import: &Import, dir: &Path) -> String {
    import
        .warnings
        .iter()
        .map(|w| relative(&w.to_string(), dir) + "\n")
        .collect()
}

#[test]
fn every_fixture_gives_its_expected_objects_and_warnings() {
    let bless = std::env::var_os("BUOY_BLESS").is_some();
    let dirs = cases("cases");
    assert!(dirs.len() >= 15, "at least 15 cases, found {}", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let import = match import::import(&options_from_args(dir)) {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{name}: {}", relative(&e.to_string(), dir)));
                continue;
            }
        };
        let yaml = import.to_yaml().unwrap();
        let warnings = warnings_text(&import, dir);
        if bless {
            std::fs::write(dir.join("expected.yaml"), relative(&yaml, dir)).unwrap();
            std::fs::write(dir.join("expected-warnings.txt"), &warnings).unwrap();
            continue;
        }
        let want_yaml = std::fs::read_to_string(dir.join("expected.yaml")).unwrap();
        let got = parse_yaml(&name, &yaml);
        let want = parse_yaml(&format!("{name}/expected.yaml"), &want_yaml);
        if got != want {
            failures.push(format!(
                "{name}: objects differ\n--- got\n{yaml}\n--- want\n{want_yaml}"
            ));
        }
        let want_warnings = std::fs::read_to_string(dir.join("expected-warnings.txt")).unwrap();
        if warnings != want_warnings {
            failures.push(format!(
                "{name}: warnings differ\n--- got\n{warnings}--- want\n{want_warnings}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn malformed_fixtures_fail_with_file_and_line() {
    let bless = std::env::var_os("BUOY_BLESS").is_some();
    let dirs = cases("malformed");
    assert!(dirs.len() >= 4);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let error = match import::import(&options_from_args(dir)) {
            Ok(_) => panic!("{name}: imported without error"),
            Err(e) => relative(&e.to_string(), dir),
        };
        if bless {
            std::fs::write(dir.join("expected-error.txt"), format!("{error}\n")).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(dir.join("expected-error.txt")).unwrap();
        assert_eq!(error, want.trim_end(), "{name}");
        // Every malformed input is pinned to a line of a file.
        assert!(
            error
                .split(':')
                .nth(1)
                .is_some_and(|l| l.parse::<usize>().is_ok()),
            "{name}: {error}"
        );
    }
}
