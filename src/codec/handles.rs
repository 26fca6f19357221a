//! Handle passing: how an OS handle inside a worker's arguments reaches
//! the worker.
//!
//! While a spawn serializes the arguments, the thread knows the child
//! being spawned ([`spawning`]); a handle met there (a [`PassedHandle`], a
//! [`Connection`](crate::Connection)) is made available to that child
//! ([`duplicate_for_child`]: `DuplicateHandle` into it on Windows, a copy
//! of the fd sent with the bootstrap data by `SCM_RIGHTS` on Unix) and
//! written as a **token**, a `u64` under which the worker finds its own
//! copy. While the worker decodes its arguments, the thread holds its
//! bootstrap channel ([`receiving`]), and [`take_passed_handle`] turns a
//! token back into an owned handle, once.
//!
//! Wire forms (postcard, inside the arguments):
//!
//! - a [`PassedHandle`]: its token;
//! - a `Connection` end ([`ConnectionWire`]): the kind tag, the tokens of
//!   the handles the tag lists, in that order, then the end's flags and
//!   message cap. The tag says which handles make up the end, so the
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

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::sys;

thread_local! {
    /// The child being spawned on this thread while its bootstrap data is
    /// built (CPython's `get_spawning_popen()`), with the handles passed so far.
    static SPAWNING: RefCell<Option<(Arc<sys::Child>, sys::HandleTransfer)>> =
        const { RefCell::new(None) };

    /// The worker's bootstrap channel while it decodes its arguments: where
    /// passed handles are taken from.
    static RECEIVING: RefCell<Option<sys::ChildChannel>> = const { RefCell::new(None) };
}

/// Runs `build` (which serializes a child's arguments) with `child` as
/// the child being spawned on this thread; returns what it returned and
/// the handles it passed, to send with the bootstrap data.
pub(crate) fn spawning<R>(
    child: &Arc<sys::Child>,
    build: impl FnOnce() -> R,
) -> (R, sys::HandleTransfer) {
    SPAWNING.with(|s| *s.borrow_mut() = Some((Arc::clone(child), Default::default())));
    let out = build();
    let transfer = SPAWNING
        .with(|s| s.borrow_mut().take())
        .map(|(_, t)| t)
        .unwrap_or_default();
    (out, transfer)
}

/// Makes `handle` available to the child that is being spawned on this
/// thread, and returns the token under which the child finds it.
///
/// Only valid while a spawn serializes its arguments, i.e. from a
/// `Serialize` impl of an argument ([`PassedHandle`] does this); anywhere
/// else it fails with [`Error::is_not_spawning`]. On Windows the handle is
/// duplicated into the child with `DuplicateHandle`; on Unix a copy of the
/// fd travels with the bootstrap data (`SCM_RIGHTS`). The caller keeps its
/// own handle either way.
pub fn duplicate_for_child(handle: sys::BorrowedRaw<'_>) -> Result<u64> {
    SPAWNING.with(|s| {
        let mut s = s.borrow_mut();
        let (child, transfer) = s.as_mut().ok_or_else(|| Error::new(Kind::NotSpawning))?;
        transfer
            .add(child, handle)
            .map_err(|e| Error::io("cannot duplicate a handle for the child", e))
    })
}

/// Worker side: from now on passed handles are taken from `chan`, the
/// worker's bootstrap channel.
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

/// Takes a handle the parent passed with [`duplicate_for_child`], by its
/// token (each once).
pub(crate) fn take_passed_handle(token: u64) -> io::Result<sys::OwnedRaw> {
    RECEIVING.with(|c| match c.borrow_mut().as_mut() {
        Some(ch) => ch.take_handle(token),
        None => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a passed handle can only be received while a worker decodes its arguments",
        )),
    })
}

/// An OS handle (a Unix fd, a Windows `HANDLE`) sent to a worker inside its
/// arguments.
///
/// Serializing it is only possible while spawning (it calls
/// [`duplicate_for_child`]); in the worker, deserializing it yields the
/// worker's own copy. It is the mechanism that lets a pipe end travel to a
/// child.
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
        let token = duplicate_for_child(sys::borrow(&self.0)).map_err(encode::handle_error)?;
        s.serialize_u64(token)
    }
}

impl<'de> Deserialize<'de> for PassedHandle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let token = u64::deserialize(d)?;
        take_passed_handle(token)
            .map(PassedHandle)
            .map_err(serde::de::Error::custom)
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
}

