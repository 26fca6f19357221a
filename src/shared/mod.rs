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

/// The smallest page size of the supported targets: every mapping starts
/// at least this aligned.
const PAGE: usize = 4096;
