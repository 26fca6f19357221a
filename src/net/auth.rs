//! The authentication handshake of [`Listener`](super::Listener) and
//! [`Client`](super::Client): CPython's (`multiprocessing.connection`,
//! ≥ 3.12) mutual challenge-response, with HMAC-SHA256 only.
//!
//! Each side in turn proves it has the key: the challenger sends
//! `#CHALLENGE#{sha256}` and 40 random bytes; the other side answers
//! `{sha256}` and the HMAC-SHA256, under the key, of everything after
//! `#CHALLENGE#`; the challenger compares it in constant time with its own
//! and sends `#WELCOME#` or `#FAILURE#`. The listener challenges first,
//! then answers the client's challenge. A fresh random challenge each time
//! means a recorded answer is worth nothing later; nothing but these
//! messages is read before both sides are through.
//!
//! Each message is framed as every `Connection` message (a little-endian
//! `u64` length, then the bytes), but read with a cap of
//! [`MAX_MESSAGE`] bytes, so a length prefix of 4 GiB is refused before
//! anything is allocated, and every read and write has the handshake's
//! deadline.

use std::io;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Kind, Result};

type HmacSha256 = Hmac<Sha256>;

/// The longest handshake message read (CPython's `recv_bytes(256)`).
pub(crate) const MAX_MESSAGE: u64 = 256;
/// Random bytes in a challenge (CPython's `MESSAGE_LENGTH`).
const CHALLENGE_LEN: usize = 40;
/// Fewer random bytes than this in a peer's challenge is refused.
const MIN_CHALLENGE_LEN: usize = 32;
const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST: &[u8] = b"{sha256}";

/// A stream the handshake runs over, every operation bounded by a
/// deadline (`sys::NetStream`; an in-memory one for the fuzzer).
pub(crate) trait HandshakeIo {
    /// Reads what is there, 0 at end of file; `TimedOut` past `deadline`.
    fn read_by(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize>;
    /// Writes all of `buf`; `TimedOut` past `deadline`.
    fn write_all_by(&mut self, buf: &[u8], deadline: Option<Instant>) -> io::Result<()>;
}

impl HandshakeIo for crate::sys::NetStream {
    fn read_by(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        crate::sys::NetStream::read_by(self, buf, deadline)
    }
    fn write_all_by(&mut self, buf: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        crate::sys::NetStream::write_all_by(self, buf, deadline)
    }
}

/// One side of a handshake in progress: the stream, the key, the
/// deadline, and the timeout it came from (for the message).
struct Side<'a, S: HandshakeIo> {
    io: &'a mut S,
    key: &'a [u8],
    deadline: Option<Instant>,
    timeout: Duration,
}

fn fail(why: impl Into<String>) -> Error {
    Error::new(Kind::Auth(why.into()))
}

