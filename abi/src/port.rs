//! I/O ports of the platform devices the guest talks to.

/// The 16550 UART on COM1 (the serial console).
pub const COM1: u16 = 0x3f8;

/// The exit device: a byte written here ends the VM. l4vmm exits with that value (see
/// [`crate::exit`]); QEMU's `isa-debug-exit` device at the same port exits with
/// `(value << 1) | 1`.
pub const EXIT: u16 = 0xf4;

/// The zeroing device: a u32 written here is a frame number (physical address >> 12)
/// that the VMM fills with zeros, so the guest never zeroes memory in ring 0. Reading a
/// u32 gives [`ZERO_MAGIC`] when the device exists (all-ones elsewhere).
pub const ZERO: u16 = 0xe0;
/// What [`ZERO`] reads as on l4vmm.
pub const ZERO_MAGIC: u32 = 0x4c34_5a30; // "L4Z0"

/// The trace-marker port: the guest writes a [`Marker`] byte, the VMM timestamps it, and
/// between [`Marker::CountStart`] and [`Marker::CountStop`] the VMM counts the guest's
/// ring-0 instructions by single-stepping. A 32-bit read returns the last count
/// ([`COUNT_UNSUPPORTED`] where the VMM cannot count). Ignored by machines without the
/// device (writes dropped, reads all-ones).
pub const MARKER: u16 = 0xea;

/// What a count read returns where counting is not possible or not exact (no device, gdb
/// attached, or the calibration at boot did not count exactly: on hardware KVM
/// single-stepping rides on RFLAGS.TF, which `syscall` and interrupt gates clear, so kernel
/// entries from user mode go uncounted).
pub const COUNT_UNSUPPORTED: u32 = u32::MAX;

/// Values written to [`MARKER`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// The kernel's first instruction (the PVH entry point) has run.
    KernelEntry = 1,
    /// Start counting ring-0 instructions (from the next one).
    CountStart = 2,
    /// Stop counting.
    CountStop = 3,
    /// The last two counts were the kernel's calibration windows, which differ by exactly
    /// [`CALIBRATION_INSTRUCTIONS`] ring-0 instructions reached through a user-mode entry:
    /// the VMM reports counts only if it counted that difference exactly.
    CountVerify = 4,
}

/// How many more ring-0 instructions the kernel's second calibration window runs than its
/// first (see [`Marker::CountVerify`]).
pub const CALIBRATION_INSTRUCTIONS: u64 = 64;

impl Marker {
    /// Decodes a byte written to the marker port.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Marker::KernelEntry),
            2 => Some(Marker::CountStart),
            3 => Some(Marker::CountStop),
            4 => Some(Marker::CountVerify),
            _ => None,
        }
    }
}
