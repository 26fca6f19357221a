//! Channels: the parent's end of the bootstrap socket, and the pipe (and
//! bulk-lane socket) ends made for `Pipe`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};

use super::{
    child::{Child, HandleTransfer},
    cloexec_pipe,
    poll::to_timespec,
    retry_intr, stream_socketpair, BorrowedRaw, OwnedRaw, FDS_PER_MESSAGE, SEND_FLAGS,
};
use crate::deadline;

/// A close-on-exec, non-blocking pipe.
pub(super) fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = cloexec_pipe()?;
    for fd in [&r, &w] {
        let flags = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok((r, w))
}

/// A failed write of bootstrap data: EPIPE/ECONNRESET as a
/// `BrokenPipe` error saying the child is gone.
fn bootstrap_broken(e: Errno) -> io::Error {
    broken_pipe(e, "child exited before the bootstrap data was written")
}

/// EPIPE/ECONNRESET as a `BrokenPipe` error saying `why`; other errors as
/// they are.
pub(super) fn broken_pipe(e: Errno, why: &'static str) -> io::Error {
    if e == Errno::PIPE || e == Errno::CONNRESET {
        io::Error::new(io::ErrorKind::BrokenPipe, why)
    } else {
        e.into()
    }
}

/// One end of a channel: the parent's end of the bootstrap socket, or an
/// end of a `Pipe`, which is made of pipes (a pair for duplex): on Linux a
/// pipe round trip costs about half what an `AF_UNIX` socket's does.
#[derive(Debug)]
pub(crate) struct Channel {
    /// The socket, or the pipe end this end reads from (a write-only end:
    /// the pipe end it writes to).
    pub(super) fd: OwnedFd,
    /// The pipe end a duplex pipe end writes to.
    pub(super) wr: Option<OwnedFd>,
    /// `fd` is a socket: send with MSG_NOSIGNAL, receive with recv.
    pub(super) socket: bool,
    /// A `Pipe` end's bulk lane: a socket for the bodies of big messages,
    /// which a socket moves about twice as fast as a pipe (the framing
    /// says which messages take it; see `connection.rs`).
    pub(super) bulk: Option<OwnedFd>,
    /// A handle record was cut short on `bulk` (see
    /// `Channel::handles_out_of_step`).
    pub(super) out_of_step: AtomicBool,
}

