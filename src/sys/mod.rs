//! The only code that calls the operating system.
//!
//! `unix.rs` and `windows.rs` export the same names with the same signatures;
//! everything above this module is written once, without `cfg`. The contract
//! both implement:
//!
//! | name | what it is |
//! |---|---|
//! | `OwnedRaw`, `BorrowedRaw<'a>` | `OwnedFd`/`BorrowedFd` or `OwnedHandle`/`BorrowedHandle` |
//! | `TERMINATED` | the [`RawStatus`] that our `terminate()` produces (SIGTERM / exit code `0x10000`) |
//! | `spawn(&SpawnRequest) -> io::Result<(Child, Channel)>` | creates the bootstrap channel, starts the child with it already set up; on error nothing is left behind |
//! | `Child` | `id`, `wait`, `terminate`, `kill`, `transfer_handle`; `Send + Sync`; status recorded only after the OS confirmed the exit |
//! | `Channel` | the parent's end of the bootstrap channel: `send_bootstrap`, `read`, `write` |
//! | `HandleTransfer` | handles made available to the child while it is spawned (`duplicate_for_child`) |
//! | `open_bootstrap(BootToken) -> io::Result<ChildChannel>` | the child's side: takes its end of the channel |
//! | `ChildChannel` | `recv_header`, `read`, `write`, `take_handle` |
//! | `open_handle_count()`, `open_ipc_handles()` | diagnostics for leak and isolation tests (feature `test-hooks`, as `watch_process` and `settle`) |
//!
//! Exact signatures (both modules):
//!
//! ```text
//! pub(crate) type OwnedRaw; pub(crate) type BorrowedRaw<'a>;
//! pub(crate) const TERMINATED: RawStatus;
//! pub(crate) fn spawn(req: &SpawnRequest<'_>) -> io::Result<(Child, Channel)>;
//! impl Child {
//!     pub(crate) fn id(&self) -> u32;
//!     // None on timeout; Some only once the OS confirmed the exit; cached.
//!     pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<RawStatus>>;
//!     pub(crate) fn terminate(&self) -> io::Result<()>; // Ok if already exited
//!     pub(crate) fn kill(&self) -> io::Result<()>;      // Ok if already exited
//!     pub(crate) fn release_bootstrap_peer(&self);      // Windows: drop the parent's copy of the child's end
//!     // The child and everything it started (Unix: its process group,
//!     // Windows: its job object). Ok if already exited.
//!     pub(crate) fn terminate_tree(&self) -> io::Result<()>;
//!     pub(crate) fn kill_tree(&self) -> io::Result<()>;
//!     // Something that becomes ready when the process exits (pidfd /
//!     // process handle); None where the OS has no such thing.
//!     pub(crate) fn sentinel(&self) -> Option<BorrowedRaw<'_>>;
//! }
//! // Unix: have a child that others still hold reaped once it exits (a
//! // dropped daemon); never fails or blocks. Windows: nothing to do.
//! pub(crate) fn reap_in_background(child: &Arc<Child>);
//! pub(crate) struct HandleTransfer;   // Default
//! impl HandleTransfer {
//!     // Returns the token the child passes to ChildChannel::take_handle.
//!     pub(crate) fn add(&mut self, child: &Child, h: BorrowedRaw<'_>) -> io::Result<u64>;
//! }
//! impl Channel {
//!     // Writes all of `data` (and the handles) unless the child exits first:
//!     // then an error of kind BrokenPipe. Never hangs on a dead child.
//!     pub(crate) fn send_bootstrap(&self, child: &Child, data: &[u8], t: HandleTransfer) -> io::Result<()>;
//!     pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize>;
//!     // Reads what is there, waiting at most `timeout`: None on timeout,
//!     // Some(0) at EOF or once `child` exited with nothing left to read.
//!     pub(crate) fn read_timeout(&self, child: Option<&Child>, buf: &mut [u8],
//!                                timeout: Option<Duration>) -> io::Result<Option<usize>>;
//!     // Blocks for data, appends at most `max` bytes to v (no zero-fill); 0 = EOF.
//!     pub(crate) fn read_append(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize>;
//!     // The same (from the bulk lane with `bulk`), also 0 once `peer` exited
//!     // with nothing left to read, whoever else holds its end (pidfd /
//!     // process handle; without a pidfd, the plain read). `nonblocking`:
//!     // set_nonblocking_reads succeeded, so data already there needs no poll.
//!     pub(crate) fn read_append_watch(&self, bulk: bool, v: &mut Vec<u8>, max: usize,
//!                                     peer: &Child, nonblocking: bool) -> io::Result<usize>;
//!     // Unix: O_NONBLOCK on this end's pipe (an end no other process holds);
//!     // Windows: nothing (false). True if done.
//!     pub(crate) fn set_nonblocking_reads(&self) -> bool;
//!     // A passed Connection end, from its handles in their roles.
//!     pub(crate) fn from_passed(parts: ChannelParts<OwnedRaw>) -> io::Result<Channel>;
//!     pub(crate) fn pass_handles(&self) -> ChannelParts<BorrowedRaw<'_>>;
//!     // A second lane for big message bodies (Unix: a socket next to the
//!     // pipes); Windows has none.
//!     pub(crate) fn has_bulk(&self) -> bool;
//!     pub(crate) fn write_bulk(&self, buf: &[u8]) -> io::Result<usize>;
//!     pub(crate) fn read_bulk_append(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize>;
//!     pub(crate) fn as_raw(&self) -> BorrowedRaw<'_>;
//! }
//! // Child side: redirect stdout (1) / stderr (2) to a passed handle.
//! pub(crate) fn set_std_handle(which: u8, h: OwnedRaw) -> io::Result<()>;  (in mod.rs)
//! // A connected pair for Pipe: duplex, or (reader, writer).
//! pub(crate) fn pipe(duplex: bool) -> io::Result<(Channel, Channel)>;
//! // Child side, after the bootstrap: arrange to die with the parent
//! // (Linux: PR_SET_PDEATHSIG + getppid re-check, an error if the parent
//! // is already gone; elsewhere nothing to do).
//! pub(crate) fn die_with_parent(parent_pid: u32) -> io::Result<()>;
//! // A waitable handle on any process by pid (tests: did a grandchild die?).
//! pub(crate) fn watch_process(pid: u32) -> io::Result<OwnedRaw>;
//! // Waits until one of `objs` is ready (process exited / data readable).
//! pub(crate) fn wait_any(objs: &[BorrowedRaw<'_>], timeout: Option<Duration>) -> io::Result<Vec<usize>>;
//! pub(crate) fn open_bootstrap(t: BootToken) -> io::Result<ChildChannel>;
//! impl ChildChannel {
//!     // Reads exactly buf.len() bytes; on Unix also receives the transferred fds.
//!     pub(crate) fn recv_header(&mut self, buf: &mut [u8]) -> io::Result<()>;
//!     // On Unix also receives transferred fds (any number, in batches).
//!     pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
//!     pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize>;
//!     // Each token can be taken once; unknown or reused tokens are an error.
//!     pub(crate) fn take_handle(&mut self, token: u64) -> io::Result<OwnedRaw>;
//! }
//! // The command line, also in a constructor before `main` (musl).
//! pub(crate) fn args_os() -> Vec<OsString>;
//! // Releases what is kept only until it is no longer needed (Windows:
//! // kill-on-close jobs of dropped children whose processes all exited,
//! // bootstrap pipe ends of dropped children that took theirs or exited).
//! pub(crate) fn settle() -> usize;  // how many are still kept
//! // Called before a worker exits: waits (bounded) until children dropped
//! // while still starting have taken their end of the bootstrap channel
//! // (Windows); nothing on Unix.
//! pub(crate) fn before_exit();      (Unix: in mod.rs)
//! pub(crate) fn open_handle_count() -> io::Result<usize>;
//! // fds >= 3 (Unix) / pipe handles other than the std handles (Windows)
//! pub(crate) fn open_ipc_handles() -> io::Result<Vec<u64>>;
//! ```

