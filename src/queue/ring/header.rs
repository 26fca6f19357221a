//! A [`Ring`]'s header words other than the tail: the closed flag, the
//! counts of sleepers (consumers, producers — with the head word's
//! room-wait flag — and `join`ers), and the done count of
//! `JoinableQueue`.

use std::sync::atomic::Ordering;

use super::{
    get_u32, get_u64, put_u32, End, Ring, CLOSED_AT, DONE_AT, GET_SLEEPERS_AT, JOIN_SLEEPERS_AT,
    PUT_SLEEPERS_AT, ROOM_WAIT, TAIL_AT,
};

impl Ring<'_> {
    /// Closed: `push` refuses, `pop` says `Closed` once empty.
    pub(crate) fn is_closed(&self) -> bool {
        get_u32(self.mem, CLOSED_AT) != 0
    }

    /// Closes the ring, for good.
    pub(crate) fn close(&mut self) {
        put_u32(self.mem, CLOSED_AT, 1);
    }

    /// Consumers asleep waiting for an item (a count the queue keeps).
    pub(crate) fn get_sleepers(&self) -> u32 {
        get_u32(self.mem, GET_SLEEPERS_AT)
    }

    /// Adds `d` to [`get_sleepers`](Ring::get_sleepers), saturating.
    pub(crate) fn add_get_sleepers(&mut self, d: i32) {
        let v = self.get_sleepers().saturating_add_signed(d);
        put_u32(self.mem, GET_SLEEPERS_AT, v);
    }

    /// Producers asleep waiting for room.
    pub(crate) fn put_sleepers(&self) -> u32 {
        get_u32(self.mem, PUT_SLEEPERS_AT)
    }

    /// Adds `d` to [`put_sleepers`](Ring::put_sleepers), saturating,
    /// and sets the head word's room-wait flag while it is not 0 (clears
    /// it at 0). True if the head had moved since this view read it (a
    /// consumer took items without the lock): the view is read again
    /// then, and a producer that found no room looks again rather than
    /// sleep (with the flag set, no item is taken without the lock until
    /// the flag is clear again, so one that was not seen here wakes it).
    pub(crate) fn add_put_sleepers(&mut self, d: i32) -> bool {
        let v = self.put_sleepers().saturating_add_signed(d);
        put_u32(self.mem, PUT_SLEEPERS_AT, v);
        let old = match v {
            0 => self.head.fetch_and(!ROOM_WAIT, Ordering::SeqCst),
            _ => self.head.fetch_or(ROOM_WAIT, Ordering::SeqCst),
        };
        let moved = (old ^ self.head_word) & !ROOM_WAIT != 0;
        self.head_word = match v {
            0 => old & !ROOM_WAIT,
            _ => old | ROOM_WAIT,
        };
        if moved {
            self.ends = self.read_ends().ok();
        }
        moved
    }

    /// Items put and not yet marked done: the tail's item count less the
    /// done count (both wrap at 2³², so the difference is exact while
    /// fewer than 2³² are unfinished).
    pub(crate) fn unfinished(&self) -> u32 {
        let tail = End::of(get_u64(self.mem, TAIL_AT));
        tail.items.wrapping_sub(get_u32(self.mem, DONE_AT))
    }

    /// Marks one item done (one 4-byte store: the commit point); `false`,
    /// and nothing changes, if none is unfinished.
    pub(crate) fn task_done(&mut self) -> bool {
        if self.unfinished() == 0 {
            return false;
        }
        let done = get_u32(self.mem, DONE_AT).wrapping_add(1);
        put_u32(self.mem, DONE_AT, done);
        true
    }

    /// `join`ers asleep waiting for every item to be done.
    pub(crate) fn join_sleepers(&self) -> u32 {
        get_u32(self.mem, JOIN_SLEEPERS_AT)
    }

    /// Adds `d` to [`join_sleepers`](Ring::join_sleepers), saturating.
    pub(crate) fn add_join_sleepers(&mut self, d: i32) {
        let v = self.join_sleepers().saturating_add_signed(d);
        put_u32(self.mem, JOIN_SLEEPERS_AT, v);
    }
}
