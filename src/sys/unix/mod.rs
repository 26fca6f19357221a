//! Unix: `posix_spawn` with the bootstrap socket dup2'd to fd 3, pidfds where
//! the kernel has them (Linux ≥ 5.4 for `waitid(P_PIDFD)`), and a reaper
//! thread so that children dropped without `wait` never stay zombies.
//!
//! The bootstrap channel is an `AF_UNIX` stream socketpair rather than a
//! pipe: handles passed with `pass_handle` at spawn travel as `SCM_RIGHTS`
//! after the child exists, exactly as the Windows side duplicates them into
//! the running child. So the child starts with fds 0, 1, 2 and 3 only.
//! Handles in later messages travel the same way on a `Pipe` end's bulk-lane
//! socket (`rights.rs`).

use std::ffi::OsString;
use std::io;
#[cfg(any(not(target_vendor = "apple"), feature = "test-hooks"))]
use std::os::fd::AsRawFd;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::RawStatus;

mod bootstrap;
mod channel;
mod child;
#[cfg(feature = "test-hooks")]
mod diag;
mod exe;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod huge;
mod lane;
mod memory;
mod pidfd;
mod poll;
mod reaper;
mod rights;
mod shm;
mod spawn;
mod sync;

pub(crate) use bootstrap::{die_with_parent, open_bootstrap, set_std_handle, ChildChannel};
pub(crate) use channel::{pipe, Channel};
pub(crate) use child::{before_exit, Child, HandleTransfer};
#[cfg(feature = "test-hooks")]
pub(crate) use diag::{
    open_handle_count, open_ipc_handles, process_identity, set_inheritable, settle, thread_count,
    under_wine, watch_process,
};
pub(crate) use exe::RunningImage;
#[cfg(all(
    feature = "test-hooks",
    any(target_os = "linux", target_os = "android")
))]
pub use huge::hooks::{collapse_outcome, set_memory_available};
#[cfg(all(
    feature = "test-hooks",
    any(target_os = "linux", target_os = "android")
))]
pub(crate) use huge::hooks::{huge_page_refusal, set_huge_pages};
/// Test hooks: no huge pages on other Unixes (`shm.rs`), so never a
/// refusal to report.
#[cfg(all(
    feature = "test-hooks",
    not(any(target_os = "linux", target_os = "android"))
))]
pub(crate) fn huge_page_refusal() -> Option<std::io::Error> {
    None
}
/// Test hooks: nothing to turn off on other Unixes.
#[cfg(all(
    feature = "test-hooks",
    not(any(target_os = "linux", target_os = "android"))
))]
pub(crate) fn set_huge_pages(_: bool) {}
/// How the transparent huge pages of this thread's last block went:
/// always `None` (not tried) on this system, which gives shared memory
/// no huge pages.
#[cfg(all(
    feature = "test-hooks",
    not(any(target_os = "linux", target_os = "android"))
))]
pub fn collapse_outcome() -> Option<std::io::Result<()>> {
    None
}
/// The memory this thread's blocks see as available for the rule of
/// transparent huge pages: nothing to set on this system (no huge pages).
#[cfg(all(
    feature = "test-hooks",
    not(any(target_os = "linux", target_os = "android"))
))]
pub fn set_memory_available(_: Option<u64>) {}
pub(crate) use lane::{lane_keeper_executable, lane_keeper_init, run_lane_keeper, SysLane};
pub(crate) use memory::resident_memory;
pub(crate) use poll::wait_any;
pub(crate) use reaper::reap_in_background;
pub(crate) use rights::{duplicate, MAX_BLOCK_VALUES, MAX_MESSAGE_HANDLES};
pub(crate) use shm::{shm_create, shm_freeze, shm_map, ShmView};
pub(crate) use spawn::spawn;
pub(crate) use sync::{SysEvent, SysMutex, SysSemaphore, SysWaker};
/// An owned OS resource: a file descriptor.
pub(crate) type OwnedRaw = OwnedFd;

/// A borrowed OS resource: a file descriptor.
pub(crate) type BorrowedRaw<'a> = BorrowedFd<'a>;

/// Borrows an owned handle or fd.
pub(crate) fn borrow(h: &OwnedRaw) -> BorrowedRaw<'_> {
    std::os::fd::AsFd::as_fd(h)
}

