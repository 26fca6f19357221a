//! Run typed Rust functions in fresh child processes of the same
//! executable — what Python's `multiprocessing` (spawn start method) gives
//! Python, with Windows as a first-class platform.
//!
//! # From the top
//!
//! A worker is a fresh process of your program (or of a host you name with
//! [`set_executable`]). It starts, sees the worker marker on its command
//! line in [`init`], reads which function to run and its arguments from a
//! private bootstrap channel, runs it, sends the result back, and exits.
//! So:
//!
//! 1. call [`init`] first thing in `main` (in test binaries, put
//!    [`test_support!`] once at the top level instead);
//! 2. register each function a worker may run with [`entry!`];
//! 3. run it: [`Process::spawn`] for one call, [`Pool`] for many,
//!    [`Popen`] for the raw process.
//!
//! ```
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! multiproc::entry!(square);
//!
//! fn main() -> Result<(), multiproc::Error> {
//!     multiproc::init(); // in a worker, this runs the entry and exits
//!
//!     let mut p = multiproc::Process::spawn(square, 7)?;
//!     assert_eq!(p.join()?, 49);
//!
//!     let pool = multiproc::Pool::new(2)?;
//!     assert_eq!(pool.map(square, 1..=3)?, vec![1, 4, 9]);
//!     Ok(())
//! }
//! ```
//!
//! Entry functions are plain `fn` items taking one argument of any
//! `Serialize + DeserializeOwned` type (use a tuple for several). A worker
//! finds its function by a stable id (the function's type name) behind a
//! versioned, build-checked handshake, never by code address. Closures that
//! capture don't compile.
//!
//! # Pipes between processes
//!
//! [`Pipe::duplex`] and [`Pipe::simplex`] make connected [`Connection`]s
//! carrying length-prefixed messages; a `Connection` given to
//! [`Process::spawn`] as (part of) the argument works in the child, which
//! is how a child talks to its parent or a sibling. [`wait`] watches
//! several connections and processes at once.
//!
//! ```
//! use multiproc::{Connection, Pipe, Process};
//!
//! fn shout(conn: Connection) {
//!     while let Ok(s) = conn.recv::<String>() {
//!         conn.send(&s.to_uppercase()).unwrap();
//!     }
//! }
//! multiproc::entry!(shout);
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let (mine, theirs) = Pipe::duplex()?;
//! let mut child = Process::spawn(shout, theirs)?;
//! mine.send("hi")?;
//! assert_eq!(mine.recv::<String>()?, "HI");
//! drop(mine); // the child sees end of file and returns
//! child.join()?;
//! # Ok(()) }
//! ```
//!
//! # Sharing state
//!
//! Processes share nothing by default; these types put memory in common,
//! as Python's `shared_memory` and `Value` do, but without names or a
//! tracker process: a block is anonymous (a memfd on Linux, a
//! page-file-backed section on Windows), crosses into a child as a handle
//! inside the child's arguments (a spawn's, or a pool initializer's), and
//! the OS frees it when the last process holding it lets go, however that
//! process ends, killed included.
//!
//! - [`SharedMut`] → [`Frozen`]: fill a block in one process, then
//!   [`freeze`](SharedMut::freeze) it; every process that gets the
//!   `Frozen` maps the same read-only memory as a `&[T]` (zero copy).
//! - [`Shared`]: an atomic integer every holder sees (`fetch_add`,
//!   `compare_exchange`, …), or an array of them (`Shared<[AtomicU64]>`).
//! - [`SharedMemory`]: raw bytes behind a pointer, for code that brings
//!   its own rules (`unsafe` to use).
//!
//! A frozen broadcast: the workers read the parent's data without a copy.
//!
//! ```
//! use multiproc::{Frozen, Pool, SharedMut};
//!
//! fn total(data: Frozen<u64>) -> u64 {
//!     data.iter().sum()
//! }
//! multiproc::entry!(total);
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let mut block = SharedMut::<u64>::zeroed(1_000_000)?;
//! for (i, x) in block.iter_mut().enumerate() {
//!     *x = i as u64;
//! }
//! let data = block.freeze()?; // read-only from here on, everywhere
//! let mut child = multiproc::Process::spawn(total, &data)?;
//! assert_eq!(child.join()?, 499_999_500_000);
//! # Ok(()) }
//! ```
//!
//! The rules that make this sound, in plain words:
//!
//! 1. A `&[T]` is handed out only for memory no process can write while
//!    it is borrowed: a [`SharedMut`] never leaves its process (it can't be
//!    sent), and a [`Frozen`] block can't be written by anyone any more.
//! 2. Memory that other processes may write is reached only through
//!    atomics ([`Shared`]), whose every access is atomic, or through raw
//!    pointers in `unsafe` code ([`SharedMemory`], whose docs give the
//!    contract).
//! 3. A received block is checked before it is mapped: what the handle is,
//!    its size against what was sent (capped at 1 TiB), and for a frozen
//!    block that it really is read-only (Linux: its seals). Anything else
//!    fails the decoding with a message that says why, never undefined
//!    behavior.
//! 4. No block can shrink under a mapping (Linux: sealed against resizing
//!    at creation), so no access past its end can fault (SIGBUS).
//!
//! | | Linux | Windows | macOS |
//! |---|---|---|---|
//! | a block | `memfd_create` (sealed against shrinking and growing) | `CreateFileMappingW` backed by the page file | `shm_open` with a random name, unlinked at once |
//! | crossing | the fd, by `SCM_RIGHTS` | `DuplicateHandle` into the child | the fd, by `SCM_RIGHTS` |
//! | checked on receipt | seals (`F_GET_SEALS`), exact size (`fstat`) | a section; a view of the size sent (`MapViewOfFile`, `VirtualQuery`) | size (`fstat`) |
//! | [`Frozen`] is read-only by | `F_SEAL_WRITE`: no process can write it | read-only handles only (the writable one is closed); a received handle that maps writable is refused | read-only mappings: any process holding the fd could still map it writable (ours never do); the OS can't enforce it |
//! | freed | when the last fd and mapping are gone | when the last handle and view are gone | when the last fd and mapping are gone |
//!
//! Not covered by rule 1: another program of the same user that opens
//! `/proc/<pid>/fd/<n>` of a Linux process can map an exclusive
//! [`SharedMut`] writable (as it can write `/proc/<pid>/mem`); that is
//! outside what any Rust program can defend against.
//!
//! Today the shared types cross where a handle can: in a spawn's
//! arguments ([`Process::spawn`], [`Popen`]) and in a pool initializer's
//! ([`PoolBuilder::initializer`]); elsewhere (a pool task's argument, a
//! [`Connection`] message) sending one fails with an encoding error
//! ([`Error::is_encode`]) that says no child is being spawned.
//!
//! ## Locks, events, semaphores, barriers
//!
//! [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`],
//! [`Condition`] and [`Barrier`] work across processes as Python's
//! `multiprocessing` ones do, and [`Value`] is a plain value
//! ([`bytemuck::Pod`]) in shared memory under its own lock. Each is
//! `Send + Sync` and crosses into a child in its arguments (as a
//! [`Connection`] does): the child gets its own handle on the same
//! object. Acquiring has a blocking, a `try_` and a `_timeout` form (any
//! `Duration`; `Duration::MAX` waits forever); guards release on drop.
//!
//! ```
//! use multiproc::{Process, Value};
//!
//! fn add(counter: Value<u64>) {
//!     for _ in 0..1000 {
//!         *counter.lock().expect("lock") += 1;
//!     }
//! }
//! multiproc::entry!(add);
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let counter = Value::new(0u64)?;
//! let mut workers = Vec::new();
//! for _ in 0..4 {
//!     workers.push(Process::<()>::spawn(add, &counter)?);
//! }
//! for w in &mut workers {
//!     w.join()?;
//! }
//! assert_eq!(counter.get()?, 4000);
//! # Ok(()) }
//! ```
//!
//! A [`Barrier`] knows its parties when they [`register`](Barrier::register),
//! so one that dies breaks it for the others instead of leaving them
//! waiting:
//!
//! ```
//! use multiproc::{Barrier, Process};
//!
//! fn party(b: Barrier) -> usize {
//!     let _me = b.register().expect("register");
//!     b.wait().expect("wait") // this party's arrival index
//! }
//! multiproc::entry!(party);
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let b = Barrier::new(3)?;
//! let mut parties = Vec::new();
//! for _ in 0..2 {
//!     parties.push(Process::<usize>::spawn(party, &b)?);
//! }
//! let me = b.register()?;
//! let mut seen = vec![b.wait()?];
//! drop(me);
//! for p in &mut parties {
//!     seen.push(p.join()?);
//! }
//! seen.sort();
//! assert_eq!(seen, [0, 1, 2]);
//! # Ok(()) }
//! ```
//!
//! What each is on each platform:
//!
//! | primitive | Linux | Windows | macOS (compiles; slower) |
//! |---|---|---|---|
//! | [`Lock`], [`RLock`] | robust process-shared pthread mutex (`PTHREAD_MUTEX_ROBUST`, error-checking / recursive) in a memfd of its own | kernel mutex (`CreateMutexW`, unnamed) and an event for "a holder died" | process-shared pthread mutex, **not robust**; timed acquires poll |
//! | [`Semaphore`], [`BoundedSemaphore`] | a counter and a futex in a memfd | kernel semaphore with its maximum | a counter; waits poll (≤ 1 ms naps) |
//! | [`Event`] | a flag and a futex in a memfd | manual-reset kernel event | a flag; waits poll |
//! | [`Condition`] | a `Lock` and three semaphores (CPython's algorithm) | the same | the same |
//! | [`Barrier`] | state words in a memfd, two events, a robust mutex per party | state in a page-file section, kernel events and a mutex per party | no dead party is detected |
//! | [`Value`] | a memfd under a `Lock` | a page-file section under a kernel mutex | as on Linux, not robust |
//!
//! Handles pass as the crate passes any handle ([`duplicate_for_child`]:
//! `SCM_RIGHTS` on Unix, `DuplicateHandle` into the child on Windows). A
//! worker checks what it receives before using it: a memfd sealed against
//! resizing, of exactly the object's size, with the object's magic number
//! and kind (Linux); a kernel object of the right type
//! (`NtQueryObject`, Windows); the right number of handles and the right
//! primitive. Anything else fails the worker's bootstrap with the reason.
//!
//! **A holder that dies.** The rules, where the OS tells (Linux, Windows):
//!
//! - A [`Lock`], [`RLock`], [`Condition`] or [`Value`] whose holder dies
//!   holding it (its process killed, or its thread ended with the guard
//!   alive) is released by the OS. The next acquirer gets it with an
//!   error of kind [`ErrorKind::OwnerDied`]: a [`LockError`] that carries
//!   the guard. [`LockError::into_guard`] marks the lock consistent and
//!   gives the guard back, to repair the data through; until someone does
//!   that, *every* acquirer gets the error. (Linux: `EOWNERDEAD` from the
//!   kernel's robust futex list, then `pthread_mutex_consistent` and a
//!   word of our own; Windows: `WAIT_ABANDONED`, then an event.)
//! - A thread that acquires a [`Lock`] it already holds gets an error of
//!   kind [`ErrorKind::Usage`] at once instead of deadlocking (a `try_`
//!   form gets `None`); Windows mutexes are recursive, so a per-thread list
//!   keeps a `Lock` from re-entering there.
//! - A [`Semaphore`] does not know who holds its units: a dead holder's
//!   units are lost (the count stays lower), on every platform, as in
//!   CPython. An [`Event`] has no holder.
//! - A [`Barrier`] party that [registered](Barrier::register) and dies
//!   breaks the barrier: waiters look at the parties' locks every 50 ms
//!   and get [`ErrorKind::BrokenBarrier`]. A party that never registered
//!   can't be missed.
//! - A process killed inside [`ConditionGuard::wait`] stays counted as a
//!   sleeper: the `notify` that picks it waits for it for good (as in
//!   CPython).
//! - macOS has no robust mutexes: there a dead holder's lock stays held,
//!   and `_timeout` forms are the way out.
//!
//! Processes that share a primitive trust each other: one that writes
//! garbage into a shared block (outside this crate) can break the lock
//! for all of them.
//!
//! # Queues
//!
//! [`Queue`] is Python's `multiprocessing.Queue` without its two famous
//! failures. Any number of processes put and get typed items (any
//! `Serialize + DeserializeOwned`); each item is taken exactly once.
//! [`SimpleQueue`] and [`JoinableQueue`] (`task_done`, `join`) are the
//! other two Python queues. All three cross into children like a
//! [`Connection`] (a spawn's or a pool initializer's arguments).
//!
//! What is guaranteed, in plain words:
//!
//! - **When `put` returns, the item is in the queue**: in shared memory,
//!   not in a buffer or a thread of the producer. The producer may exit
//!   or be killed right after; its items stay, and joining it never waits
//!   for anyone to read them. (CPython's feeder thread makes a process
//!   that put items wait at exit until they are read: joining it before
//!   draining the queue hangs, #73983.)
//! - **An item is wholly in the queue or not at all.** A producer killed
//!   inside `put` put the whole item or nothing; a consumer killed inside
//!   `get` before taking the item leaves it in the queue, first in line,
//!   for the next `get`. A consumer killed after `get` returned loses what
//!   it got, as any process loses what it held. No crash leaves the queue
//!   locked or garbled for the others (CPython: a producer killed holding
//!   the write lock blocks every other producer for good). macOS can't
//!   detect a dead lock holder: there a process killed inside `put`/`get`
//!   leaves the queue locked.
//! - **Bounded.** By bytes (4 MiB by default, [`QueueBuilder::max_bytes`])
//!   and optionally by items ([`Queue::with_capacity`]); `put` waits for
//!   room, [`Queue::try_put`] and [`Queue::put_timeout`] fail with
//!   [`ErrorKind::Full`]; [`Queue::try_get`] and [`Queue::get_timeout`]
//!   with [`ErrorKind::Empty`]. An item larger than the whole queue fails
//!   at once ([`ErrorKind::MessageTooLarge`]). A producer waiting for room
//!   for a large item does not hold back others whose items fit.
//! - **[`Queue::close`] is seen by every process**: puts fail with
//!   [`ErrorKind::QueueClosed`], gets drain what is left and then fail with
//!   it (end of data), and blocked callers wake.
//! - An item that doesn't decode as the reader's type is an error of kind
//!   [`ErrorKind::Decode`] for that `get` only.
//!
//! How: one block of shared memory holds a ring of serialized items, under
//! a robust mutex (the kernel tells the next locker that a holder died);
//! every `put` and `get` commits with one 8-byte store, so there is never
//! anything to repair. Waiting is on semaphores (futexes on Linux, kernel
//! semaphores on Windows), with a look at the ring at least every 100 ms
//! so that a wakeup lost with a killed process costs latency, not a hang.
//!
//! A pipeline: a producer process, a pool whose workers take their
//! results queue in the initializer, and the parent as the collector.
//!
//! ```
//! use std::sync::OnceLock;
//! use multiproc::{PoolBuilder, Process, Queue};
//!
//! static RESULTS: OnceLock<Queue<(u64, u64)>> = OnceLock::new();
//!
//! fn keep(results: Queue<(u64, u64)>) {
//!     RESULTS.set(results).unwrap();
//! }
//! fn work(x: u64) {
//!     RESULTS.get().unwrap().put((x, x * x)).unwrap();
//! }
//! fn produce(jobs: Queue<u64>) {
//!     for x in 0..100 {
//!         jobs.put(x).unwrap();
//!     }
//!     jobs.close().unwrap(); // end of data for every reader
//! }
//! multiproc::entry!(keep, work, produce);
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let jobs = Queue::<u64>::new()?;
//! let results = Queue::<(u64, u64)>::new()?;
//! let pool = PoolBuilder::new()
//!     .workers(2)
//!     .initializer(keep, results.clone())
//!     .build()?;
//! let mut producer = Process::spawn(produce, &jobs)?;
//! let mut submitted = Vec::new();
//! loop {
//!     match jobs.get() {
//!         Ok(x) => submitted.push(pool.submit(work, x)),
//!         Err(e) if e.is_queue_closed() => break,
//!         Err(e) => return Err(e),
//!     }
//! }
//! producer.join()?;
//! for s in submitted {
//!     s.get()?;
//! }
//! let mut total = 0;
//! for _ in 0..100 {
//!     let (x, sq) = results.get()?;
//!     assert_eq!(sq, x * x);
//!     total += sq;
//! }
//! assert_eq!(total, (0..100).map(|x| x * x).sum());
//! # Ok(()) }
//! ```
//!
//! # How a process ends
//!
//! [`Process::join`] returns the value, or an [`Error`] that tells apart:
//!
//! | what happened | predicate | details |
//! |---|---|---|
//! | the entry panicked | [`Error::is_panic`] | [`Error::panic_report`]: message, location |
//! | it returned, but its result can't be serialized | [`Error::is_result_encode`] | the reason; exit code 210 ([`exit_code::BAD_RESULT`]) |
//! | it exited without a result (`process::exit(3)`), with any code, 200–210 included | [`Error::is_no_result`] | [`Error::exit_status`] `.code() == Some(3)` |
//! | a signal killed it (Unix), or another process's `TerminateProcess` (Windows) | [`Error::is_no_result`] | `.signal()`, or `.code()` with that code |
//! | we stopped it (`terminate`, `kill`, `*_tree`) | [`Error::is_terminated`] | SIGTERM / SIGKILL; Windows exit code `0x10000` |
//! | its bootstrap failed: the worker said so (with the reason), or it exited with 200–208 before its bootstrap was through | [`Error::is_bootstrap_failure`] | the reason; exit code 200–208, see [`exit_code`] |
//!
//! [`Error::kind`] gives the same answer as an [`ErrorKind`] to `match` on;
//! the [`Error`] docs list every kind and where it comes from.
//!
//! [`Process::exitcode`] follows Python: the exit code, minus the signal
//! number for a signal, and `-15` for a Windows process ended with
//! `TERMINATE`.
//!
//! # Caveats
//!
//! - **Drop.** Dropping a [`Popen`] or [`Process`] neither waits for nor
//!   kills the worker (as `std::process::Child`); opt in with
//!   [`PopenBuilder::kill_on_drop`] or [`ProcessBuilder::kill_on_drop`].
//!   On Unix a worker dropped while running is reaped in the background,
//!   so no zombie stays (daemonic ones included); if the reaper thread
//!   can't be started (fd or thread limit), that waits for a later drop or
//!   spawn instead of failing the drop. Dropping a [`Pool`] kills its
//!   workers and joins its threads. A worker dropped right
//!   after `spawn` still starts: on Windows it takes its end of the
//!   bootstrap channel out of this process *after* `spawn` returned, so
//!   this process keeps its copy until the worker has done that or exited,
//!   and before exiting (a worker process after its entry, a program
//!   returning from `main`) waits for that, at most 10 s. A Windows program
//!   that calls `std::process::exit` right after dropping a worker that is
//!   still starting skips that wait, and the worker may fail to start.
//! - **Daemons.** A [daemonic](ProcessBuilder::daemon) process is
//!   terminated when this process exits normally (return from `main`,
//!   `std::process::exit`), as in Python. A parent killed outright runs no
//!   exit code at all; on Windows, though, daemons live in a kill-on-close
//!   job object (`std::process::exit` skips exit handlers there), so they
//!   end with this process however it ends.
//! - **Parent death.** With [`ProcessBuilder::kill_on_parent_death`] (on
//!   by default for pool workers) the worker dies with this process however
//!   it dies: Windows puts it in a job object with `KILL_ON_JOB_CLOSE`
//!   before it runs; Linux arms `PR_SET_PDEATHSIG` in the worker (checking
//!   `getppid()` for a parent that died during the spawn) and spawns such
//!   workers from a thread that lives as long as the process, since Linux
//!   ties the signal to the spawning thread. macOS has no equivalent: there
//!   such workers outlive a killed parent.
//! - **Process groups and stdin (Unix).** As in CPython, workers stay in
//!   their parent's process group and get the null device as stdin
//!   ([`ProcessBuilder::stdin`] to inherit it): Ctrl-C in a terminal
//!   reaches the workers along with the parent, and a worker that reads
//!   stdin sees end of file instead of being stopped (SIGTTIN).
//!   [`Process::kill_tree`] needs a worker that leads its own group: ask
//!   for one with [`ProcessBuilder::own_process_group`] (it then reaches
//!   everything the worker starts, nested workers included, but no longer
//!   gets the terminal's signals); without it the tree operations fail.
//!   On Windows every worker has its own job object, which they use.
//! - **Standard streams.** Each of a worker's stdin, stdout and stderr is
//!   set on its own ([`Stdio`]: `stdin`, `stdout`, `stderr` on
//!   [`PopenBuilder`], [`ProcessBuilder`] and [`PoolBuilder`]): inherited
//!   from this process, the null device, or (stdout and stderr of a
//!   `Popen` or `Process`) captured in a pipe. Inherited and null streams
//!   are in place before the worker runs any code; on Windows the worker
//!   inherits exactly its standard handles and no other.
//! - **Windows consoles.** Workers share the parent's console (no console
//!   window opens for them); when the parent has none, they are created
//!   with `CREATE_NO_WINDOW`; a worker whose three streams are all the
//!   null device gets no console at all (`DETACHED_PROCESS`).
//! - **A binary replaced on disk.** Workers run the build that is
//!   running, never a file put at its path later (an upgrade, `cargo
//!   build`): Linux starts them from the running image, Windows from
//!   wherever the renamed image is now; where that can't be done (macOS,
//!   the other Unix systems, Wine) a spawn fails with an
//!   [`ErrorKind::Spawn`] error that says the executable was replaced. See
//!   [`executable`].
#![deny(unsafe_code)]

