//! Every YAML document Buoy ships or prints means the same to kubectl, Helm and Argo CD as to
//! Buoy itself.
//!
//! Those tools turn YAML into JSON with sigs.k8s.io/yaml, which follows YAML 1.1: an unquoted
//! `on`, `off`, `yes`, `no`, `y` or `n` is a boolean, `0777` an octal number, `1_000` a thousand,
//! `1:20` eighty. Buoy reads YAML with serde_yaml (YAML 1.2), where all of those are strings. So
//! `retry: {on: [...]}` was `{"on": [...]}` to Buoy and `{"true": [...]}` to the API server.
//!
//! Each document is read twice and the two JSON values must be equal: with serde_yaml (what Buoy
//! reads, the intended object) and with a YAML 1.1 reader (`tests/yaml11.py`: PyYAML's
//! `SafeLoader` made to read as go-yaml v2 does where the two disagree). The documents: the CRDs
//! (`crds/`, `charts/buoy/crds/`), the chart's own YAML (`Chart.yaml`, `values.yaml`,
//! `ci/all-values.yaml`) and its renders with default values and with every option,
//! `deploy/*.yaml`, `examples/**`, what `buoy-agent import` prints for every fixture under
//! `import/tests/fixtures/`, the committed `expected.yaml` files and the YAML inputs (MetalLB's
//! objects, Services), and every
//! ```` ```yaml ```` block of the README, `docs/*.md` and the chart's README. A walk of the
//! repository fails on a YAML file that is neither checked nor listed as exempt.
//!
//! Then the real thing, for what users apply: kubectl itself (`--dry-run=client -o json` prints
//! what it would send) on `deploy/`, `examples/` and the importer's output, against the
//! Kubernetes API test server (`buoy-testapi`, for discovery of Buoy's kinds).
//!
//! The YAML 1.1 reader needs python3 with PyYAML (kubernetes-validate, which .ci/run installs
//! for the chart tests, brings it); the importer tests need `buoy-agent` built, as chart.rs needs
//! `buoy-operator` (`cargo test --workspace` builds both; alone: `cargo build --workspace`).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use buoy_tests::{
    kubectl::Kubectl,
    process::{Proc, workspace_bin},
};
use serde::Deserialize;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A path relative to the repository, for messages.
fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A directory of its own (tests run in parallel), removed when dropped.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("buoy-yaml11-{name}-"))
        .tempdir()
        .unwrap()
}

