//! `Pipe` and `Connection`: framed messages between processes.
//!
//! Underneath: on Unix, pipes (one each way for a duplex pair), close-on-
//! exec, with a 1 MiB buffer where Linux allows it, plus a socket for the
//! bodies of messages of 256 KiB and more (the frame header, on the pipe,
//! says so: pipes give the fastest small round trips, sockets the fastest
//! bulk transfer); on Windows, a named pipe opened for overlapped I/O. Writing to a peer that is gone fails
//! with [`Error::is_eof`]; on Unix that relies on SIGPIPE being ignored,
//! which std arranges for every Rust program before `main` (and `init`
//! does in workers) — a host program that restores SIGPIPE's default would
//! be killed instead.
//!
//! Each message is a little-endian `u64` length followed by that many
//! bytes. A frame longer than the receiving end's cap (see
//! [`Connection::set_max_message_len`]) is refused before anything is
//! allocated for it, and poisons the connection: the stream can't be
//! resynchronized after it, so every later call fails the same way.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::handles::{self, Carried};
use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::popen::{ExitWatch, Popen};
use crate::sys;

mod frame;
mod pipe;
mod wait;
mod wire;

pub use pipe::Pipe;
pub use wait::{wait, Waitable};

pub(crate) use wire::ChildEnd;

use frame::{write_all, Rx, BULK_FLAG, BULK_MIN, CHUNK, COALESCE, HANDLES_FLAG, HEADER};

/// One end of a [`Pipe`]: send and receive whole messages.
///
/// `send`/`recv` take `&self`; a `Connection` is `Send` and `Sync`, and
/// concurrent senders (receivers) are serialized so that frames never
/// interleave.
///
/// An end can be shared between processes (passed to several workers, or
/// kept by the parent after passing a copy), as in Python:
/// [`recv`](Connection::recv) takes exactly one message off the OS pipe,
/// and [`poll`](Connection::poll) takes nothing, so whatever one process
/// did not receive is still there for the others. (Two processes receiving
/// from the same end *at the same time* can still split a message between
/// them, as in Python: take turns.)
///
/// A `Connection` can be an argument of [`Process::spawn`](crate::Process::spawn),
/// of a pool task or of a message sent over another `Connection`: the
/// receiver gets its own copy of this end (through
/// [`pass_handle`](crate::pass_handle)), and the sender's copy goes away
/// with the value.
///
#[doc = include_str!("../../docs/connection-handles.md")]
///
/// # Drop
///
/// Dropping closes this process's copy of the end; the peer sees end of
/// file once every copy is closed. On Unix that includes, for a moment,
/// the copy a child being started by another thread of this process holds
/// from its fork until its `exec` closes it (close-on-exec): right after
/// the close, a `poll` with a zero timeout at the peer may still say
/// nothing is there; a blocking `recv` returns end of file once that copy
/// is gone.
pub struct Connection {
    chan: sys::Channel,
    readable: bool,
    writable: bool,
    /// May read past the current frame into `rx` (never on an end that
    /// can be shared; see [`Pipe::duplex_read_ahead`]).
    read_ahead: bool,
    max_len: AtomicU64,
    rx: Mutex<Rx>,
    /// The send lock; why sending can't go on, once it can't (a handle
    /// record cut short: the stream is out of step).
    tx: Mutex<Option<String>>,
    /// The process at the other end, when reads must also end once it
    /// exited (see [`watch_peer`](Connection::watch_peer)), and whether
    /// this end's reads were made non-blocking for that.
    peer: OnceLock<(ExitWatch, bool)>,
    /// Windows: the peer is the process that started this one, which
    /// duplicates handles both ways (see `take_handles_from_parent`).
    trust_peer: AtomicBool,
    /// Windows: the peer is this child, into and out of which this process
    /// duplicates handles (see `carry_handles_with`); the pool's ends use
    /// `peer` instead.
    child: OnceLock<ExitWatch>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// The largest message a `Connection` accepts by default: 256 MiB
    /// (change it with [`set_max_message_len`](Connection::set_max_message_len)).
    pub const DEFAULT_MAX_MESSAGE_LEN: u64 = 256 << 20;

