//! The bootstrap header: the fixed-size block a parent writes first on a
//! new worker's bootstrap channel, and the worker checks before it trusts
//! anything else.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `MULTPROC` ([`MAGIC`]) |
//! | 8 | 4 | protocol version, little endian ([`PROTOCOL_VERSION`]) |
//! | 12 | 4 | flags, little endian (bit 0: the parent reads replies on the channel, see [`reply`](super::reply); other bits are ignored) |
//! | 16 | 8 | build identity, little endian (see [`set_executable`](crate::set_executable)) |
//! | 24 | 4 | entry id length, little endian (at most [`MAX_ENTRY_LEN`]) |
//! | 28 | 4 | options length, little endian (at most [`MAX_OPTIONS_LEN`]) |
//! | 32 | 8 | payload length, little endian (at most [`MAX_PAYLOAD_LEN`]) |
//!
//! [`LEN`] bytes in all; the entry id, the options and the payload follow,
//! in that order and of those lengths. [`Header::decode`] checks the fields
//! in the order a reader would trust them: magic, version, build, then each
//! length against its cap, so nothing is allocated for a length before it
//! was checked.

use std::fmt;
use std::ops::Range;

use crate::exit_code;

/// The first bytes of every bootstrap.
pub(crate) const MAGIC: [u8; 8] = *b"MULTPROC";
/// The version of the bootstrap protocol; parent and child must agree.
pub const PROTOCOL_VERSION: u32 = 2;
/// The longest entry id a worker accepts.
pub const MAX_ENTRY_LEN: u32 = 4096;
/// The longest worker options block a worker accepts.
pub const MAX_OPTIONS_LEN: u32 = 64 * 1024;
/// The largest bootstrap payload (the serialized arguments) a worker accepts: 1 GiB.
pub const MAX_PAYLOAD_LEN: u64 = 1 << 30;

/// Where each field sits in the header.
pub(crate) mod offset {
    use std::ops::Range;

    /// The magic bytes.
    pub(crate) const MAGIC: Range<usize> = 0..8;
    /// The protocol version.
    pub(crate) const VERSION: Range<usize> = 8..12;
    /// The flags.
    pub(crate) const FLAGS: Range<usize> = 12..16;
    /// The build identity.
    pub(crate) const BUILD: Range<usize> = 16..24;
    /// The entry id length.
    pub(crate) const ENTRY_LEN: Range<usize> = 24..28;
    /// The options length.
    pub(crate) const OPTIONS_LEN: Range<usize> = 28..32;
    /// The payload length.
    pub(crate) const PAYLOAD_LEN: Range<usize> = 32..40;
}

/// The header's size in bytes.
pub(crate) const LEN: usize = offset::PAYLOAD_LEN.end;

/// Flag bit: the parent reads replies on the channel.
const FLAG_WANT_REPLY: u32 = 1;

/// A bootstrap header's fields; magic and version are implied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The parent reads replies on the channel (a `Process`).
    pub want_reply: bool,
    /// The parent's build identity.
    pub build: u64,
    /// The length of the entry id that follows.
    pub entry_len: u32,
    /// The length of the worker options that follow the entry id.
    pub options_len: u32,
    /// The length of the payload that follows the options.
    pub payload_len: u64,
}

/// Why a header was refused; each maps to a documented exit code
/// ([`exit_code`](HeaderError::exit_code)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The magic bytes are wrong: [`exit_code::BAD_MAGIC`].
    BadMagic,
    /// Another protocol version: [`exit_code::VERSION_MISMATCH`].
    Version(u32),
    /// Another build: [`exit_code::BUILD_MISMATCH`].
    Build {
        /// The build identity in the header (the parent's).
        theirs: u64,
        /// This process's build identity.
        ours: u64,
    },
    /// A length over its cap: [`exit_code::TOO_LARGE`].
    TooLarge {
        /// Which length.
        what: &'static str,
        /// Its value.
        len: u64,
        /// Its cap.
        max: u64,
    },
}

