//! `buoy-agent import`: the reference tutorial's configs become examples/seed; every fixture under
//! tests/fixtures/import/cases gives its expected objects and warnings; every malformed one gives
//! its error with file and line.
//!
//! A case is a directory with `args` (the command line after `import`, one argument per line,
//! paths relative to the case), `expected.yaml` and `expected-warnings.txt` (stderr without the
//! `warning: ` prefix, paths relative to the case). A malformed case has `args` and
//! `expected-error.txt`. `BUOY_BLESS=1` rewrites the expected files from the current output (read
//! the diff before committing it).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use buoy_crds::manifest::{self, Object};
use buoy_import::{self as import, Import, NodeNameFrom, Options};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

/// Objects keyed by kind and name, so that order does not matter.
fn keyed(objects: Vec<Object>) -> BTreeMap<String, Object> {
    objects
        .into_iter()
        .map(|o| {
            let key = match &o {
                Object::VirtualIP(v) => format!("VirtualIP {:?}", v.metadata.name),
                Object::UpstreamPool(p) => format!("UpstreamPool {:?}", p.metadata.name),
                Object::AddressPool(p) => format!("AddressPool {:?}", p.metadata.name),
                Object::Secret(s) => format!("Secret {:?}", s.metadata.name),
            };
            (key, o)
        })
        .collect()
}

fn parse_yaml(name: &str, yaml: &str) -> BTreeMap<String, Object> {
    let located = manifest::parse(Path::new(name), yaml)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}\n{yaml}"));
    keyed(located.into_iter().map(|l| l.object).collect())
}

fn assert_same(got: &BTreeMap<String, Object>, want: &BTreeMap<String, Object>, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: not the same objects"
    );
    for (k, w) in want {
        assert_eq!(&got[k], w, "{what}: {k} differs");
    }
}

fn seed_options() -> Options {
    let dir = fixtures().join("seed");
    Options {
        keepalived: vec![dir.join("lb1.conf"), dir.join("lb2.conf")],
        nginx: vec![dir.join("nginx.conf")],
        namespace: "default".into(),
        node_name_from: NodeNameFrom::RouterId,
    }
}

fn examples_seed() -> BTreeMap<String, Object> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let located = manifest::load(&[dir]).unwrap();
    keyed(located.into_iter().map(|l| l.object).collect())
}

#[test]
fn the_tutorial_imports_into_examples_seed() {
    let import = import::import(&seed_options()).unwrap();
    let got = parse_yaml("import", &import.to_yaml().unwrap());
    assert_same(&got, &examples_seed(), "seed");
    // What is left out is said, with file and line: mail, the script itself, its interval,
    // router_id, state, and nginx's file-serving directives.
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
        "nginx.conf:16 server_name",
    ] {
        assert!(
            listed.iter().any(|l| l == expected),
            "{expected} not in {listed:#?}"
        );
    }
}

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

fn options_from_args(dir: &Path) -> Options {
    let text = std::fs::read_to_string(dir.join("args")).unwrap();
    let mut options = Options {
        keepalived: Vec::new(),
        nginx: Vec::new(),
        namespace: "default".into(),
        node_name_from: NodeNameFrom::RouterId,
    };
    let mut flag = String::new();
    for arg in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if arg.starts_with("--") {
            flag = arg.to_string();
            continue;
        }
        match flag.as_str() {
            "--keepalived" => options.keepalived.push(dir.join(arg)),
            "--nginx" => options.nginx.push(dir.join(arg)),
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
