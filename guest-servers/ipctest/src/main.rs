//! In-guest IPC tests, run with `run=echo,ipctest` on the kernel command line (the root
//! task does not start test servers by default). Each check prints `ipctest: ok NAME` or
//! `ipctest: FAIL NAME: why`; the host test (tests/ipc.rs) asserts on them.
#![no_std]
#![no_main]

use l4_abi::syscall::{rights, Error, MsgInfo, Sysno};
use l4_rt::ipc::{self, Msg};
use l4_rt::transfer::{checksum, COW_READ, COW_WRITE, SHARED_WRITE, SINK_PAGES, SINK_SHARED, SINK_SHARED_SETUP, WHO};
use l4_rt::{names, println, sys};

l4_rt::entry!(main);

const STAGE: u64 = 0x0000_0010_0000_0000;
const SHARED: u64 = 0x0000_0020_0000_0000;
const GRANTED: u64 = 0x0000_0030_0000_0000;
const BIG: u64 = 0x0000_0050_0000_0000;
/// Messages of each kind in the leak check.
const SOAK: u64 = 10_000;

fn byte(va: u64) -> u8 {
    // SAFETY: callers read pages this task mapped.
    unsafe { (va as *const u8).read_volatile() }
}

fn set_byte(va: u64, v: u8) {
    // SAFETY: callers write pages this task mapped writable (or copy-on-write).
    unsafe { (va as *mut u8).write_volatile(v) }
}

fn used() -> u64 {
    sys::frame_stats().1
}

struct Tests {
    failed: u32,
}

impl Tests {
    fn check(&mut self, name: &str, r: Result<(), &str>) {
        match r {
            Ok(()) => println!("ipctest: ok {}", name),
            Err(why) => {
                self.failed += 1;
                println!("ipctest: FAIL {}: {}", name, why);
            }
        }
    }
}

fn expect_err<T>(r: Result<T, Error>, want: Error) -> Result<(), &'static str> {
    match r {
        Err(e) if e == want => Ok(()),
        Err(_) => Err("wrong error"),
        Ok(_) => Err("succeeded"),
    }
}

fn pages_msg(label: u32, kind: u64, va: u64, len: u64) -> Msg {
    Msg::new(label, &[len]).with_pages(kind, va, len)
}

