//! The only code that calls the operating system.
//!
//! `unix/` and `windows/` export the same names with the same signatures;
//! everything above this module is written once, without `cfg`. This file
//! is the platform switch, the types both share, and the contract both
//! implement, written as code: each `const _` below names one function or
//! method the layers above use, with its signature, so that a platform
//! that drifts from it does not compile. What each one promises is
//! written next to it.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(unix)]
#[path = "unix/mod.rs"]
mod imp;
#[cfg(windows)]
#[path = "windows/mod.rs"]
mod imp;
// The Windows command-line quoting is plain code over UTF-16: its unit
// tests run on every platform.
#[cfg(all(test, not(windows)))]
#[path = "windows/args.rs"]
mod windows_args;

pub(crate) use imp::*;
#[cfg(feature = "test-hooks")]
pub use imp::{collapse_outcome, set_memory_available};

mod image;
pub(crate) use image::image_build_id;
mod shm;
pub(crate) use shm::{Shm, ShmAtomic};
mod guarded;
pub(crate) use guarded::{Guarded, GuardedBytes};
mod command;
pub(crate) use command::{hostname, spawn_command, CommandChild};
mod fs;
pub(crate) use fs::create_private;
mod net;
pub(crate) use net::{
    connect_local, connect_pipe, connect_tcp, listen_local, listen_pipe, listen_tcp, local_default,
    resolve, resolve_host, LocalDefault, NetListener, NetStopper, NetStream,
};

// ---------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------

/// An owned fd or handle (`OwnedFd` / `OwnedHandle`) and its borrowed form.
const _: fn(&OwnedRaw) -> BorrowedRaw<'_> = borrow;
/// The status our `terminate()` produces (SIGTERM / exit code `0x10000`).
const _: RawStatus = TERMINATED;

