//! Items too large for the ring (module docs of `queue`, "Bounds and
//! large items"): each one's block of shared memory, and [`Core`]'s
//! `put` of one. The ring holds a small large record for it
//! ([`LargeRef`]); the block waits in the queue's lane (`sys::SysLane`).
//!
//! A block is a frozen [`Region`]: a header of [`BLOCK_HEADER`] bytes —
//! magic `MPQB` (u32), 0 (u32), the item's tag (u64) — then the item's
//! serialized bytes. A consumer maps a block only if the OS says it is a
//! frozen block of exactly the length the record says (Linux; Windows:
//! at least), and takes it only if its header carries the record's tag:
//! a block that isn't the record's is never decoded.

use super::ring::{LargeRef, Prepared};
use super::untyped::{Core, Refused, Step, Wait};
use crate::error::{Error, Kind, Result};
use crate::shared::region::Region;
use crate::sys;

/// The header of a large item's block.
pub(super) const BLOCK_HEADER: usize = 16;
const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"MPQB");
/// Where the block header's fields are: the magic (little-endian
/// [`BLOCK_MAGIC`]), four bytes that must be zero, the item's tag
/// (little-endian); the item's bytes follow at [`BLOCK_HEADER`].
const MAGIC_AT: std::ops::Range<usize> = 0..4;
const ZERO_AT: std::ops::Range<usize> = 4..8;
const TAG_AT: std::ops::Range<usize> = 8..BLOCK_HEADER;

/// A new random tag for a large item.
fn new_tag() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    // No system randomness: std's per-process random keys, with a
    // counter, still tell items apart.
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::collections::hash_map::RandomState::new()
        .hash_one((COUNTER.fetch_add(1, Ordering::Relaxed), std::process::id()))
}

/// `item` in a new frozen block, under `tag`.
fn write_block(item: &[u8], tag: u64) -> Result<Region> {
    let mut region = Region::new_exclusive(BLOCK_HEADER + item.len())?;
    let bytes = region
        .bytes_mut()
        .ok_or_else(|| Error::io("cannot write a large item", exclusive_lost()))?;
    bytes[MAGIC_AT].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
    bytes[TAG_AT].copy_from_slice(&tag.to_le_bytes());
    bytes[BLOCK_HEADER..].copy_from_slice(item);
    region.freeze()
}

fn exclusive_lost() -> std::io::Error {
    std::io::Error::other("a new shared-memory block is not exclusive")
}

/// The block `r` names, if `handle` is it: `None` if the handle is not a
/// frozen block of the right length, or its header not `r`'s.
pub(super) fn open_block(handle: sys::OwnedRaw, r: &LargeRef) -> std::io::Result<Option<Region>> {
    let Some(len) = usize::try_from(r.len)
        .ok()
        .and_then(|l| l.checked_add(BLOCK_HEADER))
    else {
        return Ok(None);
    };
    let region = match Region::open_frozen(handle, len) {
        Ok(region) => region,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(None),
        Err(e) => return Err(e),
    };
    let ours = region.bytes().is_some_and(|b| {
        b.len() >= BLOCK_HEADER
            && b[MAGIC_AT] == BLOCK_MAGIC.to_le_bytes()
            && b[ZERO_AT] == [0; 4]
            && b[TAG_AT] == r.tag.to_le_bytes()
    });
    Ok(ours.then_some(region))
}

/// The item's bytes in a block [`open_block`] returned.
pub(super) fn payload(block: &Region) -> &[u8] {
    block.bytes().map_or(&[], |b| &b[BLOCK_HEADER..])
}

