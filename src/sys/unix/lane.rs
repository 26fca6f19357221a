//! [`SysLane`], Unix: where a queue's large items wait (the design is in
//! `queue/mod.rs`, "Bounds and large items"). An `AF_UNIX` datagram
//! socketpair that every process holding the queue has both ends of. A
//! large item's block (a sealed memfd) is sent on one end as an
//! `SCM_RIGHTS` datagram whose 8 bytes are the item's tag, and waits in
//! the other end's receive queue: a file descriptor *in flight* is held
//! by the kernel, not by the process that sent it, so the block outlives
//! its producer for as long as any process holds the socket (unix(7),
//! "Ancillary messages"). A consumer looks at the oldest datagram with
//! `MSG_PEEK`, which gives it a copy of the fd and leaves the datagram in
//! the queue (Linux's `unix_dgram_recvmsg` duplicates the fds of a
//! peeked message), and takes the datagram out only after its item left
//! the ring: a consumer killed in between leaves the datagram, and so the
//! item, for the next one.
//!
//! Sends and receives happen under the queue's lock, in the order of the
//! ring's records, so the datagrams are in the order of the large records
//! that name them. A datagram whose tag is not the oldest large record's
//! belongs to no record (its producer was killed before its record was
//! committed, or its consumer after taking the record and before taking
//! the datagram) and is dropped. Nothing here is ever blocking: a full
//! socket is `Ok(None)` from [`SysLane::send`] (the queue waits for room).
//!
//! Only Linux (and Android, the same kernel) is known to pass fds with
//! `MSG_PEEK`. **macOS does not**: XNU's `soreceive_ctl` copies a peeked
//! message's control data without externalizing it, so no fd is made in
//! the receiver. The current sources (apple-oss-distributions/xnu) zero
//! a peeked `SCM_RIGHTS` payload (`sopeek_scm_rights`: "the actual file
//! descriptors are not yet created"); older ones (apple/darwin-xnu, up to
//! macOS 11) copy it as the kernel holds it, file pointers and all.
//! Either way a peek would yield "fds" that are not the block (0, which
//! is stdin, or garbage), and closing them would close something else.
//! Other BSDs were not checked. So the lane is off on every Unix but
//! Linux and Android ([`SysLane::ENABLED`] false): the queue's lane
//! bound is 0 there, so an item larger than the ring is refused as too
//! large (as before the lane existed), and nothing here peeks. (Known
//! from reading those sources and `cargo check` for
//! `x86_64-apple-darwin`; the crate is never run on macOS here.)

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use super::{BorrowedRaw, OwnedRaw, RECV_FLAGS, SEND_FLAGS};

/// The lane of one queue (see the module docs): the socket's two ends.
#[derive(Debug)]
pub(crate) struct SysLane {
    /// Blocks are sent on it.
    tx: OwnedFd,
    /// Blocks wait in its receive queue.
    rx: OwnedFd,
}

/// What the oldest datagram is.
enum Front {
    /// No datagram.
    Empty,
    /// A block and its tag.
    Block(u64, OwnedFd),
    /// A block whose fd could not be received here (`MSG_CTRUNC`: this
    /// process is out of fds): left where it is.
    Truncated,
    /// Not a datagram this module sent: to drop.
    Junk,
}

impl SysLane {
    /// Whether the lane carries blocks on this OS (module docs): Linux
    /// and Android only.
    pub(crate) const ENABLED: bool = cfg!(any(target_os = "linux", target_os = "android"));

    /// Processes need not join or leave the lane (the kernel holds the
    /// blocks): [`join`](SysLane::join) and [`leave`](SysLane::leave) do
    /// nothing.
    pub(crate) const MEMBERSHIP: bool = false;

    /// Nothing to do here (see [`MEMBERSHIP`](SysLane::MEMBERSHIP)).
    pub(crate) fn join(&self) -> io::Result<()> {
        Ok(())
    }

    /// Nothing to do here (see [`MEMBERSHIP`](SysLane::MEMBERSHIP)).
    pub(crate) fn leave(&self) {}

    /// The handles of its wire form: the two ends.
    pub(crate) const HANDLES: usize = 2;

