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
//! several connections and processes at once. [`Listener`] and [`Client`]
//! connect processes that did not start each other, over TCP (or a
//! Unix-domain socket on Unix, a named pipe on Windows), after an
//! authentication handshake with a shared key; they give the same
//! `Connection`s.
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
#![doc = include_str!("../docs/sharing.md")]
//!
#![doc = include_str!("../docs/queues.md")]
//!
#![doc = include_str!("../docs/async.md")]
//!
#![doc = include_str!("../docs/cluster.md")]
//!
#![doc = include_str!("../docs/control.md")]
//!
#![doc = include_str!("../docs/ending.md")]
#![deny(unsafe_code)]

mod codec;
mod connection;
mod deadline;
mod encode;
mod error;
pub mod exit_code;
mod net;

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
pub use net::{Address, Client, Listener, ToAddress};
#[cfg(feature = "progress")]
pub use pool::Progress;
pub use pool::{AsyncResult, Imap, ImapStream, Launcher, Pool, PoolBuilder, PoolStats, Task};
pub use popen::{
    executable, reset_executable, set_executable, ChildOutput, Popen, PopenBuilder, Sentinel, Stdio,
};
pub use process::{Process, ProcessBuilder, ProcessJoin};
pub use queue::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};
pub use shared::{Frozen, Pages, Shared, SharedAtomic, SharedMemory, SharedMut};
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
                assert!(values.len() <= crate::sys::MAX_BLOCK_VALUES);
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

    /// The authentication handshake with the key `b"key"`, the peer's
    /// bytes being `data` (then end of file): the listener's side if
    /// `listener`, else the client's. Whether it passed (a failure must be
    /// an authentication error, never a panic, a hang or a big
    /// allocation).
    pub fn handshake(data: &[u8], listener: bool) -> bool {
        crate::net::auth::fuzz(data, listener)
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
    pub use crate::sys::{collapse_outcome, set_memory_available};

    /// How many message transfers (one for a `Connection` message or a
    /// `submit`, one for each chunk of an `imap`/`map`) this thread opened
    /// so far: tasks without handles must not cost one each.
    pub fn handle_transfers_opened() -> u64 {
        crate::codec::handles::hooks::transfers_opened()
    }

    /// How many pool tasks run on this thread opened a window onto their
    /// chunk's handles so far: in a worker, tasks of chunks without
    /// handles open none.
    pub fn task_windows_opened() -> u64 {
        crate::codec::handles::hooks::windows_opened()
    }

    /// This process's resident memory in bytes, as a pool worker measures
    /// it for `max_memory_per_child` (an error where it can't).
    pub fn resident_memory() -> std::io::Result<u64> {
        crate::sys::resident_memory()
    }

    /// Runs `f` while holding `queue`'s lock (as a process inside `put`
    /// or `get` holds it).
    pub fn with_queue_locked<T, R>(
        queue: &crate::Queue<T>,
        f: impl FnOnce() -> R,
    ) -> crate::Result<R> {
        queue.core.with_lock_held(f)
    }

    /// `queue.get()`, with `note` called on the item while it is still
    /// in the queue (under the queue's lock, before the commit that takes
    /// it): a process killed after `note` and before `get` returned
    /// either took the item or left it in the queue.
    pub fn get_noting<T: serde::Serialize + serde::de::DeserializeOwned>(
        queue: &crate::Queue<T>,
        note: impl FnMut(&T),
    ) -> crate::Result<T> {
        queue.get_noting(note)
    }

    pub use crate::queue::LargeStop;

    /// From now on, a large item's `put` or `get` in this process calls
    /// `f` at `point` (under the queue's lock; see [`LargeStop`]): a
    /// test's `f` says so and blocks until the process is killed there.
    /// Replaces what an earlier call set.
    pub fn stop_large_at(point: LargeStop, f: impl Fn() + Send + Sync + 'static) {
        crate::queue::large_hooks::stop_at(point, std::sync::Arc::new(f));
    }

    /// How many blocks of items larger than the ring `queue`'s lane holds
    /// now, under the queue's lock: one per such item in the queue, plus
    /// what processes killed inside a large `put` or `get` left (module
    /// docs of `queue`). Linux: the datagrams in its socket (received
    /// and sent back, in order); Windows: the slots taken in the lane's
    /// table; other Unixes (no lane): 0.
    pub fn queue_lane_blocks<T>(queue: &crate::Queue<T>) -> crate::Result<std::io::Result<usize>> {
        queue.core.lane_blocks()
    }

    /// The pid of the process that keeps `queue`'s large items on Windows
    /// (its lane keeper, `src/sys/windows/keeper.rs`), if one is alive;
    /// an error of kind `Unsupported` elsewhere (no keeper).
    pub fn queue_keeper_pid<T>(
        queue: &crate::Queue<T>,
    ) -> crate::Result<std::io::Result<Option<u32>>> {
        queue.core.lane_keeper_pid()
    }

    /// Sleeps on `lock`, held by another process, as a blocked `acquire`
    /// does, and returns once woken by its release, *without* taking it:
    /// what a waiter killed right after its wakeup leaves behind. `true`:
    /// woken; `false`: the lock was free. Linux with glibc only (an error
    /// of kind `Unsupported` elsewhere).
    pub fn swallow_a_lock_wakeup(lock: &crate::Lock) -> std::io::Result<bool> {
        lock.swallow_a_wakeup()
    }

    /// From now on in this process, the wait of a launcher's launch whose
    /// first token is `token` (a pool's launches count from 1) begins only
    /// once that worker's hello was read by another launch's wait (or
    /// after 60 s): the moment between a launch's command starting and its
    /// wait beginning, made long.
    pub fn hold_launch_wait_until_hello(token: u64) {
        crate::pool::launcher_hooks::hold_wait_until_hello(token);
    }

    /// Whether a launch's wait read the hello of a worker of `token`.
    pub fn launch_hello_was_read(token: u64) -> bool {
        crate::pool::launcher_hooks::hello_was_read(token)
    }

    /// How many records this process's last `get` under `queue`'s lock
    /// copied out and its later `get`s have not taken yet: still in the
    /// queue, for any consumer, until one takes them.
    pub fn queue_copied<T>(queue: &crate::Queue<T>) -> usize {
        queue.core.copied_len()
    }

    /// From now on in this process (`true`) or no longer (`false`), a
    /// [`Listener`](crate::Listener)'s handshake thread holds each
    /// connection whose handshake it finished until this is `false`,
    /// before handing it to `accept`: the moment between a peer finishing
    /// its side of the handshake and the listener's having it, made long.
    pub fn hold_listener_handovers(on: bool) {
        crate::net::listener_hooks::hold_handovers(on);
    }

    /// How many times, in this process, a launch's wait saw its launcher
    /// command exited before all its workers had connected back.
    pub fn launch_exits_seen() -> usize {
        crate::pool::launcher_hooks::exits_seen()
    }

    /// The consumers and the producers asleep in `queue` now, as its
    /// header counts them.
    pub fn queue_sleepers<T>(queue: &crate::Queue<T>) -> crate::Result<(u32, u32)> {
        queue.core.sleepers()
    }

    /// Whether a blocked `put`/`get` in this process looks at the queue
    /// again every `RECHECK` (100 ms) even without a wakeup (the default:
    /// on). Off, a lost wakeup hangs the sleeper instead of costing
    /// 100 ms, which a test can see.
    pub fn set_queue_recheck(on: bool) {
        crate::queue::NO_RECHECK.store(!on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes `bytes` into `queue`'s ring over the oldest item's record
    /// (its frame first), under the queue's lock, as a process writing
    /// garbage into the shared block would; false if the queue is empty.
    pub fn scribble_over_oldest<T>(queue: &crate::Queue<T>, bytes: &[u8]) -> crate::Result<bool> {
        queue.core.scribble_over_oldest(bytes)
    }

    /// An owned fd (Unix) or handle (Windows).
    pub type OwnedRaw = crate::sys::OwnedRaw;

    /// Why the last shared block this thread created that could have been
    /// made of huge pages (a `SharedMut`, `Shared` or `SharedMemory` of at
    /// least 2 MiB, on Linux) is of base pages: the error of the first
    /// step that failed (`ENOMEM` when the pool of huge pages had too few
    /// free ones to reserve). `None` if it got huge pages, or if no such
    /// block was created since the last call (each call takes the note).
    /// Always `None` on other systems.
    pub fn huge_page_refusal() -> Option<std::io::Error> {
        crate::sys::huge_page_refusal()
    }

    /// Whether the shared blocks this thread creates from now on may be
    /// made of huge pages where the system has them free (the default:
    /// yes); `false`: base pages, as where it has none. For the bench,
    /// which compares both in one run.
    pub fn set_huge_pages(allowed: bool) {
        crate::sys::set_huge_pages(allowed)
    }

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

    /// In a pool worker's task, as a hostile or broken worker would: sends
    /// an answer for the running chunk whose first result is a
    /// [`PassedHandle`](crate::PassedHandle) said to carry `claimed`
    /// handles, with `handles` really sent along, or (non-empty `values`)
    /// a handle block naming those values and nothing sent. The worker's
    /// own answer for the chunk comes later and is ignored.
    pub fn forge_pool_answer(
        claimed: u32,
        handles: Vec<OwnedRaw>,
        values: &[u64],
    ) -> crate::Result<()> {
        crate::pool::forge_answer(claimed, handles, values)
    }

    /// The fds beyond stdio (Unix) / pipe handles beyond the std handles
    /// (Windows) this process has open.
    pub fn open_ipc_handles() -> std::io::Result<Vec<u64>> {
        crate::sys::open_ipc_handles()
    }

    /// How many threads this process has (Linux: `/proc/self/status`;
    /// Windows: a Toolhelp snapshot; other Unixes: `Unsupported`).
    pub fn thread_count() -> std::io::Result<usize> {
        crate::sys::thread_count()
    }

    /// This process's id and, on Windows, its creation time (a `FILETIME`
    /// as a `u64`; 0 on Unix): how a message whose handles its sender
    /// holds names that sender (see "Handles in messages" on
    /// [`Connection`](crate::Connection)), for tests that forge one.
    pub fn process_identity() -> std::io::Result<(u32, u64)> {
        crate::sys::process_identity()
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