mod codec;
mod connection;
mod deadline;
mod encode;
mod error;
pub mod exit_code;

/// The bootstrap protocol's version and limits: what a worker accepts on
/// its private bootstrap channel before it runs anything. A worker refuses
/// a bootstrap that breaks them, exiting with
/// [`exit_code::VERSION_MISMATCH`] or [`exit_code::TOO_LARGE`], which
/// [`Process::join`] reports as a bootstrap failure. (Like
/// [`exit_code`], these describe the protocol, not one type, so they get
/// a module of their own.)
pub mod bootstrap {
    pub use crate::codec::header::{
        MAX_ENTRY_LEN, MAX_OPTIONS_LEN, MAX_PAYLOAD_LEN, PROTOCOL_VERSION,
    };
}
mod pool;
mod popen;
mod process;
mod queue;
mod shared;
mod spawn;
mod status;
mod sync;
#[allow(unsafe_code)]
mod sys;

pub use codec::handles::{duplicate_for_child, pass_handle, PassedHandle};
pub use connection::{wait, Connection, Pipe, Waitable};
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "progress")]
pub use pool::Progress;
pub use pool::{AsyncResult, Imap, Pool, PoolBuilder};
pub use popen::{
    executable, reset_executable, set_executable, ChildOutput, Popen, PopenBuilder, Sentinel, Stdio,
};
pub use process::{Process, ProcessBuilder};
pub use queue::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};
pub use shared::{Frozen, Shared, SharedAtomic, SharedMemory, SharedMut};
pub use spawn::{current_process_name, init};
pub use status::{ExitStatus, PanicReport};
pub use sync::{
    Barrier, BarrierParty, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockError,
    LockGuard, LockResult, RLock, RLockGuard, Semaphore, SemaphoreGuard, Value, ValueGuard,
};

