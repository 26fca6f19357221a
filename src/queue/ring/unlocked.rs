//! Taking without the lock (queue module docs, "Taking items without the
//! lock"): [`peek_next`](Ring::peek_next) reads the records after one
//! taken under the lock, for a consumer to copy out, and
//! [`take_unlocked`] takes one of them later, one compare-and-swap of the
//! head word.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Ring, Taking};

/// Takes a record copied out earlier ([`Ring::peek_next`]) without the
/// lock: one compare-and-swap of the head word from `from` (the head
/// word with the records before it taken, room-wait flag clear) to `to`
/// (its [`Taking::head_word`]). False, and nothing changes, if the word
/// is not `from`: another consumer took an item since (this one's or an
/// earlier one), or a producer sleeps waiting for room (the flag), whom
/// a take under the lock wakes first.
pub(crate) fn take_unlocked(head: &AtomicU64, from: u64, to: u64) -> bool {
    head.compare_exchange(from, to, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok()
}

impl Ring<'_> {
    /// Runs `f` on the payload of the record after `prev` (a record this
    /// view took, or read with `peek_next`) if it is an item in the ring
    /// of at most `max_len` bytes, without taking it: for a consumer that
    /// copies out records to take later without the lock
    /// ([`take_unlocked`]). `None` for no record, a large record, one
    /// longer than `max_len`, or a frame that can't be right (the locked
    /// path deals with those).
    pub(crate) fn peek_next<R>(
        &self,
        prev: &Taking,
        max_len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<(Taking, R)> {
        let (_, tail, _) = self.ends?;
        if prev.2 == 0 {
            return None;
        }
        let (at, len, t) = self.item_at(prev.0, tail, prev.2)?;
        (len <= max_len).then(|| (t, self.with_payload(at, len, f)))
    }
}
