//! Buoy's alerting rules (`charts/buoy/files/alerts.yaml`, the groups of the chart's
//! PrometheusRule) with Prometheus' own tool: `promtool check rules` on the file and `promtool
//! test rules` on its unit tests (`tests/alerts/alerts.test.yaml`). And what those tests cannot
//! see: every alert is tested firing and quiet, reads only series Buoy exports, and links to its
//! runbook section of docs/operations.md. Needs promtool (scripts/setup installs it): fails, never
//! skips, without it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use buoy_tests::promtool;
use serde_json::Value;

const RULES: &str = "charts/buoy/files/alerts.yaml";
const RULE_TESTS: &str = "tests/alerts/alerts.test.yaml";
const RUNBOOKS: &str = "docs/operations.md";
const RUNBOOK_URL: &str = "https://github.com/buoy-io/buoy/blob/main/docs/operations.md";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every alerting rule of the file.
fn alerts() -> Vec<Value> {
    let rules = load(RULES);
    let all: Vec<Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    assert!(
        all.iter().all(|r| r["alert"].is_string()),
        "only alerts: {all:#?}"
    );
    all
}

#[track_caller]
fn promtool_ok(args: &[&str]) -> String {
    let out = promtool::run(args, &repo(), "");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    said
}

#[test]
fn promtool_checks_the_rules() {
    let said = promtool_ok(&["check", "rules", RULES]);
    let count = alerts().len();
    assert!(
        said.contains(&format!("SUCCESS: {count} rules found")),
        "{said}"
    );
}

#[test]
fn promtool_runs_the_rules_unit_tests() {
    let said = promtool_ok(&["test", "rules", RULE_TESTS]);
    assert!(said.contains("SUCCESS"), "{said}");
}

/// The unit tests fail when an expression changes meaning: a rule file whose alerts never fire,
/// and one whose thresholds moved, both fail them.
#[test]
fn the_unit_tests_catch_a_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(repo().join(RULES)).unwrap();
    for (what, broken) in [
        (
            "no alert fires",
            original.replace("expr: |", "expr: |\n          vector(0) > 1 and"),
        ),
        (
            "NoMaster waits 30 intervals",
            original.replace("> 3 * (", "> 30 * ("),
        ),
        (
            "a pool exactly half unhealthy is quiet",
            original.replace(
                "(buoy_proxy_backend_healthy) <= 0.5",
                "(buoy_proxy_backend_healthy) < 0.5",
            ),
        ),
    ] {
        assert_ne!(broken, original, "{what}: the replacement applies");
        // The same layout as the repository's, so that the tests' relative rule_files path holds.
        let rules = dir.path().join(RULES);
        std::fs::create_dir_all(rules.parent().unwrap()).unwrap();
        std::fs::write(&rules, broken).unwrap();
        let tests = dir.path().join(RULE_TESTS);
        std::fs::create_dir_all(tests.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(RULE_TESTS), &tests).unwrap();
        let out = promtool::run(&["test", "rules", RULE_TESTS], dir.path(), "");
        assert!(
            !out.status.success(),
            "{what}: the unit tests still pass:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let tests = load(RULE_TESTS);
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let of: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == name).collect();
        let firing = of
            .iter()
            .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
            .count();
        let quiet = of
            .iter()
            .filter(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty))
            .count();
        assert!(firing >= 1, "{name} is never tested firing");
        assert!(quiet >= 1, "{name} is never tested quiet");
    }
}

/// The series names an expression reads (`buoy_*`, `process_*`).
fn series_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find(|c: char| c.is_ascii_lowercase()) {
        rest = &rest[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if word.starts_with("buoy_") || word.starts_with("process_") {
            names.insert(word.to_string());
        }
        rest = &rest[end..];
    }
    names
}

/// Every `"quoted"` string of the Rust files under `dir`.
fn string_literals(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            string_literals(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(text.split('"').skip(1).step_by(2).map(str::to_string));
        }
    }
}

#[test]
fn every_expression_reads_series_buoy_exports() {
    // The names the agent and the operator register (their metrics code names each family
    // once, as a literal); the series scraped from the running binaries are checked with
    // promtool in node-agent/tests and operator/tests.
    let mut exported = BTreeSet::new();
    string_literals(&repo().join("node-agent/src"), &mut exported);
    string_literals(&repo().join("operator/src"), &mut exported);
    let mut read = BTreeSet::new();
    for alert in alerts() {
        let names = series_names(alert["expr"].as_str().unwrap());
        assert!(!names.is_empty(), "{alert:#}");
        read.extend(names);
    }
    let missing: Vec<&String> = read.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "not exported by Buoy: {missing:?}");
    assert!(read.contains("buoy_vrrp_state") && read.contains("buoy_operator_watch_errors_total"));
}

#[test]
fn every_alert_links_its_runbook_section() {
    let runbooks = std::fs::read_to_string(repo().join(RUNBOOKS)).unwrap();
    let headings: BTreeSet<&str> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .collect();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        // GitHub's anchor of a heading that is one word: the word in lower case.
        let url = format!("{RUNBOOK_URL}#{}", name.to_lowercase());
        assert_eq!(
            alert["annotations"]["runbook_url"].as_str(),
            Some(url.as_str()),
            "{name}"
        );
        assert!(
            headings.contains(name),
            "{RUNBOOKS} has no section `### {name}`"
        );
        for key in ["summary", "description"] {
            assert!(alert["annotations"][key].is_string(), "{name} has no {key}");
        }
        assert!(
            ["critical", "warning"].contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
    }
}
