//! The l4 user runtime: what every server links.
//!
//! - [`entry!`]: the `_start` entry point, which calls your `main` and exits with its code;
//! - [`sys`]: safe wrappers for every system call (the raw ABI is in `l4_abi::syscall`);
//! - [`ipc`]: typed messages and endpoint operations;
//! - [`println!`]: formatted output through the kernel console;
//! - [`names`]: the root task's name service protocol.
//! - [`thread`]: more threads in the same address space;
//! - [`checks`]: the report of an in-guest test server's checks.
#![no_std]

pub mod checks;
pub mod io;
pub mod ipc;
mod mem;
pub mod names;
pub mod ring;
pub mod ringclient;
pub mod service;
pub mod sys;
pub mod thread;
pub mod time;
pub mod transfer;

pub use l4_abi as abi;

/// Defines the program's entry point: `_start` sets up nothing but a call to `main`, then
/// ends the task with `main`'s return value. `_start` is the outermost frame, marked so in
/// its call-frame information (no return address): debuggers' backtraces end there.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        extern "C" fn __l4_rt_main(arg: u64, arg2: u64) -> ! {
            $crate::START_ARG.store(arg, core::sync::atomic::Ordering::Relaxed);
            $crate::START_ARG2.store(arg2, core::sync::atomic::Ordering::Relaxed);
            let code: u64 = $main();
            $crate::sys::task_exit(code)
        }

        /// The task's first instruction (the kernel starts it with the stack 8 bytes below
        /// a 16-byte boundary, `arg` and `arg2` in %rdi and %rsi).
        #[no_mangle]
        #[link_section = ".text._start"]
        #[unsafe(naked)]
        pub extern "C" fn _start(arg: u64, arg2: u64) -> ! {
            core::arch::naked_asm!(
                ".cfi_startproc",
                ".cfi_undefined rip",
                "xor ebp, ebp",
                "and rsp, -16",
                "call {main}",
                "ud2",
                ".cfi_endproc",
                main = sym __l4_rt_main,
            )
        }
    };
}

/// The word the spawner passed to this task (`TaskSpawn`'s `arg`; the root task passes
/// `arg=NAME:N` from the kernel command line). Set by [`entry!`] before `main` runs.
#[doc(hidden)]
pub static START_ARG: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[doc(hidden)]
pub static START_ARG2: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The word the spawner passed to this task (0 if none).
pub fn start_arg() -> u64 {
    START_ARG.load(core::sync::atomic::Ordering::Relaxed)
}

/// Both words the spawner passed (`TaskSpawn`'s two arguments; 0 if none).
pub fn start_args() -> (u64, u64) {
    (start_arg(), START_ARG2.load(core::sync::atomic::Ordering::Relaxed))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {}", info);
    sys::task_exit(101)
}

/// libcore's unwind tables name this symbol even with `panic = "abort"`; never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
