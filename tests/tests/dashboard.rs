//! Buoy's Grafana dashboard (`charts/buoy/files/dashboard.json`, the file the chart's ConfigMap
//! holds unchanged): it parses, every panel queries the `$datasource` variable, every PromQL
//! expression parses with Prometheus' own `promtool`, and every series a query reads is one a
//! running agent (standalone, in network namespaces: needs root) or a running operator (against
//! the Kubernetes API test server) serves on `/metrics`. Needs promtool (scripts/setup installs
//! it): fails, never skips, without it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use buoy_tests::{
    backend::{request, served_by_from},
    kubectl::Kubectl,
    netlab::{Lab, in_netns},
    process::{Proc, workspace_bin},
    promtool,
    seed::VIP,
    testapi::{Options, TestApi},
    vrrp_wire,
};
use serde_json::Value;

const DASHBOARD: &str = "charts/buoy/files/dashboard.json";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo().join(DASHBOARD)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, those inside collapsed rows included; rows themselves left out.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            all.extend(p["panels"].as_array().into_iter().flatten().cloned());
        } else {
            all.push(p.clone());
        }
    }
    all
}

/// A query of the dashboard: where it is, and its PromQL.
struct Query {
    at: String,
    expr: String,
}

/// Every PromQL expression of the dashboard: the panels' targets, the annotation queries, and
/// the series of the variables' `label_values(SERIES, label)` queries.
fn queries(dashboard: &Value) -> Vec<Query> {
    let mut all = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            all.push(Query {
                at: format!(
                    "panel {:?}, target {}",
                    p["title"].as_str().unwrap_or_default(),
                    t["refId"].as_str().unwrap_or_default()
                ),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    for a in dashboard["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            all.push(Query {
                at: format!("annotation {:?}", a["name"].as_str().unwrap_or_default()),
                expr: expr.to_string(),
            });
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let query = v["query"]["query"].as_str().unwrap();
        let series = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map(|(series, _)| series.trim())
            .unwrap_or_else(|| panic!("variable {}: {query}", v["name"]));
        all.push(Query {
            at: format!("variable {}", v["name"]),
            expr: series.to_string(),
        });
    }
    all
}

/// The dashboard's variables, Grafana's own (`$__rate_interval`...) left out.
fn variables(dashboard: &Value) -> BTreeSet<String> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// `expr` as Prometheus receives it from Grafana: the interval variables as durations, the
/// others (only ever inside label matchers' regexes) as "all".
fn interpolate(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m");
    while let Some(i) = out.find('$') {
        let rest = &out[i + 1..];
        let braced = rest.starts_with('{');
        let name_len = rest
            .trim_start_matches('{')
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - usize::from(braced));
        let end = i + 1 + name_len + if braced { 2 } else { 0 };
        out.replace_range(i..end, ".*");
    }
    out
}

/// The `$variables` an expression uses.
fn used_variables(expr: &str) -> BTreeSet<String> {
    expr.split('$')
        .skip(1)
        .map(|r| {
            r.trim_start_matches('{')
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// PromQL words that are not series: aggregations (followed by `by (...)` or their
/// parameters), binary operators and modifiers.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
];

/// The series names a PromQL expression reads: its identifiers, less label matchers, strings,
/// ranges, grouping label lists, numbers, Grafana's variables, functions (a name followed by
/// `(`) and keywords.
fn series_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut grouping = false; // the last word opens a label list: by, on, group_left...
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if grouping => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                grouping = false;
            }
            // A Grafana variable ($__interval after `offset`, ${name}): not a series.
            '$' => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '{' | '}'))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                grouping = matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                if next != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_series_names_of_an_expression_are_found() {
    let expr = r#"histogram_quantile(0.99, sum by (le, listener) (rate(a_bucket{listener=~"$x", y="b_total"}[5m]))) / on (instance) group_left (job) c_total offset $__interval > bool 1e3 and sum(d)"#;
    assert_eq!(
        series_names(expr),
        ["a_bucket", "c_total", "d"]
            .map(str::to_string)
            .into_iter()
            .collect()
    );
    assert_eq!(
        interpolate(r#"rate(x{a=~"$virtualip", b=~"${pool}"}[$__rate_interval])"#),
        r#"rate(x{a=~".*", b=~".*"}[5m])"#
    );
}

#[test]
fn every_panel_queries_the_datasource_variable() {
    let d = dashboard();
    assert_eq!(d["uid"], "buoy-overview");
    assert!(d["id"].is_null(), "no id: Grafana assigns one on import");
    let datasource = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a $datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let ours = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});

    let all = panels(&d);
    assert!(all.len() >= 10, "{} panels", all.len());
    let mut ids = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p:#}");
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: its id is taken"
        );
        assert_eq!(p["datasource"], ours, "{title}");
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title}: no target");
        for t in &targets {
            assert_eq!(t["datasource"], ours, "{title}");
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}: a target without an expression"
            );
        }
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && pos["h"].as_u64().unwrap() > 0,
            "{title}: {pos}"
        );
    }
    // Every variable an expression uses is the dashboard's.
    let defined = variables(&d);
    for q in queries(&d) {
        for v in used_variables(&q.expr) {
            assert!(
                v.starts_with("__") || defined.contains(&v),
                "{}: ${v} is not a variable of the dashboard",
                q.at
            );
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            assert_eq!(v["datasource"], ours, "variable {}", v["name"]);
        }
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if a.get("expr").is_some() {
            assert_eq!(a["datasource"], ours, "annotation {}", a["name"]);
        }
    }
}

