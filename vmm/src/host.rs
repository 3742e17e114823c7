//! What kind of KVM the host has. Read from the loaded kernel modules, not guessed.

use std::path::Path;

/// The KVM implementation behind /dev/kvm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKvm {
    /// kvm_intel or kvm_amd: guest code runs on hardware virtualization.
    Hardware(&'static str),
    /// kvm_pvm: software virtualization; guest ring 0 runs in KVM's instruction emulator.
    Pvm,
    /// None of the known modules is loaded (KVM built in, or an unknown flavour).
    Unknown,
}

impl HostKvm {
    /// Looks at /sys/module.
    pub fn detect() -> Self {
        let loaded = |m: &str| Path::new("/sys/module").join(m).exists();
        if loaded("kvm_pvm") {
            HostKvm::Pvm
        } else if loaded("kvm_intel") {
            HostKvm::Hardware("kvm_intel")
        } else if loaded("kvm_amd") {
            HostKvm::Hardware("kvm_amd")
        } else {
            HostKvm::Unknown
        }
    }

    /// A one-line description for the log.
    pub fn describe(self) -> String {
        match self {
            HostKvm::Hardware(m) => format!("hardware-backed ({m})"),
            HostKvm::Pvm => "PVM (kvm_pvm: software virtualization, guest ring 0 is emulated)".into(),
            HostKvm::Unknown => "unknown (no kvm_intel, kvm_amd or kvm_pvm module)".into(),
        }
    }
}
