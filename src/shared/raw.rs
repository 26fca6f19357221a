//! [`SharedMemory`]: raw shared bytes, for experts.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::region::Region;
use super::Pages;
use crate::error::Result;

/// A block of shared bytes with no rules attached: what CPython's
/// `shared_memory.SharedMemory` is, for code that brings its own
/// synchronization.
///
/// It gives a raw pointer only; reading or writing through it takes
/// `unsafe` code, whose contract is:
///
/// - the pointer is valid for [`len`](SharedMemory::len) bytes (page
///   aligned) as long as this value lives, in this process;
/// - every process holding the block (it crosses into children like a
///   [`Connection`](crate::Connection)) can read and write those bytes at
///   any time. A Rust reference (`&T`, `&mut T`, `&[u8]`) to bytes that
///   another process writes while the reference lives is undefined
///   behavior, as a data race between threads is. Use atomics (through a
///   `*const AtomicU64`, aligned), volatile or copying reads under your
///   own protocol, or prefer [`Shared`](crate::Shared) and
///   [`Frozen`](crate::Frozen), which are safe;
/// - the block can't be resized, by anyone (Linux: sealed), so a pointer
///   into it stays backed.
///
/// ```
/// let block = multiproc::SharedMemory::new(4096)?;
/// let p = block.as_ptr();
/// // SAFETY: no other process has the block yet; in bounds.
/// unsafe { p.add(10).write(7) };
/// // SAFETY: as above.
/// assert_eq!(unsafe { p.add(10).read() }, 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SharedMemory {
    region: Region,
}

impl SharedMemory {
    /// A new block of `len` bytes, all zero (0 is allowed). A [usage
    /// error](crate::Error::is_usage) over 1 TiB. Of huge pages on Linux
    /// where the system can give them, as [`SharedMut::zeroed`](crate::SharedMut::zeroed);
    /// [`with_pages`](SharedMemory::with_pages) chooses.
    pub fn new(len: usize) -> Result<Self> {
        Self::with_pages(len, Pages::Huge)
    }

    /// A new block of `len` bytes, all zero, of the pages `pages` asks
    /// for: [`Pages::Small`] for 4 KiB pages only, taken as they are first
    /// touched (a large block used sparsely); [`Pages::Huge`] is what
    /// [`new`](SharedMemory::new) does.
    pub fn with_pages(len: usize, pages: Pages) -> Result<Self> {
        Ok(SharedMemory {
            region: Region::new(len, pages)?,
        })
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// `len() == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its region (test hooks).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// The first byte (see the type's docs for what may be done with it).
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(SharedMemory {
            region: Region::deserialize_as(d, false)?,
        })
    }
}
