//! A get on a [`Ring`] under the lock: [`peek_with`](Ring::peek_with)
//! reads the oldest record (a frame that can't be right empties the ring:
//! `reset`), [`take`](Ring::take) swaps the head word, the commit point
//! (the ring's module docs, "Commit points"); what they return
//! ([`Peeked`], [`Taking`]), and `pop`, both at once, for
//! the unit tests and the fuzz entry.

use std::sync::atomic::Ordering;

use super::{
    get_u32, get_u64, put_u64, record_len, Corrupt, End, LargeRef, Ring, HEADER, ROOM_WAIT, TAIL_AT,
};

/// What [`Ring::pop`] did.
#[cfg(any(test, feature = "test-hooks"))] // the fuzz entry and the unit tests
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pop {
    /// The oldest item's payload is in the buffer and out of the ring.
    Done,
    /// The oldest item was a large record, out of the ring.
    Large(LargeRef),
    /// No item now.
    Empty,
    /// No item, and the ring is closed: none will come.
    Closed,
}

/// What [`Ring::peek_with`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peeked<R = ()> {
    /// The oldest item, still in the ring, and what the caller made of
    /// its payload; [`Ring::take`] takes it.
    Item(Taking, R),
    /// The oldest item is a large record (the caller's function was not
    /// called), still in the ring; [`Ring::take`] takes it.
    Large(Taking, LargeRef),
    /// No item now.
    Empty,
    /// No item, and the ring is closed: none will come.
    Closed,
}

/// The oldest record, read, the head word that takes it, and the items
/// and bytes left once it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taking(pub(super) End, pub(super) u32, pub(super) usize);

impl Taking {
    /// The items left once the record is taken.
    pub(crate) fn left(&self) -> u32 {
        self.1
    }

    /// The head word once the record is taken (room-wait flag clear):
    /// what [`take_unlocked`](super::take_unlocked) of the next record expects.
    pub(crate) fn head_word(&self) -> u64 {
        self.0.word()
    }
}

impl Ring<'_> {
    /// Takes the oldest record: its payload replaces `out`'s contents
    /// ([`peek`](Ring::peek) then [`take`](Ring::take)).
    #[cfg(any(test, feature = "test-hooks"))] // the fuzz entry and the unit tests
    pub(crate) fn pop(&mut self, out: &mut Vec<u8>) -> Result<Pop, Corrupt> {
        Ok(match self.peek(out)? {
            Peeked::Item(t, ()) => {
                let taken = self.take(t);
                debug_assert!(taken, "nothing else takes from this ring");
                Pop::Done
            }
            Peeked::Large(t, r) => {
                let taken = self.take(t);
                debug_assert!(taken, "nothing else takes from this ring");
                Pop::Large(r)
            }
            Peeked::Empty => Pop::Empty,
            Peeked::Closed => Pop::Closed,
        })
    }

    /// Copies the oldest record's payload into `out` (replacing its
    /// contents) and leaves it in the ring: [`take`](Ring::take) takes it.
    #[cfg(any(test, feature = "test-hooks"))] // the fuzz entry and the unit tests
    pub(crate) fn peek(&mut self, out: &mut Vec<u8>) -> Result<Peeked, Corrupt> {
        Ok(
            match self.peek_with(|bytes| {
                out.clear();
                out.extend_from_slice(bytes);
            })? {
                Peeked::Item(t, ()) => Peeked::Item(t, ()),
                Peeked::Large(t, r) => Peeked::Large(t, r),
                Peeked::Empty => Peeked::Empty,
                Peeked::Closed => Peeked::Closed,
            },
        )
    }

    /// Runs `f` on the oldest record's payload and leaves the record in
    /// the ring: [`take`](Ring::take) takes it. The payload is the
    /// ring's own bytes when the record doesn't wrap around the end (no
    /// copy), a copy when it does.
    ///
    /// A frame that does not fit what the header says is [`Corrupt`];
    /// the ring is then emptied (head moved to the tail), so that the
    /// queue stays usable: what was in it is lost, and the error says so.
    pub(crate) fn peek_with<R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Peeked<R>, Corrupt> {
        let (head, tail, used) = match self.ends() {
            Ok(e) => e,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        if used == 0 {
            return Ok(if self.is_closed() {
                Peeked::Closed
            } else {
                Peeked::Empty
            });
        }
        if let Some((at, len, t)) = self.item_at(head, tail, used) {
            return Ok(Peeked::Item(t, self.with_payload(at, len, f)));
        }
        let h = head.pos as usize;
        let len = get_u32(self.mem, HEADER + h);
        let check = get_u32(self.mem, HEADER + h + 4);
        let need = record_len(len as usize);
        if let Some(r) = self.large_at(h, len, check, used) {
            let next = End {
                items: head.items.wrapping_add(1),
                pos: self.wrap(h + need) as u32,
            };
            let left = tail.items.wrapping_sub(next.items);
            return Ok(Peeked::Large(Taking(next, left, used - need), r));
        }
        self.reset();
        Err(Corrupt(format!(
            "a record's frame says {len} bytes (check {check:#x}) with {used} bytes in use; \
             the queue was emptied"
        )))
    }

    /// Takes the record [`peek_with`](Ring::peek_with) read: one
    /// compare-and-swap of the head word from what this view read, the
    /// commit point (the room-wait flag kept: it changes only under the
    /// lock). False, and nothing changes, if a consumer took the record
    /// without the lock ([`take_unlocked`](super::take_unlocked)) since this view read the word.
    pub(crate) fn take(&mut self, t: Taking) -> bool {
        let to = t.0.word() | (self.head_word & ROOM_WAIT);
        if self
            .head
            .compare_exchange(self.head_word, to, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.head_word = to;
        if let Some((_, tail, _)) = self.ends {
            self.ends = Some((t.0, tail, t.2));
        }
        true
    }

    /// Empties the ring: the head moves to the tail.
    fn reset(&mut self) {
        let tail = End::of(get_u64(self.mem, TAIL_AT));
        let tail = End {
            items: tail.items,
            pos: (tail.pos as usize % self.cap / 8 * 8) as u32,
        };
        put_u64(self.mem, TAIL_AT, tail.word());
        // The flag as it is (it changes only under the lock).
        let word = tail.word() | (self.head.load(Ordering::SeqCst) & ROOM_WAIT);
        self.head.store(word, Ordering::SeqCst);
        self.head_word = word;
        self.ends = Some((tail, tail, 0));
    }
}