impl<S: HandshakeIo> Side<'_, S> {
    fn io_error(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::TimedOut {
            fail(format!(
                "the peer did not complete the handshake within {:?} (a silent or slow peer)",
                self.timeout
            ))
        } else {
            fail(format!("the handshake's connection failed: {e}"))
        }
    }

    fn send(&mut self, parts: &[&[u8]]) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut frame = Vec::with_capacity(8 + len);
        frame.extend_from_slice(&(len as u64).to_le_bytes());
        for p in parts {
            frame.extend_from_slice(p);
        }
        self.io
            .write_all_by(&frame, self.deadline)
            .map_err(|e| self.io_error(e))
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut have = 0;
        while have < buf.len() {
            match self.io.read_by(&mut buf[have..], self.deadline) {
                Ok(0) => {
                    return Err(fail(format!(
                        "the peer closed the connection during the handshake ({what}); \
                         it may have refused our key"
                    )))
                }
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(())
    }

    /// One message, at most [`MAX_MESSAGE`] bytes.
    fn recv(&mut self, what: &str) -> Result<Vec<u8>> {
        let mut header = [0u8; 8];
        self.read_exact(&mut header, what)?;
        let len = u64::from_le_bytes(header);
        if len > MAX_MESSAGE {
            return Err(fail(format!(
                "the peer sent a handshake message of {len} bytes (at most {MAX_MESSAGE}) \
                 while we waited for {what}: it is not a multiproc Listener/Client with a key"
            )));
        }
        let mut body = vec![0u8; len as usize];
        self.read_exact(&mut body, what)?;
        Ok(body)
    }

    /// Challenges the peer to prove it has the key.
    fn deliver_challenge(&mut self) -> Result<()> {
        let mut message = Vec::with_capacity(DIGEST.len() + CHALLENGE_LEN);
        message.extend_from_slice(DIGEST);
        let mut random = [0u8; CHALLENGE_LEN];
        getrandom::fill(&mut random)
            .map_err(|e| fail(format!("no random bytes for a challenge: {e}")))?;
        message.extend_from_slice(&random);
        self.send(&[CHALLENGE, &message])?;
        let answer = self.recv("the answer to our challenge")?;
        let right = match answer.strip_prefix(DIGEST) {
            Some(tag) => {
                let mut mac = hmac(self.key)?;
                mac.update(&message);
                // `verify_slice` compares in constant time.
                mac.verify_slice(tag).is_ok()
            }
            None => false,
        };
        if right {
            self.send(&[WELCOME])
        } else {
            // Tell the peer, as CPython does; it may be gone already.
            let _ = self.send(&[FAILURE]);
            Err(fail(
                "the peer's answer to our challenge is wrong: its key is not ours",
            ))
        }
    }

    /// Proves to the peer that this side has the key.
    fn answer_challenge(&mut self) -> Result<()> {
        let challenge = self.recv("a challenge")?;
        let Some(message) = challenge.strip_prefix(CHALLENGE) else {
            return Err(fail(
                "the peer's message is not a challenge: it is not a multiproc \
                 Listener/Client, or it has no key while we have one",
            ));
        };
        match message.strip_prefix(DIGEST) {
            Some(random) if random.len() >= MIN_CHALLENGE_LEN => {}
            Some(random) => {
                return Err(fail(format!(
                    "the peer's challenge has {} random bytes, fewer than {MIN_CHALLENGE_LEN}",
                    random.len()
                )))
            }
            None => {
                return Err(fail(
                    "the peer's challenge asks for a digest other than sha256",
                ))
            }
        }
        let mut mac = hmac(self.key)?;
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        self.send(&[DIGEST, &tag])?;
        let verdict = self.recv("the verdict on our answer")?;
        if verdict == WELCOME {
            Ok(())
        } else if verdict == FAILURE {
            Err(fail("the peer refused our answer: our key is not its key"))
        } else {
            Err(fail(
                "the peer's verdict on our answer is neither welcome nor failure",
            ))
        }
    }
}

fn hmac(key: &[u8]) -> Result<HmacSha256> {
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|e| fail(format!("unusable key: {e}")))
}

/// The listener's side: challenges the client, then answers its
/// challenge, before `deadline`.
pub(crate) fn serve<S: HandshakeIo>(
    io: &mut S,
    key: &[u8],
    timeout: Duration,
    deadline: Option<Instant>,
) -> Result<()> {
    let mut side = Side {
        io,
        key,
        deadline,
        timeout,
    };
    side.deliver_challenge()?;
    side.answer_challenge()
}

/// The client's side: answers the listener's challenge, then challenges
/// it, before `deadline`.
pub(crate) fn join<S: HandshakeIo>(
    io: &mut S,
    key: &[u8],
    timeout: Duration,
    deadline: Option<Instant>,
) -> Result<()> {
    let mut side = Side {
        io,
        key,
        deadline,
        timeout,
    };
    side.answer_challenge()?;
    side.deliver_challenge()
}

/// The handshake against `data` as the peer's bytes (the fuzz target).
#[cfg(feature = "test-hooks")]
pub(crate) fn fuzz(data: &[u8], listener: bool) -> bool {
    let mut io = Scripted {
        input: data,
        output: Vec::new(),
    };
    let t = Duration::from_secs(1);
    let r = if listener {
        serve(&mut io, b"key", t, None)
    } else {
        join(&mut io, b"key", t, None)
    };
    match r {
        Ok(()) => true,
        Err(e) => {
            assert!(e.is_authentication(), "not an authentication error: {e}");
            false
        }
    }
}

/// An in-memory stream: reads come from `input`, then end of file;
/// writes are kept (for the unit tests and the fuzzer).
#[cfg(any(test, feature = "test-hooks"))]
pub(crate) struct Scripted<'a> {
    pub input: &'a [u8],
    pub output: Vec<u8>,
}

