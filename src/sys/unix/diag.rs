//! Diagnostics for the crate's own tests (feature `test-hooks`): open fds,
//! and a pidfd on any process.

use std::io;

#[cfg(target_os = "linux")]
use rustix::process::Pid;

use super::{open_fds, BorrowedRaw, OwnedRaw};

/// The number of open fds.
pub(crate) fn open_handle_count() -> io::Result<usize> {
    Ok(open_fds()?.len())
}

/// This process's id, and 0 for what names its start on Windows (see
/// `sys/windows/held.rs`; nothing on Unix needs it).
pub(crate) fn process_identity() -> io::Result<(u32, u64)> {
    Ok((std::process::id(), 0))
}

/// Never: Wine runs Windows programs.
pub(crate) fn under_wine() -> bool {
    false
}

/// The open fds beyond stdin, stdout and stderr.
pub(crate) fn open_ipc_handles() -> io::Result<Vec<u64>> {
    Ok(open_fds()?.into_iter().filter(|&fd| fd > 2).collect())
}

/// A pidfd for any process (Linux); it becomes readable when it exits.
pub(crate) fn watch_process(pid: u32) -> io::Result<OwnedRaw> {
    #[cfg(target_os = "linux")]
    {
        let pid = Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
        Ok(rustix::process::pidfd_open(
            pid,
            rustix::process::PidfdFlags::empty(),
        )?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The number of threads of this process (Linux: the `Threads:` line of
/// `/proc/self/status`; other Unixes: `Unsupported`).
pub(crate) fn thread_count() -> io::Result<usize> {
    if !cfg!(target_os = "linux") {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// Nothing lingers on Unix (see the Windows version).
pub(crate) fn settle() -> usize {
    0
}

/// Makes `fd` inheritable (clears `FD_CLOEXEC`): a stray fd that a
/// careless library opened, for isolation tests.
pub(crate) fn set_inheritable(fd: BorrowedRaw<'_>) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?)
}
