//! The house's figures: how Buoy's production code measures against its style rules. Parses
//! every crate's `src/` with syn and prints files over 800 lines, functions over 100 lines
//! (outside tests), `pub` against restricted visibility, and `use` paths that run from a lower
//! floor of a crate to a higher one (the floors are `buoy_tests::house::CRATES`).
//!
//!     cargo run -p buoy-tests --bin house [-- --list]
//!
//! `tests/tests/house.rs` holds the code to the rules this prints.

use std::path::Path;

use anyhow::Result;
use buoy_tests::house::{self, Report};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Prints the house's figures for Buoy's production code")]
struct Args {
    /// List every file, function, and import counted, not only the figures.
    #[arg(long)]
    list: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let report: Report = house::measure(&root)?;
    println!("{}", report.summary());
    if args.list {
        println!("{}", report.details());
    }
    Ok(())
}
