//! `buoy-agent`: the node side of Buoy. Parses the command line and runs the command (`cli`).

// The proxy allocates per request (pingora headers and buffers); mimalloc is markedly cheaper than
// glibc malloc for that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    cli::Cli::parse().run()
}
