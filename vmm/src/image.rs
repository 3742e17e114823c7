//! The boot image: the kernel ELF and the boot modules, embedded or read from files.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::{KernelSource, ModuleSource};

/// The kernel built by build.rs from guest-kernel/.
static EMBEDDED_KERNEL: &[u8] = include_bytes!(env!("L4_KERNEL_ELF"));
/// The boot archive built by build.rs from guest-servers/: a cpio archive of the servers,
/// the root task first.
static EMBEDDED_ARCHIVE: &[u8] = include_bytes!(env!("L4_BOOT_ARCHIVE"));

/// An input error in the boot image (exit status 2).
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot read {what} '{}': {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0} is empty")]
    Empty(String),
    #[error("{0} is not an ELF file (no \\x7fELF magic)")]
    NotElf(String),
    #[error("{name} is not a valid ELF file: {reason}")]
    Malformed { name: String, reason: String },
    #[error("{name} is truncated: {detail}")]
    Truncated { name: String, detail: String },
    #[error("{name} is not a 64-bit x86_64 executable ELF ({detail})")]
    WrongKind { name: String, detail: String },
    #[error("{name} has no loadable segments")]
    NoSegments { name: String },
    #[error("{name}: segment {index} at guest-physical [{start:#x}, {end:#x}) is outside guest memory (a kernel must load between {min:#x} and {max:#x})")]
    OutsideMemory { name: String, index: usize, start: u64, end: u64, min: u64, max: u64 },
    #[error("{name} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); l4vmm boots kernels through PVH only")]
    NoPvhNote { name: String },
    #[error("--mem {mem_mib} MiB is too small for this image: the kernel and modules need at least {need_mib} MiB")]
    MemTooSmall { mem_mib: u64, need_mib: u64 },
    #[error("module '{name}' is {size} bytes; the most l4vmm can place is {max} bytes")]
    ModuleTooLarge { name: String, size: u64, max: u64 },
}

/// Bytes plus a name for messages. Embedded images are borrowed, files owned.
pub struct Blob {
    pub name: String,
    pub bytes: Cow<'static, [u8]>,
}

fn read(what: &'static str, path: &Path) -> Result<Blob, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read { what, path: path.to_path_buf(), source })?;
    Ok(Blob { name: format!("{what} '{}'", path.display()), bytes: Cow::Owned(bytes) })
}

/// The kernel's bytes.
pub fn kernel(source: &KernelSource) -> Result<Blob, ImageError> {
    match source {
        KernelSource::Embedded => {
            Ok(Blob { name: "the embedded kernel".into(), bytes: Cow::Borrowed(EMBEDDED_KERNEL) })
        }
        KernelSource::File(path) => read("kernel", path),
    }
}

/// The boot modules, in order. The module's name (handed to the guest as the module's
/// command line) is its file name.
pub fn modules(source: &ModuleSource) -> Result<Vec<Blob>, ImageError> {
    match source {
        ModuleSource::Embedded => Ok(vec![Blob { name: "boot.cpio".into(), bytes: Cow::Borrowed(EMBEDDED_ARCHIVE) }]),
        ModuleSource::Files(paths) => paths
            .iter()
            .map(|p| {
                let mut blob = read("module", p)?;
                blob.name = p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
                Ok(blob)
            })
            .collect(),
    }
}