impl HeaderError {
    /// The exit code a worker ends with for this error.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            HeaderError::BadMagic => exit_code::BAD_MAGIC,
            HeaderError::Version(_) => exit_code::VERSION_MISMATCH,
            HeaderError::Build { .. } => exit_code::BUILD_MISMATCH,
            HeaderError::TooLarge { .. } => exit_code::TOO_LARGE,
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadMagic => f.write_str("bad magic: not multiproc bootstrap data"),
            HeaderError::Version(v) => {
                write!(f, "protocol version {v}, this worker speaks {PROTOCOL_VERSION}")
            }
            HeaderError::Build { theirs, ours } => write!(
                f,
                "the worker executable is not the parent's build: its build identity \
                 (crate version, entry table, binary build id) is {ours:016x}, the parent's {theirs:016x}"
            ),
            HeaderError::TooLarge { what, len, max } => {
                write!(f, "{what} of {len} bytes (at most {max})")
            }
        }
    }
}

fn field<const N: usize>(b: &[u8; LEN], at: Range<usize>) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at]);
    a
}

fn u32_at(b: &[u8; LEN], at: Range<usize>) -> u32 {
    u32::from_le_bytes(field(b, at))
}

fn u64_at(b: &[u8; LEN], at: Range<usize>) -> u64 {
    u64::from_le_bytes(field(b, at))
}