fn main() -> u64 {
    let Ok(Some(echo)) = names::wait_for("echo", 10) else {
        println!("ipctest: FAIL setup: no echo server");
        let _ = names::done(1);
        return 1;
    };
    let mut t = Tests { failed: 0 };

    t.check(
        "user rflags do not reach the kernel",
        (|| {
            // Every RFLAGS bit a user can set before a system call, alone and all at
            // once: the call must come back normally (a user's NT once made the kernel's
            // own iretq fault on hosts where `syscall` enters ring 0).
            let all = sys::USER_SETTABLE_RFLAGS;
            for bit in (0..22).map(|b| 1u64 << b).filter(|b| all & b != 0).chain([all]) {
                let r = sys::raw_number_flags(Sysno::Null as u64, 0, 0, [0; 8], bit);
                if r.rax != 0 {
                    return Err("a system call with user flags set failed");
                }
                let r = ipc::call(echo, &Msg::new(9, &[bit]));
                if !r.is_ok_and(|m| m.words() == [bit]) {
                    return Err("a call after one with user flags set failed");
                }
            }
            Ok(())
        })(),
    );

    t.check(
        "order",
        (|| {
            for i in 0..100u64 {
                let r = ipc::call(echo, &Msg::new(9, &[i, i + 1])).map_err(|_| "call failed")?;
                if r.words() != [i, i + 1] {
                    return Err("reply out of order");
                }
            }
            Ok(())
        })(),
    );

    t.check(
        "key-value store over synchronous IPC",
        (|| {
            let put = |k: u64, v: u64| ipc::call(echo, &Msg::new(l4_rt::transfer::KV_PUT, &[k, v])).map(|r| r.words[0]);
            let get =
                |k: u64| ipc::call(echo, &Msg::new(l4_rt::transfer::KV_GET, &[k])).map(|r| (r.words[0], r.words[1]));
            if put(42, 4242) != Ok(0) || get(42) != Ok((1, 4242)) || get(43) != Ok((0, 0)) {
                return Err("wrong answers");
            }
            Ok(())
        })(),
    );

    t.check(
        "badges",
        (|| {
            // Root minted echo's badge for this task: echo sees it, and nobody can change it.
            let who = |c| ipc::call(c, &Msg::new(WHO, &[])).map(|r| r.words[0]);
            let mine = who(echo).map_err(|_| "who")?;
            if mine == 0 {
                return Err("looked up without a badge");
            }
            expect_err(sys::cap_derive(echo, rights::SEND, 7), Error::BadArgument)?;
            let copy = sys::cap_derive(echo, rights::ALL, 0).map_err(|_| "derive")?;
            let same = who(copy);
            let _ = sys::cap_delete(copy);
            if same != Ok(mine)
                || names::lookup("echo").ok().flatten().map(|e| (who(e), sys::cap_delete(e)).0) != Some(Ok(mine))
            {
                return Err("the badge changed");
            }
            Ok(())
        })(),
    );

    t.check(
        "errors",
        (|| {
            expect_err(ipc::call(63, &Msg::new(1, &[])), Error::InvalidCap)?;
            let mem = sys::mem_create(1).map_err(|_| "mem_create")?;
            expect_err(ipc::call(mem, &Msg::new(1, &[])), Error::WrongType)?;
            let send_only = sys::cap_derive(echo, rights::SEND, 0).map_err(|_| "derive")?;
            expect_err(ipc::recv(send_only), Error::NoRights)?;
            expect_err(ipc::call(send_only, &Msg::new(1, &[]).with_cap(mem)), Error::NoRights)?;
            sys::mem_map(STAGE, 1).map_err(|_| "map")?;
            expect_err(ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::COW, STAGE + 8, 4096)), Error::BadAddress)?;
            expect_err(ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::COW, 0x5000_0000, 4096)), Error::BadAddress)?;
            expect_err(
                ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::COW, 0xffff_8000_0010_0000, 4096)),
                Error::BadAddress,
            )?;
            // One page more than echo's receive window: refused before any page is looked at.
            let too_big = l4_rt::transfer::MAX_PAGES_BYTES as u64 + 4096;
            expect_err(ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::COW, BIG, too_big)), Error::WindowTooSmall)?;
            expect_err(sys::raw(Sysno::DebugWrite, 0xffff_ffff_8010_0000, 8, [0; 8]).ok(), Error::BadAddress)?;
            let own = sys::endpoint_create().map_err(|_| "endpoint")?;
            expect_err(ipc::send_nb(own, &Msg::new(1, &[])), Error::WouldBlock)?;
            expect_err(ipc::recv_nb(own), Error::WouldBlock)?;
            expect_err(sys::mem_map(STAGE, 1), Error::Exists)?;
            let _ = sys::mem_unmap(STAGE, 1);
            for s in [mem, send_only, own] {
                let _ = sys::cap_delete(s);
            }
            Ok(())
        })(),
    );

    t.check(
        "cow isolation both ways, unwritten pages stay shared",
        (|| {
            sys::mem_map(STAGE, 4).map_err(|_| "map")?;
            for i in 0..4u64 {
                set_byte(STAGE + i * 4096, b'a' + i as u8);
            }
            let before = used();
            let r = ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::COW, STAGE, 4 * 4096)).map_err(|_| "send")?;
            if r.words[0] != checksum(unsafe { core::slice::from_raw_parts(STAGE as *const u8, 4 * 4096) }) {
                return Err("checksum");
            }
            let after_send = used();
            if after_send > before + 3 {
                return Err("pages were copied on send");
            }
            // The receiver writes page 0: the sender keeps its byte.
            let r = ipc::call(echo, &Msg::new(COW_WRITE, &[0, b'X' as u64])).map_err(|_| "cow write")?;
            if r.words[0] != b'a' as u64 || byte(STAGE) != b'a' {
                return Err("receiver's write visible to the sender");
            }
            // The sender writes page 1: the receiver keeps its byte.
            set_byte(STAGE + 4096, b'Y');
            let r = ipc::call(echo, &Msg::new(COW_READ, &[4096])).map_err(|_| "cow read")?;
            if r.words[0] != b'b' as u64 {
                return Err("sender's write visible to the receiver");
            }
            // Exactly two pages were copied (one per writer): pages 2 and 3 are still shared.
            if used() != after_send + 2 {
                return Err("frame count: more than the written pages were copied");
            }
            let _ = sys::mem_unmap(STAGE, 4);
            Ok(())
        })(),
    );

    t.check(
        "cow of 4 MiB",
        (|| {
            sys::mem_map(BIG, 1024).map_err(|_| "map")?;
            for i in 0..1024u64 {
                set_byte(BIG + i * 4096 + (i % 4096), i as u8);
            }
            // SAFETY: the 1024 pages just mapped.
            let want = checksum(unsafe { core::slice::from_raw_parts(BIG as *const u8, 4 << 20) });
            let r = ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::COW, BIG, 4 << 20)).map_err(|_| "send")?;
            let _ = sys::mem_unmap(BIG, 1024);
            if r.words[0] != want {
                return Err("checksum");
            }
            Ok(())
        })(),
    );

    t.check(
        "shared mapping visible both ways",
        (|| {
            let m = sys::mem_create(2).map_err(|_| "mem_create")?;
            sys::mem_map_obj(m, SHARED).map_err(|_| "map")?;
            ipc::call(echo, &Msg::new(SINK_SHARED_SETUP, &[2 * 4096]).with_cap(m)).map_err(|_| "setup")?;
            set_byte(SHARED + 5, b'Q');
            let r = ipc::call(echo, &Msg::new(SINK_SHARED, &[5, 1])).map_err(|_| "sink")?;
            if r.words[0] != b'Q' as u64 {
                return Err("server does not see the client's write");
            }
            ipc::call(echo, &Msg::new(SHARED_WRITE, &[4097, b'Z' as u64])).map_err(|_| "shared write")?;
            if byte(SHARED + 4097) != b'Z' {
                return Err("client does not see the server's write");
            }
            Ok(())
        })(),
    );

    t.check(
        "grant moves the pages",
        (|| {
            sys::mem_map(GRANTED, 1).map_err(|_| "map")?;
            set_byte(GRANTED, b'G');
            let r = ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::GRANT, GRANTED, 4096)).map_err(|_| "grant")?;
            if r.words[0] != b'G' as u64 {
                return Err("checksum");
            }
            // The page is gone from here: mapping it anew succeeds.
            sys::mem_map(GRANTED, 1).map_err(|_| "the sender still has the page")?;
            let _ = sys::mem_unmap(GRANTED, 1);
            Ok(())
        })(),
    );

    t.check(
        "no frame leaks after 10000 messages of each kind",
        (|| {
            sys::mem_map(STAGE, 1).map_err(|_| "map")?;
            let long: [u64; 120] = core::array::from_fn(|i| i as u64);
            let mut kinds: [(&str, &mut dyn FnMut() -> bool); 5] = [
                ("register", &mut || ipc::call(echo, &Msg::new(1, &[1, 2, 3])).is_ok()),
                ("ipcbuf", &mut || ipc::call(echo, &Msg::long(1, &long)).is_ok()),
                ("cow", &mut || ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::COW, STAGE, 4096)).is_ok()),
                ("shared", &mut || ipc::call(echo, &Msg::new(SINK_SHARED, &[0, 64])).is_ok()),
                ("grant", &mut || {
                    sys::mem_map(GRANTED, 1).is_ok()
                        && ipc::call(echo, &pages_msg(SINK_PAGES, MsgInfo::GRANT, GRANTED, 4096)).is_ok()
                }),
            ];
            for (name, op) in kinds.iter_mut() {
                // One warm-up round: page tables on both sides come into being once.
                if !op() {
                    println!("ipctest: {} failed", name);
                    return Err("a message failed");
                }
                let base = used();
                for _ in 0..SOAK {
                    if !op() {
                        println!("ipctest: {} failed", name);
                        return Err("a message failed");
                    }
                }
                let now = used();
                println!("ipctest: {} x {}: frames in use {} -> {}", SOAK, name, base, now);
                if now != base {
                    return Err("frames leaked");
                }
            }
            Ok(())
        })(),
    );

    println!("ipctest: {} failed", t.failed);
    let status = if t.failed == 0 { 0 } else { 1 };
    let _ = names::done(status);
    status
}
