//! Handle passing: how an OS handle inside a value reaches the process
//! that decodes it — a worker's arguments at spawn, a pool task, a message
//! sent over a [`Connection`](crate::Connection).
//!
//! One mechanism serves them all: "the handle transfer of the message
//! being built (decoded) on this thread". While a value is serialized for
//! another process, the thread holds an outgoing transfer: the child being
//! spawned ([`spawning`]: `DuplicateHandle` into it on Windows, a copy of
//! the fd sent with the bootstrap data by `SCM_RIGHTS` on Unix), or a
//! message, pool task or pool result ([`collecting`]: copies owned by this
//! process until the message is sent with them, see `connection/mod.rs`;
//! on Windows the frame then carries handle values: on a channel between
//! a parent and the child it started, values the parent duplicated into
//! the child or takes out of it (`sys::Peer`, `sys/windows/rights.rs`);
//! on any other pipe end, values the sender holds in itself for the
//! receiver to take, with the sender's id, `sys/windows/held.rs`). A handle met there
//! (a [`PassedHandle`], a `Connection`, or any type that calls
//! [`pass_handle`]) is added to it and written as a **token**, a `u64`
//! under which the receiver finds its own copy. While the receiver decodes,
//! the thread holds the handles that came ([`receiving`] for a worker's
//! bootstrap channel, [`receiving_message`] for a message, [`next_task`]
//! windows for a pool task), and [`take_passed_handle`] turns a token back
//! into an owned handle, once. Handles that came and were not claimed are
//! closed when the decoding ends. The bootstrap channel is a source only
//! while a worker decodes what its parent sent at spawn ([`bootstrap_decode`]:
//! its arguments, a pool initializer's, its captured output): a token
//! anywhere else names the handles of a message or nothing, so a message
//! that came without handles can never name one of the worker's own.
//!
//! # Handles over a `Connection` on Windows: who duplicates
//!
//! Windows can't send a handle down a pipe: some process that holds a
//! handle with `PROCESS_DUP_HANDLE` on the other must `DuplicateHandle` it
//! from one table into the other, and the frame carries handle values.
//! Which process does it depends on what the end knows of the process at
//! its other end (`sys::Peer`).
//!
//! **A known peer** — two kinds of end know it for certain:
//!
//! - the parent's end of a channel it made for a child at that child's
//!   spawn and kept: a pool's channel to its worker, and the end
//!   [`Process::spawn_connected`](crate::Process::spawn_connected) returns.
//!   It holds the child's process handle (from `CreateProcessW`: it can't
//!   name another process, even after the child exited);
//! - the child's end of that channel, which the parent marked so in the
//!   spawn's own arguments ([`ConnectionWire::to_parent`], honored only in
//!   a [`bootstrap_decode`]: the parent wrote it; in a message it is a
//!   decode error).
//!
//! There **the parent duplicates, both ways**. Parent → child: into
//! the child, before the frame goes; the child wraps the values, which its
//! parent put there for it alone. Child → parent: the child makes copies
//! and leaves them open, unowned, in its own table; the parent takes each
//! out with `DUPLICATE_CLOSE_SOURCE`, which closes the child's copy
//! whatever the outcome. A handle has one owner at every moment; a child
//! that dies takes what it left with it; nothing stays behind in a sender
//! that goes on running. A frame of this kind read by a copy of either
//! end passed on to a third process is refused: the values it names are
//! in another process's table (they stay in the child until it exits).
//!
//! **Any other end of a pipe** (a `Pipe` end handed to a child or to two
//! siblings, a copy of a known end passed on): the peer is not known, and
//! the OS can't tell it (it names the process that *opened* a named pipe,
//! not the one holding it now). There **the sender holds, the receiver
//! takes**, as CPython's `multiprocessing.reduction.DupHandle` does: the
//! sender leaves its own copies open in itself and the frame names it (its
//! process id and start time, `sys/windows/held.rs`); the receiver opens
//! it, checks it is still that process, and takes the copies out with
//! `DUPLICATE_CLOSE_SOURCE`. The receiver then checks what each handle is
//! where it is decoded (a section and its size, a kernel object's type),
//! as for a handle passed at spawn. The costs: a message never received
//! keeps its handles open in the sender until it exits; a message received
//! after its sender exited fails with an error that says so; and message
//! bytes name a process, so a forged frame could make a receiver take a
//! handle from another process of the same user that it names (only
//! holders of one of our pipes' ends can write one). A `Listener`/`Client`
//! connection carries no handles in either direction.
//!
//! A send that fails part-way (a duplication, or writing the frame) takes
//! back what it did.
//!
//! Wire forms (postcard, inside the value):
//!
//! - a [`PassedHandle`]: its token;
//! - a `Connection` end ([`ConnectionWire`]): the kind tag, the tokens of
//!   the handles the tag lists, in that order, then the end's flags, its
//!   message cap, and whether it is a child's channel to its parent (see
//!   below). The tag says which handles make up the end, so the
//!   worker never has to guess a handle's role from what it is:
//!
//! | tag bit | meaning |
//! |---|---|
//! | 1 ([`MAIN_IS_SOCKET`]) | the first handle is a socket (Unix), not a pipe |
//! | 2 ([`HAS_WRITE`]) | a second handle follows: the pipe end a duplex end writes to (Unix) |
//! | 4 ([`HAS_BULK`]) | a last handle follows: the bulk-lane socket (Unix) |
//!
//! A tag with other bits, or a number of tokens other than the tag lists,
//! is refused ([`HandlesError`]) before any handle is taken.
//!
//! A message that carries handles starts with a block ([`put_block`],
//! [`take_block`]): the number of handles, then the values the receiver
//! finds them under where the OS can't send them (Windows: the values in
//! the receiver the parent duplicated them to, or in the child it takes
//! them out of; a held block's sender id, start time and message number,
//! then the values in the sender; Unix: none, the fds travel on the
//! socket).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::sys;

