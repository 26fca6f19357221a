//! TCP socket channels (`Listener`/`Client`): a blocking Winsock socket
//! (std's `TcpStream`, so Winsock is started and the socket is not
//! inheritable), read and written with `recv`/`send`; a read with a
//! timeout first waits with `WSAPoll`. A socket is no handle that
//! `WaitForMultipleObjects` can wait on, so [`Channel::as_raw`] has none
//! for it, and `wait` polls such a connection.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::windows::io::AsRawSocket;
use std::time::Duration;

use windows_sys::Win32::Networking::WinSock::{
    WSAGetLastError, WSAPoll, POLLRDNORM, SOCKET, SOCKET_ERROR, WSAESHUTDOWN, WSAPOLLFD,
};

use super::ms_until;
use super::pipe::{Channel, Io};
use crate::deadline;

impl Channel {
    /// A connected TCP socket as a channel end.
    pub(crate) fn from_tcp(s: TcpStream) -> io::Result<Channel> {
        Ok(Channel {
            io: Io::Socket(s),
            net: true,
        })
    }
}

impl Channel {
    /// Shuts a socket end down both ways (`shutdown(SD_BOTH)`), so that
    /// its reads, here and at the peer, see end of file.
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        match &self.io {
            Io::Socket(s) => match s.shutdown(std::net::Shutdown::Both) {
                Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
                _ => Ok(()),
            },
            Io::Pipe(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only a socket connection can be shut down",
            )),
        }
    }
}

/// A reset or aborted connection reads as end of file, as on Unix; so does
/// a read of a socket this process shut down for reading ("recv" on MSDN:
/// `WSAESHUTDOWN`, where Unix returns 0).
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    ) || e.raw_os_error() == Some(WSAESHUTDOWN)
}

/// Writes what the socket takes (blocking); a peer that is gone is
/// `BrokenPipe`, as for a pipe.
pub(super) fn write(s: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut s = s;
    s.write(buf).map_err(|e| {
        if peer_gone(&e) {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        } else {
            e
        }
    })
}

/// Blocks until there is data, then appends at most `max` bytes of it to
/// `v`; 0 at end of file.
pub(super) fn read_append(s: &TcpStream, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let at = v.len();
    v.resize(at + max, 0);
    let mut s = s;
    let got = loop {
        match s.read(&mut v[at..]) {
            Ok(n) => break Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if peer_gone(&e) => break Ok(0),
            Err(e) => break Err(e),
        }
    };
    v.truncate(at + *got.as_ref().unwrap_or(&0));
    got
}

/// Reads what is there within `timeout` (`None`: forever): `Ok(None)` on
/// timeout, `Ok(Some(0))` at end of file.
pub(super) fn read_timeout(
    s: &TcpStream,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<Option<usize>> {
    let deadline = deadline::deadline_of(timeout);
    if deadline.is_some() {
        loop {
            // `WSAPoll` takes an `i32` of milliseconds, -1 for none.
            let ms = i32::try_from(ms_until(deadline)).unwrap_or(i32::MAX);
            let mut fd = WSAPOLLFD {
                fd: s.as_raw_socket() as SOCKET,
                events: POLLRDNORM,
                revents: 0,
            };
            // SAFETY: one valid `WSAPOLLFD` for an open socket (borrowed
            // from `s`), and its count, 1.
            let n = unsafe { WSAPoll(&mut fd, 1, ms) };
            if n == SOCKET_ERROR {
                // SAFETY: plain call, right after the failed one.
                return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
            }
            if n > 0 {
                break; // readable, or end of file or an error to read
            }
            if deadline::passed(deadline) {
                return Ok(None);
            }
        }
    }
    let mut s = s;
    loop {
        match s.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if peer_gone(&e) => return Ok(Some(0)),
            Err(e) => return Err(e),
        }
    }
}
