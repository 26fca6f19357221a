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
//! | `open_handle_count()`, `open_ipc_handles()` | diagnostics for leak and isolation tests |
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
//! }
//! pub(crate) struct HandleTransfer;   // Default
//! impl HandleTransfer {
//!     // Returns the token the child passes to ChildChannel::take_handle.
//!     pub(crate) fn add(&mut self, child: &Child, h: BorrowedRaw<'_>) -> io::Result<u64>;
//! }
//! impl Channel {
//!     // Writes all of `data` (and the handles) unless the child exits first:
//!     // then an error of kind BrokenPipe. Never hangs on a dead child.
//!     pub(crate) fn send_bootstrap(&self, child: &Child, data: &[u8], t: HandleTransfer) -> io::Result<()>;
//!     pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
//!     pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize>;
//! }
//! pub(crate) fn open_bootstrap(t: BootToken) -> io::Result<ChildChannel>;
//! impl ChildChannel {
//!     // Reads exactly buf.len() bytes; on Unix also receives the transferred fds.
//!     pub(crate) fn recv_header(&mut self, buf: &mut [u8]) -> io::Result<()>;
//!     pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
//!     pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize>;
//!     // Each token can be taken once; unknown or reused tokens are an error.
//!     pub(crate) fn take_handle(&mut self, token: u64) -> io::Result<OwnedRaw>;
//! }
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
#[path = "windows.rs"]
mod imp;

pub(crate) use imp::*;

/// How a process ended, as the OS reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RawStatus {
    /// Exited with this code (Windows: the DWORD exit code, cast to `i32`).
    Exited(i32),
    /// Killed by this signal (Unix only).
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
    /// Builds the arguments after the program name from the token.
    pub args: &'a dyn Fn(BootToken) -> Vec<OsString>,
    /// stdin, stdout, stderr.
    pub stdio: [StdioMode; 3],
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
