//! `buoy-agent check`: prints what [`buoy_agent::check`] finds (warnings and errors on stderr,
//! the summary on stdout); fails when a manifest is invalid.

use std::{path::PathBuf, process::ExitCode};

pub(super) fn check(configs: &[PathBuf]) -> ExitCode {
    match buoy_agent::check::report(configs, &mut std::io::stdout(), &mut std::io::stderr()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: cannot write the report: {e}");
            ExitCode::FAILURE
        }
    }
}
