//! [`Listener`] (its acceptor thread and one handshake thread per
//! incoming connection) and [`Client`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{auth, Address};
use crate::connection::Connection;
use crate::deadline;
use crate::error::{Error, Kind, Result};
use crate::sys;

/// Something that names an [`Address`]: an `Address`, a [`SocketAddr`]
/// (or an `(IpAddr, u16)` pair), or a string [`Address`] parses
/// (`"127.0.0.1:5000"`, `"node12:5000"`, `"unix:/run/app.sock"`,
/// `r"\\.\pipe\app"`).
pub trait ToAddress {
    /// The address; an error for a string that is none.
    fn to_address(self) -> Result<Address>;
}

impl<T: Into<Address>> ToAddress for T {
    fn to_address(self) -> Result<Address> {
        Ok(self.into())
    }
}

impl ToAddress for &str {
    fn to_address(self) -> Result<Address> {
        self.parse()
    }
}

impl ToAddress for &String {
    fn to_address(self) -> Result<Address> {
        self.parse()
    }
}

/// State the acceptor and handshake threads share with the [`Listener`].
struct Shared {
    stop: AtomicBool,
    /// The handshake timeout, in nanoseconds.
    handshake_ns: AtomicU64,
    /// Connections accepted whose handshake runs or whose result waits for
    /// `accept`.
    pending: AtomicUsize,
    key: Option<Vec<u8>>,
}

impl Shared {
    fn handshake_timeout(&self) -> Duration {
        Duration::from_nanos(self.handshake_ns.load(Ordering::Relaxed))
    }
}

