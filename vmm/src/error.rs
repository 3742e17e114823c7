//! l4vmm's errors. Input errors map to exit status 2, everything else to 64.

use thiserror::Error;

use crate::config::ConfigError;
use crate::exit_status::ExitStatus;
use crate::image::ImageError;

/// Why l4vmm could not boot or run the guest.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(
        "cannot open /dev/kvm: {0} (l4vmm needs KVM: load kvm_intel, kvm_amd or kvm_pvm and make /dev/kvm accessible)"
    )]
    KvmOpen(kvm_ioctls::Error),
    #[error("KVM: {what}: {source}")]
    Kvm { what: &'static str, source: kvm_ioctls::Error },
    #[error("KVM lacks {0}, which l4vmm needs")]
    KvmCapability(&'static str),
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("{what}: {source}")]
    Host { what: &'static str, source: std::io::Error },
    #[error("cannot listen for gdb on {addr}: {source}")]
    GdbListen { addr: String, source: std::io::Error },
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::Error),
    #[error("event loop: {0:?}")]
    EventLoop(event_manager::Error),
}

impl Error {
    /// Wraps a KVM ioctl failure.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Self {
        move |source| Error::Kvm { what, source }
    }

    /// Wraps a host I/O failure.
    pub fn host(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Error::Host { what, source }
    }

    /// The process exit status for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Config(_) | Error::Image(_) | Error::GdbListen { .. } => ExitStatus::Usage,
            _ => ExitStatus::VmmError,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
