//! Queues between processes (issue 12): `Queue`, `SimpleQueue`,
//! `JoinableQueue`, built on a ring of bytes in shared memory.
//!
//! This page is the design; the files follow it, one concern each:
//! [`ring`] (the bytes in the block: layout, commit points, checks — pure
//! code, unit-tested on a `Vec<u8>`), `untyped.rs` (`Core`, the untyped
//! queue: the lock, waiting and waking, the wire form), `large.rs` (items
//! larger than the ring: their blocks, their `put`), `queue.rs`
//! (`Queue<T>`: serde over `Core`), `simple.rs` and `joinable.rs` (the
//! two variants over it).
//!
//! # What CPython does, and why it breaks
//!
//! `multiprocessing.Queue` is a pipe, a lock around the pipe's write end,
//! and a *feeder thread* in each process that puts: `put` hands the item
//! to the thread and returns, and the thread pickles it and writes it to
//! the pipe later. A process must flush its feeder before it can exit, so
//! a parent that `join`s a child before draining the queue waits for a
//! child that waits for the parent to read — the documented deadlock
//! (CPython #73983, #87971). And a producer killed while holding the write
//! lock leaves the lock held for good (every other producer hangs) or a
//! half-written message in the pipe (every consumer reads garbage after
//! it).
//!
//! # The ring, and why there is no feeder thread
//!
//! A queue is one block of anonymous shared memory (`shared::region` /
//! `sys::Guarded`: memfd on Linux, a page-file section on Windows) holding
//! a header and a ring of records, and a robust process-shared mutex that
//! guards the whole block. `put` serializes the item in the calling
//! thread (outside the lock), locks, copies the bytes into the ring and
//! unlocks: when `put` returns the item *is in shared memory*, not in a
//! buffer of the producer's. A process can exit — return from its entry,
//! `process::exit`, be killed — right after `put` returns; its items stay
//! in the block, which lives as long as any process maps it (the OS frees
//! it when the last one lets go). Nothing needs flushing, so nothing can
//! deadlock on exit, and no thread is started.
//!
//! # An item is wholly in the queue or not at all
//!
//! Each operation commits with one aligned 8-byte store (the tail word
//! in the header, under the lock; the head word with a compare-and-swap,
//! under the lock or — a record copied out earlier — without it, below),
//! and everything the operation must do comes before that store (see
//! [`ring`]'s module docs for the layout):
//!
//! - `put` serializes the item (before locking), writes the record past
//!   the tail, wakes the sleepers it is for, then stores the tail word
//!   (item count and position together), unlocks and returns. A producer
//!   killed before that store put nothing (the half-written bytes are past
//!   the tail and are overwritten by the next `put`); killed after it, the
//!   item is in.
//! - `get` copies the oldest record into the caller's memory, **decodes
//!   it into the caller's `T`**, wakes the sleepers it is for, then stores
//!   the head word, unlocks and returns (a `get` of a copied record:
//!   decodes it, swaps the head word and returns — "Taking items without
//!   the lock" below). Until that store the item is
//!   still in the ring, first in line: a consumer killed with the decoded
//!   item in hand (anywhere before the store) took nothing, and the next
//!   `get`, in any process, has that same item
//!   (`a_consumer_killed_with_the_item_in_hand_before_get_returned_leaves_it_in_the_queue`).
//!   After the store `get` only releases the lock and returns: the store
//!   is the moment the item leaves the queue, and no design makes that
//!   moment and the return one instant (a claim freed after copying out
//!   has its own last store before the return). A consumer killed in the
//!   instructions between the two loses the item as one killed just after
//!   `get` returned would. Moving the decode and the wakeups before the
//!   store (they came after the unlock before) shrank that window from
//!   the decode and up to two wake syscalls to the mutex's release.
//!
//! Why not a claim instead (a per-record state naming the consumer, freed
//! after the copy, taken over from a consumer found dead): it needs a
//! liveness check of another process that pid reuse can fool, it still
//! ends with a last store before the return, and a claimed record in the
//! middle makes the ring a list. Holding the lock through the decode costs
//! little: the copy out was already under it, and decoding a `u64` or a
//! `Vec<u8>` is cheaper than the copy. A `Deserialize` that panics
//! consumes its item (so that one bad item can't stop the queue for good)
//! and the panic resumes after the unlock.
//!
//! # Taking items without the lock
//!
//! With a lock holding per item on each side, a producer and a consumer
//! on two cores took turns at one lock, and the lock's cache line, the
//! header's and the records' moved between the cores at every operation
//! (about 600 ns of CPU per item there, 0.13 futex calls). So a `get`
//! under the lock, once it has taken its item, copies out the records
//! that follow it — items in the ring of at most 256 bytes, up to 64 of
//! them and 4 KiB — into its process's memory *without taking them*, and
//! the next `get`s in that process take them one at a time without the
//! lock: decode the copy, then commit with one compare-and-swap of the
//! head word, from the value the previous take left to the one after this
//! record. The head word is outside the bytes the lock guards, in the
//! block's first cache line, reached only with atomic operations
//! (`sys::Guarded::atomics`), and a take under the lock is a
//! compare-and-swap too (from the word its view read; if it fails, the
//! item was taken without the lock meanwhile, and the `get` looks again).
//! The guarantees are those above:
//!
//! - A copied record stays in the queue, for every consumer, until the
//!   `get` that returns it takes it: a consumer killed with copies took
//!   only what its `get`s returned, and a copy is taken only after it is
//!   decoded, with the last store before the return
//!   (`tests/test_queue_unlocked.rs`).
//! - Each item is taken once: the swap succeeds only if the head word is
//!   exactly where this consumer's last take left it. If any consumer
//!   took an item since (this copy's, under the lock, or one of its own
//!   copies) the swap fails, and the consumer drops its copies and takes
//!   the lock. The word's item count wraps at 2³², so the word could come
//!   back to a copy's value after exactly 2³² takes: copies older than a
//!   second are dropped, far less time than 2³² takes need.
//! - A take without the lock owes no wakeup. Consumers: the `get` under
//!   the lock that made the copies woke one more sleeping consumer if
//!   items were left, as every `get` does. Producers asleep for room: bit
//!   0 of the head word (a position's is always 0) is the *room-wait
//!   flag*, set while the header counts producers asleep for room and
//!   changed with that count, under the lock. A swap expects the flag
//!   clear, so while a producer sleeps every take goes through the lock,
//!   which wakes it before its commit as before. A producer that found no
//!   room sets the flag with an atomic or, which returns the head word: if
//!   the head moved since the producer looked, it looks again instead of
//!   sleeping. A take without the lock is either before the flag (the
//!   producer sees the room) or after it (and fails).
//! - A producer killed while asleep leaves its count, and so the flag, set
//!   for good (the count was already too high, costing spurious wakeups):
//!   every take on that queue then goes through the lock, as before this
//!   was built — slower, not less safe.
//!
//! The copies adapt to consumers taking each other's items: a failed take
//! halves how many records the next `get` under the lock copies (to one
//! at least), and copies all taken double it (to 64 at most). Decoding
//! a copy happens outside the queue's lock, under a mutex of the
//! process's own; another thread of the process meanwhile takes the
//! queue's lock. With one producer process and one consumer process on
//! two cores this took the CPU per item from about 600 to 420 ns and the
//! futex calls from 0.13 to 0.04 per item (`docs/benchmarks.md`).
//!
//! A process killed while it holds the lock: the mutex is robust, so the
//! next process to lock it is told the owner died (Linux: the kernel marks
//! the futex `FUTEX_OWNER_DIED` from the dead thread's robust list;
//! Windows: the kernel mutex is abandoned, `WAIT_ABANDONED`). Because of
//! the single-store commits there is nothing to repair: the next locker
//! marks the mutex consistent and goes on (every operation checks the
//! header words and the frames it reads anyway); callers never see the
//! death (`tests/test_queue/faults.rs`:
//! `a_process_killed_holding_the_queue_lock_does_not_lock_the_queue`).
//! A process killed while it *waits* for the lock, after the unlock
//! woke it and before it took the lock, swallows that wakeup (Linux:
//! glibc wakes one sleeper, and leaves the free lock with no sign that
//! others sleep): the others would sleep on the free lock until some
//! locker had to sleep too, which in a queue gone quiet may be never, so
//! a blocked `lock` sleeps at most 100 ms at a time and then tries again
//! (`sys::SysMutex::lock`; `tests/test_sync/lock.rs`:
//! `a_waiter_that_swallows_the_release_wakeup_does_not_strand_the_next`).
//!
//! **macOS has no robust mutexes**: there a process killed while it holds
//! a queue's lock (inside any call on the queue: `put`, `get`, `len`,
//! `close`, …) leaves the queue locked for good, and every later call on
//! it, in every process, blocks forever — timeouts included (`put_timeout`
//! and `get_timeout` bound the wait for room or items, not for the lock).
//! macOS is only compiled, not tested.
//!
//! Bytes written into the block by anything but this code (a process
//! using the raw shared-memory API, a bug) never cause a read out of
//! bounds, a giant allocation or a panic: positions and counts are
//! checked on every operation and a record's frame (its length and the
//! length's complement) before its payload is copied. A payload that
//! doesn't decode as a `T` is an error of kind `Decode` for that `get`
//! (the item is consumed, the queue goes on); a frame or header that
//! can't be right is also a `Decode` error, and the ring is emptied so the
//! queue stays usable (the error says so).
//!
//! # Waiting and waking
//!
//! The header counts the consumers asleep waiting for an item and the
//! producers asleep waiting for room (under the lock). Two counting
//! semaphores do the sleeping: *items* (consumers sleep on it) and
//! *room* (producers). A `get` that finds the ring empty increments the
//! consumer count, unlocks, sleeps on *items*, locks, decrements, and
//! looks again; a `put` that finds sleeping consumers releases *items*
//! once, and a `get` releases *room* once for a sleeping producer; a
//! woken process that takes an item (or puts one) and sees more items
//! (or room) and more sleepers passes the wakeup on. While a release is
//! still pending (Linux reads the semaphore's count; Windows can't, and
//! releases each time) no other is made: it wakes a sleeper, who locks
//! after the holder and sees what it did — so a stream of puts or gets
//! while a woken process has not run yet costs one wake, not one each.
//! Wakeups are released under the lock, *before* the commit: a process
//! killed after the commit has always woken whom it had to (woken early,
//! a sleeper waits for the lock and then sees the commit), and one killed
//! before it woke sleepers for nothing, who look and sleep again. A
//! semaphore keeps a release made before the sleeper sleeps, so no wakeup
//! is lost between the unlock and the sleep. Linux: the semaphores are
//! futex words in shared memory (`FUTEX_WAIT`/`FUTEX_WAKE`, shared, a
//! syscall only when someone sleeps; a process about to sleep looks at
//! the count for a few microseconds first, so a consumer that emptied the
//! ring while its producer runs on the other core is usually released
//! before it sleeps, and neither side makes a syscall: with copies taken
//! without the lock the consumer empties the ring often, and those sleeps
//! and wakes were most of the futex calls left); Windows: kernel semaphore objects
//! duplicated into each process (`WaitForSingleObject`,
//! `ReleaseSemaphore`); macOS: polling. A release is skipped when nobody
//! sleeps, so an uncontended `put`/`get` is a lock, a copy and an unlock
//! (a `get` of a copied record: a decode and a compare-and-swap).
//!
//! Without crashes no wakeup is lost: the tests that kill nobody turn
//! the recheck below off in their processes (`test_hooks::set_queue_recheck`),
//! so a lost wakeup would hang them. What a crash can still do:
//!
//! - a process killed while asleep leaves its count one too high, so a
//!   few releases are wasted (spurious wakeups, which look again and
//!   sleep);
//! - a consumer killed after its semaphore woke it but before it locked
//!   swallows that wakeup: another consumer asleep next to the item is
//!   not woken by it. A counting semaphore's release is not addressed
//!   to a sleeper, so nothing can tell that this one died.
//!
//! And one race without a crash, between producers of items of
//! different sizes, is not closed: a `get` wakes one sleeping producer,
//! and if that is the producer of a large item for which there is no
//! room yet, it sleeps again, and the producer of a small item, for which
//! there is room, sleeps on until the next `get` or its recheck. Waking
//! every sleeping producer instead doesn't close it (a semaphore's
//! releases are not addressed: the large item's producer, going back to
//! sleep at once, can take a second release meant for the other), and
//! costs every sleeping producer a look per `get` (under Wine a
//! wine-server round trip each). (With items of one size it can't
//! happen: a producer sleeps again only if there was no room for its
//! item, so none for the others'.) Closing it needs a broadcast that a
//! fast sleeper can't take twice — a sequence word that sleepers wait on
//! (a futex on Linux; Windows has no such object shared between
//! processes) — which is not built.
//!
//! So that a crash can never leave a sleeper asleep next to an item for
//! good, every sleep is at most [`RECHECK`] (100 ms) long: a wakeup lost
//! to a killed consumer costs at most that much latency, never a hang.
//! Closing that too would need a wakeup a dead sleeper can't swallow
//! (a broadcast on a futex sequence word on Linux — every sleeper woken
//! per item — and no such object shared between processes on Windows).
//! `close` sets the closed flag and releases both semaphores once per
//! sleeper, so blocked consumers see the end of data (and blocked
//! producers the close) at once.
//!
//! # Bounds and large items
//!
//! A queue is bounded in bytes (the ring's data area, `max_bytes`, at
//! most 1 GiB) and optionally in items (`max_items`). An item takes its
//! serialized length plus 8 to 15 bytes. Items up to the ring's size go
//! through the ring like any other, copied in one piece under the lock —
//! the lock is held for the copy only (about a millisecond per MiB at
//! worst), never while waiting for room, and a producer waiting for room
//! for a large item does not stop producers of small items that fit:
//! there is no ordering between producers, so small items are never
//! blocked behind a large one.
//!
//! ## Items larger than the ring: the lane
//!
//! An item larger than the whole ring goes into a block of shared memory
//! of its own, and the ring holds a *large record* for it, 40 bytes, in
//! its place in line ([`ring`]'s module docs). What makes this hard is
//! the queue's promises, which must hold for these items too:
//!
//! 1. when `put` returns the item is in the queue, even if the producer
//!    exits or is killed right after;
//! 2. a consumer killed before its `get` committed leaves the item for
//!    the next consumer;
//! 3. an item is wholly in the queue or not at all, and a killed process
//!    never leaves the queue locked or garbled;
//! 4. a waiting large item doesn't block small ones for good.
//!
//! A block lives as long as some process holds its handle (fd / section
//! handle), and a handle can't be kept in shared memory. A block held by
//! its producer dies with it (breaking 1); one held by the consumer that
//! took it dies with that consumer (breaking 2). So the block must be
//! held by something that outlives both, and that is the queue's *lane*
//! (`sys::SysLane`), passed with the queue like its semaphores:
//!
//! - **Linux (Unix)**: an `AF_UNIX` datagram socketpair that every process
//!   holding the queue has both ends of. The producer sends the block's
//!   fd in an `SCM_RIGHTS` datagram; an fd *in flight* is held by the
//!   kernel, in the socket's receive queue, for as long as any process
//!   holds the socket — not by the producer. A consumer takes a copy of
//!   the fd with `MSG_PEEK` (Linux duplicates the fds of a peeked
//!   datagram), so the datagram stays in the socket until its item left
//!   the ring. No fd is in any process's table while the item waits.
//! - **Windows**: there is no handle in flight that no process holds, so
//!   a process must keep the blocks, and no user process will do: any of
//!   them may be killed, or end with `process::exit` without dropping its
//!   copy, and keeping each block in two (or n) of them only takes two
//!   (or n) kills to lose it. So the queue has a **keeper**, a process of
//!   the crate's own (`sys/windows/keeper.rs`: the program workers run,
//!   started with an argument that `init` turns into the keeper, as
//!   CPython's resource tracker is a process of its own), started by the
//!   queue's first large `put` under the queue's lock — a queue that
//!   never sees a large item starts none. The lane is a table in shared
//!   memory of its own (`sys/windows/lane.rs`): the *holders* (each process
//!   that created or received the queue, named by its id and creation
//!   time, joined under the queue's lock, left when its last copy of the
//!   queue is dropped), the keeper, and one *slot* per block kept (the
//!   item's tag, who keeps it and the handle's value in that process's
//!   table). A producer pushes a copy of the block's read-only section
//!   handle into the keeper (`DuplicateHandle`, as CPython's `DupHandle`
//!   does the other way round), and the record keeps the slot's index. A
//!   consumer copies the handle out, and frees the slot and closes the
//!   keeper's copy only after its commit. The keeper lives while any
//!   holder lives: it waits on a live holder's process handle and on an
//!   event a leaving holder sets, and decides to exit, when it finds none
//!   alive, under the queue's lock, so that no block is pushed into a
//!   keeper on its way out; a holder that comes later starts a new one.
//!   It leaves the job objects of the process that started it (the
//!   crate's jobs allow breakaway), so no worker's or parent's job takes
//!   it along. So **large items outlive every producer and consumer,
//!   killed or not, the queue's creator included**
//!   (`tests/test_queue_large.rs`). What Linux does and this can't: the
//!   keeper itself killed takes the blocks it keeps with it (their records
//!   are skipped: those items are lost), and so does the queue's last
//!   holder going while the queue is in flight in a message; a job of
//!   someone else's that forbids breakaway keeps the keeper in, and it
//!   dies with that job. Where no keeper can be started (a program that
//!   called neither `init` nor `set_executable`, or whose program does not
//!   run as one: `sys/windows/keeper.rs`), the holders keep the blocks, as
//!   before the keeper: a holder killed then takes the blocks it keeps.
//!   At most 256 blocks wait at once (a large `put` waits for a free slot
//!   as for room), and at most 64 processes are holders at once (one more
//!   uses the queue but the keeper does not wait for it).
//! - **macOS and other Unixes but Linux**: no lane. Taking a copy of an
//!   fd in flight without taking the datagram needs a `MSG_PEEK` that
//!   passes fds, which only Linux's is known to do (XNU's copies the
//!   control data without making fds: `sys/unix/lane.rs`), so there the
//!   lane's bound is 0 and an item larger than the ring is refused as
//!   too large, as any item was before the lane.
//!
//! A large `put`: serialize, copy into a fresh block and freeze it
//! (sealed with `F_SEAL_WRITE` / a read-only handle), all outside the
//! lock; then under the lock, once there is room — for the record in the
//! ring, for the item's bytes in the lane's bound (`max_large_bytes`, by
//! default 1 GiB: the large items waiting at once, counted by walking the
//! records, which only a large `put` does), and in the lane (Linux: the
//! socket's buffer, a few hundred datagrams) — hand the block to the lane,
//! write the record past the tail, wake, and store the tail word: the same
//! single-store commit as any item, so promise 3 holds as before. A
//! producer killed before the commit put nothing; killed after handing
//! the block to the lane, it leaves a block that no record names (below,
//! "What a killed process leaves in the lane"). A producer waiting for
//! room does so outside the lock, like any producer (promise 4: small
//! items go on, into the ring, while it waits).
//!
//! A large `get`, under the lock: the record names the block (its random
//! tag, its length, Windows: its slot in the lane's table); the consumer gets a
//! copy of the block's handle from the lane, maps it only if the OS says
//! it is a frozen block of that length, checks the tag in its header,
//! decodes the item, wakes, stores the head word (the commit), and only
//! then lets the lane drop the block (Linux: receives the datagram for
//! good; Windows: frees the slot, closes the keeper's copy). Killed before the commit it
//! took nothing: the record and the block are still there (promise 2).
//! Killed between the commit and the drop, the item is gone as with any
//! `get` that committed, and the block lingers (below). A record whose
//! block isn't there (Windows: its keeper exited) or isn't its own is
//! dropped and the `get` goes on to the next item: its item was never
//! wholly in the queue.
//!
//! ### What a killed process leaves in the lane
//!
//! Two points leave a block in the lane that no record names: a
//! producer killed after handing its block to the lane and before its
//! commit, and a consumer killed after its commit and before the lane
//! let go of the block. The test hook `test_hooks::stop_large_at` stops
//! a process at exactly those points (`LargeStop`), and
//! `tests/test_queue_large.rs` kills it there
//! (`a_producer_killed_between_its_lane_send_and_its_commit_put_nothing`,
//! `a_consumer_killed_between_its_commit_and_the_lane_letting_go_took_the_item`):
//! the queue works on, the items behind arrive whole, and no consumer
//! ever gets a block in place of a committed record's (a block is taken
//! only if its tag is the record's).
//!
//! - **Linux**: the orphan is a datagram whose tag no record has. Sends
//!   and receives on the socket happen under the queue's lock in the
//!   order of the records, so the orphans ahead of the oldest record's
//!   datagram are exactly the datagrams ahead of it: a large `get` drops
//!   those on its way to its own, and a large `put` drops those at the
//!   front (`SysLane::sweep`, given the large records it walks anyway for
//!   the lane's bound), so that orphans can't fill the socket while no
//!   large item is queued. An orphan thus stays until the next large
//!   `get`, or the next large `put` if no large item is ahead of it; all
//!   of them together are bounded by the socket's buffer, like the
//!   blocks of waiting items.
//! - **Windows**: the orphan is a slot that no record names, and its
//!   handle in the keeper. The next large `put` frees every such slot
//!   and closes its handle (`SysLane::sweep`, given the same walk); the
//!   tests count the keeper's handles before and after. A slot is filled
//!   only once the push returned and freed before its handle is closed,
//!   so a process killed in the few instructions between the two leaves
//!   one handle in the keeper until that process exits (never a slot
//!   naming a closed handle, whose value the keeper could reuse).
//!
//! The lock is held through a large `get`'s mapping and decode (a few
//! milliseconds for 16 MiB), as it is for a ring item's copy: the cost of
//! deciding "taken" in one store. Small items are never slowed by the
//! lane: a `put` compares the item's length with the ring's once, and
//! nothing else on their path changed.
//!
//! Considered and not taken: **a rendezvous** (`put` returns once a
//! consumer mapped the block) breaks promise 1 for the common case — a
//! child that puts and returns while its parent joins it before reading
//! waits forever, CPython's deadlock again. **Chunking the item through
//! the ring** can't keep promise 2: an item larger than the ring must
//! leave it in pieces before it is whole, so a consumer killed part-way
//! has already taken pieces no one else can get back.
//!
//! A `SimpleQueue` is a queue whose bound is only its byte size (a large
//! one by default): its `put` blocks when that much is queued rather than
//! growing memory without bound.
//!
//! `JoinableQueue` counts items marked done next to the tail's count of
//! items put; `join` waits until they are equal. `task_done` is one
//! 4-byte store under the lock, so it is also all-or-nothing.

