//! A `Connection`'s frames: the header's flags and sizes, the receive
//! buffer, and writing all of a part.

use crate::error::{Error, Kind, Result};

pub(super) const HEADER: usize = 8;
/// Set in a frame's length when its body travels on the bulk lane.
pub(super) const BULK_FLAG: u64 = 1 << 63;
/// Set in a frame's length when handles come with it: its body starts
/// with a handle block (`codec::handles::put_block`), and on Unix their
/// fds were sent on the bulk lane just before the frame.
pub(super) const HANDLES_FLAG: u64 = 1 << 62;
/// Bodies this big take the bulk lane where there is one.
pub(super) const BULK_MIN: usize = 256 * 1024;
pub(super) const CHUNK: usize = 64 * 1024;
/// Below this, header and body go out in one write.
pub(super) const COALESCE: usize = 64 * 1024;

pub(super) struct Rx {
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) eof: bool,
    pub(super) poisoned: Option<String>,
}

impl Rx {
    pub(super) fn avail(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

/// Writes all of `part` with `write`; a peer that is gone is end of file.
pub(super) fn write_all(
    mut part: &[u8],
    write: impl Fn(&[u8]) -> std::io::Result<usize>,
) -> Result<()> {
    while !part.is_empty() {
        match write(part) {
            Ok(0) => return Err(Error::new(Kind::Eof)),
            Ok(n) => part = &part[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_peer_gone(&e) => return Err(Error::new(Kind::Eof)),
            Err(e) => return Err(Error::io("cannot send", e)),
        }
    }
    Ok(())
}

fn is_peer_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}
