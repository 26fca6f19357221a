//! Serializing with postcard without losing why it failed.
//!
//! postcard turns every error a `Serialize` impl raises into a bare "Serde
//! Serialization Error": the message given to `serde::ser::Error::custom`
//! is dropped, and with it the OS error of a handle that could not be
//! passed to a child. So:
//!
//! - a handle that can't be passed ([`handle_error`], used by the
//!   `Serialize` impls of `Connection` and `PassedHandle`) leaves its full
//!   error here, on this thread, before it fails the serializer;
//! - otherwise, when postcard reports a custom error, the value is
//!   serialized once more into nothing ([`Catch`]), which keeps the
//!   message. That costs nothing when serialization succeeds; it runs the
//!   value's `Serialize` impl a second time when it fails.
//!
//! Decoding has the same hole ("Serde Deserialization Error"): a
//! `Deserialize` impl that refuses what it received (a forged
//! shared-memory block) says why with [`decode_error`], and [`from_bytes`]
//! gives that message back.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use serde::ser::{self, Serialize};

pub(crate) use crate::error::EncodeError;
use crate::error::Error;

thread_local! {
    /// The error of a handle that could not be passed, from the
    /// serialization that is running on this thread.
    static CAUSE: Cell<Option<Error>> = const { Cell::new(None) };

    /// Why a `Deserialize` impl refused its input, from the decoding that
    /// is running on this thread.
    static DECODE_CAUSE: Cell<Option<String>> = const { Cell::new(None) };
}

/// For a `Deserialize` impl that refuses its input: keeps `why` for
/// [`from_bytes`] on this thread and returns the deserializer's error.
pub(crate) fn decode_error<E: serde::de::Error>(why: impl fmt::Display) -> E {
    let why = why.to_string();
    let err = E::custom(&why);
    DECODE_CAUSE.with(|c| c.set(Some(why)));
    err
}

/// Why a value could not be decoded: postcard's error, and the message a
/// `Deserialize` impl gave with [`decode_error`], which `Display` shows
/// in its place.
#[derive(Debug)]
pub(crate) struct DecodeError {
    /// postcard's error.
    pub source: postcard::Error,
    /// What the impl that refused said.
    pub why: Option<String>,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.why {
            Some(why) => f.write_str(why),
            None => fmt::Display::fmt(&self.source, f),
        }
    }
}

impl DecodeError {
    /// The crate's error for it: decoding `what` failed.
    pub(crate) fn into_error(self, what: &'static str) -> Error {
        Error::new(crate::error::Kind::Decode {
            what,
            source: self.source,
            why: self.why,
        })
    }
}

/// `postcard::from_bytes`, keeping why a `Deserialize` impl refused.
pub(crate) fn from_bytes<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    // A message left by a decoding that swallowed it is not ours.
    DECODE_CAUSE.with(|c| c.take());
    postcard::from_bytes(bytes).map_err(|source| DecodeError {
        source,
        why: DECODE_CAUSE.with(|c| c.take()),
    })
}

/// For a `Serialize` impl whose handle could not be passed: keeps `e` for
/// the encoder on this thread and returns the serializer's error for it.
pub(crate) fn handle_error<E: ser::Error>(e: Error) -> E {
    let err = E::custom(&e);
    CAUSE.with(|c| c.set(Some(e)));
    err
}

/// `value`, serialized.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    append(value, &mut out)?;
    Ok(out)
}

/// Appends `value`, serialized, to `out` (on error, `out` may hold part of
/// it).
pub(crate) fn append<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    // A cause left by a serialization that swallowed it is not ours.
    CAUSE.with(|c| c.take());
    match postcard::to_io(value, &mut *out) {
        Ok(_) => Ok(()),
        Err(e) => Err(explain(value, e)),
    }
}

fn explain<T: Serialize + ?Sized>(value: &T, e: postcard::Error) -> EncodeError {
    if let Some(cause) = CAUSE.with(|c| c.take()) {
        return EncodeError::Handle(Arc::new(cause));
    }
    if !matches!(e, postcard::Error::SerdeSerCustom) {
        return EncodeError::Postcard(e);
    }
    let caught = value.serialize(Catch);
    if let Some(cause) = CAUSE.with(|c| c.take()) {
        return EncodeError::Handle(Arc::new(cause));
    }
    match caught {
        Err(Caught(msg)) => EncodeError::Custom(msg),
        // It failed only for postcard (or not the second time).
        Ok(()) => EncodeError::Postcard(e),
    }
}

