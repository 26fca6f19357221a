//! The wire form of a synchronization primitive (postcard, inside a value
//! that is sent): which primitive it is, the tokens of its handles
//! (passed with `codec::handles`), a word the platform keeps with them
//! and one the primitive keeps. A receiver checks the tag and the number
//! of tokens before it takes any handle, and the platform checks each
//! handle (Linux: a sealed memfd of exactly the object's size, with the
//! object's magic number and kind; Windows: a kernel object of the right
//! type) before it is used.

use std::io;

use serde::{Deserialize, Serialize};

use crate::codec::handles::{duplicate_for_child, take_passed_handle};
use crate::encode;
use crate::sys;

/// Which primitive a wire form is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Tag {
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
    Value,
    Queue,
}

/// One OS object's part of a wire form.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectWire {
    /// The tokens of its handles.
    pub tokens: Vec<u64>,
    /// The platform's word (`parts`).
    pub word: u64,
}

/// One OS object's wire form: passes its handles to the child being
/// spawned (only possible while spawning) and keeps their tokens.
pub(crate) fn object_wire(parts: (Vec<sys::BorrowedRaw<'_>>, u64)) -> crate::Result<ObjectWire> {
    let (handles, word) = parts;
    let tokens = handles
        .into_iter()
        .map(duplicate_for_child)
        .collect::<crate::Result<Vec<u64>>>()?;
    Ok(ObjectWire { tokens, word })
}

/// [`object_wire`] inside a `Serialize` impl.
pub(crate) fn ser<E: serde::ser::Error>(
    parts: (Vec<sys::BorrowedRaw<'_>>, u64),
) -> Result<ObjectWire, E> {
    object_wire(parts).map_err(encode::handle_error)
}

/// [`object_from_wire`] inside a `Deserialize` impl.
pub(crate) fn de<E: serde::de::Error, T>(
    w: ObjectWire,
    count: usize,
    open: impl FnOnce(Vec<sys::OwnedRaw>, u64) -> io::Result<T>,
) -> Result<T, E> {
    object_from_wire(w, count, open).map_err(refuse)
}

/// A `Deserialize` impl's refusal, with its message kept (postcard drops
/// it; see `encode::decode_error`).
pub(crate) fn refuse<E: serde::de::Error>(why: impl std::fmt::Display) -> E {
    encode::decode_error(why)
}

/// A received OS object: checks the number of tokens against `count`,
/// takes the handles, and builds the object with `open` (which checks
/// them).
pub(crate) fn object_from_wire<T>(
    w: ObjectWire,
    count: usize,
    open: impl FnOnce(Vec<sys::OwnedRaw>, u64) -> io::Result<T>,
) -> Result<T, String> {
    if w.tokens.len() != count {
        return Err(format!(
            "a synchronization object with {} handles where {count} are expected",
            w.tokens.len()
        ));
    }
    let handles = w
        .tokens
        .into_iter()
        .map(take_passed_handle)
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot take a synchronization object's handle: {e}"))?;
    open(handles, w.word).map_err(|e| format!("a synchronization object refused: {e}"))
}

/// Checks a received tag: the primitive expects `want`.
pub(crate) fn check_tag<E: serde::de::Error>(got: Tag, want: Tag) -> Result<(), E> {
    if got != want {
        return Err(refuse(format!(
            "a {got:?} arrived where a {want:?} was expected"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_number_of_handles_is_refused_before_any_is_taken() {
        let w = ObjectWire {
            tokens: vec![1, 2, 3],
            word: 0,
        };
        let e = object_from_wire(w, 1, |_, _| Ok(())).unwrap_err();
        assert!(e.contains("3 handles where 1"), "{e}");
        let w = ObjectWire {
            tokens: vec![],
            word: 0,
        };
        assert!(object_from_wire(w, 1, |_, _| Ok(())).is_err());
    }

    #[test]
    fn a_token_outside_a_worker_is_refused() {
        let w = ObjectWire {
            tokens: vec![0],
            word: 0,
        };
        let e = object_from_wire(w, 1, |_, _| Ok(())).unwrap_err();
        assert!(e.contains("cannot take"), "{e}");
    }
}