impl Header {
    /// The header's bytes, with this crate's magic and protocol version.
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        let flags = if self.want_reply { FLAG_WANT_REPLY } else { 0 };
        b[offset::MAGIC].copy_from_slice(&MAGIC);
        b[offset::VERSION].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b[offset::FLAGS].copy_from_slice(&flags.to_le_bytes());
        b[offset::BUILD].copy_from_slice(&self.build.to_le_bytes());
        b[offset::ENTRY_LEN].copy_from_slice(&self.entry_len.to_le_bytes());
        b[offset::OPTIONS_LEN].copy_from_slice(&self.options_len.to_le_bytes());
        b[offset::PAYLOAD_LEN].copy_from_slice(&self.payload_len.to_le_bytes());
        b
    }

    /// Checks a header in the order a reader would trust it: magic,
    /// version, build (against `our_build`), then the lengths against
    /// their caps; the first check that fails is the error.
    pub(crate) fn decode(b: &[u8; LEN], our_build: u64) -> Result<Header, HeaderError> {
        if b[offset::MAGIC] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u32_at(b, offset::VERSION);
        if version != PROTOCOL_VERSION {
            return Err(HeaderError::Version(version));
        }
        let build = u64_at(b, offset::BUILD);
        if build != our_build {
            return Err(HeaderError::Build {
                theirs: build,
                ours: our_build,
            });
        }
        let too_large = |what, len: u64, max: u64| match len > max {
            true => Err(HeaderError::TooLarge { what, len, max }),
            false => Ok(()),
        };
        let entry_len = u32_at(b, offset::ENTRY_LEN);
        too_large("entry id", entry_len.into(), MAX_ENTRY_LEN.into())?;
        let options_len = u32_at(b, offset::OPTIONS_LEN);
        too_large("options", options_len.into(), MAX_OPTIONS_LEN.into())?;
        let payload_len = u64_at(b, offset::PAYLOAD_LEN);
        too_large("payload", payload_len, MAX_PAYLOAD_LEN)?;
        Ok(Header {
            want_reply: Self::flags_want_reply(b),
            build,
            entry_len,
            options_len,
            payload_len,
        })
    }

    /// Whether the parent reads replies, from a header that may fail
    /// [`decode`](Header::decode) (so that the worker can say why): only
    /// trusted when magic and version are right.
    pub(crate) fn wants_reply(b: &[u8; LEN]) -> bool {
        b[offset::MAGIC] == MAGIC
            && u32_at(b, offset::VERSION) == PROTOCOL_VERSION
            && Self::flags_want_reply(b)
    }

    fn flags_want_reply(b: &[u8; LEN]) -> bool {
        u32_at(b, offset::FLAGS) & FLAG_WANT_REPLY != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: u64 = 0x0123_4567_89ab_cdef;

    fn sample() -> Header {
        Header {
            want_reply: true,
            build: BUILD,
            entry_len: 4,
            options_len: 3,
            payload_len: 12,
        }
    }

    #[test]
    fn header_round_trips() {
        for want_reply in [false, true] {
            let h = Header {
                want_reply,
                ..sample()
            };
            assert_eq!(Header::decode(&h.encode(), BUILD), Ok(h));
            assert_eq!(Header::wants_reply(&h.encode()), want_reply);
        }
    }

    #[test]
    fn fields_sit_at_their_offsets() {
        let b = sample().encode();
        assert_eq!(b.len(), 40);
        assert_eq!(&b[..8], b"MULTPROC");
        assert_eq!(b[offset::VERSION], PROTOCOL_VERSION.to_le_bytes());
        assert_eq!(b[offset::FLAGS], 1u32.to_le_bytes());
        assert_eq!(b[offset::BUILD], BUILD.to_le_bytes());
        assert_eq!(b[offset::ENTRY_LEN], 4u32.to_le_bytes());
        assert_eq!(b[offset::OPTIONS_LEN], 3u32.to_le_bytes());
        assert_eq!(b[offset::PAYLOAD_LEN], 12u64.to_le_bytes());
    }

    #[test]
    fn unknown_flag_bits_are_ignored() {
        let mut b = sample().encode();
        b[offset::FLAGS].copy_from_slice(&0xffff_fffeu32.to_le_bytes());
        let h = Header::decode(&b, BUILD).unwrap();
        assert!(!h.want_reply);
    }

    #[test]
    fn wrong_magic_version_and_build_are_rejected_in_that_order() {
        let mut b = sample().encode();
        b[offset::BUILD.start] ^= 1;
        let e = Header::decode(&b, BUILD).unwrap_err();
        assert_eq!(e.exit_code(), exit_code::BUILD_MISMATCH);
        assert!(e.to_string().contains("not the parent's build"), "{e}");
        b[offset::VERSION.start] = 9;
        let e = Header::decode(&b, BUILD).unwrap_err();
        assert_eq!(e, HeaderError::Version(9));
        assert_eq!(e.exit_code(), exit_code::VERSION_MISMATCH);
        b[0] = b'X';
        let e = Header::decode(&b, BUILD).unwrap_err();
        assert_eq!(e, HeaderError::BadMagic);
        assert_eq!(e.exit_code(), exit_code::BAD_MAGIC);
    }

    #[test]
    fn wants_reply_is_only_trusted_with_magic_and_version() {
        let mut b = sample().encode();
        b[offset::BUILD.start] ^= 1; // a build mismatch still gets its reply
        assert!(Header::wants_reply(&b));
        b[offset::VERSION.start] = 9;
        assert!(!Header::wants_reply(&b));
        let mut b = sample().encode();
        b[0] = b'X';
        assert!(!Header::wants_reply(&b));
    }

    #[test]
    fn each_length_over_its_cap_is_rejected() {
        let cases = [
            (offset::ENTRY_LEN, u64::from(MAX_ENTRY_LEN), "entry id"),
            (offset::OPTIONS_LEN, u64::from(MAX_OPTIONS_LEN), "options"),
            (offset::PAYLOAD_LEN, MAX_PAYLOAD_LEN, "payload"),
        ];
        for (at, max, what) in cases {
            let mut b = sample().encode();
            let width = at.len();
            // The cap itself is accepted, one more is not.
            b[at.clone()].copy_from_slice(&max.to_le_bytes()[..width]);
            assert!(Header::decode(&b, BUILD).is_ok(), "{what} at its cap");
            b[at].copy_from_slice(&(max + 1).to_le_bytes()[..width]);
            let e = Header::decode(&b, BUILD).unwrap_err();
            assert_eq!(
                e,
                HeaderError::TooLarge {
                    what,
                    len: max + 1,
                    max
                }
            );
            assert_eq!(e.exit_code(), exit_code::TOO_LARGE);
        }
    }

    #[test]
    fn huge_length_prefix_is_rejected_before_allocating() {
        let mut b = sample().encode();
        b[offset::PAYLOAD_LEN].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = Header::decode(&b, BUILD).unwrap_err();
        assert_eq!(e.exit_code(), exit_code::TOO_LARGE);
    }
}
