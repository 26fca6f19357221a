//! [`Ring`]: the byte ring a queue keeps in shared memory, as a view over
//! the block's bytes. Pure data-structure code: no OS calls, no clock, no
//! lock — the caller holds the queue's lock for as long as a `Ring`
//! exists (the block's bytes past its atomic prefix are only ever reached
//! through that lock), so here the bytes are plain `&mut [u8]`, and the
//! head word an `AtomicU64` (taken without the lock too:
//! [`take_unlocked`]). Unit tests run it on a `Vec<u8>` and an atomic.
//!
//! # Layout
//!
//! The block starts with an *atomic prefix* of [`PREFIX`] bytes, reached
//! only with atomic operations, with or without the lock
//! (`sys::Guarded::atomics`): its first 8 bytes are the **head word**,
//! the rest is unused. Then, under the lock, a [`HEADER`] of 64 bytes and
//! the data area of `cap` bytes (`cap` a multiple of 8, at most
//! [`MAX_CAP`]). Integers are little-endian; offsets below are from the
//! header's start.
//!
//! The head word is items taken (high 32 bits) and the position of the
//! oldest record (low 32), whose bit 0 (a position's is always 0) is the
//! **room-wait flag**: set while the header counts producers asleep
//! waiting for room ([`ROOM_WAIT`]). It is outside the lock's bytes so
//! that a consumer can take an item it copied out earlier without the
//! lock (`queue/mod.rs`, "Taking items without the lock"): one
//! compare-and-swap from the word it expects, which fails if anyone else
//! took an item since or a producer sleeps for room.
//!
//! | at | size | what |
//! |---|---|---|
//! | 0 | 4 | magic `MPQU` |
//! | 4 | 4 | layout version |
//! | 8 | 8 | `cap`, the data area's length |
//! | 16 | 8 | the item capacity (`max_items`) |
//! | 24 | 8 | unused (the head word was here in version 1) |
//! | 32 | 8 | the **tail word**: items put (high 32 bits), position after the newest record (low 32) |
//! | 40 | 4 | closed (0 / 1) |
//! | 44 | 4 | consumers asleep waiting for an item |
//! | 48 | 4 | producers asleep waiting for room |
//! | 52 | 4 | items marked done (`JoinableQueue::task_done`), modulo 2³² |
//! | 56 | 4 | `JoinableQueue::join`ers asleep |
//!
//! A position is a byte offset in the data area (`0..cap`, a multiple of
//! 8). The bytes in use run from the head's position to the tail's,
//! wrapping at the end; equal positions mean empty when the item counts
//! are equal and full to the byte otherwise. The item counts wrap at 2³²
//! (a ring holds far fewer: each record takes at least 8 bytes).
//!
//! A record is an 8-byte frame — the payload length `len` (u32) and its
//! complement `!len` (u32) — then the payload, padded to a multiple of 8;
//! it may wrap around the end of the data area (the frame never splits:
//! positions and `cap` are multiples of 8).
//!
//! A **large record** stands for an item too large for the ring, whose
//! bytes wait in a block of their own (`queue/mod.rs`, "Bounds and large
//! items"): its frame's second word is `!len ^ LARGE_MARK` instead of
//! `!len`, and its payload a [`LargeRef`] of [`LARGE_REF_LEN`] bytes —
//! magic `MPQL` (u32), 0 (u32), the item's tag (u64), its length (u64)
//! and the word the lane keeps for it (u64). It is put and taken with the
//! same single-store commits as any record.
//!
//! # Commit points
//!
//! Each operation changes exactly one word, the tail or the head word,
//! with one aligned 8-byte store (the head word: a compare-and-swap), and
//! does so last. A put is
//! [`prepare`](Ring::prepare) (the record is written past the tail) then
//! [`commit`](Ring::commit) (the tail word is stored); a get is
//! [`peek_with`](Ring::peek_with) (the record is read) then
//! [`take`](Ring::take) (the head word is swapped), or, for a record
//! copied out after one taken under the lock ([`peek_next`](Ring::peek_next)),
//! [`take_unlocked`] later. Between the two halves
//! the caller may do what it must before the commit (the queue decodes the
//! item and wakes sleepers there), still under the lock. A process killed
//! before the store left the queue as it was (a half-written record past
//! the tail is never read; a record copied but not taken stays in the
//! queue, first in line); killed after it, the operation happened. The
//! item count and the byte position share the word, so the two can't
//! disagree.
//!
//! Counts and positions are checked on every operation,
//! and a record's frame before its payload is read: bytes written into the
//! block by anything but this code are an error ([`Corrupt`]), never a
//! read out of bounds or a giant allocation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The atomic prefix's length (one cache line): the head word, then
/// nothing yet.
pub(crate) const PREFIX: usize = 64;
/// The header's length; the data area follows it.
pub(crate) const HEADER: usize = 64;
/// The head word's room-wait flag (module docs).
pub(crate) const ROOM_WAIT: u64 = 1;
/// The largest data area: positions and byte counts fit in 32 bits.
pub(crate) const MAX_CAP: usize = 1 << 30;
/// The smallest data area: one empty record.
pub(crate) const MIN_CAP: usize = 16;
/// A record's frame (the length and its complement).
pub(crate) const FRAME: usize = 8;
/// A large record's payload: a [`LargeRef`].
pub(crate) const LARGE_REF_LEN: usize = 32;
/// What tells a large record's frame from another's.
const LARGE_MARK: u32 = u32::from_le_bytes(*b"LARG");
const LARGE_MAGIC: u32 = u32::from_le_bytes(*b"MPQL");

