//! Shared memory: blocks of bytes mapped by several processes at once.
//!
//! [`region`] is the building block (a mapped block, its wire form); the
//! public types are built on it: [`SharedMut`] → [`Frozen`] (write once,
//! read everywhere), [`Shared`] (atomics), [`SharedMemory`] (raw bytes).

mod atomic;
mod frozen;
mod raw;
pub(crate) mod region;

pub use atomic::{Shared, SharedAtomic};
pub use frozen::{Frozen, SharedMut};
pub use raw::SharedMemory;

/// Which pages a new block of shared memory is made of: the choice that
/// [`SharedMut::zeroed_with_pages`], [`SharedMemory::with_pages`] and
/// [`Shared::zeroed_with_pages`] take (the other constructors take the
/// default, [`Pages::Huge`]).
///
/// A child that maps a block of 4 KiB pages maps each one when it first
/// touches it, which for a large block costs more than reading it; huge
/// pages (2 MiB) cut that 512 times, but take the block's memory when it
/// is made rather than when it is first written. On Linux only; other
/// systems use 4 KiB pages whatever is asked. See [huge
/// pages](crate#huge-pages) for when the system gives them.
///
/// ```
/// use multiproc::{Pages, SharedMemory};
///
/// // A large block used sparsely: memory is taken only where written.
/// let sparse = SharedMemory::with_pages(64 << 20, Pages::Small)?;
/// assert_eq!(sparse.len(), 64 << 20);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pages {
    /// Huge pages where the system can give them, else 4 KiB pages; never
    /// an error for that. The default. A block of at least one huge page
    /// takes its huge pages (all of its memory, but for a tail under
    /// 2 MiB) when it is made.
    #[default]
    Huge,
    /// 4 KiB pages only: the crate asks for no huge pages, and a block
    /// takes memory only as its pages are first written (or read). For
    /// a block used sparsely, or small enough that mapping it costs
    /// little anyway.
    Small,
}

/// The smallest page size of the supported targets: every mapping starts
/// at least this aligned.
const PAGE: usize = 4096;