/// The `*.yaml` files of a directory, sorted; with `deep`, of its subdirectories too.
fn yaml_files(dir: &Path, deep: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if deep {
                files.extend(yaml_files(&path, true));
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

// ---- the two readings ----

/// A YAML text to check: `name` says where it comes from in failure messages.
struct Source {
    name: String,
    text: String,
    /// A documentation block, which may be a fragment rather than a whole document: skipped
    /// (and reported) when neither reader can parse it.
    fragment_ok: bool,
    /// Lines before the text in its file (a documentation block's opening fence).
    line_offset: usize,
}

impl Source {
    fn file(path: &Path) -> Source {
        Source {
            name: rel(path),
            text: std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            fragment_ok: false,
            line_offset: 0,
        }
    }

    fn text(name: &str, text: &str) -> Source {
        Source {
            name: name.to_string(),
            text: text.to_string(),
            fragment_ok: false,
            line_offset: 0,
        }
    }
}

/// The intended objects: what serde_yaml (Buoy's reader) makes of every document of `text`,
/// empty documents as null.
fn serde_yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            serde_yaml::Value::deserialize(d)
                .map(|v| to_json(&v))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// serde_yaml's value as JSON, with keys made strings and non-finite floats named as
/// `tests/yaml11.py` does for the YAML 1.1 reading, so that only real differences remain.
fn to_json(v: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match serde_json::Number::from_f64(f) {
                    Some(n) => Value::Number(n),
                    None if f.is_nan() => json!(".nan"),
                    None if f > 0.0 => json!(".inf"),
                    None => json!("-.inf"),
                }
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        Value::Null => "null".to_string(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => json!({ t.tag.to_string(): to_json(&t.value) }),
    }
}

/// A document as the YAML 1.1 reader read it: the line its content starts on, and its value.
#[derive(Deserialize)]
struct Doc11 {
    line: usize,
    value: Value,
}

/// What `tests/yaml11.py` makes of every source, in one run: the documents or a parse error.
fn yaml11_docs(sources: &[Source]) -> Vec<Result<Vec<Doc11>, String>> {
    #[derive(Deserialize)]
    struct Answer {
        name: String,
        docs: Option<Vec<Doc11>>,
        error: Option<String>,
    }
    let request: Vec<Value> = sources
        .iter()
        .map(|s| json!({"name": s.name, "text": s.text}))
        .collect();
    let mut child = Command::new("python3")
        .arg(repo().join("tests/yaml11.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the YAML 1.1 reader needs python3 with PyYAML)");
    let mut stdin = child.stdin.take().unwrap();
    let body = serde_json::to_vec(&request).unwrap();
    // Written from a thread of its own: the answer may fill the pipe before the request is read.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "tests/yaml11.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Answer> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), sources.len());
    answers
        .into_iter()
        .zip(sources)
        .map(|(a, s)| {
            assert_eq!(a.name, s.name);
            match (a.docs, a.error) {
                (Some(docs), None) => Ok(docs),
                (_, e) => Err(e.unwrap_or_default()),
            }
        })
        .collect()
}

// ---- comparison ----

/// A value for a message: compact JSON, cut after 160 characters.
fn show(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A JSONPath step: `.name` for plain keys, `["a/b"]` for others.
fn step(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_string()))
    }
}

/// Numbers are equal by value (`1` and `1.0`: JSON makes no difference, and neither does the
/// API server).
fn same_number(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64())
        }
        _ => false,
    }
}

/// Every place where `b` (`b_name`'s reading) differs from `a` (`a_name`'s), as `PATH: a_name A vs
/// b_name B`: an object whose keys differ is shown whole (a key read as `true` instead of `on`),
/// otherwise its fields are compared one by one; likewise lists.
fn differences(a: &Value, b: &Value, path: &str, names: (&str, &str), out: &mut Vec<String>) {
    match (a, b) {
        // The same keys, in any order (kubectl prints them sorted).
        (Value::Object(x), Value::Object(y))
            if x.len() == y.len() && x.keys().all(|k| y.contains_key(k)) =>
        {
            for (k, v) in x {
                differences(v, &y[k], &format!("{path}{}", step(k)), names, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, &format!("{path}[{i}]"), names, out);
            }
        }
        _ if a == b || same_number(a, b) => {}
        _ => out.push(format!(
            "{path}: {} {} vs {} {}",
            names.0,
            show(a),
            names.1,
            show(b)
        )),
    }
}

/// How the readings of the sources compare.
#[derive(Default)]
struct Report {
    sources: usize,
    documents: usize,
    /// Documentation blocks neither reader could parse (fragments), with both errors.
    fragments: Vec<String>,
    /// `NAME doc N (line L): PATH: serde_yaml A vs YAML 1.1 B`, and parse errors of one reader.
    differences: Vec<String>,
}

impl Report {
    /// Prints what was checked; the failure message when the readings differ.
    fn check(&self, what: &str) -> Result<(), String> {
        println!(
            "{what}: {} sources, {} documents compared",
            self.sources, self.documents
        );
        for f in &self.fragments {
            println!("{what}: skipped, not YAML to either reader: {f}");
        }
        if self.differences.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{what}: YAML that kubectl, Helm and Argo CD (YAML 1.1) read differently from Buoy \
             (serde_yaml); quote the value or rename the key:\n{}",
            self.differences.join("\n")
        ))
    }

    /// Fails with every difference.
    #[track_caller]
    fn assert_same(&self, what: &str) {
        if let Err(message) = self.check(what) {
            panic!("{message}");
        }
    }
}

const READERS: (&str, &str) = ("serde_yaml", "YAML 1.1");

