//! The replies a worker sends its parent on the bootstrap channel when the
//! header asks for them (a [`Process`](crate::Process); a bare
//! [`Popen`](crate::Popen) reads none).
//!
//! Each reply is one frame:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | body length, little endian ([`LEN_BYTES`]) |
//! | n | the [`Reply`], postcard |
//!
//! A worker sends [`Reply::Started`] once its bootstrap is through, then
//! one final reply (the value, the panic, or why there is none); or, when
//! its bootstrap fails after it read the header, only
//! [`Reply::BootFailed`]. The parent reads them with a [`ReplyReader`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::status::PanicReport;

/// The size of a frame's length field.
pub(crate) const LEN_BYTES: usize = 8;

/// What a worker sends back when asked for its result: `Started` once its
/// bootstrap is through, then one of the others; or only `BootFailed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The entry returned; its result, serialized.
    Value(Vec<u8>),
    /// The entry panicked.
    Panic(PanicReport),
    /// The arguments could not be decoded (a bootstrap failure: the entry
    /// did not run).
    BadArgs(String),
    /// The bootstrap is through; the entry runs next.
    Started,
    /// The bootstrap failed, and why (the worker exits with the matching
    /// [`exit_code`](crate::exit_code)).
    BootFailed(String),
    /// The entry returned, but its result could not be serialized.
    BadResult(String),
}

impl Reply {
    /// The reply as one frame: its length, then its body.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = postcard::to_extend(self, vec![0u8; LEN_BYTES])?;
        let len = (out.len() - LEN_BYTES) as u64;
        out[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
        Ok(out)
    }
}

/// Why a [`ReplyReader`] has no final reply to give.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyError {
    /// A frame announced a body over the reader's cap; nothing was
    /// allocated for it and nothing after it can be read.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Nothing but `Started` (if that) arrived.
    Missing,
    /// The channel closed in the middle of a frame.
    Truncated,
    /// Bytes follow the final frame.
    Trailing,
    /// The final frame's body is not a [`Reply`].
    Malformed(postcard::Error),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::TooLarge { len, max } => {
                write!(f, "a reply of {len} bytes (at most {max})")
            }
            ReplyError::Missing => f.write_str("no reply"),
            ReplyError::Truncated => f.write_str("the reply was cut off"),
            ReplyError::Trailing => f.write_str("bytes after the final reply"),
            ReplyError::Malformed(e) => write!(f, "an undecodable reply: {e}"),
        }
    }
}

/// The parent's side: collects the bytes the worker sent, takes the first
/// `Started` off the front as it arrives, and keeps the final frame.
#[derive(Debug)]
pub(crate) struct ReplyReader {
    buf: Vec<u8>,
    max_len: u64,
    started: bool,
    /// The final frame is in, or the channel closed: read no more.
    done: bool,
    /// A frame over the cap was announced.
    too_large: Option<u64>,
}

impl ReplyReader {
    /// A reader that refuses frames whose body is over `max_len` bytes.
    pub(crate) fn new(max_len: u64) -> Self {
        ReplyReader {
            buf: Vec::new(),
            max_len,
            started: false,
            done: false,
            too_large: None,
        }
    }

    /// Whether the worker said `Started` (its bootstrap is through).
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Whether to read no more: the final frame is in, the channel closed,
    /// or a frame was over the cap.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The channel closed: what arrived is all there is.
    pub(crate) fn close(&mut self) {
        self.done = true;
    }