    /// A new, empty lane.
    pub(crate) fn new() -> io::Result<SysLane> {
        let (tx, rx) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::DGRAM, cloexec_flag(), None)?;
        #[cfg(target_vendor = "apple")]
        for fd in [&tx, &rx] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
            rustix::net::sockopt::set_socket_nosigpipe(fd, true)?;
        }
        Ok(SysLane { tx, rx })
    }

    /// The handles and the word of its wire form (the word is 0).
    pub(crate) fn parts(&self) -> (Vec<BorrowedRaw<'_>>, u64) {
        (vec![self.tx.as_fd(), self.rx.as_fd()], 0)
    }

    /// A received lane: the two ends, each checked to be a Unix datagram
    /// socket.
    pub(crate) fn from_parts(handles: Vec<OwnedRaw>, _word: u64) -> io::Result<SysLane> {
        let [tx, rx]: [OwnedFd; 2] = handles.try_into().map_err(|h: Vec<OwnedFd>| {
            invalid(format!("a queue's lane with {} handles, not 2", h.len()))
        })?;
        for fd in [&tx, &rx] {
            let ty = rustix::net::sockopt::socket_type(fd)
                .map_err(|e| invalid(format!("a queue's lane is not a socket: {e}")))?;
            if ty != SocketType::DGRAM {
                return Err(invalid("a queue's lane is not a datagram socket".into()));
            }
        }
        Ok(SysLane { tx, rx })
    }

    /// Hands `block` to the lane with `tag`, as the newest datagram. The
    /// word the queue's record keeps for it (0 here), or `None` if the
    /// lane has no room now (the socket's buffer, or the per-user limit
    /// of fds in flight).
    /// `_queue` (the queue's lock) is for Windows' keeper.
    pub(crate) fn send(
        &self,
        block: BorrowedRaw<'_>,
        tag: u64,
        _queue: &crate::sys::Guarded,
    ) -> io::Result<Option<u64>> {
        self.send_datagram(block, tag)
    }

    /// [`send`](SysLane::send)'s datagram.
    fn send_datagram(&self, block: BorrowedRaw<'_>, tag: u64) -> io::Result<Option<u64>> {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        let fds = [block];
        if !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
        let bytes = tag.to_le_bytes();
        loop {
            match rustix::net::sendmsg(
                &self.tx,
                &[IoSlice::new(&bytes)],
                &mut anc,
                SEND_FLAGS | SendFlags::DONTWAIT,
            ) {
                Ok(8) => return Ok(Some(0)),
                Ok(n) => return Err(io::Error::other(format!("a datagram of {n} bytes, not 8"))),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN | Errno::NOBUFS | Errno::TOOMANYREFS) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A copy of the block handed with `tag`, which stays in the lane;
    /// `None` if it is not there. Older datagrams with other tags are
    /// dropped on the way (module docs). `_loc` is the record's word.
    pub(crate) fn open(&self, tag: u64, _loc: u64) -> io::Result<Option<OwnedRaw>> {
        if !Self::ENABLED {
            // No block was ever sent (a forged record): no peek here.
            return Ok(None);
        }
        loop {
            match self.front(RecvFlags::PEEK)? {
                Front::Empty => return Ok(None),
                Front::Block(t, fd) if t == tag => return Ok(Some(fd)),
                Front::Truncated => {
                    return Err(io::Error::other(
                        "a queue's large item could not be received: no fd left in this process",
                    ))
                }
                Front::Block(..) | Front::Junk => self.drop_front(),
            }
        }
    }

    /// Drops the datagram of `tag` once its item left the queue (if it is
    /// the oldest, as it is after [`open`](SysLane::open) found it).
    pub(crate) fn taken(&self, tag: u64, _loc: u64) {
        if !Self::ENABLED {
            return;
        }
        if let Ok(Front::Block(t, _)) = self.front(RecvFlags::PEEK) {
            if t == tag {
                self.drop_front();
            }
        }
    }

    /// Lets go of the blocks at the front that no record names (`named`:
    /// the (tag, word) of every large record in the ring, oldest first):
    /// left by a producer killed before its commit, or a consumer killed
    /// after its commit and before [`taken`](SysLane::taken). Datagrams
    /// are in the order of the records, so every datagram ahead of the
    /// oldest record's is one of those.
    pub(crate) fn sweep(&self, named: &[(u64, u64)]) {
        if !Self::ENABLED {
            return;
        }
        loop {
            match self.front(RecvFlags::PEEK) {
                Ok(Front::Block(t, _)) if named.iter().any(|&(tag, _)| tag == t) => return,
                Ok(Front::Block(..) | Front::Junk) => self.drop_front(),
                Ok(Front::Empty | Front::Truncated) | Err(_) => return,
            }
        }
    }

    /// The pid of the lane's keeper process: Windows only (a test hook).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn keeper_pid(&self) -> io::Result<Option<u32>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// How many blocks wait in the lane (a test hook, under the queue's
    /// lock): every datagram is received and sent back, in order.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn blocks(&self) -> io::Result<usize> {
        let mut all = Vec::new();
        loop {
            match self.front(RecvFlags::empty())? {
                Front::Empty => break,
                Front::Block(tag, fd) => all.push((tag, fd)),
                Front::Truncated => return Err(io::Error::other("out of fds")),
                Front::Junk => {}
            }
        }
        for (tag, fd) in &all {
            if self.send_datagram(fd.as_fd(), *tag)?.is_none() {
                return Err(io::Error::other("a block could not be sent back"));
            }
        }
        Ok(all.len())
    }

    /// Receives the oldest datagram and closes what came with it.
    fn drop_front(&self) {
        let _ = self.front(RecvFlags::empty());
    }

    /// The oldest datagram, received (`flags` empty) or peeked at.
    fn front(&self, flags: RecvFlags) -> io::Result<Front> {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 16];
        let msg = loop {
            match rustix::net::recvmsg(
                &self.rx,
                &mut [IoSliceMut::new(&mut buf)],
                &mut anc,
                flags | RECV_FLAGS | RecvFlags::DONTWAIT,
            ) {
                Ok(m) => break m,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(Front::Empty),
                Err(e) => return Err(e.into()),
            }
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(got) = m {
                fds.extend(got);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) && msg.bytes == 8 && fds.is_empty() {
            return Ok(Front::Truncated);
        }
        Ok(
            match (msg.bytes, fds.len(), msg.flags.contains(ReturnFlags::TRUNC)) {
                (8, 1, false) => {
                    let tag = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                    Front::Block(tag, fds.pop().expect("one fd"))
                }
                _ => Front::Junk,
            },
        )
    }

    /// The receiving end, for the unit tests.
    #[cfg(all(test, target_os = "linux"))]
    fn borrow_rx(&self) -> BorrowedRaw<'_> {
        self.rx.as_fd()
    }
}