/// Registers functions that workers may run.
///
/// Put it at module level, naming plain `fn` items; each takes one
/// `Serialize + DeserializeOwned` argument and returns a `Serialize` value.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// fn add((a, b): (i32, i32)) -> i32 { a + b }
/// multiproc::entry!(square, add);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! entry {
    ($($f:path),+ $(,)?) => {
        $(
            #[cfg(not(windows))]
            const _: () = {
                #[$crate::__private::linkme::distributed_slice($crate::__private::ENTRIES)]
                #[linkme(crate = $crate::__private::linkme)]
                static ENTRY: $crate::__private::EntryDef = $crate::__private::EntryDef {
                    name: || $crate::__private::entry_id(&$f),
                    sig: || $crate::__private::signature_of(&$f),
                    run: |input| $crate::__private::run_entry($f, input),
                    run_batch: |input, out, fails| {
                        $crate::__private::run_batch($f, input, out, fails)
                    },
                };
            };
            #[cfg(windows)]
            $crate::__private::inventory::submit! {
                $crate::__private::EntryDef {
                    name: || $crate::__private::entry_id(&$f),
                    sig: || $crate::__private::signature_of(&$f),
                    run: |input| $crate::__private::run_entry($f, input),
                    run_batch: |input, out, fails| {
                        $crate::__private::run_batch($f, input, out, fails)
                    },
                }
            }
        )+
    };
}