/// Listens for [`Client`]s and gives a [`Connection`] for each that passed
/// the authentication handshake (Python's
/// `multiprocessing.connection.Listener`).
///
/// ```
/// use multiproc::{Client, Listener};
///
/// # fn main() -> Result<(), multiproc::Error> {
/// let key = b"a long random secret, from the environment";
/// let listener = Listener::bind("127.0.0.1:0", Some(key))?;
/// let addr = listener.address().clone();
/// let client = std::thread::spawn(move || -> Result<(), multiproc::Error> {
///     let conn = Client::connect(&addr, Some(key))?;
///     conn.send(&"hello")?;
///     Ok(())
/// });
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv::<String>()?, "hello");
/// client.join().unwrap()?;
/// # Ok(()) }
/// ```
///
/// # How connections are accepted
///
/// A thread of the listener's accepts connections as they come and starts
/// a short-lived thread for each one's handshake (at most
/// [`MAX_PENDING`](Listener::MAX_PENDING) at a time: connections beyond
/// that are closed at once), which ends within the handshake timeout. So
/// a client that connects and says nothing holds one of those threads for
/// the timeout, and delays no one: [`accept`](Listener::accept) returns
/// the connections in the order their handshakes finish. A handshake that
/// failed (a wrong key, garbage, silence past the timeout) is returned by
/// `accept` as an error of kind
/// [`Authentication`](crate::ErrorKind::Authentication) naming what
/// happened, as Python's `accept` raises `AuthenticationError`: it
/// concerns that one connection, which is closed; call `accept` again for
/// the next.
///
/// # Security model
///
/// The key is **authentication, not encryption**. The handshake
/// (CPython's mutual HMAC challenge-response, with SHA-256,
/// random challenges and a constant-time comparison) proves to each side
/// that the other has the same key, before either reads a message; a
/// peer without it gets an error and is disconnected. After the
/// handshake the messages travel in the clear, unsigned: anyone who can
/// watch the network path can read them, and anyone who can tamper with
/// it can change them. Messages are deserialized with the crate's usual
/// checks, but a process that accepts a connection trusts its peer as much
/// as it trusts its own workers. So:
///
/// - keep the key secret (pass it in an environment variable or a file
///   only its user can read, never on a command line, which `ps` shows),
///   and make it long and random (32 bytes from a random source);
/// - for traffic that crosses a network you don't control, add encryption
///   underneath: an ssh tunnel (`ssh -N -L 5000:127.0.0.1:5000 host`,
///   then connect to `127.0.0.1:5000` here; the listener on `host` binds
///   to loopback), a VPN (WireGuard), or a TLS terminator such as
///   `stunnel` on both ends. The crate has no TLS of its own.
///
/// Without a key there is no handshake at all, so a [`Listener`] without
/// one refuses to bind anything but a loopback address (`127.0.0.1`,
/// `::1`), a Unix-domain socket (whose file permissions decide who may
/// connect) or a named pipe; even on loopback every local user can then
/// connect.
///
/// A named pipe (Windows) is made for this user alone: its DACL has one
/// entry, full access for the user this process runs as (the default DACL
/// would also let Everyone and Anonymous open it for reading), and it
/// refuses clients on other machines (`PIPE_REJECT_REMOTE_CLIENTS`).
/// Binding a name some pipe already has fails with an error of kind
/// [`Io`](crate::ErrorKind::Io) whose OS error is of kind
/// [`AddrInUse`](std::io::ErrorKind::AddrInUse), rather than sharing it.
/// A client opens a pipe so that the listener can identify it but not
/// impersonate it. [`Listener::bind_local`] picks a fresh, unguessable
/// pipe name (Unix: a socket in a new directory only this user can
/// enter).
///
/// # Bad peers
///
/// A peer that sends the wrong key, garbage, a length prefix over 256
/// bytes (the handshake's messages are short), or nothing at all is
/// refused within the handshake timeout
/// ([`Listener::DEFAULT_HANDSHAKE_TIMEOUT`], see
/// [`Listener::set_handshake_timeout`]) and with bounded memory; the
/// error names what it did. The listener handshakes on a thread of its
/// own per connection (at most [`Listener::MAX_PENDING`] at a time, more
/// are closed at once), so a silent client delays no one else:
/// [`Listener::accept`] returns whichever connection finished its
/// handshake first.
///
/// The connections it gives are ordinary [`Connection`]s, with the same
/// framing and size cap (see [`Connection::set_max_message_len`]). On Unix
/// one can be passed to a child like any `Connection`; on Windows a
/// named-pipe connection can (it is a pipe end like [`Pipe`](crate::Pipe)'s,
/// and [`wait`](crate::wait) waits on it as on one), a TCP connection
/// can't (sending one fails with an error). None carries handles inside
/// its messages (a [`PassedHandle`](crate::PassedHandle), a `Connection`),
/// a named-pipe one included, even once passed to a child: its peer
/// connected by name, and could name any process of this user as the
/// holder of the handles; sending one fails with an error saying so, and
/// the connection goes on.
///
/// A named pipe has at most 255 instances at a time (Windows' limit), one
/// of them waiting for the next client: at most 254 of a listener's
/// connections can be open at once. Past that, `accept` returns errors
/// until one is closed.
///
/// # Drop
///
/// Dropping the listener stops accepting: the acceptor thread is woken
/// (a named pipe's by an event; on Linux a socket's by shutting it down;
/// on other Unixes and for TCP on Windows by a connection to the
/// listener's own address) and joined, and the socket (the pipe's waiting
/// instance) is closed; a Unix-domain socket's file is removed, and the
/// directory [`bind_local`](Listener::bind_local) made for it. A client
/// that connects after the drop is refused — on Linux also while a child
/// that another thread is starting holds a copy of the socket (from its
/// fork until its exec): the shutdown stops every copy listening. (On
/// other Unixes a client that connects in that moment is reset when the
/// copy closes, and its handshake fails.) Connections whose handshake is
/// still running are closed when it ends. Connections already accepted
/// are not affected.
pub struct Listener {
    address: Address,
    shared: Arc<Shared>,
    ready: Mutex<Receiver<Result<Connection>>>,
    acceptor: Option<JoinHandle<()>>,
    /// Stops the acceptor where the OS has a way (a named pipe; a socket
    /// on Linux); any other socket's is woken by a connection of our own.
    stopper: Option<sys::NetStopper>,
    /// The directory [`bind_local`](Listener::bind_local) made for the
    /// socket, removed with it.
    private_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.shared.key.is_some())
            .finish()
    }
}

impl Listener {
    /// How long a connection has for its handshake by default: 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// The most connections whose handshake is running, or whose
    /// connection waits for [`accept`](Listener::accept), at a time; more
    /// are closed as they come.
    pub const MAX_PENDING: usize = 64;