/// Writes a `Connection` end: passes its handles to the child being
/// spawned (only possible while spawning), then writes its wire form.
pub(crate) fn serialize_end<S: Serializer>(
    chan: &sys::Channel,
    end: EndSettings,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let parts = chan.pass_handles();
    let kind = kind_of(&parts);
    let handles = handles_of(parts)
        .into_iter()
        .map(duplicate_for_child)
        .collect::<Result<Vec<u64>>>()
        .map_err(encode::handle_error)?;
    ConnectionWire {
        kind,
        handles,
        readable: end.readable,
        writable: end.writable,
        read_ahead: end.read_ahead,
        max_len: end.max_len,
    }
    .serialize(s)
}

/// Reads a `Connection` end written by [`serialize_end`]: checks the tag
/// against the tokens, takes the worker's copies of the handles and
/// rebuilds the channel.
pub(crate) fn deserialize_end<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<(sys::Channel, EndSettings), D::Error> {
    let w = ConnectionWire::deserialize(d)?;
    check_kind(w.kind, w.handles.len()).map_err(serde::de::Error::custom)?;
    let handles = w
        .handles
        .into_iter()
        .map(take_passed_handle)
        .collect::<io::Result<Vec<_>>>()
        .map_err(serde::de::Error::custom)?;
    let parts = parts_of(w.kind, handles).map_err(serde::de::Error::custom)?;
    let chan = sys::Channel::from_passed(parts).map_err(serde::de::Error::custom)?;
    let end = EndSettings {
        readable: w.readable,
        writable: w.writable,
        read_ahead: w.read_ahead,
        max_len: w.max_len,
    };
    Ok((chan, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(socket: bool, write: bool, bulk: bool) -> sys::ChannelParts<u64> {
        sys::ChannelParts {
            main: 10,
            main_is_socket: socket,
            write: write.then_some(11),
            bulk: bulk.then_some(12),
        }
    }

    #[test]
    fn every_kind_round_trips_with_its_handles_in_order() {
        for bits in 0..8u8 {
            let p = parts(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            let kind = kind_of(&p);
            assert_eq!(kind, bits);
            let want = (p.main, p.main_is_socket, p.write, p.bulk);
            let handles = handles_of(p);
            let q = parts_of(kind, handles).unwrap();
            assert_eq!((q.main, q.main_is_socket, q.write, q.bulk), want);
        }
    }

    #[test]
    fn a_pipe_end_with_a_bulk_lane_is_not_taken_for_a_duplex_end() {
        // Two handles: which one is the second is what the tag says.
        let simplex = parts_of(HAS_BULK, vec![1u64, 2]).unwrap();
        assert_eq!((simplex.write, simplex.bulk), (None, Some(2)));
        let duplex = parts_of(HAS_WRITE, vec![1u64, 2]).unwrap();
        assert_eq!((duplex.write, duplex.bulk), (Some(2), None));
    }

    #[test]
    fn unknown_kind_bits_are_refused() {
        assert_eq!(check_kind(8, 1), Err(HandlesError::UnknownKind(8)));
        assert_eq!(
            parts_of(0x80 | HAS_WRITE, vec![1u64, 2]).unwrap_err(),
            HandlesError::UnknownKind(0x82)
        );
    }

    #[test]
    fn a_count_other_than_the_kind_lists_is_refused() {
        assert_eq!(
            check_kind(HAS_WRITE | HAS_BULK, 2),
            Err(HandlesError::Count {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            parts_of(0, Vec::<u64>::new()).unwrap_err(),
            HandlesError::Count {
                expected: 1,
                got: 0
            }
        );
        assert!(parts_of(0, vec![1u64, 2]).is_err());
    }

    #[test]
    fn connection_wire_round_trips() {
        let w = ConnectionWire {
            kind: HAS_WRITE | HAS_BULK,
            handles: vec![0, 1, 2],
            readable: true,
            writable: false,
            read_ahead: true,
            max_len: 1 << 20,
        };
        let bytes = postcard::to_allocvec(&w).unwrap();
        assert_eq!(postcard::from_bytes::<ConnectionWire>(&bytes).unwrap(), w);
        assert!(postcard::from_bytes::<ConnectionWire>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn handles_pass_only_while_spawning() {
        let (_r, w) = sys::pipe(false).unwrap();
        let e = duplicate_for_child(w.as_raw()).unwrap_err();
        assert!(e.is_not_spawning(), "{e}");
        let e = take_passed_handle(0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
}
