//! A server that faults on purpose: it reads an unmapped address. The kernel stops it and
//! tells the root task; everyone else keeps running.
#![no_std]
#![no_main]

use l4_rt::println;

l4_rt::entry!(main);

fn main() -> u64 {
    println!("faulty: about to read unmapped memory at 0xdead0000");
    // SAFETY: deliberately not: this read faults, which is the point of this server.
    let v = unsafe { (0xdead_0000 as *const u64).read_volatile() };
    println!("faulty: read {} (this line must never print)", v);
    0
}