/// What `terminate()` produces: death by SIGTERM.
pub(crate) const TERMINATED: RawStatus = RawStatus::Signaled(libc::SIGTERM);

/// The fd number the bootstrap socket has in the child.
const CHILD_FD: RawFd = 3;

/// At most this many fds travel in one `SCM_RIGHTS` message (`SCM_MAX_FD`
/// is 253 on Linux, see unix(7)); more go in several messages.
const FDS_PER_MESSAGE: usize = 253;

/// Send without SIGPIPE: MSG_NOSIGNAL where it exists; macOS has no such
/// flag and gets SO_NOSIGPIPE on the socket instead.
#[cfg(not(target_vendor = "apple"))]
const SEND_FLAGS: SendFlags = SendFlags::NOSIGNAL;

#[cfg(target_vendor = "apple")]
const SEND_FLAGS: SendFlags = SendFlags::empty();

/// Received fds are close-on-exec at once where the OS can do that.
#[cfg(not(target_vendor = "apple"))]
const RECV_FLAGS: RecvFlags = RecvFlags::CMSG_CLOEXEC;

#[cfg(target_vendor = "apple")]
const RECV_FLAGS: RecvFlags = RecvFlags::empty();

/// A close-on-exec `AF_UNIX` stream socketpair.
#[cfg(not(target_vendor = "apple"))]
fn stream_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// macOS has no SOCK_CLOEXEC: set it right after. The window doesn't leak
/// into our children, which start with POSIX_SPAWN_CLOEXEC_DEFAULT.
#[cfg(target_vendor = "apple")]
fn stream_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )?;
    for fd in [&a, &b] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        rustix::net::sockopt::set_socket_nosigpipe(fd, true)?;
    }
    Ok((a, b))
}

/// A close-on-exec pipe.
#[cfg(not(target_vendor = "apple"))]
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// macOS has no pipe2: set close-on-exec right after.
#[cfg(target_vendor = "apple")]
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::pipe::pipe()?;
    for fd in [&a, &b] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    Ok((a, b))
}

/// posix_spawn functions return an error number instead of setting errno.
fn cvt_nz(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn retry_intr<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

// Used by `close_inheritable` and the test hooks.
#[cfg(any(not(target_vendor = "apple"), feature = "test-hooks"))]
fn fd_dir() -> &'static str {
    if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    }
}

/// Every open fd of this process (without the one used to list them).
#[cfg(any(not(target_vendor = "apple"), feature = "test-hooks"))]
fn open_fds() -> io::Result<Vec<u64>> {
    let dir = rustix::fs::open(
        fd_dir(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let own = dir.as_raw_fd() as u64;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::new(dir)? {
        let entry = entry?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            if n != own {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// This process's command line, also before `main`, where std has it only
/// with glibc (which passes argv to `.init_array` constructors such as
/// `test_support!`'s); with musl it is empty there, so Linux reads
/// `/proc/self/cmdline` instead.
pub(crate) fn args_os() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    #[cfg(target_os = "linux")]
    if args.is_empty() {
        use std::os::unix::ffi::OsStringExt;
        if let Ok(raw) = std::fs::read("/proc/self/cmdline") {
            let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
            return raw
                .split(|&b| b == 0)
                .map(|a| OsString::from_vec(a.to_vec()))
                .collect();
        }
    }
    args
}

/// Milliseconds on a monotonic clock that is cheap to read and coarse
/// (Linux: `CLOCK_MONOTONIC_COARSE`, the time of the last tick, a read of
/// the vDSO's data with no counter; elsewhere `CLOCK_MONOTONIC`).
pub(crate) fn coarse_millis() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(CLOCK, &mut ts) } != 0 {
        // Can't happen (the clock exists wherever this builds); the end
        // of time, so that nothing that waits on this clock waits long.
        return u64::MAX;
    }
    (ts.tv_sec as u64).saturating_mul(1000) + ts.tv_nsec as u64 / 1_000_000
}

/// Workers ignore SIGPIPE, as std makes every Rust program do before
/// `main` (a worker started by `test_support!` runs before that): writing
/// to a pipe whose reader is gone then fails with EPIPE instead of killing
/// the worker.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no
    // handler code; it is what std does at startup.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
