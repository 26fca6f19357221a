//! Handles inside a `Connection` message: fds sent as `SCM_RIGHTS` on the
//! end's bulk-lane socket (a pipe can't carry them), ahead of the frame
//! whose body holds their tokens.
//!
//! The record on the bulk lane: the count as 4 bytes (little-endian) with
//! the first [`FDS_PER_MESSAGE`] fds attached, then one byte per further
//! batch of at most that many. It is written, under the sender's lock,
//! before the frame's header goes on the pipe, so by the time a receiver
//! reads the header the whole record is in its socket: it is read without
//! waiting, and a frame whose record isn't there is refused rather than
//! waited for. The receiver reads exactly the record's bytes, so the fds
//! that come with them belong to this frame and no other (Linux never
//! hands out the fds of a later `sendmsg` with the bytes of an earlier
//! one), whatever the pool's read-ahead buffered of the pipe.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
};

use super::{
    channel::{broken_pipe, Channel},
    retry_intr, BorrowedRaw, OwnedRaw, FDS_PER_MESSAGE, RECV_FLAGS, SEND_FLAGS,
};
use crate::sys::Peer;

/// Why a handle record could not be written: the other end is closed.
const PEER_GONE: &str = "the peer closed its end of the connection";

/// The most handles one message may carry (checked on both sides).
pub(crate) const MAX_MESSAGE_HANDLES: usize = 4096;

/// The most values a message's handle block may name (none on Unix: the
/// fds travel themselves).
pub(crate) const MAX_BLOCK_VALUES: usize = MAX_MESSAGE_HANDLES;

fn no_lane() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a Listener/Client connection carries no handles (only a Pipe's ends do: they have \
         a socket to carry them)",
    )
}