/// Reads every source both ways and compares them, document by document.
fn compare(sources: &[Source]) -> Report {
    let mut report = Report {
        sources: sources.len(),
        ..Report::default()
    };
    for (source, yaml11) in sources.iter().zip(yaml11_docs(sources)) {
        let name = &source.name;
        let (intended, yaml11) = match (serde_yaml_docs(&source.text), yaml11) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(a), Err(b)) if source.fragment_ok => {
                report.fragments.push(format!(
                    "{name} (serde_yaml: {a}; YAML 1.1: {})",
                    b.replace('\n', " ")
                ));
                continue;
            }
            (a, b) => {
                let said = |e: Option<String>| match e {
                    Some(e) => format!("fails: {}", e.replace('\n', " ")),
                    None => "reads it".to_string(),
                };
                report.differences.push(format!(
                    "{name}: serde_yaml {} vs YAML 1.1 {}",
                    said(a.err()),
                    said(b.err()),
                ));
                continue;
            }
        };
        // Empty documents (a stream's comments alone) may count in one reader and not the other.
        let (intended, yaml11) = if intended.len() == yaml11.len() {
            (intended, yaml11)
        } else {
            (
                intended.into_iter().filter(|v| !v.is_null()).collect(),
                yaml11.into_iter().filter(|d| !d.value.is_null()).collect(),
            )
        };
        if intended.len() != yaml11.len() {
            report.differences.push(format!(
                "{name}: serde_yaml reads {} documents vs YAML 1.1 {}",
                intended.len(),
                yaml11.len()
            ));
            continue;
        }
        for (i, (a, b)) in intended.iter().zip(&yaml11).enumerate() {
            report.documents += 1;
            let mut found = Vec::new();
            differences(a, &b.value, "$", READERS, &mut found);
            report.differences.extend(
                found
                    .into_iter()
                    .map(|d| format!("{name} doc {i} (line {}): {d}", b.line + source.line_offset)),
            );
        }
    }
    report
}

/// The comparison catches the hazards it is for, and says where: `on` as a key, `yes` as a
/// value, and the other YAML 1.1 readings; quoted, the same words are fine.
#[test]
fn the_comparison_reports_every_yaml11_hazard() {
    let hazards = "\
apiVersion: buoy.io/v1alpha1
kind: UpstreamPool
spec:
  retry:
    on: [a]
  enabled: yes
---
short: [y, n, Off, NO]
mode: 0777
size: 1_000
duration: 1:20
nothing: ~
";
    let fine = "\
spec:
  retry:
    \"on\": [a]
  enabled: 'yes'
  mode: \"0777\"
  size: '1_000'
  date: 2024-01-01
  truth: true
  infinity: .inf
";
    let fragment = "spec:\n  - a\n b: [\n";
    let mut doc_block = Source::text("docs/x.md:3", fragment);
    doc_block.fragment_ok = true;
    let mut yes_block = Source::text("docs/y.md:7", "a: b\nc: yes\n");
    (yes_block.fragment_ok, yes_block.line_offset) = (true, 7);
    let report = compare(&[
        Source::text("hazards.yaml", hazards),
        Source::text("fine.yaml", fine),
        doc_block,
        Source::text("broken.yaml", fragment),
        yes_block,
    ]);
    let d = &report.differences;
    let want = [
        r#"hazards.yaml doc 0 (line 1): $.spec.retry: serde_yaml {"on":["a"]} vs YAML 1.1 {"true":["a"]}"#,
        r#"hazards.yaml doc 0 (line 1): $.spec.enabled: serde_yaml "yes" vs YAML 1.1 true"#,
        r#"hazards.yaml doc 1 (line 8): $.short[0]: serde_yaml "y" vs YAML 1.1 true"#,
        r#"hazards.yaml doc 1 (line 8): $.short[1]: serde_yaml "n" vs YAML 1.1 false"#,
        r#"hazards.yaml doc 1 (line 8): $.short[2]: serde_yaml "Off" vs YAML 1.1 false"#,
        r#"hazards.yaml doc 1 (line 8): $.short[3]: serde_yaml "NO" vs YAML 1.1 false"#,
        r#"hazards.yaml doc 1 (line 8): $.mode: serde_yaml "0777" vs YAML 1.1 511"#,
        r#"hazards.yaml doc 1 (line 8): $.size: serde_yaml "1_000" vs YAML 1.1 1000"#,
        r#"hazards.yaml doc 1 (line 8): $.duration: serde_yaml "1:20" vs YAML 1.1 80"#,
        // A documentation block's line is the file's.
        r#"docs/y.md:7 doc 0 (line 8): $.c: serde_yaml "yes" vs YAML 1.1 true"#,
    ];
    for w in want {
        assert!(d.iter().any(|l| l == w), "{w}\nnot in:\n{}", d.join("\n"));
    }
    // A fragment in the docs is skipped, and said; the same text in a file is an error.
    assert_eq!(report.fragments.len(), 1, "{:?}", report.fragments);
    assert!(report.fragments[0].starts_with("docs/x.md:3 "));
    let broken: Vec<&String> = d.iter().filter(|l| l.starts_with("broken.yaml")).collect();
    assert_eq!(broken.len(), 1, "{d:?}");
    assert_eq!(d.len(), want.len() + 1, "only these:\n{}", d.join("\n"));
    assert_eq!(report.documents, 4);
    // And the check fails with the messages.
    let message = report.check("hazards").unwrap_err();
    assert!(
        message.contains(want[0]) && message.contains(want[1]),
        "{message}"
    );
}

