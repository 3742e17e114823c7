//! More threads in this task's address space (`ThreadCreate`).
//!
//! [`spawn`] maps a stack, starts `f(arg)` on it on a given CPU, and ends the thread with
//! `f`'s return value (the task ends when its last thread does). A new thread shares
//! this task's memory and capabilities; the kernel gives it an IPC buffer of its own.
//! Limitation: this runtime's long messages ([`crate::ipc::Msg::long`]) go through the
//! first thread's buffer at `IPC_BUFFER_VA`, so other threads must keep to register
//! messages (up to eight words), which is what the same-address-space benchmarks use.

use l4_abi::syscall::Error;

use crate::sys;

/// Maps `pages` of stack at `stack_va` and runs `f(arg)` there in a new thread on `cpu`.
/// The stack stays mapped after the thread ends (the caller owns the range).
pub fn spawn(stack_va: u64, pages: u64, cpu: u64, f: fn(u64) -> u64, arg: u64) -> Result<(), Error> {
    sys::mem_map(stack_va, pages)?;
    // The function and its argument sit at the top of the new stack, where `start`
    // finds them; the thread's stack begins below them (still 16-byte aligned).
    let top = stack_va + pages * 4096 - 16;
    // SAFETY: [top, top + 16) lies in the stack just mapped, writable and ours; nothing
    // else uses it until the new thread reads it.
    unsafe {
        (top as *mut fn(u64) -> u64).write(f);
        ((top + 8) as *mut u64).write(arg);
    }
    match sys::thread_create(thread_entry, top, top, cpu) {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = sys::mem_unmap(stack_va, pages);
            Err(e)
        }
    }
}

/// A new thread's first instruction: the outermost frame, marked so for debuggers (no
/// return address), then a call to `start` with the stack aligned as the ABI wants.
#[unsafe(naked)]
extern "C" fn thread_entry(pair: u64, ipc_buffer: u64) -> ! {
    core::arch::naked_asm!(
        ".cfi_startproc",
        ".cfi_undefined rip",
        "xor ebp, ebp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        ".cfi_endproc",
        start = sym start,
    )
}

extern "C" fn start(pair: u64, _ipc_buffer: u64) -> ! {
    // SAFETY: `spawn` wrote a function pointer and a word at `pair` before creating this
    // thread, and nothing writes there since (the thread's stack starts below).
    let (f, arg) = unsafe { ((pair as *const fn(u64) -> u64).read(), ((pair + 8) as *const u64).read()) };
    sys::thread_exit(f(arg))
}