/// Creates the bootstrap channel and starts the child with its end already
/// set up; on error nothing is left behind.
const _: fn(&SpawnRequest<'_>) -> io::Result<(Child, Channel)> = spawn;

// `RunningImage`: this process's own executable, taken note of at `init`
// (before a replacement can happen), so that later spawns of it start the
// image that is running or fail with [`image_gone`]'s error. Linux: nothing
// is kept (spawns start `/proc/self/exe`); Windows: the file is kept open,
// sharing everything, to find it again after a rename; other Unix: its
// device and inode.
const _: fn() -> io::Result<RunningImage> = RunningImage::open;
/// The path this process was started from.
const _: fn(&RunningImage) -> &Path = RunningImage::path;

// `Child`: a started process; the status is recorded only after the OS
// confirmed the exit.
const _: fn(&Child) -> u32 = Child::id;
/// `None` on timeout; `Some` only once the OS confirmed the exit; cached.
const _: fn(&Child, Option<Duration>) -> io::Result<Option<RawStatus>> = Child::wait;
/// `Ok` if the process already exited.
const _: fn(&Child) -> io::Result<()> = Child::terminate;
/// `Ok` if the process already exited.
const _: fn(&Child) -> io::Result<()> = Child::kill;
/// The child and everything it started (Unix: its process group; Windows:
/// its job object). `Ok` if already exited.
const _: fn(&Child) -> io::Result<()> = Child::terminate_tree;
/// As `terminate_tree`, with SIGKILL / `TerminateJobObject`.
const _: fn(&Child) -> io::Result<()> = Child::kill_tree;
/// Windows: drops the parent's copy of the child's end of the bootstrap
/// pipe. Unix: nothing.
const _: fn(&Child) = Child::release_bootstrap_peer;
/// Something that becomes ready when the process exits (pidfd / process
/// handle); `None` where the OS has no such thing.
const _: fn(&Child) -> Option<BorrowedRaw<'_>> = Child::sentinel;
/// Unix: have a child that others still hold reaped once it exits (a
/// dropped daemon); never fails or blocks. Windows: nothing to do.
const _: fn(&Arc<Child>) = reap_in_background;

/// Handles made available to the child while it is spawned; returns the
/// token the child passes to `ChildChannel::take_handle`.
const _: fn(&mut HandleTransfer, &Child, BorrowedRaw<'_>) -> io::Result<u64> = HandleTransfer::add;
const _: fn() -> HandleTransfer = HandleTransfer::default;

// `Channel`: the parent's end of the bootstrap channel, or an end of a
// `pipe`.
/// Writes all of `data` (and the handles) unless the child exits first:
/// then an error of kind `BrokenPipe`. Never hangs on a dead child.
const _: fn(&Channel, &Child, &[u8], HandleTransfer) -> io::Result<()> = Channel::send_bootstrap;
const _: fn(&Channel, &[u8]) -> io::Result<usize> = Channel::write;
/// Reads what is there, waiting at most the timeout: `None` on timeout,
/// `Some(0)` at EOF or once the child exited with nothing left to read.
#[allow(clippy::type_complexity)] // the signature, spelled out
const _: fn(&Channel, Option<&Child>, &mut [u8], Option<Duration>) -> io::Result<Option<usize>> =
    Channel::read_timeout;
/// Blocks for data, appends at most `max` bytes to `v` (no zero-fill);
/// 0 at EOF.
const _: fn(&Channel, &mut Vec<u8>, usize) -> io::Result<usize> = Channel::read_append;
/// The same (from the bulk lane if asked), also 0 once the peer process
/// whose exit handle is given (its `Child::sentinel`: pidfd / process
/// handle) exited with nothing left to read, whoever else holds its end;
/// without one, the plain read. The last argument: the
/// `set_nonblocking_reads` result, so data already there needs no poll.
#[allow(clippy::type_complexity)] // the signature, spelled out
const _: fn(
    &Channel,
    bool,
    &mut Vec<u8>,
    usize,
    Option<BorrowedRaw<'_>>,
    bool,
) -> io::Result<usize> = Channel::read_append_watch;
/// Unix: `O_NONBLOCK` on this end's pipe (an end no other process holds);
/// Windows: nothing (false). True if done.
const _: fn(&Channel) -> bool = Channel::set_nonblocking_reads;
/// A passed `Connection` end, rebuilt from its handles in their roles.
const _: fn(ChannelParts<OwnedRaw>) -> io::Result<Channel> = Channel::from_passed;
/// An error for an end that can't be passed (Windows: a socket).
const _: fn(&Channel) -> io::Result<ChannelParts<BorrowedRaw<'_>>> = Channel::pass_handles;
/// A connected TCP socket as a channel end (`net.rs` makes them): no
/// bulk lane, and no peer process to watch.
const _: fn(std::net::TcpStream) -> io::Result<Channel> = Channel::from_tcp;
/// Shuts a socket end down both ways (`shutdown(SHUT_RDWR)` /
/// `shutdown(SD_BOTH)`): this process's reads of it see end of file, the
/// peer's reads too (whoever else holds a copy of the socket), and writes
/// fail. `Ok` when the connection is gone already; `Unsupported` on a pipe.
const _: fn(&Channel) -> io::Result<()> = Channel::shutdown;
/// A second lane for big message bodies (Unix: a socket next to the
/// pipes); Windows has none.
const _: fn(&Channel) -> bool = Channel::has_bulk;
/// Handles inside a message, for the frame written next (the caller holds
/// the send lock until it is written): Unix sends copies as `SCM_RIGHTS`
/// on the bulk lane (returns no values; `Peer` is not used); Windows
/// returns the values the frame carries, by [`Peer`]: to a `Child`, the
/// handles duplicated into it; to the `Parent`, copies left in this
/// process for it to take; to an `Unknown` peer, copies held in this
/// process for whoever receives, named by this process's id and start
/// time (CPython's `DupHandle`); a socket refuses.
/// On an error nothing was sent and nothing is left behind, except where
/// [`Channel::handles_out_of_step`] says otherwise.
#[allow(clippy::type_complexity)] // the signature, spelled out
const _: fn(&Channel, &[BorrowedRaw<'_>], Peer<'_>) -> io::Result<Vec<u64>> = Channel::send_handles;
/// True once a `send_handles` failed after part of what it sends went
/// out (Unix: a record cut short on the bulk lane): the stream is out of
/// step for good, and the layer above poisons the end.
const _: fn(&Channel) -> bool = Channel::handles_out_of_step;
/// Right after the header of a frame that says it carries handles: Unix
/// takes what `send_handles` sent (without waiting: it was sent before the
/// frame; an error, all closed, if it is not there or wrong); Windows:
/// nothing.
const _: fn(&Channel) -> io::Result<Vec<OwnedRaw>> = Channel::recv_handles;
/// Checks what came against the frame's block (`count` handles, `values`),
/// and gives the handles, owned. Windows, by [`Peer`]: from a `Child`,
/// takes each value out of it (`DUPLICATE_CLOSE_SOURCE`); from the
/// `Parent`, wraps the values it put into this process; from an
/// `Unknown` peer, refuses; a held block (named by the sending process)
/// is taken out of that process whatever the peer; a socket refuses.
#[allow(clippy::type_complexity)] // the signature, spelled out
const _: fn(&Channel, Vec<OwnedRaw>, usize, &[u64], Peer<'_>) -> io::Result<Vec<OwnedRaw>> =
    Channel::adopt_handles;
/// The frame that was to carry `values` (from `send_handles`, same peer)
/// could not be written whole: Windows closes what `send_handles` made
/// (in the child, or here); Unix marks the lane out of step (its record
/// went without the frame).
const _: fn(&Channel, &[u64], Peer<'_>) = Channel::unsend_handles;
/// The most handles one message carries.
const _: usize = MAX_MESSAGE_HANDLES;
/// The most values a message's handle block names (Windows: a held
/// block's three more).
const _: usize = MAX_BLOCK_VALUES;
/// A copy of a handle, owned by this process, not inherited by children.
const _: fn(BorrowedRaw<'_>) -> io::Result<OwnedRaw> = duplicate;
const _: fn(&Channel, &[u8]) -> io::Result<usize> = Channel::write_bulk;
const _: fn(&Channel, &mut Vec<u8>, usize) -> io::Result<usize> = Channel::read_bulk_append;
/// What `wait_any` waits on for this end; `None` where there is nothing
/// (a socket on Windows: poll it with `read_timeout`).
const _: fn(&Channel) -> Option<BorrowedRaw<'_>> = Channel::as_raw;
/// A connected pair for `Pipe`: duplex, or (reader, writer).
const _: fn(bool) -> io::Result<(Channel, Channel)> = pipe;
/// Waits until one of the objects is ready (process exited / data
/// readable); the indexes of those that are.
const _: fn(&[BorrowedRaw<'_>], Option<Duration>) -> io::Result<Vec<usize>> = wait_any;

/// `Child` and `Channel` are shared between threads by the layers above.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Child>();
    assert_send_sync::<Channel>();
};

// Shared memory (`shm.rs` on each side; its module docs say what each OS
// guarantees).
/// An anonymous block of `len` bytes (at least 1), zeroed, freed by the
/// OS when the last handle and mapping are gone; Linux: sealed against
/// resizing, and made of huge pages if `pages` allows it and the system
/// has enough free (else of base pages: never an error for that).
const _: fn(usize, ShmPages) -> io::Result<OwnedRaw> = shm_create;
/// Test hooks: why this thread's last block that could have been of huge
/// pages is not (Linux: the first refusal; elsewhere always `None`).
#[cfg(feature = "test-hooks")]
const _: fn() -> Option<io::Error> = huge_page_refusal;
/// Test hooks: whether this thread's new blocks may be of huge pages.
#[cfg(feature = "test-hooks")]
const _: fn(bool) = set_huge_pages;
/// Test hooks: how this thread's last block's transparent huge pages
/// went (Linux; elsewhere always `None`).
#[cfg(feature = "test-hooks")]
const _: fn() -> Option<io::Result<()>> = collapse_outcome;
/// Test hooks: the memory this thread's new blocks see as available.
#[cfg(feature = "test-hooks")]
const _: fn(Option<u64>) = set_memory_available;
/// Checks that the handle is such a block (Linux: a memfd with the
/// resize seals, and the write seal iff `ReadOnly`; Windows: a section,
/// not mappable writable if `ReadOnly`), of `len` bytes (Linux: exactly,
/// or, for a block of huge pages, `len` rounded up to whole huge pages,
/// all of them allocated; elsewhere at least), and maps `len` bytes of it
/// (at least) with `access`.
const _: fn(BorrowedRaw<'_>, usize, ShmAccess) -> io::Result<ShmView> = shm_map;
/// Makes the block read-only for good (Linux: `F_SEAL_WRITE`, which fails
/// while a writable mapping exists; Windows: a read-only handle, the
/// writable one closed; macOS: nothing); the handle to keep.
const _: fn(OwnedRaw) -> io::Result<OwnedRaw> = shm_freeze;
/// The mapping's first byte, page-aligned; unmapped when the view drops.
const _: fn(&ShmView) -> *mut u8 = ShmView::as_ptr;
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ShmView>();
};

// Synchronization objects shared between processes (`sync.rs` on each
// side; its module docs say which OS objects they are). Each is passed as
// `HANDLES` handles plus a word (`parts` / `from_parts`); a received one
// is checked to be of its kind before it is used.
/// A mutex; `true`: recursive. Non-recursive: the holder locking it again
/// gets `WouldDeadlock`. A holder that died is reported as `OwnerDied` to
/// every locker until `mark_consistent`.
const _: fn(bool) -> io::Result<SysMutex> = SysMutex::new;
const _: fn(&SysMutex, Option<Instant>) -> io::Result<LockStatus> = SysMutex::lock;
const _: fn(&SysMutex) -> io::Result<LockStatus> = SysMutex::try_lock;
/// Only by the thread that holds it.
const _: fn(&SysMutex) -> io::Result<()> = SysMutex::unlock;
const _: fn(&SysMutex) = SysMutex::mark_consistent;
const _: fn(&SysMutex) -> (Vec<BorrowedRaw<'_>>, u64) = SysMutex::parts;
const _: fn(Vec<OwnedRaw>, u64, bool) -> io::Result<SysMutex> = SysMutex::from_parts;
const _: usize = SysMutex::HANDLES;
/// A counting semaphore: `new(initial, max)`; `acquire` is false on
/// timeout; `release(n)` is false (nothing released) past the maximum.
const _: fn(u32, u32) -> io::Result<SysSemaphore> = SysSemaphore::new;
const _: fn(&SysSemaphore, Option<Instant>) -> io::Result<bool> = SysSemaphore::acquire;
const _: fn(&SysSemaphore, u32) -> io::Result<bool> = SysSemaphore::release;
/// The count, where the OS tells it.
const _: fn(&SysSemaphore) -> Option<u32> = SysSemaphore::value;
const _: fn(&SysSemaphore) -> (Vec<BorrowedRaw<'_>>, u64) = SysSemaphore::parts;
const _: fn(Vec<OwnedRaw>, u64) -> io::Result<SysSemaphore> = SysSemaphore::from_parts;
const _: usize = SysSemaphore::HANDLES;
/// A manual-reset event; `wait` is false on timeout.
const _: fn() -> io::Result<SysEvent> = SysEvent::new;
const _: fn(&SysEvent) -> io::Result<()> = SysEvent::set;
const _: fn(&SysEvent) -> io::Result<()> = SysEvent::clear;
const _: fn(&SysEvent) -> io::Result<bool> = SysEvent::is_set;
const _: fn(&SysEvent, Option<Instant>) -> io::Result<bool> = SysEvent::wait;
const _: fn(&SysEvent) -> (Vec<BorrowedRaw<'_>>, u64) = SysEvent::parts;
const _: fn(Vec<OwnedRaw>, u64) -> io::Result<SysEvent> = SysEvent::from_parts;
const _: usize = SysEvent::HANDLES;
/// Sleeping until a counter in a shared block moves on: `wait(word, seen,
/// deadline)` returns once `word` no longer holds `seen`, at the deadline,
/// or early (callers look again); `bump(word)` adds one to it and wakes
/// every sleeper (on Windows a sleeper may notice up to 50 ms late, in a
/// rare race). Callers bump one at a time, under a lock.
const _: fn() -> io::Result<SysWaker> = SysWaker::new;
const _: fn(&SysWaker, &AtomicU32, u32, Option<Instant>) -> io::Result<()> = SysWaker::wait;
const _: fn(&SysWaker, &AtomicU32) -> io::Result<()> = SysWaker::bump;
const _: fn(&SysWaker) -> (Vec<BorrowedRaw<'_>>, u64) = SysWaker::parts;
const _: fn(Vec<OwnedRaw>, u64) -> io::Result<SysWaker> = SysWaker::from_parts;
const _: usize = SysWaker::HANDLES;
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SysMutex>();
    assert_send_sync::<SysSemaphore>();
    assert_send_sync::<SysEvent>();
    assert_send_sync::<SysWaker>();
};

// The lane of a queue's large items (`lane.rs` on each side; its module
// docs say how each OS keeps a block that its producer may outlive:
// Unix, fds in flight on a datagram socketpair; Windows, handles pushed
// into a process that holds the queue, named in a table of its own).
/// A new, empty lane.
const _: fn() -> io::Result<SysLane> = SysLane::new;
const _: fn(&SysLane) -> (Vec<BorrowedRaw<'_>>, u64) = SysLane::parts;
/// Checks the handles' kind (Unix: datagram sockets; Windows: a section
/// of the lane table's size).
const _: fn(Vec<OwnedRaw>, u64) -> io::Result<SysLane> = SysLane::from_parts;
const _: usize = SysLane::HANDLES;
/// Whether the lane carries blocks on this OS (not on Unixes whose
/// `MSG_PEEK` makes no fds: there items larger than the ring are refused).
const _: bool = SysLane::ENABLED;
/// Whether a process must join the lane when it creates or receives the
/// queue and leave it when it drops its copy (Windows: the holders that
/// keep blocks; Unix: no).
const _: bool = SysLane::MEMBERSHIP;
/// Counts this copy of the queue in this process (under the queue's lock).
const _: fn(&SysLane) -> io::Result<()> = SysLane::join;
/// Uncounts it (under the queue's lock); the last copy in a process hands
/// on what the process keeps.
const _: fn(&SysLane) = SysLane::leave;
/// Hands a block over with a tag (never blocking): the word the record
/// keeps to find it, `None` if the lane has no room now. Called under the
/// queue's lock, in the order of the records.
/// Windows starts the lane's keeper here, under the queue's lock, whose
/// handles it passes to the keeper (`guarded`'s mutex).
const _: fn(&SysLane, BorrowedRaw<'_>, u64, &Guarded) -> io::Result<Option<u64>> = SysLane::send;
/// A copy of the block sent with (tag, word), left in the lane; `None` if
/// it is not there (and never will be).
const _: fn(&SysLane, u64, u64) -> io::Result<Option<OwnedRaw>> = SysLane::open;
/// Lets go of the block sent with (tag, word), after its item was taken.
const _: fn(&SysLane, u64, u64) = SysLane::taken;
/// Lets go of the blocks no record names (given the (tag, word) of every
/// large record, oldest first): what a process killed inside a large
/// `put` or `get` left. Called under the queue's lock.
const _: fn(&SysLane, &[(u64, u64)]) = SysLane::sweep;
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SysLane>();
};
/// The program a lane keeper runs (Windows; no keeper on Unix): what
/// `init` found (the running image) and what `set_executable` set.
const _: fn(Option<&'static RunningImage>) = lane_keeper_init;
const _: fn(Option<std::path::PathBuf>) = lane_keeper_executable;
/// Runs a lane keeper if this process's first argument asks for one (its
/// exit code); `None` otherwise, and always on Unix.
const _: fn(&std::ffi::OsStr) -> Option<i32> = run_lane_keeper;

// The child's side.
/// Takes the child's end of the bootstrap channel.
const _: fn(BootToken) -> io::Result<ChildChannel> = open_bootstrap;
/// Reads exactly `buf.len()` bytes; on Unix also receives the passed fds.
const _: fn(&mut ChildChannel, &mut [u8]) -> io::Result<()> = ChildChannel::recv_header;
/// On Unix also receives passed fds (any number, in batches).
const _: fn(&ChildChannel, &mut [u8]) -> io::Result<usize> = ChildChannel::read;
const _: fn(&ChildChannel, &[u8]) -> io::Result<usize> = ChildChannel::write;
/// Each token can be taken once; unknown or reused tokens are an error.
const _: fn(&mut ChildChannel, u64) -> io::Result<OwnedRaw> = ChildChannel::take_handle;
/// Makes a handle stdin (0), stdout (1) or stderr (2).
const _: fn(u8, OwnedRaw) -> io::Result<()> = set_std_handle;
/// After the bootstrap: arrange to die with the parent (Linux:
/// `PR_SET_PDEATHSIG` and a `getppid` re-check, an error if the parent is
/// already gone; elsewhere nothing to do).
const _: fn(u32) -> io::Result<()> = die_with_parent;
/// Unix: writes to a closed pipe fail with `EPIPE` instead of killing.
const _: fn() = ignore_sigpipe;
/// The command line, also in a constructor before `main` (musl).
const _: fn() -> Vec<OsString> = args_os;
/// Milliseconds on a cheap, coarse monotonic clock (a queue's copies'
/// age, read at every `get`, where `Instant::now` cost a tenth of it).
const _: fn() -> u64 = coarse_millis;
/// Before a worker exits: waits (bounded) until children dropped while
/// still starting have taken their end of the bootstrap channel
/// (Windows); nothing on Unix.
const _: fn() = before_exit;
/// This process's resident memory in bytes (Linux: `/proc/self/statm`;
/// Windows: the working set; other Unixes: unsupported), for a pool
/// worker's `max_memory_per_child`.
const _: fn() -> io::Result<u64> = resident_memory;

// Diagnostics for the crate's own tests (feature `test-hooks`).
/// A waitable handle on any process by pid (did a grandchild die?).
#[cfg(feature = "test-hooks")]
const _: fn(u32) -> io::Result<OwnedRaw> = watch_process;
/// Releases what is kept only until it is no longer needed (Windows:
/// kill-on-close jobs of dropped children whose processes all exited,
/// bootstrap pipe ends of dropped children that took theirs or exited);
/// how many are still kept.
#[cfg(feature = "test-hooks")]
const _: fn() -> usize = settle;
#[cfg(feature = "test-hooks")]
const _: fn() -> io::Result<usize> = open_handle_count;
/// fds >= 3 (Unix) / pipe handles other than the std handles (Windows).
#[cfg(feature = "test-hooks")]
const _: fn() -> io::Result<Vec<u64>> = open_ipc_handles;
/// Whether this is a Windows program running under Wine (never on Unix).
#[cfg(feature = "test-hooks")]
const _: fn() -> bool = under_wine;
/// Clears `FD_CLOEXEC` (Unix) / sets `HANDLE_FLAG_INHERIT` (Windows).
#[cfg(feature = "test-hooks")]
const _: fn(BorrowedRaw<'_>) -> io::Result<()> = set_inheritable;

// ---------------------------------------------------------------------------
// Shared types and helpers
// ---------------------------------------------------------------------------

/// How a process ended, as the OS reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RawStatus {
    /// Exited with this code (Windows: the DWORD exit code, cast to `i32`).
    Exited(i32),
    /// Killed by this signal (Unix only).
    #[cfg_attr(windows, allow(dead_code))]
    Signaled(i32),
}

/// How a shared-memory block is mapped (`shm_map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShmAccess {
    /// Read and write.
    ReadWrite,
    /// Read only; the block must be frozen (`shm_freeze`).
    ReadOnly,
}

/// Which pages a new shared-memory block may be made of (`shm_create`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShmPages {
    /// The system's base pages (4 KiB): for blocks of the crate's own
    /// state (a queue's ring, a primitive's words), which gain nothing
    /// from huge pages and should not take them from the system's pool.
    Base,
    /// Linux, for a block of at least one huge page: hugetlb pages if
    /// the system has enough free; else a base-page block whose whole
    /// 2 MiB ranges are made transparent huge pages where the kernel and
    /// the memory rule allow (`sys/unix/huge.rs`); else base pages.
    /// Other systems: base pages.
    HugeIfFree,
}

/// The process at the other end of a channel, as handle passing needs to
/// know it (Windows, where a handle can't travel down a pipe; Unix sends
/// fds on the channel itself and does not look at it). With a known peer
/// the parent does every `DuplicateHandle`, both ways — into the child it
/// started for what it sends, out of it (closing the child's copy) for
/// what it receives: only the parent holds a process handle that can't
/// name another process (its own child's, from `CreateProcessW`). With
/// none, the sender holds its handles and names itself, and the receiver
/// takes them (`sys/windows/held.rs`).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(unix, allow(dead_code))]
pub(crate) enum Peer<'a> {
    /// Not known: the sender holds the handles, the receiver takes them
    /// out of it (Windows).
    Unknown,
    /// A child this process started: its process handle
    /// (`PROCESS_DUP_HANDLE`, which `CreateProcessW`'s handle has).
    Child(BorrowedRaw<'a>),
    /// The process that started this one, which holds this process's
    /// handle and does the duplicating.
    Parent,
}

/// What locking a `SysMutex` came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockStatus {
    /// Locked.
    Acquired,
    /// Locked, and a holder died holding it since it was last marked
    /// consistent.
    OwnerDied,
    /// Not locked: the deadline passed (or, for `try_lock`, it is held).
    TimedOut,
    /// Not locked: a non-recursive mutex this thread already holds.
    WouldDeadlock,
}

/// Where a child finds its end of the bootstrap channel; travels on its
/// command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BootToken {
    /// The parent's process id (Windows: the child opens it to duplicate
    /// `handle` out of it).
    pub parent_pid: u32,
    /// Windows: the handle value of the child's end in the *parent*.
    /// Unix: the fd number the channel has in the child.
    pub handle: u64,
}

/// What happens to one of the child's standard streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum StdioMode {
    /// The parent's stream.
    #[default]
    Inherit,
    /// The null device.
    Null,
}

/// Everything `spawn` needs.
pub(crate) struct SpawnRequest<'a> {
    /// The program to start (and its `argv[0]`).
    pub exe: &'a Path,
    /// Set when `exe` is this process's own executable (`image.path()`):
    /// start the image that is running rather than whatever file `exe`
    /// names now, so that a binary replaced on disk (a package upgrade,
    /// `cargo build`) still starts workers of this build, or else fail
    /// with [`image_gone`]'s error. Linux: `/proc/self/exe`; Windows: the
    /// file where it is now, found from the handle kept open since `init`
    /// and checked after the child was created (still suspended); other
    /// Unix: `exe` if its device and inode are still those seen at `init`.
    pub image: Option<&'a RunningImage>,
    /// Builds the arguments after the program name from the token.
    pub args: &'a dyn Fn(BootToken) -> Vec<OsString>,
    /// stdin, stdout, stderr.
    pub stdio: [StdioMode; 3],
    /// The child must die when this process dies, however it dies
    /// (Windows: a job object with KILL_ON_JOB_CLOSE; Linux: spawned from a
    /// thread that lives as long as the process, for PR_SET_PDEATHSIG).
    pub kill_on_parent_death: bool,
    /// The child is daemonic: it must not outlive this process's normal
    /// exit. Unix: nothing to do here (`std::process::exit` runs the C
    /// runtime's exit handlers, where the layer above terminates daemons).
    /// Windows: `std::process::exit` is `ExitProcess`, which skips them, so
    /// the child gets a job with KILL_ON_JOB_CLOSE as for
    /// `kill_on_parent_death` (which also ends it when this process is
    /// killed).
    #[cfg_attr(unix, allow(dead_code))]
    pub daemon: bool,
    /// Unix: start a new process group led by the child (for `kill_tree`,
    /// which fails without one); otherwise the child stays in ours.
    pub new_group: bool,
}

/// The handles that make up a channel end, each in its role: what
/// `Channel::pass_handles` gives and `Channel::from_passed` takes, so
/// that a passed end is rebuilt from what it was, never from a guess at
/// what each handle is (the layer above sends the roles as a kind tag,
/// see `codec::handles`).
#[derive(Debug)]
pub(crate) struct ChannelParts<H> {
    /// The handle reads come from (a write-only end: the one writes go
    /// to); Windows: the named pipe, the only handle.
    pub main: H,
    /// `main` is a socket (Unix), not a pipe; Windows: a `Listener`/`Client`
    /// connection's named pipe. Either way an end that carries no handles.
    pub main_is_socket: bool,
    /// Unix, a duplex end: the pipe end writes go to.
    pub write: Option<H>,
    /// Unix: the bulk-lane socket.
    pub bulk: Option<H>,
}

/// Runs `f` when the process exits normally (C `atexit`: after `main`
/// returns; at `std::process::exit` on Unix, where it calls the C
/// runtime's `exit`, but not on Windows, where it calls `ExitProcess`; not
/// when killed).
pub(crate) fn at_exit(f: extern "C" fn()) -> std::io::Result<()> {
    // SAFETY: `f` is a plain function without captured state; the C runtime
    // calls it once at exit.
    if unsafe { libc::atexit(f) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other("atexit failed"))
    }
}

/// The error a spawn of this process's own executable fails with when
/// the file it was started from is no longer there to start: it was
/// replaced (a new file at its path, and on Windows the old one not to be
/// found either) or removed. `why` says what was seen. The layer above
/// reports it as a spawn error naming the path.
pub(crate) fn image_gone(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "this program's executable was replaced or removed on disk since the program \
             started ({why}), and workers must run the same build as the program: restart \
             the program, or name a worker executable with `multiproc::set_executable`"
        ),
    )
}