mod tasks;

#[cfg(any(test, feature = "test-hooks"))]
pub(crate) use tasks::hooks;
pub(crate) use tasks::{next_task, receiving_batch, task_decoded, TaskTransfer};
use tasks::{IN_BATCH, PASSED};

/// Where handles met while serializing on this thread go.
enum Outgoing {
    /// A spawn: into the child (Windows) or with its bootstrap data.
    Spawn(Arc<sys::Child>, sys::HandleTransfer),
    /// A message or pool task: copies owned here until it is sent.
    Message(Vec<sys::OwnedRaw>),
}

/// The handles of the message being decoded on this thread.
struct Incoming {
    handles: Vec<Option<sys::OwnedRaw>>,
    /// A pool chunk: how many handles each task has (empty: the whole
    /// message is one window).
    counts: Vec<u32>,
    /// The next task's index in `counts`.
    task: usize,
    /// The window tokens index: `handles[base..base + len]`.
    base: usize,
    len: usize,
}

thread_local! {
    /// The transfer of the value being serialized on this thread for
    /// another process (CPython's `get_spawning_popen()`, generalized).
    static OUTGOING: RefCell<Option<Outgoing>> = const { RefCell::new(None) };

    /// The worker's bootstrap channel while it decodes its arguments: where
    /// passed handles are taken from.
    static RECEIVING: RefCell<Option<sys::ChildChannel>> = const { RefCell::new(None) };

    /// The handles of the message or pool chunk being decoded.
    static MESSAGE_IN: RefCell<Option<Incoming>> = const { RefCell::new(None) };

    /// In a [`bootstrap_decode`].
    static BOOTSTRAP: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` (which serializes a child's arguments) with `child` as
/// the child being spawned on this thread; returns what it returned and
/// the handles it passed, to send with the bootstrap data.
pub(crate) fn spawning<R>(
    child: &Arc<sys::Child>,
    build: impl FnOnce() -> R,
) -> (R, sys::HandleTransfer) {
    let outer = OUTGOING.with(|s| {
        s.borrow_mut()
            .replace(Outgoing::Spawn(Arc::clone(child), Default::default()))
    });
    let out = build();
    let transfer = match OUTGOING.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer)) {
        Some(Outgoing::Spawn(_, t)) => t,
        _ => Default::default(),
    };
    (out, transfer)
}

/// The most handles one message (a pool frame included) carries.
pub(crate) const MAX_HANDLES: usize = sys::MAX_MESSAGE_HANDLES;

/// Handles that travel with a message or a pool task: copies owned by
/// this process, closed when dropped (once sent, or when the task is
/// done).
#[derive(Debug, Default)]
pub(crate) struct Carried(Vec<sys::OwnedRaw>);

impl Carried {
    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds `other`'s after these.
    pub(crate) fn append(&mut self, mut other: Carried) {
        self.0.append(&mut other.0);
    }

    /// The handles of `parts`, in order, borrowed (to send).
    pub(crate) fn borrow_all<'a>(parts: &[&'a Carried]) -> Vec<sys::BorrowedRaw<'a>> {
        parts
            .iter()
            .flat_map(|c| c.0.iter().map(sys::borrow))
            .collect()
    }

    /// Received handles.
    pub(crate) fn from_received(handles: Vec<sys::OwnedRaw>) -> Self {
        Carried(handles)
    }

    /// Splits off the first `n` (fewer if there are fewer).
    pub(crate) fn take_front(&mut self, n: usize) -> Carried {
        let rest = self.0.split_off(n.min(self.0.len()));
        Carried(std::mem::replace(&mut self.0, rest))
    }
}

/// Runs `build` (which serializes a message or a pool task) with a message
/// transfer on this thread; returns what it returned and copies of the
/// handles it passed (tokens are their indexes), to send with it. Without
/// handles this costs no system call and no allocation.
pub(crate) fn collecting<R>(build: impl FnOnce() -> R) -> (R, Carried) {
    #[cfg(any(test, feature = "test-hooks"))]
    tasks::count(&tasks::TRANSFERS_OPENED);
    let outer = OUTGOING.with(|s| s.borrow_mut().replace(Outgoing::Message(Vec::new())));
    let out = build();
    let handles = match OUTGOING.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer)) {
        Some(Outgoing::Message(v)) => v,
        _ => Vec::new(),
    };
    (out, Carried(handles))
}

/// Makes `handle` travel with the value being serialized on this thread
/// for another process, and returns the token under which the receiver
/// finds its own copy.
///
/// Valid from a `Serialize` impl while a value is serialized for another
/// process: a spawn's arguments, a pool task's arguments
/// ([`Pool::submit`](crate::Pool::submit), `map`, `imap`, …) or result
/// (in the worker), a message sent with
/// [`Connection::send`](crate::Connection::send); [`PassedHandle`],
/// `Connection`, the shared blocks and the synchronization primitives do
/// this. Anywhere else it fails with [`Error::is_not_spawning`] (except
/// in a pool task, outside any such serialization: there the copy it
/// makes is closed before the task's result is serialized). The caller
/// keeps its own handle either way.
///
/// How it travels: at spawn, `DuplicateHandle` into the child (Windows) or
/// a copy of the fd sent with the bootstrap data by `SCM_RIGHTS` (Unix).
/// In a message, task or result, a copy is made now, owned by this process
/// until the message is sent (or the task is done): on Unix it goes as
/// `SCM_RIGHTS` on the connection's socket; on Windows the parent of the
/// two processes duplicates it — into a pool worker for a task, out of it
/// for a result, either way over
/// [`Process::spawn_connected`](crate::Process::spawn_connected)'s
/// channel — and over any other [`Pipe`](crate::Pipe) end the sender
/// keeps its copy open until the receiver takes it out of the sender (see
/// [`Connection`](crate::Connection)); a `Listener`/`Client` connection
/// carries none. A [`Process`](crate::Process)'s result can't carry
/// handles: its `join` fails with [`Error::is_result_encode`].
pub fn pass_handle(handle: sys::BorrowedRaw<'_>) -> Result<u64> {
    OUTGOING.with(|s| {
        let mut s = s.borrow_mut();
        match s.as_mut().ok_or_else(|| Error::new(Kind::NotSpawning))? {
            Outgoing::Spawn(child, transfer) => transfer
                .add(child, handle)
                .map_err(|e| Error::io("cannot duplicate a handle for the child", e)),
            Outgoing::Message(v) => {
                if v.len() >= sys::MAX_MESSAGE_HANDLES {
                    return Err(Error::io(
                        "cannot pass a handle",
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "a message can carry at most {} handles",
                                sys::MAX_MESSAGE_HANDLES
                            ),
                        ),
                    ));
                }
                let copy = sys::duplicate(handle)
                    .map_err(|e| Error::io("cannot duplicate a handle for a message", e))?;
                v.push(copy);
                PASSED.set(PASSED.get() + 1);
                Ok((v.len() - 1) as u64)
            }
        }
    })
}

/// The former name of [`pass_handle`], kept for the callers written when
/// handles crossed only at spawn: the same function.
pub fn duplicate_for_child(handle: sys::BorrowedRaw<'_>) -> Result<u64> {
    pass_handle(handle)
}

/// Runs `decode` (of what the parent sent at spawn: the arguments, a pool
/// initializer's, captured output's tokens) with the bootstrap channel
/// given to [`receiving`] as where tokens are taken from; outside it they
/// are not (see the module docs).
pub(crate) fn bootstrap_decode<R>(decode: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            BOOTSTRAP.with(|b| b.set(self.0));
        }
    }
    let _reset = Reset(BOOTSTRAP.with(|b| b.replace(true)));
    // A message decoded inside (a pool initializer's `recv`) has its own.
    let outer = MESSAGE_IN.with(|m| m.borrow_mut().take());
    struct Restore(Option<Incoming>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            MESSAGE_IN.with(|m| *m.borrow_mut() = outer);
        }
    }
    let _restore = Restore(outer);
    decode()
}

/// Whether this thread is in a [`bootstrap_decode`] (and no message's
/// decoding inside it).
pub(crate) fn in_bootstrap_decode() -> bool {
    BOOTSTRAP.with(Cell::get) && MESSAGE_IN.with(|m| m.borrow().is_none())
}

/// Worker side: from now on passed handles are taken from `chan`, the
/// worker's bootstrap channel, in a [`bootstrap_decode`].
pub(crate) fn receiving(chan: sys::ChildChannel) {
    RECEIVING.with(|c| *c.borrow_mut() = Some(chan));
}

/// Worker side: calls `f` with the bootstrap channel given to
/// [`receiving`], if it is still there.
pub(crate) fn with_receiving<R>(f: impl FnOnce(Option<&sys::ChildChannel>) -> R) -> R {
    RECEIVING.with(|c| f(c.borrow().as_ref()))
}

/// Worker side: ends [`receiving`], giving the channel back; later tokens
/// can't be taken.
pub(crate) fn stop_receiving() -> Option<sys::ChildChannel> {
    RECEIVING.with(|c| c.borrow_mut().take())
}

/// Runs `decode` with `handles` (those that came with a message; tokens
/// are their indexes) as the ones [`take_passed_handle`] takes from; the
/// ones not taken are closed when it returns.
pub(crate) fn receiving_message<R>(handles: Carried, decode: impl FnOnce() -> R) -> R {
    let handles = handles.0;
    let len = handles.len();
    let incoming = Incoming {
        handles: handles.into_iter().map(Some).collect(),
        counts: Vec::new(),
        task: 0,
        base: 0,
        len,
    };
    with_incoming(incoming, decode)
}

fn with_incoming<R>(incoming: Incoming, f: impl FnOnce() -> R) -> R {
    let batch = IN_BATCH.replace(!incoming.counts.is_empty());
    let outer = MESSAGE_IN.with(|m| m.borrow_mut().replace(incoming));
    // Restored (and the handles nobody took closed) even if `f` panics.
    struct Restore(Option<Incoming>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            let mine = MESSAGE_IN.with(|m| std::mem::replace(&mut *m.borrow_mut(), outer));
            IN_BATCH.set(self.1);
            drop(mine);
        }
    }
    let _restore = Restore(outer, batch);
    f()
}

/// Takes a handle passed with [`pass_handle`], by its token (each once):
/// from the message being decoded on this thread, else from the worker's
/// bootstrap channel in a [`bootstrap_decode`].
pub(crate) fn take_passed_handle(token: u64) -> io::Result<sys::OwnedRaw> {
    let from_message = MESSAGE_IN.with(|m| {
        let mut m = m.borrow_mut();
        let inc = m.as_mut()?;
        let taken = usize::try_from(token)
            .ok()
            .filter(|&i| i < inc.len)
            .and_then(|i| inc.handles.get_mut(inc.base + i))
            .and_then(Option::take);
        Some(taken.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "no passed handle {token} in this message ({} came with it), or it was taken already",
                    inc.len
                ),
            )
        }))
    });
    if let Some(r) = from_message {
        return r;
    }
    RECEIVING.with(|c| match c.borrow_mut().as_mut() {
        Some(ch) if BOOTSTRAP.with(Cell::get) => ch.take_handle(token),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no passed handle {token}: no handles came with this message"),
        )),
    })
}

/// Appends a handle block (see the module docs) for `count` handles with
/// `values` to `out`.
pub(crate) fn put_block(out: &mut Vec<u8>, count: usize, values: &[u64]) {
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads a handle block off the front of `body`: the number of handles,
/// the values, and how many bytes the block took; `None` when it is cut
/// off, says more than [`sys::MAX_MESSAGE_HANDLES`] handles or names more
/// than [`sys::MAX_BLOCK_VALUES`] values.
pub(crate) fn take_block(body: &[u8]) -> Option<(usize, Vec<u64>, usize)> {
    let word = |at: usize| -> Option<usize> {
        let b = body.get(at..at + 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let count = word(0)?;
    let n = word(4)?;
    if count > sys::MAX_MESSAGE_HANDLES || n > sys::MAX_BLOCK_VALUES {
        return None;
    }
    let end = 8 + n * 8;
    let values = body
        .get(8..end)?
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Some((count, values, end))
}

/// An OS handle (a Unix fd, a Windows `HANDLE`) sent to another process
/// inside a value: a worker's arguments, a pool task's arguments, a
/// message over a [`Connection`](crate::Connection).
///
/// Serializing it calls [`pass_handle`], so it is only possible while such
/// a value is serialized (elsewhere: [`Error::is_not_spawning`]); the
/// receiver, deserializing it, gets its own copy, and this process keeps
/// its own. A pool task may return one (see [`Pool`](crate::Pool)). A
/// message or task with handles that is never received: its handles are
/// closed with it on Unix (the socket closes the fds it holds when its
/// last end closes); on Windows they stay open until a process exits: the
/// receiving process for a pool task or a message over
/// [`Process::spawn_connected`](crate::Process::spawn_connected)'s
/// channel (the worker, for a pool result), the *sending* process for a
/// message over any other [`Pipe`](crate::Pipe) end — and there a message
/// received after its sender exited fails with an error that says so (see
/// "Handles in messages" on [`Connection`](crate::Connection)).
#[derive(Debug)]
pub struct PassedHandle(sys::OwnedRaw);

impl PassedHandle {
    /// Wraps a handle to send.
    pub fn new(handle: sys::OwnedRaw) -> Self {
        PassedHandle(handle)
    }

    /// The handle.
    pub fn into_inner(self) -> sys::OwnedRaw {
        self.0
    }
}

impl Serialize for PassedHandle {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let token = pass_handle(sys::borrow(&self.0)).map_err(encode::handle_error)?;
        s.serialize_u64(token)
    }
}

impl<'de> Deserialize<'de> for PassedHandle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let token = u64::deserialize(d)?;
        take_passed_handle(token)
            .map(PassedHandle)
            .map_err(encode::decode_error)
    }
}

/// Tag bit: the first handle is a socket.
pub(crate) const MAIN_IS_SOCKET: u8 = 1;
/// Tag bit: the pipe end a duplex end writes to follows the first handle.
pub(crate) const HAS_WRITE: u8 = 2;
/// Tag bit: the bulk-lane socket comes last.
pub(crate) const HAS_BULK: u8 = 4;
const KNOWN: u8 = MAIN_IS_SOCKET | HAS_WRITE | HAS_BULK;

/// Why a passed channel end's tag and handles don't fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HandlesError {
    /// The tag has bits this version does not know.
    UnknownKind(u8),
    /// The number of handles is not the one the tag lists.
    Count {
        /// What the tag lists.
        expected: usize,
        /// What arrived.
        got: usize,
    },
}

impl fmt::Display for HandlesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlesError::UnknownKind(k) => write!(f, "a passed channel of unknown kind {k:#04x}"),
            HandlesError::Count { expected, got } => write!(
                f,
                "a passed channel with {got} handles where its kind lists {expected}"
            ),
        }
    }
}

/// The kind tag of `parts`.
pub(crate) fn kind_of<H>(parts: &sys::ChannelParts<H>) -> u8 {
    let bit = |yes: bool, b: u8| if yes { b } else { 0 };
    bit(parts.main_is_socket, MAIN_IS_SOCKET)
        | bit(parts.write.is_some(), HAS_WRITE)
        | bit(parts.bulk.is_some(), HAS_BULK)
}

/// The handles of `parts`, in wire order: first, write end, bulk lane.
pub(crate) fn handles_of<H>(parts: sys::ChannelParts<H>) -> Vec<H> {
    std::iter::once(parts.main)
        .chain(parts.write)
        .chain(parts.bulk)
        .collect()
}

/// Checks `kind` against `count` handles: an error unless the tag is
/// known and lists exactly that many.
pub(crate) fn check_kind(kind: u8, count: usize) -> std::result::Result<(), HandlesError> {
    if kind & !KNOWN != 0 {
        return Err(HandlesError::UnknownKind(kind));
    }
    let expected = 1 + usize::from(kind & HAS_WRITE != 0) + usize::from(kind & HAS_BULK != 0);
    if count != expected {
        return Err(HandlesError::Count {
            expected,
            got: count,
        });
    }
    Ok(())
}

/// The parts that `kind` says `handles` are (checked with [`check_kind`]).
pub(crate) fn parts_of<H>(
    kind: u8,
    handles: Vec<H>,
) -> std::result::Result<sys::ChannelParts<H>, HandlesError> {
    check_kind(kind, handles.len())?;
    let mut it = handles.into_iter();
    let mut next = |yes: bool| if yes { it.next() } else { None };
    let main = next(true);
    let write = next(kind & HAS_WRITE != 0);
    let bulk = next(kind & HAS_BULK != 0);
    Ok(sys::ChannelParts {
        main: main.expect("check_kind counted the first handle"),
        main_is_socket: kind & MAIN_IS_SOCKET != 0,
        write,
        bulk,
    })
}

/// The wire form of a [`Connection`](crate::Connection) end.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConnectionWire {
    /// Which handles follow (the tag bits above).
    pub kind: u8,
    /// Their tokens, in wire order.
    pub handles: Vec<u64>,
    /// The end can receive.
    pub readable: bool,
    /// The end can send.
    pub writable: bool,
    /// The end reads ahead (see `Pipe::duplex_read_ahead`).
    pub read_ahead: bool,
    /// The largest message the end accepts.
    pub max_len: u64,
    /// The end is the child's end of a channel its parent made for it at
    /// its spawn and keeps (see the module docs); honored only in a
    /// [`bootstrap_decode`].
    pub to_parent: bool,
}

/// A `Connection` end's settings besides its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EndSettings {
    /// The end can receive.
    pub readable: bool,
    /// The end can send.
    pub writable: bool,
    /// The end reads ahead.
    pub read_ahead: bool,
    /// The largest message the end accepts.
    pub max_len: u64,
    /// See [`ConnectionWire::to_parent`].
    pub to_parent: bool,
}

/// Writes a `Connection` end: passes its handles with the value being
/// serialized ([`pass_handle`]), then writes its wire form.
/// `end.to_parent` only for the child's end of a channel made at its
/// spawn, while spawning that child.
pub(crate) fn serialize_end<S: Serializer>(
    chan: &sys::Channel,
    end: EndSettings,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let parts = chan
        .pass_handles()
        .map_err(|e| encode::handle_error(Error::io("cannot pass a connection", e)))?;
    let kind = kind_of(&parts);
    let handles = handles_of(parts)
        .into_iter()
        .map(pass_handle)
        .collect::<Result<Vec<u64>>>()
        .map_err(encode::handle_error)?;
    ConnectionWire {
        kind,
        handles,
        readable: end.readable,
        writable: end.writable,
        read_ahead: end.read_ahead,
        max_len: end.max_len,
        to_parent: end.to_parent,
    }
    .serialize(s)
}

/// Reads a `Connection` end written by [`serialize_end`]: checks the tag
/// against the tokens (and that an end marked as the channel to the
/// parent came in the spawn's own arguments), takes the worker's copies of
/// the handles and rebuilds the channel.
pub(crate) fn deserialize_end<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<(sys::Channel, EndSettings), D::Error> {
    let w = ConnectionWire::deserialize(d)?;
    check_kind(w.kind, w.handles.len()).map_err(encode::decode_error)?;
    if w.to_parent && !in_bootstrap_decode() {
        return Err(encode::decode_error(
            "a Connection end marked as a child's channel to its parent arrived \
             elsewhere than in that child's spawn arguments",
        ));
    }
    let handles = w
        .handles
        .into_iter()
        .map(take_passed_handle)
        .collect::<io::Result<Vec<_>>>()
        .map_err(encode::decode_error)?;
    let parts = parts_of(w.kind, handles).map_err(encode::decode_error)?;
    let chan = sys::Channel::from_passed(parts).map_err(encode::decode_error)?;
    let end = EndSettings {
        readable: w.readable,
        writable: w.writable,
        read_ahead: w.read_ahead,
        max_len: w.max_len,
        to_parent: w.to_parent,
    };
    Ok((chan, end))
}

#[cfg(test)]
mod tests;
