//! The validated configuration: everything [`crate::vmm::Vmm::build`] needs, checked.
//!
//! Invariant: a `Config` only holds values l4vmm can boot with; every check that does not
//! need the image itself happens here, before KVM is touched.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::boot::layout;
use crate::cli::Cli;

/// The most vCPUs l4vmm creates.
pub const MAX_VCPUS: u32 = 64;
/// The least guest RAM, in MiB: the kernel and its boot data fit in far less, this leaves
/// room for the kernel's own frames.
pub const MIN_MEM_MIB: u64 = 4;
/// The most guest RAM, in MiB (64 GiB).
pub const MAX_MEM_MIB: u64 = 64 * 1024;

/// A configuration error: the user's input cannot be booted (exit status 2).
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("--vcpus must be between 1 and {MAX_VCPUS}, not {0}")]
    Vcpus(u32),
    #[error("--mem must be between {MIN_MEM_MIB} and {MAX_MEM_MIB} MiB, not {0}")]
    Mem(u64),
    #[error("--timeout must be a positive number of seconds, not {0}")]
    Timeout(f64),
    #[error("--cmdline is {0} bytes; the most is {max}", max = layout::CMDLINE_MAX - 1)]
    CmdlineTooLong(usize),
    #[error("--cmdline may only hold printable ASCII characters")]
    CmdlineChars,
    #[error("--module given {0} times; the most is {max}", max = layout::MAX_MODULES)]
    TooManyModules(usize),
    #[error("--gdb-wait needs --gdb")]
    GdbWaitWithoutGdb,
    #[error("--gdb {0}")]
    GdbAddr(String),
}

/// Where the kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// The kernel embedded in l4vmm at build time.
    Embedded,
    File(PathBuf),
}

/// Where the boot modules come from.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// The embedded image's modules.
    Embedded,
    Files(Vec<PathBuf>),
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub kernel: KernelSource,
    pub modules: ModuleSource,
    pub cmdline: String,
    pub mem_mib: u64,
    pub vcpus: u32,
    pub timeout: Option<Duration>,
    /// Where the gdb stub listens, if anywhere.
    pub gdb: Option<GdbAddr>,
    /// Hold the guest until gdb continues it.
    pub gdb_wait: bool,
    /// Confine l4vmm's threads with the seccomp filter once the VM is built.
    pub seccomp: bool,
}

impl Config {
    /// Checks the command line.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        if cli.vcpus == 0 || cli.vcpus > MAX_VCPUS {
            return Err(ConfigError::Vcpus(cli.vcpus));
        }
        if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&cli.mem) {
            return Err(ConfigError::Mem(cli.mem));
        }
        let timeout = match cli.timeout {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
            Some(t) => return Err(ConfigError::Timeout(t)),
        };
        if cli.cmdline.len() >= layout::CMDLINE_MAX as usize {
            return Err(ConfigError::CmdlineTooLong(cli.cmdline.len()));
        }
        if !cli.cmdline.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ConfigError::CmdlineChars);
        }
        if cli.modules.len() > layout::MAX_MODULES {
            return Err(ConfigError::TooManyModules(cli.modules.len()));
        }
        if cli.gdb_wait && cli.gdb.is_none() {
            return Err(ConfigError::GdbWaitWithoutGdb);
        }
        let gdb = match &cli.gdb {
            Some(a) => Some(a.parse::<GdbAddr>().map_err(ConfigError::GdbAddr)?),
            None => None,
        };
        Ok(Config {
            kernel: cli.kernel.map_or(KernelSource::Embedded, KernelSource::File),
            modules: if cli.modules.is_empty() { ModuleSource::Embedded } else { ModuleSource::Files(cli.modules) },
            cmdline: cli.cmdline,
            mem_mib: cli.mem,
            vcpus: cli.vcpus,
            timeout,
            gdb,
            gdb_wait: cli.gdb_wait,
            seccomp: !cli.no_seccomp,
        })
    }
}

/// Where the stub listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for GdbAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(GdbAddr::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp:").unwrap_or(s);
        let (host, port) =
            hostport.rsplit_once(':').ok_or_else(|| format!("'{s}' is not tcp:HOST:PORT or unix:PATH"))?;
        port.parse::<u16>().map_err(|_| format!("'{port}' is not a port number"))?;
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        Ok(GdbAddr::Tcp(format!("{host}:{port}")))
    }
}