const MAGIC: u32 = u32::from_le_bytes(*b"MPQU");
const VERSION: u32 = 2;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 4;
const CAP_AT: usize = 8;
const MAX_ITEMS_AT: usize = 16;
const TAIL_AT: usize = 32;
const CLOSED_AT: usize = 40;
const GET_SLEEPERS_AT: usize = 44;
const PUT_SLEEPERS_AT: usize = 48;
const DONE_AT: usize = 52;
const JOIN_SLEEPERS_AT: usize = 56;

/// The bytes a record of a `len`-byte payload takes in the data area.
pub(crate) fn record_len(len: usize) -> usize {
    FRAME + len.div_ceil(8) * 8
}

/// The block length for a data area of `cap` bytes: the atomic prefix,
/// the header and the data.
pub(crate) fn block_len(cap: usize) -> usize {
    PREFIX + HEADER + cap
}

/// The header of a new, empty ring of `cap` data bytes (a multiple of 8
/// in `MIN_CAP..=MAX_CAP`, checked by the caller) holding at most
/// `max_items` items; the data area may hold anything.
pub(crate) fn new_header(cap: usize, max_items: u64) -> [u8; HEADER] {
    debug_assert!(cap.is_multiple_of(8) && (MIN_CAP..=MAX_CAP).contains(&cap));
    let mut h = [0u8; HEADER];
    put_u64(&mut h, CAP_AT, cap as u64);
    put_u64(&mut h, MAX_ITEMS_AT, max_items);
    put_u32(&mut h, VERSION_AT, VERSION);
    put_u32(&mut h, MAGIC_AT, MAGIC);
    h
}

/// What the block holds is not a ring this code wrote: a message saying
/// what was found. Found by [`Ring::peek_with`], the ring was emptied
/// first, so that it works again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub String);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the queue's shared memory is corrupt: {}", self.0)
    }
}

/// What [`Ring::push`] did.
#[cfg(any(test, feature = "test-hooks"))] // the fuzz entry and the unit tests
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// The item is in the ring.
    Done,
    /// No room now (items or bytes).
    Full,
    /// The ring is closed: nothing more goes in.
    Closed,
    /// The item is larger than the whole data area: it can never fit.
    TooLarge,
}

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

/// What [`Ring::prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// The record is written past the tail; [`Ring::commit`] puts it in.
    Ready(Putting),
    /// No room now (items or bytes).
    Full,
    /// The ring is closed: nothing more goes in.
    Closed,
    /// The item is larger than the whole data area: it can never fit.
    TooLarge,
}

/// A record written past the tail, the tail word that puts it in, and
/// the bytes in use once it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Putting(End, usize);

impl Putting {
    /// The bytes in use once the record is in.
    pub(crate) fn used_after(&self) -> usize {
        self.1
    }
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
pub(crate) struct Taking(End, u32, usize);

impl Taking {
    /// The items left once the record is taken.
    pub(crate) fn left(&self) -> u32 {
        self.1
    }