impl Channel {
    /// Writes `data`, the fds riding along with its first bytes: at most
    /// [`FDS_PER_MESSAGE`] per `sendmsg`, each batch but the last on one
    /// byte of its own (the child collects them with every read, see
    /// [`ChildChannel::read`](super::ChildChannel::read)), so any number of fds can go.
    pub(crate) fn send_bootstrap(
        &self,
        _child: &Child,
        data: &[u8],
        transfer: HandleTransfer,
    ) -> io::Result<()> {
        let mut sent = 0;
        let batches = transfer.fds.len().div_ceil(FDS_PER_MESSAGE);
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        for (i, batch) in transfer.fds.chunks(FDS_PER_MESSAGE).enumerate() {
            let end = if i + 1 == batches {
                data.len().min(sent + (1 << 16))
            } else {
                sent + 1
            };
            if end > data.len() || sent == end {
                // Each token is at least a byte of the data, so this takes
                // handles that were added but never written down.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} handles need more than the {} bytes of bootstrap data to carry them",
                        transfer.fds.len(),
                        data.len()
                    ),
                ));
            }
            let borrowed: Vec<BorrowedFd<'_>> = batch.iter().map(|f| f.as_fd()).collect();
            let mut anc = SendAncillaryBuffer::new(&mut space);
            if !anc.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                return Err(io::Error::other("ancillary buffer too small"));
            }
            let part = &data[sent..end];
            sent += retry_intr(|| {
                rustix::net::sendmsg(&self.fd, &[io::IoSlice::new(part)], &mut anc, SEND_FLAGS)
            })
            .map_err(|e| match e.raw_os_error().map(Errno::from_raw_os_error) {
                Some(errno) => bootstrap_broken(errno),
                None => e,
            })?;
        }
        while sent < data.len() {
            match rustix::net::send(&self.fd, &data[sent..], SEND_FLAGS) {
                Ok(n) => sent += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(bootstrap_broken(e)),
            }
        }
        Ok(())
    }

    /// Writes what fits. A socket never raises SIGPIPE (MSG_NOSIGNAL); a
    /// pipe whose reader is gone does, which Rust programs ignore (std
    /// sets SIGPIPE to SIG_IGN before `main`, and `init` does in workers),
    /// so the write fails with EPIPE instead.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.wr {
            Some(w) => retry_intr(|| rustix::io::write(w, buf)),
            None if self.socket => retry_intr(|| rustix::net::send(&self.fd, buf, SEND_FLAGS)),
            None => retry_intr(|| rustix::io::write(&self.fd, buf)),
        }
    }

    /// Reads what is there within `timeout`; `Some(0)` at EOF or when
    /// `child` has exited and nothing is left to read.
    pub(crate) fn read_timeout(
        &self,
        child: Option<&Child>,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> io::Result<Option<usize>> {
        read_timeout(
            self.fd.as_fd(),
            self.socket,
            child.and_then(Child::sentinel),
            buf,
            timeout,
        )
    }

    /// Blocks until there is data, then appends at most `max` bytes of it
    /// to `v` without zero-filling the space first; 0 at EOF.
    pub(crate) fn read_append(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        read_append_fd(self.fd.as_fd(), v, max)
    }

    /// Rebuilds a passed end from its fds, each in the role
    /// [`pass_handles`](Self::pass_handles) gave it.
    pub(crate) fn from_passed(parts: crate::sys::ChannelParts<OwnedRaw>) -> io::Result<Channel> {
        Ok(Channel {
            fd: parts.main,
            wr: parts.write,
            socket: parts.main_is_socket,
            bulk: parts.bulk,
            out_of_step: AtomicBool::new(false),
        })
    }

    /// The fds that make up this end, each in its role, to pass to a child
    /// (every kind of end can be passed on Unix, sockets too).
    pub(crate) fn pass_handles(&self) -> io::Result<crate::sys::ChannelParts<BorrowedRaw<'_>>> {
        Ok(crate::sys::ChannelParts {
            main: self.fd.as_fd(),
            main_is_socket: self.socket,
            write: self.wr.as_ref().map(|w| w.as_fd()),
            bulk: self.bulk.as_ref().map(|b| b.as_fd()),
        })
    }

    /// A connected TCP socket as a channel end (`Listener`/`Client`):
    /// read with read(2), written with send(2) without SIGPIPE, as the
    /// bootstrap socket.
    pub(crate) fn from_tcp(s: std::net::TcpStream) -> io::Result<Channel> {
        Channel::from_socket(OwnedFd::from(s))
    }

    /// A connected Unix-domain stream socket as a channel end.
    pub(crate) fn from_local(s: std::os::unix::net::UnixStream) -> io::Result<Channel> {
        Channel::from_socket(OwnedFd::from(s))
    }

    fn from_socket(fd: OwnedFd) -> io::Result<Channel> {
        // macOS has no MSG_NOSIGNAL (see `SEND_FLAGS`): the socket itself
        // must not raise SIGPIPE.
        #[cfg(target_vendor = "apple")]
        rustix::net::sockopt::set_socket_nosigpipe(&fd, true)?;
        Ok(Channel {
            fd,
            wr: None,
            socket: true,
            bulk: None,
            out_of_step: AtomicBool::new(false),
        })
    }

    /// Shuts a socket end down both ways, so that every read of it, here
    /// and at the peer, sees end of file (a blocked one too: shutdown(2)
    /// wakes it, where a close by another thread would not).
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        if !self.socket {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only a socket connection can be shut down",
            ));
        }
        match rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Both) {
            // The peer reset it first: gone already.
            Ok(()) | Err(Errno::NOTCONN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether this end has a bulk lane for big message bodies.
    pub(crate) fn has_bulk(&self) -> bool {
        self.bulk.is_some()
    }

    /// Writes what fits to the bulk lane (without SIGPIPE).
    pub(crate) fn write_bulk(&self, buf: &[u8]) -> io::Result<usize> {
        let b = self
            .bulk
            .as_ref()
            .ok_or_else(|| io::Error::other("no bulk lane"))?;
        retry_intr(|| rustix::net::send(b, buf, SEND_FLAGS))
    }

    /// Blocks until the bulk lane has data, then appends at most `max`
    /// bytes of it to `v` (no zero-fill); 0 at EOF.
    pub(crate) fn read_bulk_append(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let b = self
            .bulk
            .as_ref()
            .ok_or_else(|| io::Error::other("no bulk lane"))?;
        read_append_fd(b.as_fd(), v, max)
    }

    /// The handle that becomes ready when there is something to read
    /// (always there on Unix).
    pub(crate) fn as_raw(&self) -> Option<BorrowedRaw<'_>> {
        Some(self.fd.as_fd())
    }

    /// Makes reads of this end's pipe return at once when it is empty
    /// (`O_NONBLOCK`), so that [`read_append_watch`](Self::read_append_watch)
    /// can look for data before it polls; true if done. Only for an end that
    /// no other process holds: the flag belongs to the open pipe, which an
    /// inherited or passed copy shares. The bulk lane is left alone (its
    /// writes must block); its reads don't wait with `MSG_DONTWAIT`.
    pub(crate) fn set_nonblocking_reads(&self) -> bool {
        if self.socket {
            return false;
        }
        rustix::fs::fcntl_getfl(&self.fd)
            .and_then(|fl| rustix::fs::fcntl_setfl(&self.fd, fl | rustix::fs::OFlags::NONBLOCK))
            .is_ok()
    }

    /// [`read_append`](Self::read_append) (with `bulk`:
    /// [`read_bulk_append`](Self::read_bulk_append)) that also returns 0
    /// once `peer` has exited and nothing it wrote is left, even while
    /// other processes (its children, which inherited or were passed its
    /// end) keep the pipe open. `nonblocking`: this end's pipe was made
    /// non-blocking by [`set_nonblocking_reads`](Self::set_nonblocking_reads),
    /// so data that is already there is read without a poll. Without a
    /// pidfd (Linux < 5.3, macOS) it is the plain read: end of file then
    /// comes when every holder closed.
    pub(crate) fn read_append_watch(
        &self,
        bulk: bool,
        v: &mut Vec<u8>,
        max: usize,
        exit: Option<BorrowedFd<'_>>,
        nonblocking: bool,
    ) -> io::Result<usize> {
        let (fd, socket) = match (&self.bulk, bulk) {
            (Some(b), true) => (b.as_fd(), true),
            (None, true) => return Err(io::Error::other("no bulk lane")),
            (_, false) => (self.fd.as_fd(), self.socket),
        };
        let Some(exit) = exit else {
            return read_append_fd(fd, v, max);
        };
        // A busy worker's results are often there already: look first
        // where a read can't block, and poll only an empty channel.
        let can_try = socket || nonblocking;
        loop {
            if can_try {
                if let Some(n) = try_read_append(fd, socket, v, max)? {
                    return Ok(n);
                }
            }
            if !readable_or_exited(fd, exit)? {
                return Ok(0);
            }
            if !can_try {
                // Readable, and we are its only reader: this won't block.
                return read_append_fd(fd, v, max);
            }
        }
    }
}