mod joinable;
mod large;
#[allow(clippy::module_inception)] // the brief's layout: queue/queue.rs is `Queue`
mod queue;
pub(crate) mod ring;
mod simple;
mod untyped;

pub use joinable::JoinableQueue;
#[cfg(feature = "test-hooks")]
pub(crate) use large::hooks as large_hooks;
#[cfg(feature = "test-hooks")]
pub use large::LargeStop;
pub use queue::{Queue, QueueBuilder};
pub use simple::SimpleQueue;

use std::time::Duration;

/// The longest a blocked `put` or `get` sleeps before it looks at the
/// ring again even without a wakeup: what a wakeup lost to a killed
/// process costs at most.
pub(crate) const RECHECK: Duration = Duration::from_millis(100);

/// Set by `test_hooks::set_queue_recheck(false)`: sleeps last an hour.
#[cfg(feature = "test-hooks")]
pub(crate) static NO_RECHECK: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// [`RECHECK`], or an hour in a test that turned rechecks off.
pub(crate) fn recheck() -> Duration {
    #[cfg(feature = "test-hooks")]
    if NO_RECHECK.load(std::sync::atomic::Ordering::Relaxed) {
        return Duration::from_secs(3600);
    }
    RECHECK
}

// Every queue is `Send + Sync` whatever its item type: it holds no `T`,
// only bytes in shared memory (items are serialized on the way in).
const _: () = {
    const fn assert_send_sync<Q: Send + Sync>() {}
    assert_send_sync::<Queue<std::rc::Rc<u8>>>();
    assert_send_sync::<SimpleQueue<std::rc::Rc<u8>>>();
    assert_send_sync::<JoinableQueue<std::rc::Rc<u8>>>();
};
