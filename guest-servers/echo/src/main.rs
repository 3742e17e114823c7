//! The echo server: registers as "echo" and answers every message with the same label and
//! words.
#![no_std]
#![no_main]

use l4_rt::ipc::{self, Msg};
use l4_rt::{names, println, sys};

l4_rt::entry!(main);

fn main() -> u64 {
    let Ok(ep) = sys::endpoint_create() else { return 1 };
    if names::register("echo", ep).is_err() {
        println!("echo: cannot register");
        return 1;
    }
    println!("echo: serving");
    let mut r = ipc::recv(ep);
    loop {
        r = match r {
            Ok(got) => {
                let m = Msg { cap: None, ..got.msg };
                ipc::reply_recv(ep, &m).or_else(|_| ipc::recv(ep))
            }
            Err(_) => ipc::recv(ep),
        };
    }
}