    /// The head word once the record is taken (room-wait flag clear):
    /// what [`take_unlocked`] of the next record expects.
    pub(crate) fn head_word(&self) -> u64 {
        self.0.word()
    }
}

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

/// A large record's payload: where an item too large for the ring waits
/// (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LargeRef {
    /// The item's tag: random, written in its block too.
    pub tag: u64,
    /// The item's length in bytes.
    pub len: u64,
    /// The word the lane keeps for it (`sys::SysLane::send`).
    pub loc: u64,
}

impl LargeRef {
    /// The payload bytes.
    pub(crate) fn to_bytes(self) -> [u8; LARGE_REF_LEN] {
        let mut b = [0u8; LARGE_REF_LEN];
        put_u32(&mut b, 0, LARGE_MAGIC);
        put_u64(&mut b, 8, self.tag);
        put_u64(&mut b, 16, self.len);
        put_u64(&mut b, 24, self.loc);
        b
    }

    /// Read from payload bytes; `None` if they are not a `LargeRef`.
    pub(crate) fn from_bytes(b: &[u8]) -> Option<LargeRef> {
        if b.len() != LARGE_REF_LEN || get_u32(b, 0) != LARGE_MAGIC || get_u32(b, 4) != 0 {
            return None;
        }
        Some(LargeRef {
            tag: get_u64(b, 8),
            len: get_u64(b, 16),
            loc: get_u64(b, 24),
        })
    }
}

/// The head or tail word: an item count and a byte position in the data
/// area (`0..cap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct End {
    items: u32,
    pos: u32,
}

impl End {
    fn word(self) -> u64 {
        (u64::from(self.items) << 32) | u64::from(self.pos)
    }

    fn of(word: u64) -> End {
        End {
            items: (word >> 32) as u32,
            pos: word as u32,
        }
    }
}

/// A view of a ring's block (see the module docs), while the caller holds
/// the queue's lock.
pub(crate) struct Ring<'a> {
    /// The head word, in the atomic prefix.
    head: &'a AtomicU64,
    /// The head word as this view last read or wrote it, flag included.
    head_word: u64,
    /// The header and the data area.
    mem: &'a mut [u8],
    /// The data area's length (from the block's length, not its header).
    cap: usize,
    max_items: u64,
    /// The head, the tail and the bytes in use, checked when the view
    /// was opened and kept by the view's own stores since (nothing but
    /// this view writes the block while it exists: the caller holds the
    /// lock); `None` if the header's were not a ring's ([`Ring::ends`]
    /// says why).
    ends: Option<(End, End, usize)>,
}