/// Runs [`init`] before `main`, for test binaries (which have no `main` of
/// their own) and for programs that prefer it.
///
/// Put it once at the top level of each test crate (each file in `tests/`)
/// that spawns workers:
///
/// ```
/// multiproc::test_support!();
/// # fn main() {}
/// ```
///
/// It places a constructor in `.init_array` (Linux, Android, FreeBSD),
/// `__mod_init_func` (macOS) or `.CRT$XCY` (Windows, after the `.CRT$XCU`
/// constructors that register entries there), which the C runtime calls
/// before `main`; in a worker process it runs the requested entry and
/// exits, so the test harness never starts there. On other targets it
/// places nothing and `init` does not run: call [`init`] yourself there.
#[macro_export]
macro_rules! test_support {
    () => {
        const _: () = {
            extern "C" fn __multiproc_init() {
                $crate::init();
            }
            #[used]
            #[cfg_attr(
                any(target_os = "linux", target_os = "android", target_os = "freebsd"),
                unsafe(link_section = ".init_array")
            )]
            #[cfg_attr(
                target_vendor = "apple",
                unsafe(link_section = "__DATA,__mod_init_func")
            )]
            #[cfg_attr(windows, unsafe(link_section = ".CRT$XCY"))]
            static __MULTIPROC_INIT: extern "C" fn() = __multiproc_init;
        };
    };
}

