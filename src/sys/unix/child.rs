//! Parent side: a started child, and handles passed to it while it starts.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitIdStatus};

use super::{
    lock, pidfd::pidfd_signal, poll::wait_readable, reaper::REAPER, retry_intr, BorrowedRaw,
};
use crate::deadline;
use crate::sys::RawStatus;

/// A spawned child process. The authority to signal or wait is the pidfd
/// where there is one; without it, the pid, which stays valid because it is
/// reaped only under `status`'s lock.
#[derive(Debug)]
pub(crate) struct Child {
    pub(super) pid: Pid,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) status: Mutex<Option<RawStatus>>,
    pub(super) own_group: bool,
}

pub(super) fn raw_status(st: WaitIdStatus) -> RawStatus {
    match (st.exit_status(), st.terminating_signal()) {
        (Some(code), _) => RawStatus::Exited(code),
        (None, Some(sig)) => RawStatus::Signaled(sig),
        // Not asked for (WSTOPPED/WCONTINUED are not passed).
        (None, None) => RawStatus::Exited(-1),
    }
}

impl Child {
    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    /// Reaps the child if it has exited, without blocking. Must be called
    /// with the status lock held: only then may the pid be reaped.
    pub(super) fn try_reap(&self, slot: &mut Option<RawStatus>) -> io::Result<Option<RawStatus>> {
        if let Some(st) = *slot {
            return Ok(Some(st));
        }
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let res = retry_intr(|| match &self.pidfd {
            #[cfg(target_os = "linux")]
            Some(fd) => match rustix::process::waitid(WaitId::PidFd(fd.as_fd()), opts) {
                // Linux 5.3 has pidfd_open but not P_PIDFD.
                Err(Errno::INVAL) => rustix::process::waitid(WaitId::Pid(self.pid), opts),
                other => other,
            },
            _ => rustix::process::waitid(WaitId::Pid(self.pid), opts),
        });
        match res? {
            Some(st) => {
                let st = raw_status(st);
                *slot = Some(st);
                Ok(Some(st))
            }
            None => Ok(None),
        }
    }

    /// Waits for the exit, up to `timeout`; the status is recorded only
    /// once `waitid` reported it.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<RawStatus>> {
        let deadline = deadline::deadline_of(timeout);
        let mut backoff = Duration::from_micros(200);
        loop {
            if let Some(st) = self.try_reap(&mut lock(&self.status))? {
                return Ok(Some(st));
            }
            let left = deadline::left(deadline);
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            match (&self.pidfd, left) {
                (Some(fd), _) => {
                    // A pidfd becomes readable when the process exits
                    // (pidfd_open(2)); reaping happens on the next turn.
                    wait_readable(fd.as_fd(), left)?;
                }
                (None, None) => {
                    // Block without reaping, so a concurrent terminate()
                    // can't hit a recycled pid; reap under the lock next turn.
                    match rustix::process::waitid(
                        WaitId::Pid(self.pid),
                        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                    ) {
                        Ok(_) | Err(Errno::INTR) | Err(Errno::CHILD) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                (None, Some(left)) => {
                    // No pidfd and a timeout: nothing to block on, so poll.
                    std::thread::sleep(backoff.min(left));
                    backoff = (backoff * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// Sends `sig` to the child (or its process group), under the status
    /// lock: never after the child was reaped, when its pid could name a
    /// stranger. Exited-but-not-reaped is not an error either.
    fn signal(&self, sig: Signal, group: bool) -> io::Result<()> {
        if group && !self.own_group {
            // Its group is ours (or our parent's): signalling it would hit
            // us and everyone else in it.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the worker does not lead a process group of its own (ask for one with own_process_group(true))",
            ));
        }
        let slot = lock(&self.status);
        if slot.is_some() {
            return Ok(());
        }
        let res = match &self.pidfd {
            _ if group => rustix::process::kill_process_group(self.pid, sig),
            Some(fd) => pidfd_signal(fd.as_fd(), self.pid, sig),
            None => rustix::process::kill_process(self.pid, sig),
        };
        drop(slot);
        match res {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends SIGTERM. Records nothing: the process may still be running.
    pub(crate) fn terminate(&self) -> io::Result<()> {
        self.signal(Signal::TERM, false)
    }

    /// Sends SIGKILL.
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL, false)
    }

    /// Windows keeps a copy of the child's end; Unix closed it at spawn.
    pub(crate) fn release_bootstrap_peer(&self) {}

    /// SIGTERM to the child's process group.
    pub(crate) fn terminate_tree(&self) -> io::Result<()> {
        self.signal(Signal::TERM, true)
    }

    /// SIGKILL to the child's process group.
    pub(crate) fn kill_tree(&self) -> io::Result<()> {
        self.signal(Signal::KILL, true)
    }

    /// The pidfd, which becomes readable when the process exits.
    pub(crate) fn sentinel(&self) -> Option<BorrowedRaw<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let reaped = match self.try_reap(&mut lock(&self.status)) {
            Ok(st) => st.is_some(),
            Err(_) => true, // ECHILD: someone else reaped it; nothing to do
        };
        if !reaped {
            // Still running: hand it to the reaper so it never stays a zombie.
            let child = Child {
                pid: self.pid,
                pidfd: self.pidfd.take(),
                status: Mutex::new(None),
                own_group: self.own_group,
            };
            REAPER.adopt(Arc::new(child));
        }
    }
}

/// Handles to hand to the child with its bootstrap data.
#[derive(Default)]
pub(crate) struct HandleTransfer {
    pub(super) fds: Vec<OwnedFd>,
}

impl HandleTransfer {
    /// Queues a copy of `h`; the token is its index in what the child receives.
    pub(crate) fn add(&mut self, _child: &Child, h: BorrowedRaw<'_>) -> io::Result<u64> {
        self.fds.push(rustix::io::fcntl_dupfd_cloexec(h, 0)?);
        Ok((self.fds.len() - 1) as u64)
    }
}

/// Before this process exits: nothing to wait for on Unix (the child's end
/// of the bootstrap channel is in the child from the start).
pub(crate) fn before_exit() {}