// ---- what Buoy ships ----

/// The YAML files Buoy ships, read as they are.
fn shipped_files() -> Vec<PathBuf> {
    let root = repo();
    let chart = root.join("charts/buoy");
    let mut files = Vec::new();
    files.extend(yaml_files(&root.join("crds"), false));
    files.extend(yaml_files(&chart.join("crds"), false));
    files.extend([
        chart.join("Chart.yaml"),
        chart.join("values.yaml"),
        chart.join("ci/all-values.yaml"),
        // The alerts the PrometheusRule carries (also a plain rule file), and their unit tests.
        chart.join("files/alerts.yaml"),
        root.join("tests/alerts/alerts.test.yaml"),
    ]);
    files.extend(yaml_files(&root.join("deploy"), false));
    files.extend(yaml_files(&root.join("examples"), true));
    // The importer's committed outputs, and its YAML inputs (MetalLB's and kube-vip's objects,
    // Services), which users applied with kubectl.
    for case in import_cases() {
        files.extend(yaml_files(&case.dir, true));
    }
    files
}

/// YAML files in the repository that no YAML 1.1 tool reads as they are, and why.
const NOT_SHIPPED: [(&str, &str); 2] = [
    (
        "charts/buoy/templates/",
        "Helm templates, YAML only once rendered: their renders are checked",
    ),
    (
        "crds/tests/bad_examples.yaml",
        "test data that only Buoy's own tests read, with serde_yaml",
    ),
];

#[test]
fn crds_chart_deploy_examples_and_committed_import_outputs_read_alike() {
    let files = shipped_files();
    for must in [
        "crds/virtualips.buoy.io.yaml",
        "charts/buoy/crds/upstreampools.buoy.io.yaml",
        "charts/buoy/values.yaml",
        "charts/buoy/files/alerts.yaml",
        "deploy/buoy.yaml",
        "examples/seed/upstreampool.yaml",
        "import/tests/fixtures/cases/01-single-host-no-nginx/expected.yaml",
    ] {
        assert!(files.contains(&repo().join(must)), "{must} is not checked");
    }
    let sources: Vec<Source> = files.iter().map(|f| Source::file(f)).collect();
    compare(&sources).assert_same("shipped files");
}

/// Every YAML file of the repository is either checked above or listed in `NOT_SHIPPED`: a new
/// one cannot slip past.
#[test]
fn every_yaml_file_of_the_repository_is_checked() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                // Not git's own files, nor build output and fuzzing state (.gitignore).
                if !(name.starts_with('.') || ["target", "corpus", "artifacts"].contains(&&*name)) {
                    walk(&path, out);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    walk(&repo(), &mut all);
    let checked: BTreeSet<PathBuf> = shipped_files().into_iter().collect();
    let unchecked: Vec<String> = all
        .iter()
        .filter(|p| !checked.contains(*p))
        .map(|p| rel(p))
        .filter(|p| !NOT_SHIPPED.iter().any(|(prefix, _)| p.starts_with(prefix)))
        .collect();
    assert!(
        unchecked.is_empty(),
        "YAML files neither checked by tests/tests/yaml11.rs nor listed in its NOT_SHIPPED: \
         {unchecked:?}"
    );
    assert!(
        all.len() > checked.len(),
        "the walk found the repository's files"
    );
}