#[cfg(not(target_vendor = "apple"))]
fn cloexec_flag() -> SocketFlags {
    SocketFlags::CLOEXEC
}

#[cfg(target_vendor = "apple")]
fn cloexec_flag() -> SocketFlags {
    SocketFlags::empty()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// No lane keeper on Unix (the kernel keeps the fds in flight): nothing
/// to note.
pub(crate) fn lane_keeper_init(_image: Option<&'static super::RunningImage>) {}

/// No lane keeper on Unix: nothing to mirror.
pub(crate) fn lane_keeper_executable(_path: Option<std::path::PathBuf>) {}

/// No lane keeper on Unix: never one to run.
pub(crate) fn run_lane_keeper(_arg: &std::ffi::OsStr) -> Option<i32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_os = "linux")]
    use crate::sys::{shm_create, shm_freeze, ShmPages};

    #[cfg(target_os = "linux")]
    fn block() -> OwnedFd {
        shm_freeze(shm_create(4096, ShmPages::Base).unwrap()).unwrap()
    }

    #[cfg(target_os = "linux")]
    fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
        let (a, b) = (rustix::fs::fstat(a).unwrap(), rustix::fs::fstat(b).unwrap());
        (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_block_waits_in_the_lane_after_its_sender_closed_it_and_a_peek_leaves_it() {
        let lane = SysLane::new().unwrap();
        let b = block();
        let ino = rustix::fs::fstat(&b).unwrap().st_ino;
        assert_eq!(lane.send_datagram(b.as_fd(), 7).unwrap(), Some(0));
        drop(b);
        let first = lane.open(7, 0).unwrap().expect("there");
        let again = lane.open(7, 0).unwrap().expect("still there");
        assert!(same_file(&first, &again));
        assert_eq!(rustix::fs::fstat(&first).unwrap().st_ino, ino);
        lane.taken(7, 0);
        assert!(lane.open(7, 0).unwrap().is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn datagrams_ahead_of_the_wanted_tag_are_dropped_and_others_kept() {
        let lane = SysLane::new().unwrap();
        let (a, b) = (block(), block());
        lane.send_datagram(a.as_fd(), 1).unwrap().unwrap();
        lane.send_datagram(b.as_fd(), 2).unwrap().unwrap();
        // Junk: bytes without an fd.
        rustix::net::send(&lane.tx, b"x", SendFlags::empty()).unwrap();
        let got = lane.open(2, 0).unwrap().unwrap();
        assert!(same_file(&got, &b));
        // Taking another tag than the oldest's does nothing.
        lane.taken(1, 0);
        assert!(lane.open(2, 0).unwrap().is_some());
        lane.taken(2, 0);
        // The junk is dropped on the way to a tag that isn't there.
        assert!(lane.open(3, 0).unwrap().is_none());
        let mut buf = [0u8; 1];
        assert_eq!(
            rustix::net::recv(lane.borrow_rx(), &mut buf, RecvFlags::DONTWAIT).unwrap_err(),
            Errno::AGAIN
        );
    }

    #[test]
    fn a_pipe_is_not_a_lane() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let e = SysLane::from_parts(vec![r, w], 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let lane = SysLane::new().unwrap();
        let SysLane { tx, .. } = lane;
        assert!(SysLane::from_parts(vec![tx], 0).is_err());
    }
}
