//! Counts of the interrupts the kernel took in kernel mode: all of them, and those that
//! arrived with interrupts disabled (the host's fault, docs/HOSTS.md). The trap handler
//! counts; `ktest=irq-mask` and the host-fault warning read them.

use core::sync::atomic::AtomicU64;

/// Interrupts taken in kernel mode.
pub static KERNEL_IRQS: AtomicU64 = AtomicU64::new(0);
/// Of those, the ones delivered while RFLAGS.IF was clear.
pub static IF0_IRQS: AtomicU64 = AtomicU64::new(0);
