//! The child's side of the bootstrap channel (run in the child).

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
#[cfg(target_os = "linux")]
use rustix::process::Signal;

use super::{retry_intr, OwnedRaw, CHILD_FD, FDS_PER_MESSAGE, RECV_FLAGS, SEND_FLAGS};
use crate::sys::BootToken;

/// The child's end of the bootstrap channel.
#[derive(Debug)]
pub(crate) struct ChildChannel {
    fd: OwnedFd,
    /// The fds received so far, in the order they were sent (a token is
    /// an index here); filled by every read.
    received: RefCell<Vec<Option<OwnedFd>>>,
}

/// Takes fd `token.handle`, after checking that it is fd 3 (where `spawn`
/// places the channel; never stdin, stdout or stderr, which a program
/// started by inetd or a service manager may have as a socket) and an open
/// socket.
pub(crate) fn open_bootstrap(token: BootToken) -> io::Result<ChildChannel> {
    if token.handle != CHILD_FD as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the marker names fd {}, but the bootstrap channel is always fd {CHILD_FD}",
                token.handle
            ),
        ));
    }
    let raw = CHILD_FD;
    // SAFETY: F_GETFD on any integer is sound; it fails with EBADF when the
    // fd is not open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("fd {raw} is not open: {}", io::Error::last_os_error()),
        ));
    }
    // SAFETY: the fd is open (checked above) and nothing else in this
    // process owns it: it was placed here by our parent's posix_spawn.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        // Not ours: give the fd back untouched.
        std::mem::forget(fd);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {raw} is not a socket"),
        ));
    }
    // Grandchildren must not inherit it.
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(ChildChannel {
        fd,
        received: RefCell::new(Vec::new()),
    })
}

impl ChildChannel {
    /// Reads exactly `buf.len()` bytes, collecting the fds that ride along.
    pub(crate) fn recv_header(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.read(&mut buf[got..])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(())
    }

    /// Reads from the parent, collecting the fds that ride along (they may
    /// come with any byte of the bootstrap data, a batch per `sendmsg`); 0
    /// is end of file. A plain read(2) would close them unseen.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let msg = retry_intr(|| {
            rustix::net::recvmsg(
                &self.fd,
                &mut [io::IoSliceMut::new(&mut *buf)],
                &mut anc,
                RECV_FLAGS,
            )
        })?;
        let mut received = self.received.borrow_mut();
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                received.extend(fds.map(Some));
            }
        }
        if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            // Fds were dropped for want of room: the tokens no longer match.
            return Err(io::Error::other(
                "passed handles were cut off (MSG_CTRUNC): too many in one message",
            ));
        }
        Ok(msg.bytes)
    }

    /// Writes to the parent without raising SIGPIPE.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        retry_intr(|| rustix::net::send(&self.fd, buf, SEND_FLAGS))
    }

    /// Takes the fd the parent passed under `token` (once).
    pub(crate) fn take_handle(&mut self, token: u64) -> io::Result<OwnedRaw> {
        usize::try_from(token)
            .ok()
            .and_then(|i| self.received.get_mut().get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no passed handle {token}, or it was taken already"),
                )
            })
    }
}

/// Child side: die with SIGKILL when the parent dies (prctl(2)
/// PR_SET_PDEATHSIG), then check the parent didn't die before that was
/// armed: we'd have been re-parented already, and get an error saying so
/// (the worker then exits with `NO_CHANNEL` and its stderr line).
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(parent_pid: u32) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if ppid != parent_pid {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the parent (pid {parent_pid}) is gone: this process's parent is now pid {ppid}"
            ),
        ));
    }
    Ok(())
}

/// macOS and the BSDs have no parent-death signal; see the crate docs.
#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_parent_pid: u32) -> io::Result<()> {
    Ok(())
}

/// Child side: makes `h` this process's stdin (`which == 0`), stdout
/// (`1`) or stderr (`2`) with dup2 onto fd 0/1/2, for output captured by
/// the parent or a stream the worker points at the null device itself.
pub(crate) fn set_std_handle(which: u8, h: OwnedRaw) -> io::Result<()> {
    match which {
        0 => rustix::stdio::dup2_stdin(&h)?,
        1 => rustix::stdio::dup2_stdout(&h)?,
        _ => rustix::stdio::dup2_stderr(&h)?,
    }
    Ok(())
}