/// Runs `python3 charts/tests/helmtool.py render` as tests/tests/chart.rs does.
fn render(values: Option<&Path>, name: &str, namespace: &str, api_versions: &[&str]) -> String {
    let chart = repo().join("charts/buoy");
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("charts/tests/helmtool.py"))
        .args(["render", chart.to_str().unwrap()])
        .args(["--name", name, "--namespace", namespace])
        .current_dir(repo())
        .stdin(Stdio::null());
    if let Some(v) = values {
        cmd.arg("--values").arg(v);
    }
    for a in api_versions {
        cmd.args(["--api-version", a]);
    }
    let out = cmd.output().expect(
        "python3 runs (the chart renders need python3 with helm-python-sdk and kubernetes-validate)",
    );
    assert!(
        out.status.success(),
        "helmtool render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_chart_renders_read_alike() {
    let defaults = render(None, "buoy", "buoy-system", &[]);
    let all = render(
        Some(&repo().join("charts/buoy/ci/all-values.yaml")),
        "edge",
        "buoy-ci",
        &["monitoring.coreos.com/v1"],
    );
    let report = compare(&[
        Source::text("helm render charts/buoy (default values)", &defaults),
        Source::text("helm render charts/buoy -f ci/all-values.yaml", &all),
    ]);
    assert!(report.documents > 20, "{} documents", report.documents);
    // The PrometheusRule too: its alerts' expressions and annotations are long strings.
    assert!(all.contains("kind: PrometheusRule"), "{all}");
    report.assert_same("chart renders");
}

// ---- what buoy-agent import prints ----

/// A case of the importer's fixtures: the directory it runs in and its command line.
struct ImportCase {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
}