#[test]
fn the_dashboard_shows_what_operators_look_for() {
    let d = dashboard();
    let all = panels(&d);
    let reads = |p: &Value, name: &str| {
        p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| series_names(t["expr"].as_str().unwrap()).contains(name))
    };
    // Each VirtualIP's master over time, as a state timeline.
    assert!(
        all.iter().any(|p| p["type"] == "state-timeline"
            && p["targets"].as_array().unwrap().iter().any(|t| t["expr"]
                .as_str()
                .unwrap()
                .contains(r#"buoy_vrrp_state{state="MASTER""#))),
        "a state timeline of the masters"
    );
    // Failovers marked: an annotation on the transitions into MASTER.
    let failovers = d["annotations"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Failovers")
        .expect("a Failovers annotation");
    assert_eq!(failovers["enable"], true);
    let names = series_names(failovers["expr"].as_str().unwrap());
    assert!(names.contains("buoy_vrrp_last_transition_timestamp_seconds"));
    assert!(names.contains("buoy_vrrp_state"));
    // The rest of the issue's list.
    for name in [
        "buoy_vrrp_adverts_sent_total",
        "buoy_vrrp_adverts_received_total",
        "buoy_vrrp_dropped_total",
        "buoy_proxy_requests_total",
        "buoy_proxy_request_duration_seconds_bucket",
        "buoy_proxy_retries_total",
        "buoy_proxy_backend_healthy",
        "buoy_proxy_backend_requests_total",
    ] {
        assert!(all.iter().any(|p| reads(p, name)), "no panel reads {name}");
    }
    let drops = all
        .iter()
        .find(|p| reads(p, "buoy_vrrp_dropped_total"))
        .unwrap();
    assert!(
        drops["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .contains("reason"),
        "drops by reason"
    );
    for job in ["$agent_job", "$operator_job"] {
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(
                all.iter()
                    .any(|p| reads(p, name)
                        && p["targets"][0]["expr"].as_str().unwrap().contains(job)),
                "no panel reads {name} of {job}"
            );
        }
    }
}

/// A rule file with one recording rule per query, as Grafana would send it.
fn rule_file(queries: &[Query]) -> String {
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| serde_json::json!({"record": format!("dashboard:query{i}"), "expr": interpolate(&q.expr)}))
        .collect();
    serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string()
}

/// `promtool check rules` on a rule file of `queries`: its output, and whether it passed.
fn promtool_check(queries: &[Query]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.rules.json"), rule_file(queries)).unwrap();
    // promtool has no check of a bare expression: a rule's expression is parsed as a query.
    let out = promtool::run(&["check", "rules", "dashboard.rules.json"], dir.path(), "");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn promtool_parses_every_expression() {
    let all = queries(&dashboard());
    let (ok, said) = promtool_check(&all);
    assert!(ok, "promtool check rules:\n{said}");
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", all.len())),
        "{said}"
    );
    // And it would say so of a broken one.
    let broken = vec![Query {
        at: "broken".into(),
        expr: "sum by (le (rate(x[5m]))".into(),
    }];
    let (ok, said) = promtool_check(&broken);
    assert!(!ok, "promtool accepts a broken expression:\n{said}");
}

/// The expression of the panel titled `title` (its first target), or of the annotation so named.
fn expression(dashboard: &Value, title: &str) -> String {
    panels(dashboard)
        .iter()
        .find(|p| p["title"] == title)
        .map(|p| p["targets"][0]["expr"].clone())
        .or_else(|| {
            dashboard["annotations"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == title)
                .map(|a| a["expr"].clone())
        })
        .and_then(|e| e.as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no panel or annotation {title:?}"))
}

/// The VirtualIP panels and the failover marks mean what they say: `promtool test rules` on
/// their expressions (as Grafana sends them, at a 1-minute step) over a failover from node a to
/// node b at minute 5.
#[test]
fn the_failover_marks_and_the_state_timelines_follow_the_master() {
    let d = dashboard();
    let vip = r#"virtualip="default/web""#;
    let state = |node: &str, s: &str, values: &str| {
        serde_json::json!({
            "series": format!(r#"buoy_vrrp_state{{instance="{node}",{vip},state="{s}"}}"#),
            "values": values,
        })
    };
    let before = "1 1 1 1 1 0 0 0";
    let after = "0 0 0 0 0 1 1 1";
    let never = "0 0 0 0 0 0 0 0";
    let mut series = vec![
        state("a", "MASTER", before),
        state("a", "BACKUP", after),
        state("b", "MASTER", after),
        state("b", "BACKUP", before),
    ];
    for node in ["a", "b"] {
        series.push(state(node, "FAULT", never));
        series.push(state(node, "INIT", never));
        series.push(serde_json::json!({
            "series": format!(r#"buoy_vrrp_last_transition_timestamp_seconds{{instance="{node}",{vip}}}"#),
            "values": "0 0 0 0 0 300 300 300",
        }));
    }
    let sample = |labels: String, value: f64| serde_json::json!({"labels": labels, "value": value});
    let at = |node: &str| format!(r#"{{instance="{node}",{vip}}}"#);
    let failovers = interpolate(&expression(&d, "Failovers"));
    let states = interpolate(&expression(&d, "VRRP state per node"));
    let masters = interpolate(&expression(&d, "Master per VirtualIP"));
    let case = |expr: &str, minute: u32, samples: Vec<Value>| serde_json::json!({"expr": expr, "eval_time": format!("{minute}m"), "exp_samples": samples});
    let marked =
        format!(r#"{{__name__="buoy_vrrp_last_transition_timestamp_seconds",instance="b",{vip}}}"#);
    let cases = vec![
        // One mark, on the new master, at the step of the failover only.
        case(&failovers, 4, vec![]),
        case(&failovers, 5, vec![sample(marked, 300.0)]),
        case(&failovers, 6, vec![]),
        // MASTER 3, BACKUP 2, FAULT 1, INIT 0 (the panel's value mappings).
        case(&states, 2, vec![sample(at("a"), 3.0), sample(at("b"), 2.0)]),
        case(&states, 6, vec![sample(at("a"), 2.0), sample(at("b"), 3.0)]),
        case(
            &masters,
            2,
            vec![sample(at("a"), 1.0), sample(at("b"), 0.0)],
        ),
        case(
            &masters,
            6,
            vec![sample(at("a"), 0.0), sample(at("b"), 1.0)],
        ),
    ];
    let tests = serde_json::json!({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": cases}],
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.test.json"), tests.to_string()).unwrap();
    let out = promtool::run(&["test", "rules", "dashboard.test.json"], dir.path(), "");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.contains("SUCCESS"), "{said}");
}

/// The series names of a text exposition (histograms' `_bucket`, `_sum` and `_count` as
/// scraped).
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The agent's `/metrics` on `node` (its admin endpoint on 127.0.0.1:9901 there).
fn agent_metrics(lab: &Lab, node: &str) -> String {
    let ns = lab.host(node).ns.clone();
    in_netns(&ns, move || {
        request(
            "127.0.0.1:9901".parse().unwrap(),
            "GET",
            "/metrics",
            &[],
            "",
        )
        .map(|r| r.body)
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap_or_default()
}

/// What the agents serve: the seed configuration (a VRRP VirtualIP, an HTTP listener with two
/// backends) on two nodes that have served requests and dropped an advert.
fn agent_series() -> BTreeSet<String> {
    let mut lab = Lab::new(&["lb1", "lb2", "web1", "web2", "client"]).unwrap();
    let config = buoy_tests::seed::lab_config(lab.dir()).unwrap();
    let _backends = lab.web_backends(&["web1", "web2"], false);
    for node in ["lb1", "lb2"] {
        lab.spawn_standalone(node, &config).unwrap();
    }
    let vip: IpAddr = VIP.parse().unwrap();
    assert!(
        lab.wait_sole_holder(vip, "lb1", Duration::from_secs(10)),
        "{}",
        lab.logs()
    );
    let answers = served_by_from(&lab.host("client").ns, SocketAddr::new(vip, 80), 10);
    assert_eq!(answers.len(), 10, "{}", lab.logs());
    // Drops are counted (and their series exist) once there is one: an advert for the seed's
    // router ID (51) with a TTL other than 255, from the client.
    let client = lab.host("client").ipv4;
    let vip_v4: Ipv4Addr = VIP.parse().unwrap();
    let advert = vrrp_wire::advert_v3(51, 254, 100, &[vip_v4], client);
    in_netns(&lab.host("client").ns, move || {
        let sender = vrrp_wire::Sender::open_from(client).unwrap();
        for _ in 0..3 {
            sender.send(&advert, 1).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .unwrap()
    .join()
    .unwrap();
    // The VRRP series are refreshed every 250 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = agent_metrics(&lab, "lb1");
        if text.contains("buoy_vrrp_dropped_total{") || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut all = BTreeSet::new();
    for node in ["lb1", "lb2"] {
        let text = agent_metrics(&lab, node);
        assert!(text.contains("buoy_vrrp_state{"), "{node}:\n{text}");
        all.extend(exposed(&text));
    }
    all
}

/// What the operator serves, running against the API test server.
fn operator_series() -> BTreeSet<String> {
    let api = TestApi::start_with(Options::default()).unwrap();
    api.install_buoy_crds().unwrap();
    Kubectl::new(api.kubeconfig_path().to_path_buf()).ok(&["create", "namespace", "buoy-system"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(workspace_bin("buoy-operator"));
    cmd.args(["run", "--namespace", "buoy-system", "--identity", "op-1"])
        .args([
            "--agent-image",
            "buoy-agent:test",
            "--leader-election",
            "false",
        ])
        .args(["--metrics-address", &address.to_string()])
        .env("KUBECONFIG", api.kubeconfig_path())
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME");
    let operator = Proc::spawn("buoy-operator", cmd).unwrap();
    // Scraped once it has reconciled (the reconcile histogram has a count).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = request(address, "GET", "/metrics", &[], "")
            .map(|r| r.body)
            .unwrap_or_default();
        if promtool::sample(&text, "buoy_operator_reconcile_duration_seconds_count")
            .is_some_and(|n| n >= 1.0)
        {
            return exposed(&text);
        }
        assert!(
            Instant::now() < deadline,
            "the operator's /metrics:\n{text}\n{}",
            operator.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_query_reads_series_a_running_agent_or_operator_exports() {
    let d = dashboard();
    let agent = agent_series();
    let operator = operator_series();
    let mut read = 0;
    for q in queries(&d) {
        // The operator's panels select its job; every other query reads the agents'.
        let (process, exported) = if q.expr.contains("$operator_job") {
            ("operator", &operator)
        } else {
            ("agent", &agent)
        };
        let names = series_names(&q.expr);
        assert!(!names.is_empty(), "{}: reads no series: {}", q.at, q.expr);
        for name in names {
            assert!(
                exported.contains(&name),
                "{}: {name} is not a series the {process} exports (its /metrics has {exported:?})",
                q.at
            );
            read += 1;
        }
    }
    assert!(read >= 25, "{read} series read");
}
