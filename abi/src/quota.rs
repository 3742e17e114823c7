//! Quotas: how much of the machine a task may hold. A parent gives each child one at
//! `TaskSpawn` (a pointer to a [`Quota`]), carved out of its own; `QuotaLeft` tells a
//! task what is left of the quota it draws on.
//!
//! A quota pays for everything its task is and makes: the task itself and each task it
//! spawns, their threads, endpoints, notifications, memory objects and rings, and every
//! frame (page tables, mapped pages, memory-object pages, IPC buffers, the loaded
//! image). A child spawned without a quota (pointer 0) draws on its parent's.

/// A quota: the most of each resource. `#[repr(C)]`, seven `u64` in this order, as
/// `TaskSpawn` reads it from the spawner's memory and `QuotaLeft` returns it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// 4 KiB frames.
    pub frames: u64,
    /// Tasks, this one included.
    pub tasks: u64,
    /// Threads, the first one included.
    pub threads: u64,
    pub endpoints: u64,
    pub notifications: u64,
    /// Memory objects (a ring has one too).
    pub memobjs: u64,
    pub rings: u64,
}

impl Quota {
    /// The number of resources, and of words in a quota.
    pub const RESOURCES: usize = 7;
    /// Each resource's name, in order.
    pub const NAMES: [&'static str; Self::RESOURCES] =
        ["frames", "tasks", "threads", "endpoints", "notifications", "memobjs", "rings"];

    /// As words, in order.
    pub const fn to_words(self) -> [u64; Self::RESOURCES] {
        [self.frames, self.tasks, self.threads, self.endpoints, self.notifications, self.memobjs, self.rings]
    }

    /// From words, in order.
    pub const fn from_words(w: [u64; Self::RESOURCES]) -> Quota {
        Quota {
            frames: w[0],
            tasks: w[1],
            threads: w[2],
            endpoints: w[3],
            notifications: w[4],
            memobjs: w[5],
            rings: w[6],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_is_seven_words_in_the_order_named() {
        assert_eq!(core::mem::size_of::<Quota>(), 8 * Quota::RESOURCES);
        let q = Quota { frames: 1, tasks: 2, threads: 3, endpoints: 4, notifications: 5, memobjs: 6, rings: 7 };
        assert_eq!(q.to_words(), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Quota::from_words(q.to_words()), q);
        assert_eq!(Quota::NAMES[3], "endpoints");
    }
}
