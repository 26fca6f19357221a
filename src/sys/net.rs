//! Stream sockets for `Listener`/`Client`: TCP everywhere, Unix-domain
//! sockets on Unix, over std's socket types (close-on-exec on Unix, not
//! inheritable on Windows, as std makes every socket), and named pipes on
//! Windows (`windows/npipe.rs`); reads and writes with a deadline for the
//! authentication handshake.
//!
//! Once a connection is through its handshake it becomes a `Channel`
//! ([`NetStream::into_channel`]): on Unix a socket `Channel` (the same
//! code as the bootstrap socket's); on Windows a socket `Channel` whose
//! reads wait with `WSAPoll` (`windows/socket.rs`), or, for a named pipe,
//! the overlapped pipe `Channel` every `Pipe` end is.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Channel;
use crate::deadline;

/// A listening socket.
#[derive(Debug)]
pub(crate) enum NetListener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix-domain socket bound to a path.
    #[cfg(unix)]
    Local(std::os::unix::net::UnixListener),
    /// A named pipe's instances (Windows).
    #[cfg(windows)]
    Pipe(super::npipe::PipeListener),
}

/// A connected stream socket, not yet a `Channel`.
#[derive(Debug)]
pub(crate) enum NetStream {
    /// TCP (`TCP_NODELAY` set: messages are written whole).
    Tcp(TcpStream),
    /// A Unix-domain socket.
    #[cfg(unix)]
    Local(std::os::unix::net::UnixStream),
    /// A named pipe's end, overlapped (Windows).
    #[cfg(windows)]
    Pipe(std::os::windows::io::OwnedHandle),
}

/// Listens on `addr` (port 0: the OS picks one; see
/// [`NetListener::tcp_addr`]).
pub(crate) fn listen_tcp(addr: SocketAddr) -> io::Result<NetListener> {
    TcpListener::bind(addr).map(NetListener::Tcp)
}

/// Listens on a Unix-domain socket at `path` (which must not exist);
/// `Unsupported` on Windows.
pub(crate) fn listen_local(path: &Path) -> io::Result<NetListener> {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixListener::bind(path).map(NetListener::Local)
    }
    #[cfg(not(unix))]
    {
        Err(local_unsupported(path))
    }
}

/// Unix-domain socket addresses on Windows.
#[cfg(not(unix))]
fn local_unsupported(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "local (Unix-domain) socket addresses such as {} are Unix only; \
             use a loopback TCP address",
            path.display()
        ),
    )
}

/// Connects to a TCP address, waiting at most `timeout` for the
/// connection (`None`: the OS's own limit).
pub(crate) fn connect_tcp(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<NetStream> {
    let s = match timeout {
        Some(t) if !t.is_zero() => TcpStream::connect_timeout(&addr, t)?,
        Some(_) => return Err(io::ErrorKind::TimedOut.into()),
        None => TcpStream::connect(addr)?,
    };
    s.set_nodelay(true)?;
    Ok(NetStream::Tcp(s))
}

/// Connects to a Unix-domain socket; `Unsupported` on Windows.
pub(crate) fn connect_local(path: &Path) -> io::Result<NetStream> {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(path).map(NetStream::Local)
    }
    #[cfg(not(unix))]
    {
        Err(local_unsupported(path))
    }
}

/// Listens on the named pipe `name` (`\\.\pipe\NAME`; an error of kind
/// `AddrInUse` if a pipe of that name exists); `Unsupported` on Unix.
pub(crate) fn listen_pipe(name: &str) -> io::Result<NetListener> {
    #[cfg(windows)]
    {
        super::npipe::PipeListener::bind(name).map(NetListener::Pipe)
    }
    #[cfg(not(windows))]
    {
        Err(pipe_unsupported(name))
    }
}

/// Connects to the named pipe `name`, waiting at most `timeout` for a
/// free instance (`None`: as long as it takes); `Unsupported` on Unix.
pub(crate) fn connect_pipe(name: &str, timeout: Option<Duration>) -> io::Result<NetStream> {
    #[cfg(windows)]
    {
        super::npipe::connect(name, deadline::deadline_of(timeout)).map(NetStream::Pipe)
    }
    #[cfg(not(windows))]
    {
        let _ = timeout;
        Err(pipe_unsupported(name))
    }
}

