//! [`Listener`] and [`Client`]: [`Connection`](crate::Connection)s
//! between processes that did not start each other — over TCP, a
//! Unix-domain socket (Unix) or a named pipe (Windows) — after an
//! authentication handshake (Python's `multiprocessing.connection`).
//! `auth.rs` is the handshake; `listener.rs` the two types.
//!
//! The security model and how bad peers are handled: [`Listener`]'s
//! docs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Kind, Result};

pub(crate) mod auth;
mod listener;

#[cfg(feature = "test-hooks")]
pub(crate) use listener::hooks as listener_hooks;
pub use listener::{Client, Listener, ToAddress};

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// Made from a [`SocketAddr`] (or an `(IpAddr, u16)` pair), or parsed
/// from a string: `"127.0.0.1:5000"`, `"[::1]:5000"`, `"node12:5000"`
/// (resolved to its first address), `"unix:/run/app.sock"` for a
/// Unix-domain socket (Unix only), or `r"\\.\pipe\app"` for a named
/// pipe (Windows only; CPython's form of a pipe address). Binding or
/// connecting to a form the platform lacks fails with an error of kind
/// [`Io`](crate::ErrorKind::Io) whose OS error is of kind
/// [`Unsupported`](std::io::ErrorKind::Unsupported).
/// [`Listener::bind_local`] picks a fresh local address of the
/// platform's kind.
///
/// ```
/// use multiproc::Address;
///
/// let a: Address = "127.0.0.1:5000".parse()?;
/// assert_eq!(a, Address::Tcp(([127, 0, 0, 1], 5000).into()));
/// assert_eq!(a.to_string(), "127.0.0.1:5000");
/// let u: Address = "unix:/tmp/app.sock".parse()?;
/// assert_eq!(u, Address::Local("/tmp/app.sock".into()));
/// assert_eq!(u.to_string(), "unix:/tmp/app.sock");
/// let p: Address = r"\\.\pipe\app".parse()?;
/// assert_eq!(p, Address::Pipe(r"\\.\pipe\app".into()));
/// assert_eq!(p.to_string(), r"\\.\pipe\app");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket at this path (Unix only).
    Local(PathBuf),
    /// A named pipe on this machine, `\\.\pipe\NAME` whole (Windows
    /// only). NAME is not empty and has no backslash, and the whole is at
    /// most 256 characters ("CreateNamedPipeW" on MSDN); pipe names are
    /// not case-sensitive. Pipes of other machines (`\\host\pipe\NAME`)
    /// are not addresses: a [`Listener`] refuses remote clients.
    Pipe(String),
}

impl Address {
    /// Whether only this machine can connect: a loopback TCP address, a
    /// Unix-domain socket, or a named pipe.
    pub fn is_local(&self) -> bool {
        match self {
            Address::Tcp(a) => a.ip().is_loopback(),
            Address::Local(_) | Address::Pipe(_) => true,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Local(p) => write!(f, "unix:{}", p.display()),
            Address::Pipe(name) => f.write_str(name),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    /// `unix:PATH`, `\\.\pipe\NAME`, an IP socket address, or
    /// `host:port`, resolved (its first address).
    fn from_str(s: &str) -> Result<Address> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Address::Local(path.into()));
        }
        if s.starts_with(r"\\") {
            return pipe_address(s).map(Address::Pipe);
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(a));
        }
        match crate::sys::resolve(s) {
            Ok(Some(a)) => Ok(Address::Tcp(a)),
            Ok(None) => Err(Error::new(Kind::Usage(format!(
                "address `{s}` resolves to nothing"
            )))),
            Err(e) => Err(Error::new(Kind::Usage(format!(
                "`{s}` is not an address (`host:port`, `IP:port` or `unix:PATH`): {e}"
            )))),
        }
    }
}

/// The longest pipe address, in UTF-16 units ("CreateNamedPipeW" on
/// MSDN: "The entire pipe name string can be up to 256 characters long").
const MAX_PIPE_ADDRESS: usize = 256;

/// `s`, checked to be a local named pipe's address (CPython's test for one
/// is "starts with two backslashes"; only local pipes are ours).
fn pipe_address(s: &str) -> Result<String> {
    const PREFIX: &str = r"\\.\pipe\";
    let bad = |why: &str| {
        Err(Error::new(Kind::Usage(format!(
            "`{s}` is not a named pipe address (`\\\\.\\pipe\\NAME`): {why}"
        ))))
    };
    let name = match s.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => &s[PREFIX.len()..],
        _ => return bad("only pipes on this machine (`\\\\.\\pipe\\`) are addresses"),
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name.contains('\\') || name.contains('\0') {
        return bad("the name has a backslash or a NUL");
    }
    if s.encode_utf16().count() > MAX_PIPE_ADDRESS {
        return bad("longer than 256 characters");
    }
    Ok(s.to_owned())
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

impl From<SocketAddrV4> for Address {
    fn from(a: SocketAddrV4) -> Self {
        Address::Tcp(a.into())
    }
}

impl From<SocketAddrV6> for Address {
    fn from(a: SocketAddrV6) -> Self {
        Address::Tcp(a.into())
    }
}

impl From<(IpAddr, u16)> for Address {
    fn from(a: (IpAddr, u16)) -> Self {
        Address::Tcp(a.into())
    }
}

impl From<(Ipv4Addr, u16)> for Address {
    fn from(a: (Ipv4Addr, u16)) -> Self {
        Address::Tcp(a.into())
    }
}

impl From<(Ipv6Addr, u16)> for Address {
    fn from(a: (Ipv6Addr, u16)) -> Self {
        Address::Tcp(a.into())
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Self {
        a.clone()
    }
}
