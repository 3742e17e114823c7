//! What kind of KVM the host has, and whether the host's CPU is itself virtual. Read from
//! the loaded kernel modules and CPUID, not guessed.

use std::path::Path;

/// The KVM implementation behind /dev/kvm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// kvm_intel or kvm_amd: guest code runs on hardware virtualization.
    Hardware(&'static str),
    /// kvm_pvm: software virtualization; guest ring 0 runs in KVM's instruction emulator.
    Pvm,
    /// None of the known modules is loaded (KVM built in, or an unknown flavour).
    Unknown,
}

/// The host as l4vmm sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostKvm {
    pub kind: Kind,
    /// CPUID.1:ECX.31 (the hypervisor bit) on the host: the host is itself a virtual
    /// machine, e.g. kvm_amd inside QEMU's TCG, so the cycle counts measured here are not
    /// a bare-metal CPU's.
    pub nested: bool,
}

impl HostKvm {
    /// Looks at /sys/module and CPUID.
    pub fn detect() -> Self {
        let loaded = |m: &str| Path::new("/sys/module").join(m).exists();
        let kind = if loaded("kvm_pvm") {
            Kind::Pvm
        } else if loaded("kvm_intel") {
            Kind::Hardware("kvm_intel")
        } else if loaded("kvm_amd") {
            Kind::Hardware("kvm_amd")
        } else {
            Kind::Unknown
        };
        HostKvm { kind, nested: host_cpu_is_virtual() }
    }

    /// A one-line description for the log (bench reads it back: it starts with "PVM",
    /// "hardware-backed" or "unknown", and says "(nested" when the host CPU is virtual).
    pub fn describe(self) -> String {
        let nested = if self.nested {
            ", nested: the host's own CPU is virtual (CPUID hypervisor bit), so cycle counts here are not a \
             bare-metal CPU's"
        } else {
            ""
        };
        match self.kind {
            Kind::Hardware(m) if self.nested => format!("hardware-backed ({m} (nested){nested})"),
            Kind::Hardware(m) => format!("hardware-backed ({m})"),
            Kind::Pvm => format!("PVM (kvm_pvm: software virtualization, guest ring 0 is emulated{nested})"),
            Kind::Unknown => format!("unknown (no kvm_intel, kvm_amd or kvm_pvm module{nested})"),
        }
    }
}

/// Whether CPUID says this CPU runs under a hypervisor.
fn host_cpu_is_virtual() -> bool {
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU and only reads identification data.
    // (`__cpuid` is a safe function from Rust 1.94 on, unsafe before: the README promises
    // 1.85.)
    #[allow(unused_unsafe)]
    let leaf1 = unsafe { std::arch::x86_64::__cpuid(1) };
    leaf1.ecx & (1 << 31) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_hardware_host_says_so() {
        let h = HostKvm { kind: Kind::Hardware("kvm_amd"), nested: true };
        assert!(h.describe().starts_with("hardware-backed (kvm_amd (nested)"), "{}", h.describe());
        let b = HostKvm { kind: Kind::Hardware("kvm_intel"), nested: false };
        assert_eq!(b.describe(), "hardware-backed (kvm_intel)");
        let p = HostKvm { kind: Kind::Pvm, nested: true };
        assert!(p.describe().starts_with("PVM (kvm_pvm") && p.describe().contains("nested"), "{}", p.describe());
    }
}