/// A serializer that writes nothing and keeps the message of the first
/// error; like postcard, not human-readable.
struct Catch;

#[derive(Debug)]
struct Caught(String);

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Caught {}

impl ser::Error for Caught {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Caught(msg.to_string())
    }
}

type Done = Result<(), Caught>;

impl ser::Serializer for Catch {
    type Ok = ();
    type Error = Caught;
    type SerializeSeq = Catch;
    type SerializeTuple = Catch;
    type SerializeTupleStruct = Catch;
    type SerializeTupleVariant = Catch;
    type SerializeMap = Catch;
    type SerializeStruct = Catch;
    type SerializeStructVariant = Catch;

    fn serialize_bool(self, _: bool) -> Done {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Done {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Done {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Done {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Done {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Done {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Done {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Done {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Done {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Done {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Done {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Done {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Done {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Done {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Done {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Done {
        Ok(())
    }
    fn serialize_none(self) -> Done {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Done {
        v.serialize(Catch)
    }
    fn serialize_unit(self) -> Done {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Done {
        v.serialize(Catch)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Done {
        v.serialize(Catch)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Catch, Caught> {
        Ok(Catch)
    }
    fn serialize_tuple(self, _: usize) -> Result<Catch, Caught> {
        Ok(Catch)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Catch, Caught> {
        Ok(Catch)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Catch, Caught> {
        Ok(Catch)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Catch, Caught> {
        Ok(Catch)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Catch, Caught> {
        Ok(Catch)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Catch, Caught> {
        Ok(Catch)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The compound serializers: each element, key, value or field is caught
/// the same way, and the end is nothing.
macro_rules! catch_compound {
    ($($trait:ident :: $method:ident ($($skip:ty),*);)+) => {$(
        impl ser::$trait for Catch {
            type Ok = ();
            type Error = Caught;
            fn $method<T: Serialize + ?Sized>(&mut self, $(_: $skip,)* v: &T) -> Done {
                v.serialize(Catch)
            }
            fn end(self) -> Done {
                Ok(())
            }
        }
    )+};
}

catch_compound! {
    SerializeSeq::serialize_element();
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(&'static str);
    SerializeStructVariant::serialize_field(&'static str);
}

impl ser::SerializeMap for Catch {
    type Ok = ();
    type Error = Caught;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Done {
        k.serialize(Catch)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
        v.serialize(Catch)
    }
    fn end(self) -> Done {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_deserialize_impls_refusal_message_survives() {
        struct Picky;
        impl<'de> serde::Deserialize<'de> for Picky {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = u8::deserialize(d)?;
                match n {
                    0 => Ok(Picky),
                    _ => Err(decode_error(format!("{n} is not zero"))),
                }
            }
        }
        assert!(from_bytes::<Picky>(&[0]).is_ok());
        let e = from_bytes::<(u8, Picky)>(&[1, 7]).err().unwrap();
        assert_eq!(e.to_string(), "7 is not zero");
        let e = e.into_error("a message");
        assert_eq!(e.to_string(), "cannot decode a message: 7 is not zero");
        assert!(e.is_decode());
        // Plain garbage: postcard's own error, no stale message.
        let e = from_bytes::<(u8, Picky)>(&[1]).err().unwrap();
        assert!(e.why.is_none(), "{e}");
    }

    use super::*;

    struct Fails;

    impl Serialize for Fails {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("13 cannot be serialized"))
        }
    }

    #[test]
    fn a_custom_message_survives() {
        let e = to_vec(&(1u8, Some(vec![Fails]))).unwrap_err();
        assert_eq!(e.to_string(), "13 cannot be serialized");
    }

    #[test]
    fn postcards_own_errors_stay_postcards() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let e = to_vec(&Unsized).unwrap_err();
        assert!(matches!(e, EncodeError::Postcard(_)), "{e:?}");
    }
}
