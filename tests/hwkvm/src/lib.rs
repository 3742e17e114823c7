//! A hardware-KVM test host for machines that have none.
//!
//! Users run l4vmm on `kvm_intel` / `kvm_amd`; the project's machines have only `kvm_pvm`.
//! QEMU's TCG emulates AMD SVM with nested paging, so a Linux guest under TCG can load
//! `kvm_amd` and run l4vmm on hardware-style KVM: `syscall` enters ring 0, `int3` is an
//! ordinary instruction, single-stepping works the way it does on hardware (through
//! RFLAGS.TF), a triple fault resets the vCPU the way SVM does.
//!
//! This crate builds and boots that host:
//! 1. [`packages::prepare`] fetches Debian's cloud kernel (what `linux-image-cloud-amd64`
//!    depends on today), `busybox-static` and `gdb-minimal` with `apt-get download` into a
//!    cache, and unpacks them with `dpkg-deb -x`;
//! 2. [`image::Image`] is the initramfs: busybox, the three KVM modules, and whatever the
//!    caller adds (l4vmm, test binaries, files), each program with the shared libraries
//!    `ldd` names;
//! 3. [`boot::run`] boots it under `qemu-system-x86_64 -accel tcg -cpu EPYC,+svm,+npt`,
//!    runs a list of [`boot::Scenario`]s (shell scripts) one after another in that one
//!    boot, and hands back each one's stdout, stderr, exit status and time. Results come
//!    back on the second serial port, base64-framed, so nothing the kernel prints on the
//!    console can be mistaken for them.
//!
//! Every failure to get there (no QEMU, no apt, a package that cannot be fetched, a
//! library `ldd` cannot find, a host kernel that cannot load `kvm_amd`) is an [`Error`]
//! that names the reason and what to install.
//!
//! Nothing here is specific to the tests: `cargo run -p hwkvm -- -- l4vmm --vcpus 8` runs
//! l4vmm there by hand (see the README).

pub mod boot;
pub mod image;
pub mod packages;

use std::path::PathBuf;

/// Why the nested host could not be had or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} is not installed; {hint}")]
    MissingTool { tool: &'static str, hint: &'static str },
    #[error("apt could not {what}: {detail}")]
    Apt { what: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} needs {library}, which ldd cannot find on this machine")]
    Library { program: PathBuf, library: String },
    #[error("{0}")]
    Package(String),
    #[error("the nested host did not come up: {reason}\n--- its console (last lines)\n{console}")]
    HostFailed { reason: String, console: String },
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Whether `tool` is an executable on `PATH`.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}