impl<'a> Ring<'a> {
    /// Writes a new, empty ring over `head` and `mem` (the header and a
    /// data area of `cap` bytes, `cap` checked by the caller: a multiple
    /// of 8 in `MIN_CAP..=MAX_CAP`), holding at most `max_items` items.
    #[cfg(test)] // the queue writes only the header (`new_header`)
    pub(crate) fn init(head: &'a AtomicU64, mem: &'a mut [u8], max_items: u64) -> Ring<'a> {
        let cap = mem.len() - HEADER;
        mem[..HEADER].copy_from_slice(&new_header(cap, max_items));
        head.store(0, Ordering::SeqCst);
        let mut ring = Ring {
            head,
            head_word: 0,
            mem,
            cap,
            max_items,
            ends: None,
        };
        ring.ends = ring.read_ends().ok();
        ring
    }

    /// A view of a received block: its header must be a ring's, of the
    /// data area its length leaves. Its head and tail are checked too,
    /// but a view opens without them: then every operation that needs
    /// them says why they can't be right, and a `peek` empties the ring
    /// so that it can be used again.
    /// `head` is the head word (the atomic prefix's first), `mem` the
    /// header and data area.
    pub(crate) fn open(head: &'a AtomicU64, mem: &'a mut [u8]) -> Result<Ring<'a>, Corrupt> {
        if mem.len() < HEADER + MIN_CAP || mem.len() > HEADER + MAX_CAP {
            return Err(Corrupt(format!(
                "a block of {} bytes can't hold a queue",
                mem.len()
            )));
        }
        if get_u32(mem, MAGIC_AT) != MAGIC || get_u32(mem, VERSION_AT) != VERSION {
            return Err(Corrupt("the block is not a queue of this version".into()));
        }
        let cap = mem.len() - HEADER;
        if get_u64(mem, CAP_AT) != cap as u64 || !cap.is_multiple_of(8) {
            return Err(Corrupt(format!(
                "the header says {} data bytes, the block has {cap}",
                get_u64(mem, CAP_AT)
            )));
        }
        let max_items = get_u64(mem, MAX_ITEMS_AT).max(1);
        let mut ring = Ring {
            head_word: head.load(Ordering::Acquire),
            head,
            mem,
            cap,
            max_items,
            ends: None,
        };
        ring.ends = ring.read_ends().ok();
        Ok(ring)
    }

    /// The data area's length.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// The largest payload that can ever fit.
    pub(crate) fn max_item_len(&self) -> usize {
        (self.cap - FRAME).min(u32::MAX as usize)
    }

    /// The head and tail, checked: positions in the data area and
    /// 8-aligned, no more items than records fit in the used bytes.
    fn ends(&self) -> Result<(End, End, usize), Corrupt> {
        match self.ends {
            Some(e) => Ok(e),
            None => Err(self.bad_ends()),
        }
    }

    /// Why the header's head and tail can't be right.
    #[cold]
    fn bad_ends(&self) -> Corrupt {
        let what = self
            .read_ends()
            .err()
            .unwrap_or("the head and tail changed under the lock");
        let head = End::of(self.head_word & !ROOM_WAIT);
        let tail = End::of(get_u64(self.mem, TAIL_AT));
        Corrupt(format!("{what} (head {head:?}, tail {tail:?})"))
    }

    /// [`ends`](Ring::ends), read from the header.
    /// The error says which check failed ([`bad_ends`](Ring::bad_ends)
    /// makes the message: nothing is allocated on the way to a view).
    fn read_ends(&self) -> Result<(End, End, usize), &'static str> {
        let head = End::of(self.head_word & !ROOM_WAIT);
        let tail = End::of(get_u64(self.mem, TAIL_AT));
        let n = tail.items.wrapping_sub(head.items) as usize;
        let (h, t) = (head.pos as usize, tail.pos as usize);
        if h >= self.cap || t >= self.cap || !(h | t).is_multiple_of(8) {
            return Err("a position outside the data area");
        }
        // Equal positions: empty, or (with items) full to the byte.
        let used = match if t >= h { t - h } else { t + self.cap - h } {
            0 if n > 0 => self.cap,
            u => u,
        };
        if n * FRAME > used || (n == 0) != (used == 0) {
            return Err("item count and bytes in use disagree");
        }
        Ok((head, tail, used))
    }

    /// Items in the ring (0 if it is corrupt).
    pub(crate) fn len(&self) -> usize {
        self.ends()
            .map(|(h, t, _)| t.items.wrapping_sub(h.items) as usize)
            .unwrap_or(0)
    }

    /// Payload bytes plus frames and padding in use.
    #[cfg(test)]
    pub(crate) fn used_bytes(&self) -> usize {
        self.ends().map(|(_, _, u)| u).unwrap_or(0)
    }

    /// Appends `item` as the newest record, if there is room
    /// ([`prepare`](Ring::prepare) then [`commit`](Ring::commit)).
    #[cfg(any(test, feature = "test-hooks"))] // the fuzz entry and the unit tests
    pub(crate) fn push(&mut self, item: &[u8]) -> Result<Push, Corrupt> {
        Ok(match self.prepare(item)? {
            Prepared::Ready(p) => {
                self.commit(p);
                Push::Done
            }
            Prepared::Full => Push::Full,
            Prepared::Closed => Push::Closed,
            Prepared::TooLarge => Push::TooLarge,
        })
    }

    /// Writes `item` as a record past the tail, if there is room, without
    /// putting it in: until [`commit`](Ring::commit) stores the tail word
    /// the bytes are never read, and the next `prepare` overwrites them.
    pub(crate) fn prepare(&mut self, item: &[u8]) -> Result<Prepared, Corrupt> {
        self.prepare_framed(item, false)
    }

    /// [`prepare`](Ring::prepare) for a large record standing for the
    /// item `r` names.
    pub(crate) fn prepare_large(&mut self, r: LargeRef) -> Result<Prepared, Corrupt> {
        self.prepare_framed(&r.to_bytes(), true)
    }

    fn prepare_framed(&mut self, item: &[u8], large: bool) -> Result<Prepared, Corrupt> {
        if self.is_closed() {
            return Ok(Prepared::Closed);
        }
        if item.len() > self.max_item_len() {
            return Ok(Prepared::TooLarge);
        }
        let (head, tail, used) = self.ends()?;
        let need = record_len(item.len());
        let n = tail.items.wrapping_sub(head.items) as u64;
        if n >= self.max_items || self.cap - used < need {
            return Ok(Prepared::Full);
        }
        let len = item.len() as u32;
        let t = tail.pos as usize;
        put_u32(self.mem, HEADER + t, len);
        let check = if large { !len ^ LARGE_MARK } else { !len };
        put_u32(self.mem, HEADER + t + 4, check);
        self.write_at(self.wrap(t + FRAME), item);
        let next = End {
            items: tail.items.wrapping_add(1),
            pos: self.wrap(t + need) as u32,
        };
        Ok(Prepared::Ready(Putting(next, used + need)))
    }

    /// Puts the record [`prepare`](Ring::prepare) wrote in: one 8-byte
    /// store of the tail word, the commit point (nothing else changed
    /// the ring since).
    pub(crate) fn commit(&mut self, p: Putting) {
        if let Some((head, _, _)) = self.ends {
            self.ends = Some((head, p.0, p.1));
        }
        put_u64(self.mem, TAIL_AT, p.0.word());
    }

    /// `at` (less than `2 * cap`) wrapped into the data area.
    fn wrap(&self, at: usize) -> usize {
        if at >= self.cap {
            at - self.cap
        } else {
            at
        }
    }

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

    /// The record at `head` with `used` bytes in use up to `tail`, if its
    /// frame is a plain record's that fits: its payload's data offset and
    /// length, and what taking it makes.
    fn item_at(&self, head: End, tail: End, used: usize) -> Option<(usize, usize, Taking)> {
        let h = head.pos as usize;
        let len = get_u32(self.mem, HEADER + h);
        let check = get_u32(self.mem, HEADER + h + 4);
        let need = record_len(len as usize);
        if check != !len || need > used {
            return None;
        }
        let next = End {
            items: head.items.wrapping_add(1),
            pos: self.wrap(h + need) as u32,
        };
        let left = tail.items.wrapping_sub(next.items);
        Some((
            self.wrap(h + FRAME),
            len as usize,
            Taking(next, left, used - need),
        ))
    }

    /// Runs `f` on `len` payload bytes at data offset `at`: the ring's
    /// own bytes, or a copy if they wrap around the end.
    fn with_payload<R>(&self, at: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        if at + len <= self.cap {
            f(&self.mem[HEADER + at..HEADER + at + len])
        } else {
            let mut copy = Vec::with_capacity(len);
            self.append_from(at, len, &mut copy);
            f(&copy)
        }
    }

    /// The large record at data offset `h` whose frame says `len` and
    /// `check`, if it is one and fits in the `used` bytes.
    fn large_at(&self, h: usize, len: u32, check: u32, used: usize) -> Option<LargeRef> {
        if check != !len ^ LARGE_MARK
            || len as usize != LARGE_REF_LEN
            || record_len(LARGE_REF_LEN) > used
        {
            return None;
        }
        let mut b = Vec::with_capacity(LARGE_REF_LEN);
        self.append_from(self.wrap(h + FRAME), LARGE_REF_LEN, &mut b);
        LargeRef::from_bytes(&b)
    }

    /// The bytes of the items that large records in the ring stand for,
    /// in total (a walk over every record: [`large_refs`](Ring::large_refs)).
    #[cfg(test)]
    pub(crate) fn large_bytes(&self) -> Result<u64, Corrupt> {
        Ok(self
            .large_refs()?
            .iter()
            .fold(0u64, |t, r| t.saturating_add(r.len)))
    }

    /// The large records in the ring, oldest first: a walk over every
    /// record (only a large `put` calls it, for the lane's bound and the
    /// blocks no record names).
    pub(crate) fn large_refs(&self) -> Result<Vec<LargeRef>, Corrupt> {
        let (head, _, mut used) = self.ends()?;
        let mut at = head.pos as usize;
        let mut found = Vec::new();
        while used > 0 {
            let len = get_u32(self.mem, HEADER + at);
            let check = get_u32(self.mem, HEADER + at + 4);
            let need = record_len(len as usize);
            if check == !len && need <= used {
                // An item in the ring.
            } else if let Some(r) = self.large_at(at, len, check, used) {
                found.push(r);
            } else {
                return Err(Corrupt(format!(
                    "a record's frame says {len} bytes (check {check:#x}) with {used} bytes in use"
                )));
            }
            used -= need;
            at = self.wrap(at + need);
        }
        Ok(found)
    }

    /// Takes the record [`peek_with`](Ring::peek_with) read: one
    /// compare-and-swap of the head word from what this view read, the
    /// commit point (the room-wait flag kept: it changes only under the
    /// lock). False, and nothing changes, if a consumer took the record
    /// without the lock ([`take_unlocked`]) since this view read the word.
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

    /// Writes `bytes` over the oldest record, frame first (wrapping at
    /// the end); false if the ring is empty. A test hook: what a process
    /// writing garbage into the block does.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn scribble_over_oldest(&mut self, bytes: &[u8]) -> bool {
        match self.ends() {
            Ok((head, _, used)) if used > 0 => {
                let bytes = &bytes[..bytes.len().min(self.cap)];
                self.write_at(head.pos as usize, bytes);
                true
            }
            _ => false,
        }
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

    /// Writes `bytes` at data offset `at`, wrapping at the end.
    fn write_at(&mut self, at: usize, bytes: &[u8]) {
        let first = bytes.len().min(self.cap - at);
        let data = &mut self.mem[HEADER..];
        data[at..at + first].copy_from_slice(&bytes[..first]);
        data[..bytes.len() - first].copy_from_slice(&bytes[first..]);
    }

    /// Appends `len` bytes from data offset `at` to `out`, wrapping at
    /// the end (`len` at most `cap`).
    fn append_from(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        let first = len.min(self.cap - at);
        let data = &self.mem[HEADER..];
        out.extend_from_slice(&data[at..at + first]);
        out.extend_from_slice(&data[..len - first]);
    }

    /// Fills `out` from data offset `at`, wrapping at the end.
    #[cfg(test)]
    fn read_at(&self, at: usize, out: &mut [u8]) {
        let first = out.len().min(self.cap - at);
        let data = &self.mem[HEADER..];
        out[..first].copy_from_slice(&data[at..at + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&data[..rest]);
    }
}