use std::ffi::OsString;
use std::path::Path;

#[cfg(unix)]
#[path = "unix.rs"]
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

mod image;
pub(crate) use image::image_build_id;

/// How a process ended, as the OS reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RawStatus {
    /// Exited with this code (Windows: the DWORD exit code, cast to `i32`).
    Exited(i32),
    /// Killed by this signal (Unix only).
    #[cfg_attr(windows, allow(dead_code))]
    Signaled(i32),
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
    /// The program to start.
    pub exe: &'a Path,
    /// `exe` is this process's own executable: start the image that is
    /// running rather than whatever file `exe` names now, where the OS
    /// allows (Linux: `/proc/self/exe`, with `exe` as `argv[0]`), so that a
    /// binary replaced on disk (a package upgrade, `cargo build`) still
    /// starts workers of this build. Ignored elsewhere.
    pub running_image: bool,
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
    /// Unix: start a new process group led by the child (for `kill_tree`).
    /// False inside a worker, so that a top-level `kill_tree` reaches
    /// nested workers too.
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
    /// `main` is a socket (Unix), not a pipe.
    pub main_is_socket: bool,
    /// Unix, a duplex end: the pipe end writes go to.
    pub write: Option<H>,
    /// Unix: the bulk-lane socket.
    pub bulk: Option<H>,
}