    /// Listens on `addr`: a TCP address (port 0: the OS picks one, see
    /// [`address`](Listener::address)), a Unix-domain socket path
    /// (`"unix:PATH"`, which must not exist; Unix) or a named pipe
    /// (`r"\\.\pipe\NAME"`, which must not exist; Windows).
    ///
    /// With `authkey`, every client must prove it has the same key (and
    /// this listener proves it to the client) before its connection is
    /// given out. Without one there is no handshake, and only a loopback
    /// address, a Unix-domain socket or a named pipe is accepted: binding
    /// anything else without a key is an error of kind
    /// [`Usage`](crate::ErrorKind::Usage), since anyone who can reach the
    /// address could then send this program messages. An empty key is an
    /// error too.
    pub fn bind(addr: impl ToAddress, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = addr.to_address()?;
        check_key(authkey)?;
        if authkey.is_none() && !address.is_local() {
            return Err(Error::new(Kind::Usage(format!(
                "refusing to listen on {address} without an authentication key: anyone who \
                 can reach it could send this program messages; give a key, or listen on a \
                 loopback address (127.0.0.1, ::1)"
            ))));
        }
        let (socket, address) = match &address {
            Address::Tcp(a) => {
                let l = sys::listen_tcp(*a).map_err(|e| listen_error(&address, e))?;
                let bound = l.tcp_addr().map_or(address.clone(), Address::Tcp);
                (l, bound)
            }
            Address::Local(p) => (
                sys::listen_local(p).map_err(|e| listen_error(&address, e))?,
                address.clone(),
            ),
            Address::Pipe(name) => (
                sys::listen_pipe(name).map_err(|e| listen_error(&address, e))?,
                address.clone(),
            ),
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            handshake_ns: AtomicU64::new(Self::DEFAULT_HANDSHAKE_TIMEOUT.as_nanos() as u64),
            pending: AtomicUsize::new(0),
            key: authkey.map(<[u8]>::to_vec),
        });
        let (tx, rx) = mpsc::sync_channel(Self::MAX_PENDING);
        let stopper = socket.stopper();
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("multiproc-listener".into())
                .spawn(move || accept_loop(socket, shared, tx))
                .map_err(|e| Error::io("cannot start the listener's thread", e))?
        };
        Ok(Listener {
            address,
            shared,
            ready: Mutex::new(rx),
            acceptor: Some(acceptor),
            stopper,
            private_dir: None,
        })
    }

    /// Listens on a fresh local address that only this user can connect
    /// to (CPython's `Listener()` without an address): on Windows a named
    /// pipe `\\.\pipe\multiproc-<pid>-<counter>-<random>`; on Unix a
    /// Unix-domain socket `listener.sock` in a directory made for it in
    /// the temporary directory ([`std::env::temp_dir`]), mode 0700, which
    /// the listener removes when dropped. [`address`](Listener::address)
    /// says where; pass it to the clients (e.g. in an environment
    /// variable). `authkey` as for [`bind`](Listener::bind).
    ///
    /// ```
    /// use multiproc::{Client, Listener};
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// let key = b"a long random secret, from the environment";
    /// let listener = Listener::bind_local(Some(key))?;
    /// assert!(listener.address().is_local());
    /// let addr = listener.address().clone();
    /// let client = std::thread::spawn(move || Client::connect(&addr, Some(key)));
    /// let conn = listener.accept()?;
    /// conn.send(&1u8)?;
    /// assert_eq!(client.join().unwrap()?.recv::<u8>()?, 1);
    /// # Ok(()) }
    /// ```
    pub fn bind_local(authkey: Option<&[u8]>) -> Result<Listener> {
        let fresh = sys::local_default()
            .map_err(|e| Error::io("cannot make a local address to listen on", e))?;
        match fresh {
            sys::LocalDefault::Pipe(name) => Listener::bind(Address::Pipe(name), authkey),
            sys::LocalDefault::SocketDir(dir) => {
                match Listener::bind(Address::Local(dir.join("listener.sock")), authkey) {
                    Ok(mut l) => {
                        l.private_dir = Some(dir);
                        Ok(l)
                    }
                    Err(e) => {
                        let _ = std::fs::remove_dir(&dir);
                        Err(e)
                    }
                }
            }
        }
    }

    /// The address it listens on, with the port the OS picked for port 0.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// How long a connection has for its handshake, from when it was
    /// accepted (default [`DEFAULT_HANDSHAKE_TIMEOUT`](Self::DEFAULT_HANDSHAKE_TIMEOUT));
    /// applies to connections accepted from now on.
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.shared.handshake_ns.store(ns, Ordering::Relaxed);
    }

    /// How long a connection has for its handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.shared.handshake_timeout()
    }

    /// The next connection whose handshake passed, waiting as long as it
    /// takes; or an error of kind [`Authentication`](crate::ErrorKind::Authentication)
    /// for one whose handshake failed (see "How connections are accepted"
    /// above: the listener goes on, call `accept` again).
    pub fn accept(&self) -> Result<Connection> {
        let rx = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        rx.recv().unwrap_or_else(|_| Err(acceptor_gone()))
    }

    /// [`accept`](Listener::accept), waiting at most `timeout`: `Ok(None)`
    /// if no handshake ended by then.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Option<Connection>> {
        let rx = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        let got = match deadline::deadline(timeout) {
            Some(_) => rx.recv_timeout(timeout),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(r) => r.map(Some),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(acceptor_gone()),
        }
    }

    /// Whether a connection is in its handshake now: a thread of this
    /// listener's has it, and will hand it to `accept` (or its failure)
    /// before it stops counting. A peer can't finish its side of the
    /// handshake without such a thread, so one that did and then went
    /// away has its connection pending here, or waiting for `accept`.
    pub(crate) fn handshakes_pending(&self) -> bool {
        self.shared.pending.load(Ordering::SeqCst) > 0
    }

    /// Stops listening (the same as dropping it).
    pub fn close(self) {}
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor: a named pipe's with its stop event; on Linux
        // a socket's by shutting it down (which also stops it listening
        // in a copy that a child being started holds until its exec); any
        // other socket's out of its accept(2) with a connection of our
        // own. It sees `stop` and ends, closing the socket. If that
        // connection can't be made, it ends at the next one instead.
        let woken = match (&self.stopper, &self.address) {
            (Some(s), _) if s.stop() => true,
            (_, Address::Tcp(a)) => {
                sys::connect_tcp(wake_address(*a), Some(Duration::from_secs(1))).is_ok()
            }
            (_, Address::Local(p)) => sys::connect_local(p).is_ok(),
            (_, Address::Pipe(name)) => {
                sys::connect_pipe(name, Some(Duration::from_secs(1))).is_ok()
            }
        };
        if let Some(t) = self.acceptor.take() {
            if woken {
                let _ = t.join();
            }
        }
        if let Address::Local(p) = &self.address {
            let _ = std::fs::remove_file(p);
        }
        if let Some(dir) = &self.private_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Where to connect to reach a listener bound to `a`: the loopback