#[cfg(any(test, feature = "test-hooks"))]
impl HandshakeIo for Scripted<'_> {
    fn read_by(&mut self, buf: &mut [u8], _: Option<Instant>) -> io::Result<usize> {
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
    fn write_all_by(&mut self, buf: &[u8], _: Option<Instant>) -> io::Result<()> {
        // Bounded: the handshake writes a few short messages.
        if self.output.len() + buf.len() > 4096 {
            return Err(io::Error::other("too much written"));
        }
        self.output.extend_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// One end of an in-process duplex byte stream (two channels).
    struct Duplex {
        rx: mpsc::Receiver<Vec<u8>>,
        tx: mpsc::Sender<Vec<u8>>,
        buf: Vec<u8>,
    }

    fn duplex() -> (Duplex, Duplex) {
        let (t1, r1) = mpsc::channel();
        let (t2, r2) = mpsc::channel();
        let end = |rx, tx| Duplex {
            rx,
            tx,
            buf: Vec::new(),
        };
        (end(r1, t2), end(r2, t1))
    }

    impl HandshakeIo for Duplex {
        fn read_by(&mut self, buf: &mut [u8], _: Option<Instant>) -> io::Result<usize> {
            if self.buf.is_empty() {
                match self.rx.recv() {
                    Ok(v) => self.buf = v,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.buf.len());
            buf[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            Ok(n)
        }
        fn write_all_by(&mut self, buf: &[u8], _: Option<Instant>) -> io::Result<()> {
            let _ = self.tx.send(buf.to_vec());
            Ok(())
        }
    }

    fn run(server_key: &'static [u8], client_key: &'static [u8]) -> (Result<()>, Result<()>) {
        let (mut a, mut b) = duplex();
        let t = Duration::from_secs(5);
        let server = std::thread::spawn(move || {
            let r = serve(&mut a, server_key, t, None);
            drop(a); // end of file for a client still waiting
            r
        });
        let client = join(&mut b, client_key, t, None);
        drop(b);
        (server.join().unwrap(), client)
    }

    #[test]
    fn the_same_key_passes_both_ways() {
        let (s, c) = run(b"secret", b"secret");
        s.unwrap();
        c.unwrap();
    }

    #[test]
    fn a_wrong_key_fails_on_both_sides() {
        let (s, c) = run(b"secret", b"guess");
        let s = s.unwrap_err();
        assert!(s.is_authentication(), "{s}");
        assert!(s.to_string().contains("its key is not ours"), "{s}");
        let c = c.unwrap_err();
        assert!(c.is_authentication(), "{c}");
        assert!(c.to_string().contains("our key is not its key"), "{c}");
    }

    #[test]
    fn a_huge_length_prefix_is_refused_before_reading_it() {
        let mut input = (4u64 << 30).to_le_bytes().to_vec();
        input.extend_from_slice(&[0; 16]);
        let mut io = Scripted {
            input: &input,
            output: Vec::new(),
        };
        let e = join(&mut io, b"k", Duration::from_secs(1), None).unwrap_err();
        assert!(e.is_authentication(), "{e}");
        assert!(e.to_string().contains("4294967296 bytes"), "{e}");
        // Nothing was consumed past the header.
        assert_eq!(io.input.len(), 16);
    }

    #[test]
    fn garbage_instead_of_a_challenge_is_refused() {
        let mut input = 5u64.to_le_bytes().to_vec();
        input.extend_from_slice(b"hello");
        let mut io = Scripted {
            input: &input,
            output: Vec::new(),
        };
        let e = join(&mut io, b"k", Duration::from_secs(1), None).unwrap_err();
        assert!(e.to_string().contains("not a challenge"), "{e}");
        assert!(io.output.is_empty(), "answered garbage");
    }

    #[test]
    fn a_short_challenge_is_refused() {
        let mut msg = CHALLENGE.to_vec();
        msg.extend_from_slice(DIGEST);
        msg.extend_from_slice(&[7; 8]);
        let mut input = (msg.len() as u64).to_le_bytes().to_vec();
        input.extend_from_slice(&msg);
        let mut io = Scripted {
            input: &input,
            output: Vec::new(),
        };
        let e = join(&mut io, b"k", Duration::from_secs(1), None).unwrap_err();
        assert!(e.to_string().contains("8 random bytes"), "{e}");
    }

    #[test]
    fn the_answer_is_the_hmac_sha256_of_the_challenge() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = hmac(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let tag = mac.finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
