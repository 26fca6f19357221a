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
//!
//! # Files
//!
//! This file has the layout's constants, the view ([`Ring::open`], the
//! head and tail checked), the data area's bytes and the fuzz entry; the
//! rest is by
//! concern: `put.rs` a put's two halves, `get.rs` a get's two halves
//! under the lock, `unlocked.rs` a record copied out and taken without
//! it, `records.rs` reading records (frames, large records'
//! [`LargeRef`]s, the walk over all of them), `header.rs` the header's
//! counts and the closed flag.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

mod get;
mod header;
mod put;
mod records;
mod unlocked;

#[cfg(any(test, feature = "test-hooks"))]
pub(crate) use get::Pop;
pub(crate) use get::{Peeked, Taking};
#[cfg(test)]
pub(crate) use put::Push;
pub(crate) use put::{Prepared, Putting};
pub(crate) use records::LargeRef;
pub(crate) use unlocked::take_unlocked;

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

    /// `at` (less than `2 * cap`) wrapped into the data area.
    fn wrap(&self, at: usize) -> usize {
        if at >= self.cap {
            at - self.cap
        } else {
            at
        }
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
