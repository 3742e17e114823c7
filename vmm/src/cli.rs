//! The command line, as the user types it. [`crate::config::Config`] validates it.

use std::path::PathBuf;

use clap::Parser;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0, 1, 3-63  the guest's own exit code (written to its exit device, port 0xf4)
  2           usage or configuration error (bad flag, unreadable or invalid image)
  64          l4vmm failed (KVM or host error)
  65          the guest triple-faulted or shut down
  66          KVM internal error or instruction-emulation failure
  67          --timeout expired
  68          the guest wrote an invalid exit code (2 or above 63)
  69          killed from gdb
  130, 143    stopped by SIGINT (Ctrl-C) or SIGTERM";

/// Boot the l4 microkernel in a KVM virtual machine.
#[derive(Parser, Debug)]
#[command(name = "l4vmm", version, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// Kernel ELF to boot (with a PVH entry note). Default: the kernel embedded in l4vmm.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// A boot module, handed to the kernel in order (repeatable). Replaces the embedded
    /// image's modules.
    #[arg(long = "module", value_name = "PATH")]
    pub modules: Vec<PathBuf>,

    /// The kernel command line.
    #[arg(long, value_name = "STR", default_value = "")]
    pub cmdline: String,

    /// Guest RAM in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub mem: u64,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub vcpus: u32,

    /// Stop the guest after this many seconds (exit status 67).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,

    /// Serve the gdb remote protocol on ADDR (tcp:HOST:PORT or unix:PATH).
    #[arg(long, value_name = "ADDR")]
    pub gdb: Option<String>,

    /// With --gdb: hold the guest before its first instruction until gdb continues it.
    #[arg(long)]
    pub gdb_wait: bool,

    /// Run without the seccomp filter (for debugging l4vmm itself; see docs/SECURITY.md).
    #[arg(long)]
    pub no_seccomp: bool,
}
