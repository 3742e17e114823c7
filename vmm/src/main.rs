//! `l4vmm`: boots the l4 guest microkernel in a KVM virtual machine.
//!
//! CLI -> validated [`config::Config`] -> [`vmm::Vmm::build`] (named boot steps) ->
//! [`vmm::Vmm::run`] -> an [`exit_status::ExitStatus`] that becomes the process status.

mod boot;
mod cli;
mod config;
mod devices;
mod error;
mod exit_status;
mod gdb;
mod host;
#[cfg(test)]
mod host_fuzz;
mod image;
mod memory;
mod paging;
mod seccomp;
mod signals;
mod terminal;
mod vcpu;
mod vmm;

use std::time::Instant;

use clap::Parser;

use crate::exit_status::ExitStatus;

fn main() {
    let started = Instant::now();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,gdbstub=warn"))
        .format_timestamp_micros()
        .init();
    // clap prints its own message and exits with 2 for usage errors.
    let cli = cli::Cli::parse();
    let status = run(cli, started);
    std::process::exit(status.code());
}

fn run(cli: cli::Cli, started: Instant) -> ExitStatus {
    let result = config::Config::from_cli(cli)
        .map_err(error::Error::from)
        .and_then(|config| vmm::Vmm::build(config, started))
        .and_then(|vmm| vmm.run());
    match result {
        Ok(status) => status,
        Err(e) => {
            eprintln!("l4vmm: error: {e}");
            e.exit_status()
        }
    }
}