fn out_of_step() -> io::Error {
    io::Error::other(
        "an earlier message's handles were sent only in part, so this end's handle lane is \
         out of step with the receiver for good",
    )
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl Channel {
    /// Sends copies of `handles` for the frame written next, on the bulk
    /// lane; returns the values the frame must carry for the receiver to
    /// find them (none here: the fds themselves travel). The caller holds
    /// the end's send lock until that frame is written. `_peer` is for
    /// Windows.
    ///
    /// An error before anything went out leaves the lane as it was; one
    /// after (a later batch, or the rest of the count, refused) leaves a
    /// record cut short that the receiver would take for the start of the
    /// next one: from then on [`handles_out_of_step`](Self::handles_out_of_step)
    /// is true and every later call fails.
    pub(crate) fn send_handles(
        &self,
        handles: &[BorrowedRaw<'_>],
        _peer: Peer<'_>,
    ) -> io::Result<Vec<u64>> {
        self.bulk.as_ref().ok_or_else(no_lane)?;
        if self.handles_out_of_step() {
            return Err(out_of_step());
        }
        if handles.is_empty() || handles.len() > MAX_MESSAGE_HANDLES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message can carry 1 to {MAX_MESSAGE_HANDLES} handles, not {}",
                    handles.len()
                ),
            ));
        }
        let count = (handles.len() as u32).to_le_bytes();
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut started = false;
        self.send_record(handles, &count, &mut space, &mut started)
            .inspect_err(|_| {
                if started {
                    self.out_of_step.store(true, Ordering::Relaxed);
                }
            })?;
        Ok(Vec::new())
    }

    /// The frame after [`send_handles`](Self::send_handles) could not be
    /// written whole: its record is on the lane without it (the fds are
    /// closed with the socket), so the lane is out of step from now on.
    pub(crate) fn unsend_handles(&self, _values: &[u64], _peer: Peer<'_>) {
        self.out_of_step.store(true, Ordering::Relaxed);
    }

    /// Whether a [`send_handles`](Self::send_handles) failed part-way
    /// (the lane is out of step for good).
    pub(crate) fn handles_out_of_step(&self) -> bool {
        self.out_of_step.load(Ordering::Relaxed)
    }

    /// Marks the lane out of step, as a send that failed part-way does
    /// (which a test can't bring about on demand).
    #[cfg(test)]
    pub(crate) fn set_handles_out_of_step(&self) {
        self.out_of_step.store(true, Ordering::Relaxed);
    }

    /// The record's batches; `started` is set once a byte went out.
    fn send_record(
        &self,
        handles: &[BorrowedRaw<'_>],
        count: &[u8; 4],
        space: &mut [MaybeUninit<u8>],
        started: &mut bool,
    ) -> io::Result<()> {
        let lane = self.bulk.as_ref().ok_or_else(no_lane)?;
        for (i, batch) in handles.chunks(FDS_PER_MESSAGE).enumerate() {
            let mut part: &[u8] = if i == 0 { count } else { &[0xfd] };
            let mut anc = SendAncillaryBuffer::new(&mut *space);
            if !anc.push(SendAncillaryMessage::ScmRights(batch)) {
                return Err(io::Error::other("ancillary buffer too small"));
            }
            let n = retry_intr(|| {
                rustix::net::sendmsg(lane, &[io::IoSlice::new(part)], &mut anc, SEND_FLAGS)
            })
            .map_err(|e| match e.raw_os_error().map(Errno::from_raw_os_error) {
                Some(errno) => broken_pipe(errno, PEER_GONE),
                None => e,
            })?;
            *started = true;
            // The fds went with the first byte; the rest of the count
            // follows without them.
            part = &part[n..];
            while !part.is_empty() {
                match rustix::net::send(lane, part, SEND_FLAGS) {
                    Ok(n) => part = &part[n..],
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(broken_pipe(e, PEER_GONE)),
                }
            }
        }
        Ok(())
    }

    /// Takes the record [`send_handles`](Self::send_handles) wrote for
    /// the frame whose header was just read: every fd that came, owned at
    /// once (close-on-exec where the OS can); an error, with all of them
    /// closed, when the record isn't there, says more than
    /// [`MAX_MESSAGE_HANDLES`] or brings another number of fds than it
    /// says.
    pub(crate) fn recv_handles(&self) -> io::Result<Vec<OwnedRaw>> {
        let lane = self.bulk.as_ref().ok_or_else(no_lane)?;
        let mut fds = Vec::new();
        let mut count = [0u8; 4];
        let mut got = 0;
        while got < count.len() {
            got += recv_part(lane.as_fd(), &mut count[got..], &mut fds)?;
        }
        let n = u32::from_le_bytes(count) as usize;
        if n == 0 || n > MAX_MESSAGE_HANDLES {
            return Err(bad(format!(
                "a message announced {n} handles (1 to {MAX_MESSAGE_HANDLES} can come)"
            )));
        }
        for _ in 1..n.div_ceil(FDS_PER_MESSAGE) {
            recv_part(lane.as_fd(), &mut [0u8; 1], &mut fds)?;
        }
        if fds.len() != n {
            return Err(bad(format!(
                "a message announced {n} handles and {} came",
                fds.len()
            )));
        }
        Ok(fds)
    }

    /// Checks the handles [`recv_handles`](Self::recv_handles) took against
    /// what the frame says: `count` of them, and no values (those are for
    /// Windows, as is `_peer`: fds can't be forged).
    pub(crate) fn adopt_handles(
        &self,
        received: Vec<OwnedRaw>,
        count: usize,
        values: &[u64],
        _peer: Peer<'_>,
    ) -> io::Result<Vec<OwnedRaw>> {
        if received.len() != count || !values.is_empty() {
            return Err(bad(format!(
                "a message says it carries {count} handles ({} values) and {} came",
                values.len(),
                received.len()
            )));
        }
        Ok(received)
    }
}

/// One `recvmsg` of at most `buf.len()` bytes of the record, without
/// waiting (the record is written before its frame); the fds that come
/// with them are added to `fds`. Nothing there, end of file or fds cut
/// off (`MSG_CTRUNC`: more than one batch allows) are errors.
fn recv_part(lane: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut space =
        vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            lane,
            &mut [io::IoSliceMut::new(&mut *buf)],
            &mut anc,
            RECV_FLAGS | RecvFlags::DONTWAIT,
        ) {
            Ok(m) => break m,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                return Err(bad(
                    "a message announced handles that did not come with it".into()
                ))
            }
            Err(e) => return Err(e.into()),
        }
    };
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(got) = m {
            fds.extend(got);
        }
    }
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(bad(
            "handles of a message were cut off (MSG_CTRUNC): more in one batch than allowed".into(),
        ));
    }
    if msg.bytes == 0 {
        return Err(bad(
            "the connection ended before the handles a message announced".into(),
        ));
    }
    Ok(msg.bytes)
}

