//! A `Connection`'s serde form: only while spawning, or over another
//! `Connection`, the receiver gets its own copy of the end (the wire form,
//! a kind tag then the handles' tokens, is `codec::handles`'s).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Connection;
use crate::codec::handles;

impl Connection {
    fn serialize_as<S: Serializer>(
        &self,
        to_parent: bool,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let end = handles::EndSettings {
            readable: self.readable,
            writable: self.writable,
            read_ahead: self.read_ahead,
            max_len: self.max_message_len(),
            to_parent,
        };
        handles::serialize_end(&self.chan, end, s)
    }
}

impl Serialize for Connection {
    /// Only while spawning: the worker gets its own copy of this end.
    // The wire form (a kind tag, then the handles' tokens): `codec::handles`.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_as(false, s)
    }
}

/// A `Connection` end written into a child's spawn arguments as that
/// child's channel to this process: the child's copy carries handles with
/// this process on Windows too (see `codec::handles`). Only for an end
/// made for that child, whose other end this process keeps with
/// [`Connection::carry_handles_with`] and which this process does not
/// keep itself.
pub(crate) struct ChildEnd<'a>(pub(crate) &'a Connection);

impl Serialize for ChildEnd<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize_as(true, s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (chan, end) = handles::deserialize_end(d)?;
        let c = Connection::new(chan, end.readable, end.writable, end.read_ahead);
        c.set_max_message_len(end.max_len);
        if end.to_parent {
            // Checked by `deserialize_end`: in this child's spawn
            // arguments, so the parent wrote it.
            c.take_handles_from_parent();
        }
        Ok(c)
    }
}
