//! The house's rules, held: no production file over 800 lines, no production function over 100
//! lines, no `use` from a lower floor of a crate to a higher one, and every library private by
//! default (`unreachable_pub` and `missing_docs` on). `cargo run -p buoy-tests --bin house --
//! --list` prints what these count.

use std::path::{Path, PathBuf};

use buoy_tests::house::{self, FILE_LINES, FN_LINES};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

#[test]
fn the_house_keeps_its_rooms_small_and_its_floors_in_order() {
    let report = house::measure(&root()).expect("the sources parse");
    assert!(
        report.files.len() > 100,
        "the walk found only {} files: is the root right?",
        report.files.len()
    );
    let big: Vec<_> = report
        .big_files()
        .iter()
        .map(|f| format!("{} ({} lines)", f.path.display(), f.lines))
        .collect();
    assert!(big.is_empty(), "files over {FILE_LINES} lines: {big:#?}");
    let long: Vec<_> = report
        .long_fns()
        .iter()
        .map(|(p, n, l)| format!("{}: {n} ({l} lines)", p.display()))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {FN_LINES} lines: {long:#?}"
    );
    let upward: Vec<_> = report
        .upward()
        .iter()
        .map(|(p, u)| format!("{} uses {u}", p.display()))
        .collect();
    assert!(
        upward.is_empty(),
        "uses from a lower floor to a higher one: {upward:#?}"
    );
}

#[test]
fn every_library_is_private_by_default_and_documented() {
    for lib in [
        "crds/src/lib.rs",
        "vrrp/src/lib.rs",
        "import/src/lib.rs",
        "operator/src/lib.rs",
        "node-agent/src/lib.rs",
        "kubectl-buoy/src/lib.rs",
    ] {
        let text = std::fs::read_to_string(root().join(lib)).expect("the library's root");
        let lints = text
            .lines()
            .find(|l| l.starts_with("#![warn(") || l.starts_with("#![deny("))
            .unwrap_or_default();
        for lint in ["unreachable_pub", "missing_docs"] {
            assert!(
                lints.contains(lint),
                "{lib} does not turn on {lint}: {lints:?}"
            );
        }
    }
}