/// Named pipe addresses on Unix.
#[cfg(not(windows))]
fn pipe_unsupported(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "named pipe addresses such as {name} are Windows only; use a Unix-domain \
             socket (unix:PATH) or a loopback TCP address"
        ),
    )
}

/// A fresh local address no one else can connect to, for
/// `Listener::bind_local` (CPython's `arbitrary_address`).
#[derive(Debug)]
pub(crate) enum LocalDefault {
    /// A named pipe `\\.\pipe\multiproc-<pid>-<counter>-<random>` (Windows).
    #[cfg_attr(unix, allow(dead_code))]
    Pipe(String),
    /// A directory just made for a Unix-domain socket, only this user may
    /// enter (mode 0700, in the temporary directory); the caller binds in it
    /// and removes it.
    #[cfg_attr(windows, allow(dead_code))]
    SocketDir(PathBuf),
}

/// A fresh [`LocalDefault`]: on Windows a new pipe name, on Unix a new
/// private directory.
pub(crate) fn local_default() -> io::Result<LocalDefault> {
    #[cfg(windows)]
    {
        Ok(LocalDefault::Pipe(super::npipe::fresh_pipe_name()))
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let dir = std::env::temp_dir().join(format!(
            "multiproc-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(random)
        ));
        // `create`, not `create_all`: it fails if the path exists, so the
        // directory is ours, made with mode 0700 (less the umask).
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(LocalDefault::SocketDir(dir))
    }
}

/// Stops a listener's [`NetListener::accept`] from another thread, for
/// listeners that have a way to: a named pipe's stop event (Windows), a
/// socket's shutdown(2) (Linux); the layer above wakes any other by
/// connecting to it.
#[derive(Debug)]
pub(crate) struct NetStopper {
    #[cfg(windows)]
    pipe: super::npipe::PipeStopper,
    /// A copy of the listening socket (`dup`, close-on-exec).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket: std::os::fd::OwnedFd,
}

impl NetStopper {
    /// From now on, `accept` returns an error at once; whether that took
    /// (`false`: wake the acceptor by connecting to it).
    ///
    /// A socket (Linux): shutdown(2) of a listening socket stops it
    /// listening — in every copy of it, which a close does not: a child
    /// being started by another thread holds a copy of every fd from its
    /// fork until its exec closes them (close-on-exec), and while one is
    /// open a client still connects, to be reset when the copy closes. A
    /// client now is refused (`ECONNREFUSED`), and a blocked `accept`
    /// returns `EINVAL` (Linux's `inet_shutdown`/`unix_shutdown`; other
    /// Unixes refuse the call on a listening socket with `ENOTCONN`, or
    /// don't wake `accept`, so they have no stopper).
    pub(crate) fn stop(&self) -> bool {
        #[cfg(windows)]
        {
            self.pipe.stop();
            true
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Both).is_ok()
        }
        #[cfg(not(any(windows, target_os = "linux", target_os = "android")))]
        {
            false
        }
    }
}

impl NetListener {
    /// What stops [`accept`](Self::accept) from another thread: a named
    /// pipe's stop event; on Linux a copy of the socket to shut down
    /// (`None` if it can't be copied); `None` for any other socket.
    pub(crate) fn stopper(&self) -> Option<NetStopper> {
        match self {
            #[cfg(windows)]
            NetListener::Pipe(l) => Some(NetStopper { pipe: l.stopper() }),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            NetListener::Tcp(l) => l.try_clone().ok().map(|l| NetStopper { socket: l.into() }),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            NetListener::Local(l) => l.try_clone().ok().map(|l| NetStopper { socket: l.into() }),
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            _ => None,
        }
    }

    /// Waits for the next connection.
    pub(crate) fn accept(&mut self) -> io::Result<NetStream> {
        match self {
            NetListener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(NetStream::Tcp(s))
            }
            #[cfg(unix)]
            NetListener::Local(l) => l.accept().map(|(s, _)| NetStream::Local(s)),
            #[cfg(windows)]
            NetListener::Pipe(l) => l.accept().map(NetStream::Pipe),
        }
    }

    /// The TCP address it listens on (with the port the OS picked);
    /// `None` for a Unix-domain socket.
    pub(crate) fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            NetListener::Tcp(l) => l.local_addr().ok(),
            #[cfg(unix)]
            NetListener::Local(_) => None,
            #[cfg(windows)]
            NetListener::Pipe(_) => None,
        }
    }
}

