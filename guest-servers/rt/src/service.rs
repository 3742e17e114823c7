//! The service logic shared by the synchronous (`echo`) and the ring (`ringsrv`) servers,
//! so the benchmark compares like with like: echo, a small key-value store, and a
//! checksum over a data range.

use l4_abi::ring::{op, status, Cqe, Sqe};

/// Keys the store holds.
pub const KV_SLOTS: usize = 64;

/// The key-value store.
pub struct Kv {
    keys: [u64; KV_SLOTS],
    vals: [u64; KV_SLOTS],
    used: [bool; KV_SLOTS],
}

impl Default for Kv {
    fn default() -> Self {
        Kv { keys: [0; KV_SLOTS], vals: [0; KV_SLOTS], used: [false; KV_SLOTS] }
    }
}

impl Kv {
    pub fn put(&mut self, k: u64, v: u64) -> bool {
        let slot = (0..KV_SLOTS)
            .find(|&i| self.used[i] && self.keys[i] == k)
            .or_else(|| (0..KV_SLOTS).find(|&i| !self.used[i]));
        match slot {
            Some(i) => {
                (self.keys[i], self.vals[i], self.used[i]) = (k, v, true);
                true
            }
            None => false,
        }
    }

    pub fn get(&self, k: u64) -> Option<u64> {
        (0..KV_SLOTS).find(|&i| self.used[i] && self.keys[i] == k).map(|i| self.vals[i])
    }
}

/// Serves one ring entry. `data` is the ring's data region.
pub fn serve(kv: &mut Kv, s: &Sqe, data: &[u8]) -> Cqe {
    let mut c = Cqe { user_data: s.user_data, result: status::OK, seq: 0, value: [0; 2] };
    match s.opcode {
        op::ECHO => c.value = [s.inline[0], s.inline[1]],
        op::KV_PUT => {
            if !kv.put(s.inline[0], s.inline[1]) {
                c.result = status::FULL;
            }
        }
        op::KV_GET => match kv.get(s.inline[0]) {
            Some(v) => c.value[0] = v,
            None => c.result = status::NOT_FOUND,
        },
        op::SUM => {
            let end = s.offset.checked_add(u64::from(s.len));
            match end {
                Some(e) if e <= data.len() as u64 => {
                    c.value[0] = crate::transfer::checksum(&data[s.offset as usize..e as usize])
                }
                _ => c.result = status::BAD_RANGE,
            }
        }
        _ => c.result = status::BAD_OPCODE,
    }
    c
}
