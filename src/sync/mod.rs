//! Synchronization primitives shared between processes: [`Lock`],
//! [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`],
//! [`Condition`], [`Barrier`], and [`Value`] (a value in shared memory
//! under a lock).
//!
//! Each is `Send + Sync` (share it between threads with an `Arc`) and
//! serializable: put it in a worker's arguments and the worker gets its
//! own handle on the same object, as with a
//! [`Connection`](crate::Connection). What an OS object is on each
//! platform is in `sys/{unix,windows}/sync.rs`; the wire form is
//! [`wire`].

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;
mod value;
pub(crate) mod wire;

pub use barrier::{Barrier, BarrierParty};
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockError, LockGuard, LockResult};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use value::{Value, ValueGuard};

use crate::deadline;
use std::time::{Duration, Instant};

/// The deadline of a timeout form (`Duration::MAX` and other timeouts
/// too long for an `Instant` mean none).
fn until(timeout: Duration) -> Option<Instant> {
    deadline::deadline(timeout)
}

/// Every primitive can be shared between threads and sent to another.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Lock>();
    assert_send_sync::<RLock>();
    assert_send_sync::<Semaphore>();
    assert_send_sync::<BoundedSemaphore>();
    assert_send_sync::<Event>();
    assert_send_sync::<Condition>();
    assert_send_sync::<Barrier>();
    assert_send_sync::<Value<u64>>();
};

/// The first `n` 32-bit words of a primitive's state block, or an error
/// with `context` ("cannot use a barrier") when the block is not writable
/// shared memory of at least that size.
fn state_words<'a>(
    state: &'a crate::sys::Shm,
    n: usize,
    context: &'static str,
) -> crate::error::Result<&'a [std::sync::atomic::AtomicU32]> {
    state
        .atomics::<std::sync::atomic::AtomicU32>()
        .filter(|w| w.len() >= n)
        .ok_or_else(|| {
            crate::error::Error::io(
                context,
                std::io::Error::other("its state block is not writable shared memory"),
            )
        })
}