/// address of its family for a wildcard one.
fn wake_address(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        _ => a,
    }
}

fn listen_error(address: &Address, e: std::io::Error) -> Error {
    let why = std::io::Error::new(e.kind(), format!("{address}: {e}"));
    Error::io("cannot listen", why)
}

fn acceptor_gone() -> Error {
    Error::io(
        "the listener stopped accepting",
        std::io::Error::other("its acceptor thread ended"),
    )
}

fn check_key(authkey: Option<&[u8]>) -> Result<()> {
    match authkey {
        Some([]) => Err(Error::new(Kind::Usage(
            "an empty authentication key: give a long random one, or None for no handshake".into(),
        ))),
        _ => Ok(()),
    }
}

/// The acceptor thread: accepts until `stop`, starting a handshake
/// thread for each connection while fewer than `MAX_PENDING` are
/// pending.
fn accept_loop(
    mut socket: sys::NetListener,
    shared: Arc<Shared>,
    tx: SyncSender<Result<Connection>>,
) {
    loop {
        let got = socket.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match got {
            Ok(s) => s,
            Err(e) => {
                // Out of fds, a connection reset before it was taken…: say
                // so if `accept` has room for it, pause briefly so a
                // lasting condition doesn't spin, and go on.
                let e = Error::io("cannot accept a connection", e);
                if let Err(TrySendError::Disconnected(_)) = tx.try_send(Err(e)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.pending.fetch_add(1, Ordering::SeqCst) >= Listener::MAX_PENDING {
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let (shared2, tx2) = (Arc::clone(&shared), tx.clone());
        let started = std::thread::Builder::new()
            .name("multiproc-handshake".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let r = handshake(stream, &shared2);
                #[cfg(feature = "test-hooks")]
                hooks::before_handover();
                // Blocks while `accept` has MAX_PENDING results waiting;
                // fails (closing the connection) once the listener is gone.
                let _ = tx2.send(r);
                shared2.pending.fetch_sub(1, Ordering::SeqCst);
            });
        if started.is_err() {
            shared.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The listener's side of one connection's handshake.
fn handshake(mut stream: sys::NetStream, shared: &Shared) -> Result<Connection> {
    if let Some(key) = &shared.key {
        let timeout = shared.handshake_timeout();
        auth::serve(&mut stream, key, timeout, deadline::deadline(timeout))?;
    }
    into_connection(stream)
}

fn into_connection(stream: sys::NetStream) -> Result<Connection> {
    let chan = stream
        .into_channel()
        .map_err(|e| Error::io("cannot set up the connection", e))?;
    Ok(Connection::from_socket(chan))
}

/// Connects to a [`Listener`] (Python's
/// `multiprocessing.connection.Client`).
#[derive(Debug)]
pub struct Client(());

impl Client {
    /// Connects to `addr` and, with `authkey`, runs the authentication
    /// handshake (within [`Listener::DEFAULT_HANDSHAKE_TIMEOUT`]): the
    /// listener must have the same key, and this side proves it has it.
    /// A wrong key, a listener that is not one, or silence past the
    /// timeout is an error of kind
    /// [`Authentication`](crate::ErrorKind::Authentication). Without a key
    /// the connection is given as it is (a listener that has a key then
    /// refuses it). An empty key is an error of kind
    /// [`Usage`](crate::ErrorKind::Usage).
    pub fn connect(addr: impl ToAddress, authkey: Option<&[u8]>) -> Result<Connection> {
        Client::connect_timeout(addr, authkey, Listener::DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// [`connect`](Client::connect), with `timeout` for the connection
    /// (a named pipe: while all its instances are busy, waiting for one
    /// with `WaitNamedPipeW`, as CPython's `PipeClient` does) and, again,
    /// for the handshake.
    pub fn connect_timeout(
        addr: impl ToAddress,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection> {
        let address = addr.to_address()?;
        check_key(authkey)?;
        let mut stream = match &address {
            Address::Tcp(a) => sys::connect_tcp(*a, Some(timeout)),
            Address::Local(p) => sys::connect_local(p),
            Address::Pipe(name) => sys::connect_pipe(name, Some(timeout)),
        }
        .map_err(|e| {
            let why = std::io::Error::new(e.kind(), format!("{address}: {e}"));
            Error::io("cannot connect", why)
        })?;
        if let Some(key) = authkey {
            auth::join(&mut stream, key, timeout, deadline::deadline(timeout))?;
        }
        into_connection(stream)
    }
}

/// Test hooks (feature `test-hooks`): hold finished handshakes back from
/// `accept`, to check that a peer which finished its side and went away
/// meanwhile is not lost.
#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::sync::{Condvar, Mutex};

    static HELD: Mutex<bool> = Mutex::new(false);
    static CHANGED: Condvar = Condvar::new();

    /// From now on in this process (`true`) or no longer (`false`), a
    /// listener's handshake thread holds its finished connection until
    /// this is `false`.
    pub(crate) fn hold_handovers(on: bool) {
        *HELD.lock().unwrap_or_else(|e| e.into_inner()) = on;
        CHANGED.notify_all();
    }

    pub(super) fn before_handover() {
        let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        drop(CHANGED.wait_while(held, |h| *h));
    }
}