/// For the fuzz target: runs the decoder over `block` as a received
/// ring's bytes — its first 8 bytes the head word (zeros if shorter),
/// the rest the header and data area (with `fix_header`, its magic,
/// version and length made right first, so that the records are
/// reached): opens it, takes up to 10 000 items, puts one. The items
/// taken, or the first refusal.
#[cfg(any(test, feature = "test-hooks"))]
pub(crate) fn fuzz(block: &[u8], fix_header: bool) -> Result<usize, Corrupt> {
    let (word, block) = block.split_at(block.len().min(8));
    let mut head = [0u8; 8];
    head[..word.len()].copy_from_slice(word);
    let head = AtomicU64::new(u64::from_le_bytes(head));
    let mut mem = block.to_vec();
    let len = mem.len();
    if fix_header && len >= HEADER + MIN_CAP {
        let cap = (len - HEADER) / 8 * 8;
        mem.truncate(HEADER + cap);
        put_u32(&mut mem, MAGIC_AT, MAGIC);
        put_u32(&mut mem, VERSION_AT, VERSION);
        put_u64(&mut mem, CAP_AT, cap as u64);
    }
    let mut ring = Ring::open(&head, &mut mem)?;
    let mut out = Vec::new();
    let mut n = 0;
    while n < 10_000 {
        match ring.pop(&mut out)? {
            Pop::Done | Pop::Large(_) => n += 1,
            Pop::Empty | Pop::Closed => break,
        }
        assert!(out.len() <= ring.cap(), "a payload larger than the ring");
    }
    ring.push(block.get(..16).unwrap_or(block))?;
    Ok(n)
}

fn get_u32(mem: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(mem[at..at + 4].try_into().expect("4 bytes"))
}

fn put_u32(mem: &mut [u8], at: usize, v: u32) {
    mem[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(mem: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(mem[at..at + 8].try_into().expect("8 bytes"))
}

fn put_u64(mem: &mut [u8], at: usize, v: u64) {
    mem[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests;
