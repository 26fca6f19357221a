//! pidfds (Linux): a handle on a child that cannot be confused with a reused
//! pid, to wait on, poll and signal.

use std::os::fd::{BorrowedFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(target_os = "linux")]
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

#[cfg(target_os = "linux")]
pub(super) fn open_pidfd(pid: Pid) -> Option<OwnedFd> {
    /// Set once `pidfd_open` said ENOSYS (Linux < 5.3).
    static NO_PIDFD: AtomicBool = AtomicBool::new(false);
    if NO_PIDFD.load(Ordering::Relaxed) {
        return None;
    }
    // The child is ours and not yet reaped, so `pid` cannot name anyone
    // else here.
    match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::NOSYS) => {
            NO_PIDFD.store(true, Ordering::Relaxed);
            None
        }
        Err(_) => None,
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn open_pidfd(_pid: Pid) -> Option<OwnedFd> {
    None
}

#[cfg(target_os = "linux")]
pub(super) fn pidfd_signal(fd: BorrowedFd<'_>, _pid: Pid, sig: Signal) -> rustix::io::Result<()> {
    rustix::process::pidfd_send_signal(fd, sig)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn pidfd_signal(_fd: BorrowedFd<'_>, pid: Pid, sig: Signal) -> rustix::io::Result<()> {
    rustix::process::kill_process(pid, sig)
}
