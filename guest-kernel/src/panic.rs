//! The kernel's panic handler: report over the console and leave with
//! [`l4_abi::exit::KERNEL_PANIC`]. No `core::fmt`: only a literal message is printed.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::kprint!("\nl4: KERNEL PANIC");
    if let Some(loc) = info.location() {
        crate::kprint!(" at ", loc.file(), ":", loc.line());
    }
    if let Some(msg) = info.message().as_str() {
        crate::kprint!(": ", msg);
    }
    crate::kprintln!();
    crate::arch::exit(l4_abi::exit::KERNEL_PANIC)
}

/// libcore's unwind tables name this symbol even with `panic = "abort"`; it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