/// Entry points for the fuzz targets in `fuzz/`: every decoder that reads
/// bytes from another process. A test hook: only with the `test-hooks`
/// feature, and not part of the stable API.
#[cfg(feature = "test-hooks")]
pub mod fuzzing {
    /// The worker's bootstrap decoder over `data` (header first). If
    /// `fix_prefix`, the magic, version and build identity are made valid
    /// first, so the fuzzer reaches the length and entry checks. `Ok` or
    /// the exit code the worker would end with.
    pub fn bootstrap(data: &[u8], fix_prefix: bool) -> Result<(), i32> {
        use crate::codec::header::{offset, LEN};
        let Some((hdr, mut rest)) = data.split_first_chunk::<LEN>() else {
            return Err(crate::exit_code::TRUNCATED);
        };
        let mut hdr = *hdr;
        if fix_prefix {
            let valid = crate::spawn::encode_header("", false, &Default::default(), 0);
            let prefix = offset::MAGIC.start..offset::BUILD.end;
            hdr[prefix.clone()].copy_from_slice(&valid[prefix]);
        }
        crate::spawn::read_bootstrap(&hdr, &mut rest)
            .map(|_| ())
            .map_err(|f| f.0)
    }

    /// The parent's decoder of a worker's replies over `data`, arriving in
    /// two reads split at `split`, with a reply cap of `cap` bytes: whether
    /// a final reply came out (errors are the documented `ReplyError`s).
    pub fn reply(data: &[u8], split: usize, cap: u64) -> bool {
        let mut r = crate::codec::reply::ReplyReader::new(cap);
        let (a, b) = data.split_at(split.min(data.len()));
        let pushed = r.push(a).and_then(|()| match r.is_done() {
            true => Ok(()),
            false => r.push(b),
        });
        r.close();
        pushed.is_ok() && r.finish().is_ok()
    }