impl Core {
    /// Puts `item`, too large for the ring, through the lane (module
    /// docs of `queue`): its block is written and frozen outside the
    /// lock; then, under the lock and once there is room (in the ring for
    /// its record, in the lane's bound for its bytes, in the lane), the
    /// block goes to the lane, its record is written past the tail,
    /// sleepers are woken and the tail word is stored: the commit, as for
    /// any item.
    pub(super) fn put_large(&self, item: &[u8], wait: Wait) -> Result<()> {
        let len = item.len() as u64;
        if len > self.max_large {
            return Err(Error::new(Kind::ItemTooLarge {
                len,
                max: self.max_large.max(self.ring_max as u64),
            }));
        }
        let tag = new_tag();
        let block = write_block(item, tag)?;
        let handle = block
            .handle()
            .ok_or_else(|| Error::io("cannot put a large item", exclusive_lost()))?;
        self.put_with(wait, |ring| {
            let mut r = LargeRef { tag, len, loc: 0 };
            match ring.prepare_large(r) {
                Ok(Prepared::Ready(_)) => {}
                Ok(Prepared::Full) => return Self::no_room(ring, wait),
                Ok(Prepared::Closed) => return Step::Fail(Refused::Closed),
                Ok(Prepared::TooLarge) => {
                    return Step::Fail(Refused::TooLarge {
                        len: item.len(),
                        max: ring.max_item_len(),
                    })
                }
                Err(c) => return Step::Fail(Refused::Corrupt(c)),
            }
            let named = match ring.large_refs() {
                Ok(named) => named,
                Err(c) => return Step::Fail(Refused::Corrupt(c)),
            };
            // Blocks that no record names (left by a process killed
            // inside a large `put` or `get`) go first.
            self.lane
                .sweep(&named.iter().map(|r| (r.tag, r.loc)).collect::<Vec<_>>());
            let waiting = named.iter().fold(0u64, |t, r| t.saturating_add(r.len));
            if waiting.saturating_add(len) > self.max_large {
                return Self::no_room(ring, wait);
            }
            // From here on the block is in the lane: the record
            // must follow (nothing changed the ring since `prepare`).
            r.loc = match self.lane.send(handle, tag, &self.guarded) {
                Ok(Some(loc)) => loc,
                Ok(None) => return Self::no_room(ring, wait),
                Err(source) => {
                    return Step::Fail(Refused::Other(Kind::Io {
                        what: "cannot put a large item in its queue's lane",
                        source,
                    }))
                }
            };
            #[cfg(feature = "test-hooks")]
            hooks::reached(LargeStop::AfterLaneSend);
            match ring.prepare_large(r) {
                Ok(Prepared::Ready(p)) => self.commit_put(ring, p),
                other => Step::Fail(Refused::Other(Kind::QueueCorrupt(format!(
                    "a large record that had room a moment ago: {other:?}"
                )))),
            }
        })
    }
}

#[cfg(feature = "test-hooks")]
impl Core {
    /// See `test_hooks::queue_keeper_pid`.
    pub(crate) fn lane_keeper_pid(&self) -> Result<std::io::Result<Option<u32>>> {
        self.locked(|_| self.lane.keeper_pid())
    }
}

/// Where a large item's `put` or `get` can be stopped by a test
/// (`test_hooks::stop_large_at`): the two points where a process killed
/// leaves a block in the lane that no record names (module docs of
/// `queue`, "Items larger than the ring").
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargeStop {
    /// In `put`, under the queue's lock: the block was handed to the lane
    /// and its record is not committed yet.
    AfterLaneSend,
    /// In `get`, under the queue's lock: the record was taken (the
    /// commit) and the lane still holds the block.
    AfterTakeCommit,
}

#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::sync::{Arc, Mutex};

    use super::LargeStop;

    type Stop = (LargeStop, Arc<dyn Fn() + Send + Sync>);

    static STOP: Mutex<Option<Stop>> = Mutex::new(None);

    /// See `test_hooks::stop_large_at`.
    pub(crate) fn stop_at(point: LargeStop, f: Arc<dyn Fn() + Send + Sync>) {
        *STOP.lock().unwrap_or_else(|e| e.into_inner()) = Some((point, f));
    }

    /// Runs the function set for `point`, if any.
    pub(crate) fn reached(point: LargeStop) {
        let f = match &*STOP.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((p, f)) if *p == point => Arc::clone(f),
            _ => return,
        };
        f();
    }
}