    /// Takes `bytes` that arrived. An error once a frame announced more
    /// than the cap (the reader is then done).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), ReplyError> {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(len) = frame_len(&self.buf) else {
                return Ok(());
            };
            if len > self.max_len {
                self.done = true;
                self.too_large = Some(len);
                return Err(ReplyError::TooLarge {
                    len,
                    max: self.max_len,
                });
            }
            // Within the cap, so within usize (a cap over usize::MAX can't
            // be reached by a buffer either).
            let end = usize::try_from(len).map_or(usize::MAX, |l| l.saturating_add(LEN_BYTES));
            if self.buf.len() < end {
                return Ok(());
            }
            let first_started = !self.started
                && matches!(
                    postcard::from_bytes(&self.buf[LEN_BYTES..end]),
                    Ok(Reply::Started)
                );
            if !first_started {
                self.done = true;
                return Ok(());
            }
            self.started = true;
            self.buf.drain(..end);
        }
    }

    /// The final reply: exactly one whole frame after the first `Started`
    /// (a second `Started` is a final reply that says nothing).
    pub(crate) fn finish(&mut self) -> Result<Reply, ReplyError> {
        if let Some(len) = self.too_large {
            return Err(ReplyError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        let buf = std::mem::take(&mut self.buf);
        let Some(len) = frame_len(&buf) else {
            return Err(match buf.is_empty() {
                true => ReplyError::Missing,
                false => ReplyError::Truncated,
            });
        };
        let body = &buf[LEN_BYTES..];
        match (body.len() as u64).cmp(&len) {
            std::cmp::Ordering::Less => Err(ReplyError::Truncated),
            std::cmp::Ordering::Greater => Err(ReplyError::Trailing),
            std::cmp::Ordering::Equal => postcard::from_bytes(body).map_err(ReplyError::Malformed),
        }
    }
}

fn frame_len(buf: &[u8]) -> Option<u64> {
    let (len, _) = buf.split_first_chunk::<LEN_BYTES>()?;
    Some(u64::from_le_bytes(*len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(replies: &[Reply]) -> Vec<u8> {
        replies.iter().flat_map(|r| r.encode().unwrap()).collect()
    }

    fn read_all(bytes: &[u8], max: u64) -> (ReplyReader, Result<(), ReplyError>) {
        let mut r = ReplyReader::new(max);
        let pushed = r.push(bytes);
        (r, pushed)
    }

    #[test]
    fn every_reply_round_trips_after_started() {
        let finals = [
            Reply::Value(vec![1, 2, 3]),
            Reply::Panic(PanicReport {
                message: "boom".into(),
                location: Some("a.rs:1:2".into()),
            }),
            Reply::BadArgs("bad".into()),
            Reply::BootFailed("why".into()),
            Reply::BadResult("no".into()),
        ];
        for last in finals {
            let bytes = frames(&[Reply::Started, last.clone()]);
            let (mut r, pushed) = read_all(&bytes, 1 << 20);
            assert_eq!(pushed, Ok(()));
            assert!(r.started() && r.is_done());
            assert_eq!(r.finish(), Ok(last));
        }
    }

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let bytes = frames(&[Reply::Started, Reply::Value(vec![7; 100])]);
        let mut r = ReplyReader::new(1 << 20);
        for b in &bytes {
            assert!(!r.is_done());
            r.push(std::slice::from_ref(b)).unwrap();
        }
        assert!(r.is_done() && r.started());
        assert_eq!(r.finish().unwrap(), Reply::Value(vec![7; 100]));
    }

    #[test]
    fn boot_failed_alone_is_final_without_started() {
        let (mut r, _) = read_all(&frames(&[Reply::BootFailed("x".into())]), 1 << 20);
        assert!(r.is_done() && !r.started());
        assert_eq!(r.finish().unwrap(), Reply::BootFailed("x".into()));
    }

    #[test]
    fn a_second_started_is_the_final_reply() {
        let (mut r, _) = read_all(&frames(&[Reply::Started, Reply::Started]), 1 << 20);
        assert!(r.is_done());
        assert_eq!(r.finish().unwrap(), Reply::Started);
    }

    #[test]
    fn a_frame_over_the_cap_is_refused_from_its_length_alone() {
        let mut bytes = frames(&[Reply::Started]);
        bytes.extend_from_slice(&(u64::MAX).to_le_bytes());
        let (mut r, pushed) = read_all(&bytes, 1000);
        let e = ReplyError::TooLarge {
            len: u64::MAX,
            max: 1000,
        };
        assert_eq!(pushed, Err(e));
        assert!(r.is_done() && r.started());
        assert!(matches!(r.finish(), Err(ReplyError::TooLarge { .. })));
    }

    #[test]
    fn nothing_or_only_started_is_missing() {
        let (mut r, _) = read_all(&[], 10);
        r.close();
        assert_eq!(r.finish(), Err(ReplyError::Missing));
        let (mut r, _) = read_all(&frames(&[Reply::Started]), 10);
        assert!(!r.is_done());
        r.close();
        assert_eq!(r.finish(), Err(ReplyError::Missing));
    }

    #[test]
    fn a_cut_off_frame_is_truncated() {
        let bytes = frames(&[Reply::Value(vec![1, 2, 3])]);
        for cut in [3, LEN_BYTES, bytes.len() - 1] {
            let (mut r, _) = read_all(&bytes[..cut], 1 << 20);
            assert!(!r.is_done());
            r.close();
            assert_eq!(r.finish(), Err(ReplyError::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn bytes_after_the_final_frame_are_trailing() {
        let mut bytes = frames(&[Reply::Value(vec![1])]);
        bytes.push(0);
        let (mut r, _) = read_all(&bytes, 1 << 20);
        assert_eq!(r.finish(), Err(ReplyError::Trailing));
    }

    #[test]
    fn an_undecodable_body_is_malformed() {
        let mut bytes = 1u64.to_le_bytes().to_vec();
        bytes.push(0xff); // no such variant
        let (mut r, _) = read_all(&bytes, 1 << 20);
        assert!(r.is_done() && !r.started());
        assert!(matches!(r.finish(), Err(ReplyError::Malformed(_))));
    }
}