    /// The `Connection` wire form's decoder over `data` (postcard), up to
    /// the point where handles would be taken: whether the kind tag and
    /// the tokens fit together.
    pub fn connection_wire(data: &[u8]) -> bool {
        use crate::codec::handles::{check_kind, ConnectionWire};
        postcard::from_bytes::<ConnectionWire>(data)
            .is_ok_and(|w| check_kind(w.kind, w.handles.len()).is_ok())
    }

    /// The shared-memory block wire form's decoder over `data` (postcard),
    /// up to the point where the handle would be taken: whether it is
    /// accepted as a frozen block, and as a writable one.
    pub fn shared_wire(data: &[u8]) -> (bool, bool) {
        use crate::shared::region::RegionWire;
        match postcard::from_bytes::<RegionWire>(data) {
            Ok(w) => (w.check(true).is_ok(), w.check(false).is_ok()),
            Err(_) => (false, false),
        }
    }

    /// The synchronization primitives' decoders over `data` (postcard),
    /// as a worker runs them: tag, handle counts and sizes are checked,
    /// then handles would be taken — outside a worker that fails cleanly,
    /// so nothing reaches the OS. How many decoded (always 0 here).
    pub fn sync_wire(data: &[u8]) -> usize {
        use crate::sync::{
            Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, Value,
        };
        [
            postcard::from_bytes::<Lock>(data).is_ok(),
            postcard::from_bytes::<RLock>(data).is_ok(),
            postcard::from_bytes::<Semaphore>(data).is_ok(),
            postcard::from_bytes::<BoundedSemaphore>(data).is_ok(),
            postcard::from_bytes::<Event>(data).is_ok(),
            postcard::from_bytes::<Condition>(data).is_ok(),
            postcard::from_bytes::<Barrier>(data).is_ok(),
            postcard::from_bytes::<Value<u64>>(data).is_ok(),
            postcard::from_bytes::<Value<[u8; 3]>>(data).is_ok(),
        ]
        .iter()
        .filter(|ok| **ok)
        .count()
    }