impl NetStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            NetStream::Tcp(s) => s.set_read_timeout(t),
            #[cfg(unix)]
            NetStream::Local(s) => s.set_read_timeout(t),
            // Each read of a pipe waits with its own deadline.
            #[cfg(windows)]
            NetStream::Pipe(_) => Ok(()),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            NetStream::Tcp(s) => s.set_write_timeout(t),
            #[cfg(unix)]
            NetStream::Local(s) => s.set_write_timeout(t),
            #[cfg(windows)]
            NetStream::Pipe(_) => Ok(()),
        }
    }

    /// Reads what is there (0 at end of file), waiting until `deadline`
    /// at the latest: past it, an error of kind `TimedOut`. (A socket
    /// timeout, `SO_RCVTIMEO`, set to the time left before each read; on
    /// Windows a timed-out socket is closed, not used again, as
    /// "setsockopt" on MSDN asks. A named pipe: an overlapped read,
    /// canceled at the deadline.)
    pub(crate) fn read_by(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let r = match self {
            NetStream::Tcp(s) => {
                s.set_read_timeout(time_left(deadline)?)?;
                s.read(buf)
            }
            #[cfg(unix)]
            NetStream::Local(s) => {
                s.set_read_timeout(time_left(deadline)?)?;
                s.read(buf)
            }
            #[cfg(windows)]
            NetStream::Pipe(p) => {
                use std::os::windows::io::AsHandle;
                return super::npipe::read_by(p.as_handle(), buf, deadline);
            }
        };
        r.map_err(timed_out)
    }

    /// Writes all of `buf`, waiting until `deadline` at the latest (as
    /// [`read_by`](Self::read_by)).
    pub(crate) fn write_all_by(&mut self, buf: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        let r = match self {
            NetStream::Tcp(s) => {
                s.set_write_timeout(time_left(deadline)?)?;
                s.write_all(buf)
            }
            #[cfg(unix)]
            NetStream::Local(s) => {
                s.set_write_timeout(time_left(deadline)?)?;
                s.write_all(buf)
            }
            #[cfg(windows)]
            NetStream::Pipe(p) => {
                use std::os::windows::io::AsHandle;
                return super::npipe::write_all_by(p.as_handle(), buf, deadline);
            }
        };
        r.map_err(timed_out)
    }

    /// The connection as a channel end: blocking, no timeouts left.
    pub(crate) fn into_channel(self) -> io::Result<Channel> {
        self.set_read_timeout(None)?;
        self.set_write_timeout(None)?;
        match self {
            NetStream::Tcp(s) => Channel::from_tcp(s),
            #[cfg(unix)]
            NetStream::Local(s) => Channel::from_local(s),
            #[cfg(windows)]
            NetStream::Pipe(p) => Ok(Channel::from_net_pipe(p)),
        }
    }
}

/// The socket timeout that ends at `deadline`: `None` (none) without
/// one; `TimedOut` once it passed (a zero timeout would mean "none" to
/// the OS, and std refuses it).
fn time_left(deadline: Option<Instant>) -> io::Result<Option<Duration>> {
    match deadline::left(deadline) {
        None => Ok(None),
        Some(d) if d.is_zero() => Err(io::ErrorKind::TimedOut.into()),
        Some(d) => Ok(Some(d)),
    }
}

/// A socket timeout reads as `WouldBlock` on Unix and `TimedOut` on
/// Windows: `TimedOut` for both.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "timed out")
    } else {
        e
    }
}

/// The first address `host:port` resolves to (the system resolver).
pub(crate) fn resolve(s: &str) -> io::Result<Option<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok(s.to_socket_addrs()?.next())
}

/// Every address the host name `host` resolves to, in the system
/// resolver's order (`getaddrinfo`; duplicates, one per socket type,
/// removed).
pub(crate) fn resolve_host(host: &str) -> io::Result<Vec<std::net::IpAddr>> {
    use std::net::ToSocketAddrs;
    let mut ips = Vec::new();
    for a in (host, 0).to_socket_addrs()? {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    Ok(ips)
}
