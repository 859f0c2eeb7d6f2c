//! `buoy-agent check`: prints what [`buoy_agent::check`] finds (warnings and errors on stderr,
//! the summary on stdout); fails when a manifest is invalid.

use std::{path::PathBuf, process::ExitCode};

pub(super) fn check(configs: &[PathBuf]) -> ExitCode {
    match buoy_agent::check::check(configs) {
        Ok(checked) => {
            for w in &checked.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", checked.summary);
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{}", buoy_agent::check::invalid(&errors));
            ExitCode::FAILURE
        }
    }
}