    fn new(chan: sys::Channel, readable: bool, writable: bool, read_ahead: bool) -> Self {
        Connection {
            chan,
            readable,
            writable,
            read_ahead,
            max_len: AtomicU64::new(Connection::DEFAULT_MAX_MESSAGE_LEN),
            rx: Mutex::new(Rx {
                buf: Vec::new(),
                start: 0,
                eof: false,
                poisoned: None,
            }),
            tx: Mutex::new(None),
            peer: OnceLock::new(),
            trust_peer: AtomicBool::new(false),
            child: OnceLock::new(),
        }
    }

    /// A connected socket's end (`Listener`/`Client`): duplex, and it
    /// does not read ahead, so that on Unix it can be passed to a child
    /// as any end.
    pub(crate) fn from_socket(chan: sys::Channel) -> Self {
        Connection::new(chan, true, true, false)
    }

    /// This end, reading ahead from now on (as the ends of
    /// [`Pipe::duplex_read_ahead`]): for a socket's end that no other
    /// process will hold, such as a pool's connection to a launched worker
    /// (and the worker's to the pool). Fewer reads per message: a `recv`
    /// takes what the socket has, not one frame's header and then its body.
    pub(crate) fn reading_ahead(mut self) -> Connection {
        self.read_ahead = true;
        self
    }

    /// From now on, a blocking receive on this end also ends, as end of
    /// file (or a frame cut off), once `peer` has exited and nothing it
    /// wrote is left — even while other processes hold the other end open
    /// (children `peer` started, which inherited or were passed it). The
    /// pool watches each worker this way, as `Process::join` does. Set
    /// once, before the first receive; later calls are ignored. Only for an
    /// end that no other process holds (its pipe is made non-blocking).
    pub(crate) fn watch_peer(&self, peer: &Popen) {
        if self.peer.get().is_none() {
            let nonblocking = self.chan.set_nonblocking_reads();
            let _ = self.peer.set((peer.exit_watch(), nonblocking));
        }
    }

    /// Makes this end carry handles both ways on Windows too, with the
    /// process that started this one as the peer (`sys::Peer::Parent`: it
    /// duplicates them into and out of this process): only for an end
    /// whose other end that process created for this one at its spawn and
    /// keeps, which it marked so in the spawn's arguments (`ChildEnd`). The
    /// parent's end is the one given [`watch_peer`](Self::watch_peer) or
    /// [`carry_handles_with`](Self::carry_handles_with).
    fn take_handles_from_parent(&self) {
        self.trust_peer.store(true, Ordering::Relaxed);
    }

    /// Makes this end carry handles both ways on Windows too, with `child`
    /// as the peer (`sys::Peer::Child`: this process duplicates them into
    /// and out of it): only for an end whose other end was made for
    /// `child` and passed to it at its spawn, marked (`ChildEnd`), and
    /// never held here. Set once.
    pub(crate) fn carry_handles_with(&self, child: &Popen) {
        let _ = self.child.set(child.exit_watch());
    }