    /// A queue's ring over `block` as another process left it (see
    /// `queue::ring::fuzz`; `fix_header` makes its header valid first), and
    /// the `Queue` wire form's decoder over `block` (postcard, up to where
    /// handles would be taken: outside a worker that fails cleanly). How
    /// many items the ring gave, if it was accepted.
    pub fn queue_ring(block: &[u8], fix_header: bool) -> Option<usize> {
        let _ = postcard::from_bytes::<crate::Queue<u64>>(block);
        crate::queue::ring::fuzz(block, fix_header).ok()
    }

    /// The handle block at the front of a message that carries handles
    /// (its count, the values, their length): whether it decoded, and
    /// then that it stayed within `data` and the handle cap.
    pub fn handle_block(data: &[u8]) -> bool {
        match crate::codec::handles::take_block(data) {
            Some((count, values, at)) => {
                assert!(at <= data.len() && at == 8 + 8 * values.len());
                assert!(count <= crate::codec::handles::MAX_HANDLES);
                assert!(values.len() <= crate::codec::handles::MAX_HANDLES);
                true
            }
            None => false,
        }
    }

    /// The pool's message decoders (parent to worker and back).
    pub fn pool_messages(data: &[u8]) -> (bool, bool) {
        crate::pool::decode_messages(data)
    }

    /// Pushes `data` (at most its first 64 KiB, which a socket buffer
    /// holds, so no second thread is needed) through a real pipe into a
    /// [`Connection`](crate::Connection) whose cap is `cap`, and receives
    /// until it fails; returns the number of messages received.
    pub fn frames(data: &[u8], cap: u64) -> usize {
        let data = &data[..data.len().min(64 * 1024)];
        let Ok((a, b)) = crate::Pipe::duplex() else {
            return 0;
        };
        b.set_max_message_len(cap);
        if a.send_unframed(data).is_err() {
            return 0;
        }
        drop(a);
        let mut n = 0;
        while b.recv_bytes().is_ok() {
            n += 1;
        }
        n
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// What the macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::pool::run_batch;
    #[cfg(not(windows))]
    pub use crate::spawn::ENTRIES;
    pub use crate::spawn::{entry_id, run_entry, signature_of, EntryDef};
    #[cfg(windows)]
    pub use inventory;
    #[cfg(not(windows))]
    pub use linkme;
}

/// Hooks for the crate's own tests: forged bootstraps, the build identity,
/// and diagnostics on processes and open handles.
///
/// Only with the `test-hooks` feature (off by default; the crate's
/// dev-dependency on itself turns it on for `cargo test`, as tokio's
/// `test-util`), and not part of the stable API. Other hooks are methods
/// under the same feature: [`PopenBuilder::spawn_with_raw_bootstrap`],
/// [`Connection::send_unframed`], `Pool::wait_busy` and
/// `Pool::kill_worker`; the fuzz targets' entry points are in
/// [`fuzzing`].
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    /// A well-formed bootstrap (header, entry id, payload), for tests that
    /// corrupt it.
    pub fn bootstrap_bytes(entry: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = crate::spawn::encode_header(entry, false, &Default::default(), payload.len());
        v.extend_from_slice(payload);
        v
    }

    /// The same with worker options: `die_with_parent` asks the worker to
    /// arm the parent-death check.
    pub fn bootstrap_bytes_with(entry: &str, payload: &[u8], die_with_parent: bool) -> Vec<u8> {
        let options = crate::spawn::WorkerOptions {
            die_with_parent,
            ..Default::default()
        };
        let mut v = crate::spawn::encode_header(entry, false, &options, payload.len());
        v.extend_from_slice(payload);
        v
    }