/// Waits for `fd` to be readable (or `exit` to fire), then reads.
pub(crate) fn read_timeout(
    fd: BorrowedFd<'_>,
    socket: bool,
    exit: Option<BorrowedFd<'_>>,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<Option<usize>> {
    use rustix::event::{PollFd, PollFlags};
    let deadline = deadline::deadline_of(timeout);
    loop {
        let left = deadline::left(deadline).map(to_timespec);
        let mut polls = vec![PollFd::new(&fd, PollFlags::IN)];
        if let Some(e) = &exit {
            polls.push(PollFd::new(e, PollFlags::IN));
        }
        match rustix::event::poll(&mut polls, left.as_ref()) {
            Ok(0) if deadline::passed(deadline) => return Ok(None),
            Ok(0) => continue, // a clamped poll ended before the deadline
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let data_ready = !polls[0].revents().is_empty();
        let exited = polls.get(1).is_some_and(|p| !p.revents().is_empty());
        if !socket {
            // A pipe: poll said readable (data or EOF), so read won't block
            // (only one reader at a time: the Connection holds a lock).
            if data_ready {
                return Ok(Some(retry_intr(|| rustix::io::read(fd, &mut *buf))?));
            }
            if exited {
                return Ok(Some(0));
            }
            continue;
        }
        match rustix::net::recv(fd, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Ok(Some(n)),
            Err(Errno::AGAIN) if exited => return Ok(Some(0)),
            Err(Errno::AGAIN) | Err(Errno::INTR) => {}
            Err(Errno::CONNRESET) => return Ok(Some(0)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A close-on-exec pipe with a larger buffer where Linux allows it (fewer
/// switches between writer and reader for big messages).
pub(super) fn big_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = cloexec_pipe()?;
    #[cfg(target_os = "linux")]
    let _ = rustix::pipe::fcntl_setpipe_size(&w, 1 << 20);
    Ok((r, w))
}

/// A connected pair of channels for `Pipe`: two pipes for duplex (one
/// each way), one for simplex (reader, writer).
pub(crate) fn pipe(duplex: bool) -> io::Result<(Channel, Channel)> {
    let end = |fd, wr, bulk| Channel {
        fd,
        wr,
        socket: false,
        bulk: Some(bulk),
        out_of_step: AtomicBool::new(false),
    };
    let (ba, bb) = stream_socketpair()?;
    let (r1, w1) = big_pipe()?;
    if !duplex {
        return Ok((end(r1, None, ba), end(w1, None, bb)));
    }
    let (r2, w2) = big_pipe()?;
    Ok((end(r1, Some(w2), ba), end(r2, Some(w1), bb)))
}

/// Appends at most `max` bytes of what `fd` has to `v` without waiting:
/// `None` when there is nothing yet (a socket is read with `MSG_DONTWAIT`,
/// a pipe must be non-blocking); `Some(0)` at end of file.
pub(super) fn try_read_append(
    fd: BorrowedFd<'_>,
    socket: bool,
    v: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    v.reserve(max);
    let spare = &mut v.spare_capacity_mut()[..max];
    let n = loop {
        let got = if socket {
            rustix::net::recv(fd, &mut *spare, rustix::net::RecvFlags::DONTWAIT)
                .map(|((init, _), _)| init.len())
        } else {
            rustix::io::read(fd, &mut *spare).map(|(init, _)| init.len())
        };
        match got {
            Ok(n) => break n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::CONNRESET) => break 0,
            Err(e) => return Err(e.into()),
        }
    };
    let len = v.len() + n;
    // SAFETY: read(2) / recv(2) initialized the first `n` bytes of the
    // spare capacity, which directly follow the current length.
    unsafe { v.set_len(len) };
    Ok(Some(n))
}

/// Waits until `fd` is readable (true: data or end of file), or `exit` (a
/// pidfd) fires with nothing left to read on `fd` (false).
pub(super) fn readable_or_exited(fd: BorrowedFd<'_>, exit: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags};
    loop {
        let mut polls = [
            PollFd::new(&fd, PollFlags::IN),
            PollFd::new(&exit, PollFlags::IN),
        ];
        match rustix::event::poll(&mut polls, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if !polls[0].revents().is_empty() {
            return Ok(true);
        }
        if !polls[1].revents().is_empty() {
            // poll may have looked at `fd` just before the last write and
            // at the pidfd after the exit; everything written before the
            // exit is in the pipe now, so look once more.
            let mut last = [PollFd::new(&fd, PollFlags::IN)];
            let zero = to_timespec(Duration::ZERO);
            retry_intr(|| rustix::event::poll(&mut last, Some(&zero)))?;
            return Ok(!last[0].revents().is_empty());
        }
    }
}

/// Blocks until `fd` has data, then appends at most `max` bytes of it to
/// `v` without zero-filling the space first; 0 at EOF.
pub(super) fn read_append_fd(fd: BorrowedFd<'_>, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    v.reserve(max);
    let spare = &mut v.spare_capacity_mut()[..max];
    let n = loop {
        match rustix::io::read(fd, &mut *spare) {
            Ok((init, _)) => break init.len(),
            Err(Errno::INTR) => {}
            Err(Errno::CONNRESET) => break 0,
            Err(e) => return Err(e.into()),
        }
    };
    let len = v.len() + n;
    // SAFETY: read(2) initialized the first `n` bytes of the spare
    // capacity, which directly follow the current length.
    unsafe { v.set_len(len) };
    Ok(n)
}