/// A copy of `h` owned by this process (close-on-exec), to send later.
pub(crate) fn duplicate(h: BorrowedRaw<'_>) -> io::Result<OwnedRaw> {
    Ok(rustix::io::fcntl_dupfd_cloexec(h, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::pipe;

    /// One `sendmsg` of `data` with `fds` attached, as a forging peer would.
    fn send_raw(lane: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) {
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(anc.push(SendAncillaryMessage::ScmRights(fds)));
        }
        rustix::net::sendmsg(lane, &[io::IoSlice::new(data)], &mut anc, SEND_FLAGS).unwrap();
    }

    fn lane(c: &Channel) -> BorrowedFd<'_> {
        c.bulk.as_ref().unwrap().as_fd()
    }

    #[test]
    fn three_hundred_fds_cross_in_batches_in_order() {
        let (a, b) = pipe(true).unwrap();
        let (r, _w) = super::super::cloexec_pipe().unwrap();
        let fds: Vec<OwnedFd> = (0..300).map(|_| duplicate(r.as_fd()).unwrap()).collect();
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        assert_eq!(
            a.send_handles(&borrowed, Peer::Unknown).unwrap(),
            Vec::<u64>::new()
        );
        let got = b.recv_handles().unwrap();
        assert_eq!(got.len(), 300);
        let ino = |f: BorrowedFd<'_>| rustix::fs::fstat(f).unwrap().st_ino;
        assert!(got.iter().all(|f| ino(f.as_fd()) == ino(r.as_fd())));
        // Received close-on-exec (MSG_CMSG_CLOEXEC).
        #[cfg(target_os = "linux")]
        assert!(got.iter().all(|f| rustix::io::fcntl_getfd(f)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)));
        assert_eq!(
            b.adopt_handles(got, 300, &[], Peer::Unknown).unwrap().len(),
            300
        );
    }

    #[test]
    fn more_fds_than_the_record_announces_are_refused() {
        let (a, b) = pipe(true).unwrap();
        let (r, w) = super::super::cloexec_pipe().unwrap();
        send_raw(lane(&a), &1u32.to_le_bytes(), &[r.as_fd(), w.as_fd()]);
        let e = b.recv_handles().unwrap_err();
        assert!(
            e.to_string().contains("announced 1 handles and 2 came"),
            "{e}"
        );
    }

    #[test]
    fn a_record_of_zero_or_too_many_handles_is_refused() {
        let (a, b) = pipe(true).unwrap();
        send_raw(lane(&a), &0u32.to_le_bytes(), &[]);
        assert!(b
            .recv_handles()
            .unwrap_err()
            .to_string()
            .contains("announced 0"));
        let (a, b) = pipe(true).unwrap();
        let (r, _w) = super::super::cloexec_pipe().unwrap();
        send_raw(lane(&a), &u32::MAX.to_le_bytes(), &[r.as_fd()]);
        let e = b.recv_handles().unwrap_err();
        assert!(e.to_string().contains("announced 4294967295"), "{e}");
    }

    #[test]
    fn a_missing_record_is_refused_without_waiting() {
        let (_a, b) = pipe(true).unwrap();
        let e = b.recv_handles().unwrap_err();
        assert!(e.to_string().contains("did not come"), "{e}");
        // A record cut short (fewer batches than its count needs).
        let (a, b) = pipe(true).unwrap();
        let (r, _w) = super::super::cloexec_pipe().unwrap();
        let one = [r.as_fd()];
        send_raw(lane(&a), &300u32.to_le_bytes(), &one);
        let e = b.recv_handles().unwrap_err();
        assert!(e.to_string().contains("did not come"), "{e}");
    }

    #[test]
    fn a_count_other_than_the_frame_says_is_refused() {
        let (a, b) = pipe(true).unwrap();
        let (r, _w) = super::super::cloexec_pipe().unwrap();
        a.send_handles(&[r.as_fd()], Peer::Unknown).unwrap();
        let got = b.recv_handles().unwrap();
        assert!(b.adopt_handles(got, 2, &[], Peer::Unknown).is_err());
    }

    #[test]
    fn an_end_without_a_socket_cannot_carry_handles() {
        let (r, w) = super::super::cloexec_pipe().unwrap();
        let plain = Channel {
            fd: w,
            wr: None,
            socket: false,
            bulk: None,
            out_of_step: Default::default(),
        };
        let e = plain.send_handles(&[r.as_fd()], Peer::Unknown).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
}