    /// The process at the other end, for handle passing (see `sys::Peer`).
    fn handle_peer(&self) -> sys::Peer<'_> {
        if self.trust_peer.load(Ordering::Relaxed) {
            return sys::Peer::Parent;
        }
        let watched = self.peer.get().map(|(p, _)| p);
        match watched.or(self.child.get()).and_then(ExitWatch::handle) {
            Some(h) => sys::Peer::Child(h),
            None => sys::Peer::Unknown,
        }
    }

    /// Blocks until there is data, then appends at most `max` bytes of it
    /// (from the bulk lane with `bulk`); 0 at end of file, or once the
    /// watched peer exited with nothing left.
    fn read_more(&self, bulk: bool, v: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
        match (self.peer.get(), bulk) {
            (Some((peer, nonblocking)), _) => {
                self.chan
                    .read_append_watch(bulk, v, max, peer.handle(), *nonblocking)
            }
            (None, false) => self.chan.read_append(v, max),
            (None, true) => self.chan.read_bulk_append(v, max),
        }
    }

    /// The largest message this end accepts (default
    /// [`Connection::DEFAULT_MAX_MESSAGE_LEN`]).
    pub fn set_max_message_len(&self, bytes: u64) {
        self.max_len.store(bytes, Ordering::Relaxed);
    }

    /// The largest message this end accepts.
    pub fn max_message_len(&self) -> u64 {
        self.max_len.load(Ordering::Relaxed)
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Sends a value (serialized with postcard).
    ///
    /// Handles inside it ([`PassedHandle`](crate::PassedHandle)s,
    /// `Connection` ends, anything that calls
    /// [`pass_handle`](crate::pass_handle)) travel with it, and the
    /// receiver's [`recv`](Connection::recv) gets its own copies: see
    /// "Handles in messages" on [`Connection`].
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let mut frame = vec![0u8; HEADER];
        let (encoded, handles) = handles::collecting(|| encode::append(value, &mut frame));
        encoded.map_err(|source| {
            Error::new(Kind::Encode {
                entry: "a message".into(),
                source,
            })
        })?;
        if !handles.is_empty() {
            return self.send_with_handles(&frame[HEADER..], &[&handles]);
        }
        let len = (frame.len() - HEADER) as u64;
        if len as usize >= BULK_MIN && self.chan.has_bulk() {
            return self.write_bulk_frame(&frame[HEADER..]);
        }
        frame[..HEADER].copy_from_slice(&len.to_le_bytes());
        self.write_frame(&frame, &[])
    }

    /// Sends `bytes` as one message.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() >= BULK_MIN && self.chan.has_bulk() {
            return self.write_bulk_frame(bytes);
        }
        let header = (bytes.len() as u64).to_le_bytes();
        if bytes.len() <= COALESCE {
            let mut frame = Vec::with_capacity(HEADER + bytes.len());
            frame.extend_from_slice(&header);
            frame.extend_from_slice(bytes);
            self.write_frame(&frame, &[])
        } else {
            self.write_frame(&header, bytes)
        }
    }

    /// Sends `payload` as one message with `handles` (their tokens, in
    /// `payload`, are their indexes here): the handles first (Unix: on the
    /// bulk lane; Windows: as `sys::Peer` says, an error with no known
    /// peer), then a frame flagged as carrying them whose body is their
    /// block and `payload`, all under the send lock.
    ///
    /// If the handles went out only in part (Unix: a later batch refused),
    /// the receiver would read the rest of the stream out of step: the end
    /// is poisoned for sending, and this and every later send fail with
    /// [`Error::is_poisoned`].
    pub(crate) fn send_with_handles(&self, payload: &[u8], parts: &[&Carried]) -> Result<()> {
        if !self.writable {
            return Err(Error::new(Kind::WrongDirection("send on a read-only end")));
        }
        let handles = Carried::borrow_all(parts);
        let mut guard = self.tx_guard()?;
        let values = match self.chan.send_handles(&handles, self.handle_peer()) {
            Ok(values) => values,
            Err(e) if self.chan.handles_out_of_step() => {
                let why = format!(
                    "the handles of a message were sent only in part ({e}); the stream can't be \
                     resynchronized"
                );
                *guard = Some(why.clone());
                return Err(Error::new(Kind::Poisoned(why)));
            }
            Err(e) => return Err(Error::io("cannot send the handles of a message", e)),
        };
        let mut body = Vec::with_capacity(8 + 8 * values.len() + payload.len());
        handles::put_block(&mut body, handles.len(), &values);
        body.extend_from_slice(payload);
        let bulk = body.len() >= BULK_MIN && self.chan.has_bulk();
        let flags = HANDLES_FLAG | if bulk { BULK_FLAG } else { 0 };
        let header = (body.len() as u64 | flags).to_le_bytes();
        let written = write_all(&header, |p| self.chan.write(p)).and_then(|()| {
            if bulk {
                write_all(&body, |p| self.chan.write_bulk(p))
            } else {
                write_all(&body, |p| self.chan.write(p))
            }
        });
        if written.is_err() {
            // No receiver can take them now: close what was made for them.
            self.chan.unsend_handles(&values, self.handle_peer());
        }
        written
    }

    /// The send lock, unless sending was poisoned.
    fn tx_guard(&self) -> Result<MutexGuard<'_, Option<String>>> {
        let guard = lock(&self.tx);
        match &*guard {
            Some(why) => Err(Error::new(Kind::Poisoned(why.clone()))),
            None => Ok(guard),
        }
    }

    fn write_frame(&self, a: &[u8], b: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::new(Kind::WrongDirection("send on a read-only end")));
        }
        let _guard = self.tx_guard()?;
        write_all(a, |p| self.chan.write(p))?;
        write_all(b, |p| self.chan.write(p))
    }

    /// A big message: the flagged header on the pipe, the body on the bulk
    /// lane (the receiver reads them in that order).
    fn write_bulk_frame(&self, body: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::new(Kind::WrongDirection("send on a read-only end")));
        }
        let _guard = self.tx_guard()?;
        let header = (body.len() as u64 | BULK_FLAG).to_le_bytes();
        write_all(&header, |p| self.chan.write(p))?;
        write_all(body, |p| self.chan.write_bulk(p))
    }

    /// Receives a value sent with [`send`](Connection::send). Blocks until a
    /// whole message is there; fails with [`Error::is_eof`] once the peer
    /// closed its end.
    ///
    /// Handles that came with the message are the ones its
    /// [`PassedHandle`](crate::PassedHandle)s and `Connection` ends take;
    /// those it leaves are closed.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        let (bytes, handles) = self.recv_with_handles()?;
        let decode = || encode::from_bytes(&bytes);
        let value = if handles.is_empty() {
            decode()
        } else {
            handles::receiving_message(handles, decode)
        };
        value.map_err(|e| e.into_error("a message"))
    }

    /// Receives one message's bytes. Handles that came with it are
    /// closed (receive it with [`recv`](Connection::recv) to take them).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_with_handles().map(|(bytes, _)| bytes)
    }

    /// Receives one message: its bytes, and the handles that came with it
    /// (tokens in the bytes are their indexes).
    pub(crate) fn recv_with_handles(&self) -> Result<(Vec<u8>, Carried)> {
        let (bytes, handles) = self.recv_frame()?;
        Ok((bytes, handles?))
    }

    /// [`recv_with_handles`](Self::recv_with_handles), with the message's
    /// bytes also when its handles could not be taken (a bad count, or on
    /// Windows values it can't take).
    #[allow(clippy::type_complexity)] // a message, and its handles or why not
    pub(crate) fn recv_frame(&self) -> Result<(Vec<u8>, Result<Carried>)> {
        let mut rx = self.rx_guard()?;
        let (len, bulk, with_handles) = self.frame_header(&mut rx)?;
        let len = usize::try_from(len).map_err(|_| self.too_large(&mut rx, len))?;
        rx.consume(HEADER);
        if !with_handles {
            return Ok((self.recv_body(&mut rx, len, bulk)?, Ok(Carried::default())));
        }
        // Unix: the fds were sent just before the frame; take them before
        // a body on the bulk lane, which they precede there.
        let came = match self.chan.recv_handles() {
            Ok(came) => came,
            Err(e) => return Err(self.poison(&mut rx, format!("a message's handles: {e}"))),
        };
        let mut body = self.recv_body(&mut rx, len, bulk)?;
        let Some((count, values, at)) = handles::take_block(&body) else {
            return Err(self.poison(&mut rx, "a message's handle block is malformed".into()));
        };
        let handles = self
            .chan
            .adopt_handles(came, count, &values, self.handle_peer())
            .map(Carried::from_received)
            .map_err(|e| Error::io("cannot take the handles of a message", e));
        body.drain(..at);
        Ok((body, handles))
    }

    /// Poisons this end: `why` is the error of this and every later call.
    fn poison(&self, rx: &mut Rx, why: String) -> Error {
        rx.poisoned = Some(why.clone());
        Error::new(Kind::Poisoned(why))
    }

    /// Reads the `len`-byte body of the frame whose header was consumed.
    fn recv_body(&self, rx: &mut Rx, len: usize, bulk: bool) -> Result<Vec<u8>> {
        if bulk {
            return self.read_bulk_body(rx, len);
        }
        let avail = rx.avail();
        if avail.len() >= len {
            let msg = avail[..len].to_vec();
            rx.consume(len);
            return Ok(msg);
        }
        // A big message: read straight into its own buffer, grown as the
        // bytes arrive (never more than the cap, which was checked).
        // Room for the whole frame up to 64 MiB at once (one allocation, no
        // copies while growing); past that, grow with the bytes that arrive,
        // so a peer that announces a big frame and stalls costs no more.
        let mut msg = Vec::with_capacity(len.min(64 << 20));
        msg.extend_from_slice(avail);
        let n = avail.len();
        rx.consume(n);
        while msg.len() < len {
            // Grow with the bytes that arrive (doubling), never past the
            // frame, and never read into the next frame.
            let step = (len - msg.len()).min(msg.len().max(CHUNK * 16));
            match self.read_more(false, &mut msg, step) {
                Ok(0) => return Err(self.eof(rx)),
                Ok(_) => {}
                Err(e) => return Err(Error::io("cannot receive", e)),
            }
        }
        Ok(msg)
    }

    /// Receives one message into `buf`, returning its length; fails without
    /// consuming the message when `buf` is too small (Python's
    /// `BufferTooShort`), telling the size needed. The message is then kept
    /// for this end in this process (its header was read already): receive
    /// it here, not in another process sharing the end.
    ///
    /// A message that carried handles is taken whole whatever `buf`'s
    /// size, and its handles are closed: when `buf` is too small for it,
    /// the error tells the size and the message is gone.
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let mut rx = self.rx_guard()?;
        let (len, bulk, with_handles) = self.frame_header(&mut rx)?;
        if with_handles {
            drop(rx);
            let (msg, _closed) = self.recv_with_handles()?;
            if msg.len() > buf.len() {
                return Err(Error::new(Kind::BufferTooShort {
                    needed: msg.len() as u64,
                    have: buf.len(),
                }));
            }
            buf[..msg.len()].copy_from_slice(&msg);
            return Ok(msg.len());
        }
        if len > buf.len() as u64 {
            return Err(Error::new(Kind::BufferTooShort {
                needed: len,
                have: buf.len(),
            }));
        }
        let len = len as usize;
        rx.consume(HEADER);
        if bulk {
            let body = self.read_bulk_body(&mut rx, len)?;
            buf[..len].copy_from_slice(&body);
            return Ok(len);
        }
        let avail = rx.avail();
        let first = avail.len().min(len);
        buf[..first].copy_from_slice(&avail[..first]);
        rx.consume(first);
        let mut have = first;
        while have < len {
            let got = self.read_some(&mut rx, &mut buf[have..len])?;
            have += got;
        }
        Ok(len)
    }

    /// Whether a message (or end of file) can be received without
    /// blocking, waiting at most `timeout` (forever with `None`, or with a
    /// timeout too long to be a deadline, such as `Duration::MAX`).
    ///
    /// Receives nothing: a message that is there stays in the pipe for
    /// whichever process receives next.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let mut rx = self.rx_guard()?;
        if !rx.avail().is_empty() || rx.eof {
            return Ok(true);
        }
        // A Windows socket has nothing to wait on (`as_raw` is `None`): it
        // is read into the buffer, as an end that reads ahead is (such an
        // end can't be passed to another process, so nothing is taken
        // from one).
        if let (false, Some(raw)) = (self.read_ahead, self.chan.as_raw()) {
            // Readable (Unix: poll(2); Windows: a zero-byte overlapped
            // read), without taking anything. The header of a bulk-lane
            // message is on the pipe too, so the pipe is what tells.
            let ready = sys::wait_any(&[raw], timeout).map_err(|e| Error::io("cannot poll", e))?;
            return Ok(!ready.is_empty());
        }
        let mut chunk = [0u8; 4096];
        match self
            .chan
            .read_timeout(None, &mut chunk, timeout)
            .map_err(|e| Error::io("cannot poll", e))?
        {
            None => Ok(false),
            Some(0) => {
                rx.eof = true;
                Ok(true)
            }
            Some(n) => {
                rx.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// Writes `bytes` as they are, unframed: for tests that forge frames.
    /// A test hook (feature `test-hooks`), not part of the stable API.
    #[cfg(feature = "test-hooks")]
    pub fn send_unframed(&self, bytes: &[u8]) -> Result<()> {
        self.write_frame(bytes, &[])
    }

    /// Closes this end (the same as dropping it).
    pub fn close(self) {}

    /// Shuts a socket connection (`Listener`/`Client`) down both ways:
    /// receives on it, here (a blocked one too) and at the peer, end with
    /// end of file, and sends fail, whoever holds a copy. For the pool, to
    /// end a launched worker's connection when the worker's process can't
    /// be killed directly. An error on a pipe end.
    pub(crate) fn shutdown(&self) -> Result<()> {
        self.chan
            .shutdown()
            .map_err(|e| Error::io("cannot shut the connection down", e))
    }

    fn rx_guard(&self) -> Result<MutexGuard<'_, Rx>> {
        if !self.readable {
            return Err(Error::new(Kind::WrongDirection("recv on a write-only end")));
        }
        let rx = lock(&self.rx);
        if let Some(why) = &rx.poisoned {
            return Err(Error::new(Kind::Poisoned(why.clone())));
        }
        Ok(rx)
    }

    /// Makes sure the 8-byte header is buffered; returns the body length
    /// (checked against the cap), whether the body is on the bulk lane and
    /// whether handles come with it, and leaves the header in place.
    fn frame_header(&self, rx: &mut Rx) -> Result<(u64, bool, bool)> {
        while rx.avail().len() < HEADER {
            let want = HEADER - rx.avail().len();
            self.fill(rx, want)?;
        }
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&rx.avail()[..HEADER]);
        let raw = u64::from_le_bytes(h);
        let len = raw & !(BULK_FLAG | HANDLES_FLAG);
        let (bulk, with_handles) = (raw & BULK_FLAG != 0, raw & HANDLES_FLAG != 0);
        if len > self.max_message_len() {
            return Err(self.too_large(rx, len));
        }
        if bulk && !self.chan.has_bulk() {
            let why = "a frame for a bulk lane this end doesn't have";
            rx.poisoned = Some(why.into());
            return Err(Error::new(Kind::Poisoned(why.into())));
        }
        Ok((len, bulk, with_handles))
    }

    /// Reads a `len`-byte body from the bulk lane.
    fn read_bulk_body(&self, rx: &mut Rx, len: usize) -> Result<Vec<u8>> {
        // Room for up to 64 MiB at once; past that, grow as bytes arrive.
        let mut msg = Vec::with_capacity(len.min(64 << 20));
        while msg.len() < len {
            let step = (len - msg.len()).min(msg.len().max(CHUNK * 16));
            match self.read_more(true, &mut msg, step) {
                Ok(0) => {
                    let why = "the peer closed the connection in the middle of a message";
                    rx.poisoned = Some(why.into());
                    return Err(Error::new(Kind::Poisoned(why.into())));
                }
                Ok(_) => {}
                Err(e) => return Err(Error::io("cannot receive", e)),
            }
        }
        Ok(msg)
    }

    fn too_large(&self, rx: &mut Rx, len: u64) -> Error {
        let max = self.max_message_len();
        rx.poisoned = Some(format!(
            "a frame of {len} bytes was over the cap of {max}; the stream can't be resynchronized"
        ));
        Error::new(Kind::MessageTooLarge { len, max })
    }

    /// Reads more into the buffer, blocking: `want` bytes at most, or a
    /// whole chunk on an end that reads ahead; an error at end of file. A
    /// frame cut off by EOF poisons the connection.
    fn fill(&self, rx: &mut Rx, want: usize) -> Result<()> {
        if rx.start > 0 && rx.start == rx.buf.len() {
            rx.buf.clear();
            rx.start = 0;
        }
        let max = if self.read_ahead { CHUNK } else { want };
        // One read(2), into unfilled spare capacity.
        let got = self
            .read_more(false, &mut rx.buf, max)
            .map_err(|e| Error::io("cannot receive", e))?;
        if got == 0 {
            return Err(self.eof(rx));
        }
        Ok(())
    }

    /// Reads directly into `dst` (after the buffer was drained).
    fn read_some(&self, rx: &mut Rx, dst: &mut [u8]) -> Result<usize> {
        match self.chan.read_timeout(None, dst, None) {
            Ok(Some(0)) | Ok(None) => Err(self.eof(rx)),
            Ok(Some(n)) => Ok(n),
            Err(e) => Err(Error::io("cannot receive", e)),
        }
    }

    fn eof(&self, rx: &mut Rx) -> Error {
        rx.eof = true;
        if rx.avail().is_empty() {
            Error::new(Kind::Eof)
        } else {
            let why = "the peer closed the connection in the middle of a message";
            rx.poisoned = Some(why.into());
            Error::new(Kind::Poisoned(why.into()))
        }
    }

    pub(crate) fn has_buffered(&self) -> bool {
        let rx = lock(&self.rx);
        !rx.avail().is_empty() || rx.eof || rx.poisoned.is_some()
    }

    pub(crate) fn channel(&self) -> &sys::Channel {
        &self.chan
    }
}

#[cfg(all(test, unix))]
mod tests;
