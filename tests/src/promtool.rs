//! `promtool`, Prometheus' own checker (Debian's `prometheus` package, which scripts/setup
//! installs): lints the agent's and the operator's `/metrics` and checks and unit-tests the
//! alerting rules. A missing promtool fails the test that needs it: never skipped.

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

/// Runs `promtool ARGS` in `dir` with `stdin`; panics with a clear message when promtool is not
/// installed.
pub fn run(args: &[&str], dir: &Path, stdin: &str) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package (scripts/setup does)"
            )
        });
    if let Some(mut input) = child.stdin.take() {
        // promtool may exit before reading everything (a parse error): a broken pipe is its
        // answer, which the exit status carries.
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("promtool runs")
}

/// `promtool check metrics` on a text exposition: `Err` with promtool's findings when it
/// reports any (a malformed exposition, or a lint: a counter without `_total`, a missing HELP,
/// a unit that is not a base unit...).
pub fn check_metrics(exposition: &str) -> Result<(), String> {
    let out = run(&["check", "metrics"], Path::new("."), exposition);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// The value of the first sample of `exposition` whose line starts with `series` (a name, or a
/// name and labels as the text format writes them).
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
                || (series.contains('{') && l.starts_with(series))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