    /// The link-time identity of this binary that the build check uses
    /// (see `sys::image_build_id`).
    pub fn image_build_id() -> Option<Vec<u8>> {
        crate::sys::image_build_id()
    }

    /// The entry id of the function item `F`.
    pub fn entry_id<F, A, R>(f: &F) -> &'static str
    where
        F: Fn(A) -> R + Copy + 'static,
    {
        crate::spawn::entry_id(f)
    }

    pub use crate::shared::region::hooks::ForgedBlock;

    /// Runs `f` while holding `queue`'s lock (as a process inside `put`
    /// or `get` holds it).
    pub fn with_queue_locked<T, R>(
        queue: &crate::Queue<T>,
        f: impl FnOnce() -> R,
    ) -> crate::Result<R> {
        queue.core.with_lock_held(f)
    }

    /// Writes `bytes` into `queue`'s ring over the oldest item's record
    /// (its frame first), under the queue's lock, as a process writing
    /// garbage into the shared block would; false if the queue is empty.
    pub fn scribble_over_oldest<T>(queue: &crate::Queue<T>, bytes: &[u8]) -> crate::Result<bool> {
        queue.core.scribble_over_oldest(bytes)
    }

    /// An owned fd (Unix) or handle (Windows).
    pub type OwnedRaw = crate::sys::OwnedRaw;

    /// A copy of a frozen block's handle (to forge a block with).
    pub fn frozen_handle<T>(block: &crate::Frozen<T>) -> std::io::Result<crate::sys::OwnedRaw> {
        crate::shared::region::hooks::handle_of(block.region())
    }

    /// A copy of a raw block's handle (to forge a block with).
    pub fn raw_handle(block: &crate::SharedMemory) -> std::io::Result<crate::sys::OwnedRaw> {
        crate::shared::region::hooks::handle_of(block.region())
    }

    /// A waitable handle on process `pid` (not necessarily our child):
    /// pidfd on Linux, process handle on Windows.
    #[derive(Debug)]
    pub struct PidWatch(crate::sys::OwnedRaw);

    /// Opens a [`PidWatch`] on `pid`; fails if it is already gone.
    pub fn watch_pid(pid: u32) -> std::io::Result<PidWatch> {
        crate::sys::watch_process(pid).map(PidWatch)
    }

    impl PidWatch {
        /// Waits up to `timeout` for the process to exit; true if it did.
        pub fn wait(&self, timeout: std::time::Duration) -> std::io::Result<bool> {
            let h = crate::sys::borrow(&self.0);
            Ok(!crate::sys::wait_any(&[h], Some(timeout))?.is_empty())
        }
    }

    /// Waits up to `timeout` for process `pid` to exit; true if it did.
    pub fn wait_pid_exit(pid: u32, timeout: std::time::Duration) -> std::io::Result<bool> {
        watch_pid(pid)?.wait(timeout)
    }

    /// Diagnostics for the test suites: open fds (Unix) / handles
    /// (Windows), after releasing what lingers by design (Windows: the
    /// kill-on-close jobs of dropped children that have all exited).
    pub fn open_handle_count() -> std::io::Result<usize> {
        crate::sys::settle();
        crate::sys::open_handle_count()
    }

    /// Releases what lingers by design (see [`open_handle_count`]);
    /// returns how many such objects are still held (Windows: kill-on-close
    /// jobs whose processes have not all exited yet). Always 0 on Unix.
    pub fn settle() -> usize {
        crate::sys::settle()
    }

    /// In a pool worker, while it runs a task: the worker's channel to the
    /// parent (to forge frames as a hostile worker would, or to hand it to
    /// a grandchild); `None` elsewhere.
    pub fn pool_worker_connection() -> Option<&'static crate::Connection> {
        crate::pool::worker_connection()
    }

    /// The fds beyond stdio (Unix) / pipe handles beyond the std handles
    /// (Windows) this process has open.
    pub fn open_ipc_handles() -> std::io::Result<Vec<u64>> {
        crate::sys::open_ipc_handles()
    }

    /// Whether this is a Windows program running under Wine (where a few
    /// calls differ from Windows in documented ways a test has to expect);
    /// never on Unix.
    pub fn under_wine() -> bool {
        crate::sys::under_wine()
    }

    /// Makes the read end of a pipe inheritable, as a careless library
    /// might (Unix: clears `FD_CLOEXEC`; Windows: sets
    /// `HANDLE_FLAG_INHERIT`), to check that workers still don't get it.
    pub fn make_inheritable(pipe: std::io::PipeReader) -> std::io::Result<std::io::PipeReader> {
        let h = crate::sys::OwnedRaw::from(pipe);
        crate::sys::set_inheritable(crate::sys::borrow(&h))?;
        Ok(h.into())
    }
}