/// Borrows an owned handle or fd.
#[cfg(unix)]
pub(crate) fn borrow(h: &OwnedRaw) -> BorrowedRaw<'_> {
    std::os::fd::AsFd::as_fd(h)
}

/// Borrows an owned handle or fd.
#[cfg(windows)]
pub(crate) fn borrow(h: &OwnedRaw) -> BorrowedRaw<'_> {
    std::os::windows::io::AsHandle::as_handle(h)
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

/// Child side: makes `h` this process's stdin (`which == 0`), stdout
/// (`1`) or stderr (`2`), for output captured by the parent or a stream
/// the worker points at the null device itself. Unix: dup2 onto fd 0/1/2.
/// Windows: `SetStdHandle`, which Rust's `std::io::stdout`/`stderr`
/// consult on every write (C runtime streams opened at startup don't
/// follow).
#[cfg(unix)]
pub(crate) fn set_std_handle(which: u8, h: OwnedRaw) -> std::io::Result<()> {
    match which {
        0 => rustix::stdio::dup2_stdin(&h)?,
        1 => rustix::stdio::dup2_stdout(&h)?,
        _ => rustix::stdio::dup2_stderr(&h)?,
    }
    Ok(())
}

/// The null device's path.
pub(crate) fn null_device() -> &'static Path {
    Path::new(if cfg!(windows) { "NUL" } else { "/dev/null" })
}

/// Which of stdin, stdout and stderr a worker started with `stdio` must
/// point at the null device itself, after its bootstrap.
///
/// Unix: none, `posix_spawn` opened `/dev/null` for each. Windows: the
/// streams that are `Null` when the others are not: a child started
/// without inheritance gets either all of the parent's standard handles
/// or (`DETACHED_PROCESS`, all three `Null`) none (see
/// `windows::creation_flags`). Output written before the worker's
/// bootstrap is through (by code that runs before `main`) still reaches
/// the parent's stream there.
pub(crate) fn worker_nulls(stdio: [StdioMode; 3]) -> [bool; 3] {
    if cfg!(unix) || stdio == [StdioMode::Null; 3] {
        return [false; 3];
    }
    stdio.map(|m| m == StdioMode::Null)
}

/// Before this process exits: nothing to wait for on Unix (the child's end
/// of the bootstrap channel is in the child from the start).
#[cfg(unix)]
pub(crate) fn before_exit() {}