/// Every case under `import/tests/fixtures/cases/` (its `args`, one argument per line, as
/// import/tests/import.rs reads them), and the reference tutorial's `seed`.
fn import_cases() -> Vec<ImportCase> {
    let fixtures = repo().join("import/tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut cases: Vec<ImportCase> = dirs
        .into_iter()
        .map(|dir| ImportCase {
            name: rel(&dir),
            args: std::fs::read_to_string(dir.join("args"))
                .unwrap()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            dir,
        })
        .collect();
    let seed = fixtures.join("seed");
    cases.push(ImportCase {
        name: rel(&seed),
        args: [
            "--keepalived",
            "lb1.conf",
            "lb2.conf",
            "--nginx",
            "nginx.conf",
        ]
        .map(String::from)
        .to_vec(),
        dir: seed,
    });
    cases
}

/// What `buoy-agent import ARGS` prints in the case's directory.
fn import_output(case: &ImportCase) -> String {
    let agent = workspace_bin("buoy-agent");
    assert!(
        agent.exists(),
        "{} is not built (cargo build -p buoy-agent)",
        agent.display()
    );
    let out = Command::new(&agent)
        .arg("import")
        .args(&case.args)
        .current_dir(&case.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: buoy-agent import {:?} failed: {}",
        case.name,
        case.args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn what_the_importer_prints_reads_alike() {
    let cases = import_cases();
    assert!(cases.len() >= 16, "{} import cases", cases.len());
    let sources: Vec<Source> = cases
        .iter()
        .map(|c| {
            Source::text(
                &format!("buoy-agent import in {}", c.name),
                &import_output(c),
            )
        })
        .collect();
    compare(&sources).assert_same("buoy-agent import");
}

/// `buoy-agent manifest control-plane ARGS`' output.
fn control_plane_output(args: &[&str]) -> String {
    let out = Command::new(workspace_bin("buoy-agent"))
        .args(["manifest", "control-plane"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "buoy-agent manifest control-plane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn what_the_control_plane_manifest_prints_reads_alike() {
    // Node names that YAML 1.1 would read as booleans, in both modes.
    let announce = [
        "--address",
        "10.0.0.100/24",
        "--interface",
        "eth0",
        "--node",
        "on=100",
        "--node",
        "y=99",
        "--node",
        "no=98",
    ];
    let proxy = [
        "--address",
        "10.0.0.100/24",
        "--interface",
        "eth0",
        "--mode",
        "proxy",
        "--node",
        "on=100@10.0.0.1",
        "--node",
        "y=99@10.0.0.2",
    ];
    let sources: Vec<Source> = [&announce[..], &proxy[..]]
        .iter()
        .map(|args| {
            let text = control_plane_output(args);
            assert!(text.contains("'on'"), "{text}");
            Source::text(
                &format!("buoy-agent manifest control-plane {args:?}"),
                &text,
            )
        })
        .collect();
    compare(&sources).assert_same("buoy-agent manifest control-plane");
}

// ---- the docs ----

/// Every ```` ```yaml ```` (or `yml`) block of a Markdown file: `FILE:LINE` of its opening fence,
/// and its text, unindented by the fence's own indentation (a block inside a list item).
fn yaml_blocks(path: &Path) -> Vec<Source> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, String)> = None; // (line, indentation, text)
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    // Another language's block is skipped to its end (usize::MAX).
                    let yaml = matches!(lang.trim(), "yaml" | "yml");
                    open = Some((i + 1, if yaml { indent } else { usize::MAX }, String::new()));
                }
            }
            Some((start, ind, body)) => {
                if trimmed.trim_end() == "```" {
                    if *ind != usize::MAX {
                        let mut block = Source::text(&format!("{}:{start}", rel(path)), body);
                        (block.fragment_ok, block.line_offset) = (true, *start);
                        blocks.push(block);
                    }
                    open = None;
                } else if *ind != usize::MAX {
                    body.push_str(line.get(*ind..).unwrap_or(line.trim_start()));
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{}: a code block is not closed", rel(path));
    blocks
}

#[test]
fn yaml_blocks_of_the_docs_read_alike() {
    let mut files = vec![
        repo().join("README.md"),
        repo().join("charts/buoy/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let blocks: Vec<Source> = files.iter().flat_map(|f| yaml_blocks(f)).collect();
    assert!(!blocks.is_empty(), "no ```yaml block in {files:?}");
    let report = compare(&blocks);
    for b in &blocks {
        println!("doc block {}", b.name);
    }
    report.assert_same("documentation");
}

// ---- kubectl itself ----

/// `kubectl apply --dry-run=client -o json -f FILE`: the objects kubectl would send, or what it
/// said when it refused the file (`cannot unmarshal bool into Go struct field
/// ObjectMeta.metadata.name of type string` for an unquoted `name: on`).
fn kubectl_reads(k: &Kubectl, file: &Path) -> Result<Vec<Value>, String> {
    let args = [
        "apply",
        "--dry-run=client",
        "-o",
        "json",
        "-f",
        file.to_str().unwrap(),
    ];
    let (ok, out, err) = k.run(&args, None);
    if !ok {
        return Err(err.trim().replace('\n', "; "));
    }
    let v: Value = serde_json::from_str(&out).unwrap();
    // Several objects come wrapped in a List (kind List, apiVersion v1, items), one alone.
    Ok(
        if v["kind"] == "List" && v["apiVersion"] == "v1" && v["items"].is_array() {
            v["items"].as_array().unwrap().clone()
        } else {
            vec![v]
        },
    )
}

/// What kubectl adds on a client dry run, taken off `sent` where `intended` lacks it:
/// - the `kubectl.kubernetes.io/last-applied-configuration` annotation (and the `annotations`
///   map holding it when the object had none);
/// - `metadata.namespace: default`, the kubeconfig's namespace, on namespaced objects without
///   one.
///
/// Nothing else is touched: any other difference is YAML read differently.
fn strip_kubectl_additions(mut sent: Value, intended: &Value) -> Value {
    let meta = sent["metadata"].as_object_mut().unwrap();
    let had_annotations = intended["metadata"].get("annotations").is_some();
    if let Some(Value::Object(a)) = meta.get_mut("annotations") {
        assert!(
            a.remove("kubectl.kubernetes.io/last-applied-configuration")
                .is_some(),
            "kubectl adds its last-applied annotation"
        );
        if a.is_empty() && !had_annotations {
            meta.remove("annotations");
        }
    }
    if intended["metadata"].get("namespace").is_none()
        && meta.get("namespace") == Some(&json!("default"))
    {
        meta.remove("namespace");
    }
    sent
}

/// kubectl's objects for `file` against serde_yaml's reading of it, object by object.
fn compare_with_kubectl(k: &Kubectl, name: &str, file: &Path, out: &mut Vec<String>) -> usize {
    let intended: Vec<Value> = serde_yaml_docs(&std::fs::read_to_string(file).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect();
    let sent = match kubectl_reads(k, file) {
        Ok(sent) => sent,
        Err(e) => {
            out.push(format!("{name}: kubectl refuses it: {e}"));
            return 0;
        }
    };
    if sent.len() != intended.len() {
        out.push(format!(
            "{name}: kubectl sends {} objects, serde_yaml reads {}",
            sent.len(),
            intended.len()
        ));
        return 0;
    }
    for (i, (want, got)) in intended.iter().zip(sent).enumerate() {
        let got = strip_kubectl_additions(got, want);
        let mut found = Vec::new();
        differences(want, &got, "$", ("serde_yaml", "kubectl"), &mut found);
        let what = format!(
            "{}/{}",
            want["kind"].as_str().unwrap_or("?"),
            want["metadata"]["name"].as_str().unwrap_or("?")
        );
        out.extend(
            found
                .into_iter()
                .map(|d| format!("{name} object {i} ({what}): {d}")),
        );
    }
    intended.len()
}

#[test]
fn kubectl_sends_what_buoy_reads() {
    let dir = scratch("kubectl");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_buoy-testapi"));
    cmd.args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig);
    let server = Proc::spawn("buoy-testapi", cmd).unwrap();
    server
        .wait_for_line("listening on ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("buoy-testapi did not start: {:?}", server.output()));
    let k = Kubectl::new(kubeconfig);
    let mut differences = Vec::new();
    let mut objects = 0;

    // deploy/ first, on the empty server, as a user installs it: on a client dry run, an object
    // that exists already (the CRDs, once installed) is printed as the server has it, not as
    // the file says.
    for file in yaml_files(&repo().join("deploy"), false) {
        objects += compare_with_kubectl(&k, &rel(&file), &file, &mut differences);
    }
    // Buoy's kinds are known to kubectl (discovery) once their CRDs are installed.
    let crds = repo().join("crds");
    k.ok(&["apply", "-f", crds.to_str().unwrap()]);
    for file in yaml_files(&repo().join("examples"), true) {
        objects += compare_with_kubectl(&k, &rel(&file), &file, &mut differences);
    }
    for case in import_cases() {
        let file = dir.path().join("import.yaml");
        std::fs::write(&file, import_output(&case)).unwrap();
        let name = format!("buoy-agent import in {}", case.name);
        objects += compare_with_kubectl(&k, &name, &file, &mut differences);
    }
    println!("kubectl --dry-run=client: {objects} objects sent as Buoy reads them");
    assert!(objects > 40, "{objects} objects");
    assert!(
        differences.is_empty(),
        "objects that kubectl sends differently from how Buoy (serde_yaml) reads them:\n{}",
        differences.join("\n")
    );
    drop(server);
}

/// The strip above takes off only what kubectl adds: a hazard still shows.
#[test]
fn kubectl_additions_are_stripped_and_nothing_else() {
    let intended = json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "yes"}});
    let sent = json!({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "data": {"a": true}});
    let got = strip_kubectl_additions(sent, &intended);
    assert_eq!(
        got,
        json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": true}})
    );
    let mut found = Vec::new();
    differences(&intended, &got, "$", ("serde_yaml", "kubectl"), &mut found);
    assert_eq!(found, [r#"$.data.a: serde_yaml "yes" vs kubectl true"#]);
}
