//! Unix: `posix_spawn` with the bootstrap socket dup2'd to fd 3, pidfds where
//! the kernel has them (Linux ≥ 5.4 for `waitid(P_PIDFD)`), and a reaper
//! thread so that children dropped without `wait` never stay zombies.
//!
//! The bootstrap channel is an `AF_UNIX` stream socketpair rather than a
//! pipe: handles passed with `duplicate_for_child` travel as `SCM_RIGHTS`
//! after the child exists, exactly as the Windows side duplicates them into
//! the running child. So the child starts with fds 0, 1, 2 and 3 only.

use std::cell::RefCell;
use std::ffi::{CString, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitIdStatus};

use super::{BootToken, RawStatus, SpawnRequest, StdioMode};
use crate::deadline;

/// An owned OS resource: a file descriptor.
pub(crate) type OwnedRaw = OwnedFd;
/// A borrowed OS resource: a file descriptor.
pub(crate) type BorrowedRaw<'a> = BorrowedFd<'a>;

/// What `terminate()` produces: death by SIGTERM.
pub(crate) const TERMINATED: RawStatus = RawStatus::Signaled(libc::SIGTERM);

/// The fd number the bootstrap socket has in the child.
const CHILD_FD: RawFd = 3;

/// At most this many fds travel in one `SCM_RIGHTS` message (`SCM_MAX_FD`
/// is 253 on Linux, see unix(7)); more go in several messages.
const FDS_PER_MESSAGE: usize = 253;

/// `posix_spawn_file_actions_t` that is destroyed when dropped.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Box<Self>> {
        let mut fa = Box::new(MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit());
        // SAFETY: `fa` is valid writable memory for the structure.
        cvt_nz(unsafe { libc::posix_spawn_file_actions_init(fa.as_mut_ptr()) })?;
        // SAFETY: initialized by the call above; Box<MaybeUninit<T>> and
        // Box<FileActions> have the same layout (repr of a one-field struct).
        Ok(unsafe { Box::from_raw(Box::into_raw(fa).cast::<Self>()) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once here.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// The signature of `posix_spawn_file_actions_addclosefrom_np`.
#[cfg(not(target_vendor = "apple"))]
type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;

/// `posix_spawn_file_actions_addclosefrom_np(3)`, looked up at run time
/// (once): glibc has it since 2.34 and FreeBSD since 13.1, but older glibc
/// (Debian 11, RHEL 8) and musl don't, and naming it at link time would
/// keep the crate from linking there. A static musl binary has no dynamic
/// symbols at all: `None` there too.
#[cfg(not(target_vendor = "apple"))]
fn addclosefrom() -> Option<AddCloseFrom> {
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    {
        static FOUND: OnceLock<Option<AddCloseFrom>> = OnceLock::new();
        *FOUND.get_or_init(|| {
            let name = c"posix_spawn_file_actions_addclosefrom_np";
            // SAFETY: looks a symbol up by a NUL-terminated name in the
            // global scope; nothing is loaded or run.
            let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!found.is_null()).then(|| {
                // SAFETY: where the C library defines this symbol it is that
                // function, with this signature (posix_spawn_file_actions_addclosefrom_np(3)).
                unsafe { std::mem::transmute::<*mut libc::c_void, AddCloseFrom>(found) }
            })
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        None
    }
}

/// Without closefrom: a close action for each fd above 3 that is open now
/// without close-on-exec (the others close themselves at the exec). An fd
/// that another thread opens without close-on-exec after this listing can
/// still slip through, as it would into any child this process starts; one
/// closed meanwhile is harmless (glibc and musl ignore a failed close
/// action on a valid fd number).
#[cfg(not(target_vendor = "apple"))]
fn close_inheritable(actions: &mut FileActions) -> io::Result<()> {
    for fd in open_fds()? {
        let Ok(fd) = RawFd::try_from(fd) else {
            continue;
        };
        if fd <= CHILD_FD {
            continue;
        }
        // SAFETY: F_GETFD on any integer is sound; it fails with EBADF for
        // an fd that is not open (closed by another thread meanwhile).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: `actions` is initialized; the action only records
            // the number.
            cvt_nz(unsafe { libc::posix_spawn_file_actions_addclose(&mut actions.0, fd) })?;
        }
    }
    Ok(())
}

/// `posix_spawnattr_t` that is destroyed when dropped.
struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    fn new() -> io::Result<Box<Self>> {
        let mut attr = Box::new(MaybeUninit::<libc::posix_spawnattr_t>::uninit());
        // SAFETY: `attr` is valid writable memory for the structure.
        cvt_nz(unsafe { libc::posix_spawnattr_init(attr.as_mut_ptr()) })?;
        // SAFETY: initialized by the call above; same layout as `Self`.
        Ok(unsafe { Box::from_raw(Box::into_raw(attr).cast::<Self>()) })
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once here.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// Send without SIGPIPE: MSG_NOSIGNAL where it exists; macOS has no such
/// flag and gets SO_NOSIGPIPE on the socket instead.
#[cfg(not(target_vendor = "apple"))]
const SEND_FLAGS: SendFlags = SendFlags::NOSIGNAL;
#[cfg(target_vendor = "apple")]
const SEND_FLAGS: SendFlags = SendFlags::empty();

/// Received fds are close-on-exec at once where the OS can do that.
#[cfg(not(target_vendor = "apple"))]
const RECV_FLAGS: RecvFlags = RecvFlags::CMSG_CLOEXEC;
#[cfg(target_vendor = "apple")]
const RECV_FLAGS: RecvFlags = RecvFlags::empty();

/// A close-on-exec `AF_UNIX` stream socketpair.
#[cfg(not(target_vendor = "apple"))]
fn stream_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// macOS has no SOCK_CLOEXEC: set it right after. The window doesn't leak
/// into our children, which start with POSIX_SPAWN_CLOEXEC_DEFAULT.
#[cfg(target_vendor = "apple")]
fn stream_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )?;
    for fd in [&a, &b] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        rustix::net::sockopt::set_socket_nosigpipe(fd, true)?;
    }
    Ok((a, b))
}

/// A close-on-exec pipe.
#[cfg(not(target_vendor = "apple"))]
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// macOS has no pipe2: set close-on-exec right after.
#[cfg(target_vendor = "apple")]
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::pipe::pipe()?;
    for fd in [&a, &b] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    Ok((a, b))
}

/// posix_spawn functions return an error number instead of setting errno.
fn cvt_nz(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a program path, argument or environment variable contains a NUL byte",
        )
    })
}

/// The running executable image, if the OS can start a process from it:
/// Linux's `/proc/self/exe` (proc(5)). The new process resolves it before
/// its exec, while it still has our memory map (posix_spawn clones with
/// CLONE_VM, and a fork copies the map's executable file too), so it names
/// our image even after the file at our path was replaced or deleted.
fn running_image() -> Option<&'static std::ffi::CStr> {
    #[cfg(target_os = "linux")]
    {
        static USABLE: OnceLock<bool> = OnceLock::new();
        let image = c"/proc/self/exe";
        USABLE
            .get_or_init(|| rustix::fs::access(image, rustix::fs::Access::EXEC_OK).is_ok())
            .then_some(image)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Everything `posix_spawn` needs, owned, so that it can be handed to the
/// spawner thread.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    stdio: [StdioMode; 3],
    new_group: bool,
}

impl Prepared {
    fn new(req: &SpawnRequest<'_>) -> io::Result<Self> {
        let token = BootToken {
            parent_pid: std::process::id(),
            handle: CHILD_FD as u64,
        };
        let shown = cstring(req.exe.as_os_str().as_bytes())?;
        let program = match running_image() {
            Some(image) if req.running_image => image.to_owned(),
            _ => shown.clone(),
        };
        let mut argv = vec![shown];
        for arg in (req.args)(token) {
            argv.push(cstring(arg.as_bytes())?);
        }
        let env = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv: OsString = k;
                kv.push("=");
                kv.push(v);
                cstring(kv.as_bytes())
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Prepared {
            program,
            argv,
            env,
            stdio: req.stdio,
            new_group: req.new_group,
        })
    }

    /// posix_spawn with `channel` at fd 3, in a new process group.
    fn spawn(&self, channel: BorrowedFd<'_>) -> io::Result<Pid> {
        let mut argv: Vec<*mut libc::c_char> =
            self.argv.iter().map(|s| s.as_ptr().cast_mut()).collect();
        argv.push(std::ptr::null_mut());
        let mut envp: Vec<*mut libc::c_char> =
            self.env.iter().map(|s| s.as_ptr().cast_mut()).collect();
        envp.push(std::ptr::null_mut());

        let mut actions = FileActions::new()?;
        // SAFETY: `actions` is initialized; both fds are open until posix_spawn returns.
        cvt_nz(unsafe {
            libc::posix_spawn_file_actions_adddup2(&mut actions.0, channel.as_raw_fd(), CHILD_FD)
        })?;
        let null = c"/dev/null";
        for (fd, mode) in self.stdio.iter().enumerate() {
            if *mode == StdioMode::Null {
                let flags = if fd == 0 {
                    libc::O_RDONLY
                } else {
                    libc::O_WRONLY
                };
                // SAFETY: `actions` is initialized; `null` is a valid C
                // string that outlives the call (posix_spawn copies it).
                cvt_nz(unsafe {
                    libc::posix_spawn_file_actions_addopen(
                        &mut actions.0,
                        fd as libc::c_int,
                        null.as_ptr(),
                        flags,
                        0,
                    )
                })?;
            }
        }
        // Only fds 0-3 reach the child, even fds that someone opened without
        // CLOEXEC (a jobserver pipe inherited from cargo, a C library's
        // files). macOS gets that from POSIX_SPAWN_CLOEXEC_DEFAULT below.
        #[cfg(not(target_vendor = "apple"))]
        match addclosefrom() {
            // SAFETY: `actions` is initialized; `f` is the C library's
            // posix_spawn_file_actions_addclosefrom_np (see addclosefrom).
            Some(f) => cvt_nz(unsafe { f(&mut actions.0, CHILD_FD + 1) })?,
            None => close_inheritable(&mut actions)?,
        }

        // Like std: the child starts with an empty signal mask and SIGPIPE
        // at its default, whatever this process did to them.
        let mut attr = SpawnAttr::new()?;
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `set` is writable memory for a sigset_t.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        // SAFETY: initialized by sigemptyset above.
        let mut set = unsafe { set.assume_init() };
        // SAFETY: `attr` and `set` are initialized.
        cvt_nz(unsafe { libc::posix_spawnattr_setsigmask(&mut attr.0, &set) })?;
        // SAFETY: `set` is an initialized sigset_t.
        unsafe { libc::sigaddset(&mut set, libc::SIGPIPE) };
        // SAFETY: `attr` and `set` are initialized.
        cvt_nz(unsafe { libc::posix_spawnattr_setsigdefault(&mut attr.0, &set) })?;
        #[allow(unused_mut)]
        let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        if self.new_group {
            // Its own process group (pgid = its pid), so that `kill_tree`
            // reaches everything it starts.
            // SAFETY: `attr` is initialized.
            cvt_nz(unsafe { libc::posix_spawnattr_setpgroup(&mut attr.0, 0) })?;
            flags |= libc::POSIX_SPAWN_SETPGROUP;
        }
        #[cfg(target_vendor = "apple")]
        {
            flags |= libc::POSIX_SPAWN_CLOEXEC_DEFAULT;
        }
        // SAFETY: `attr` is initialized.
        cvt_nz(unsafe { libc::posix_spawnattr_setflags(&mut attr.0, flags as _) })?;

        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer is valid and NUL-terminated where required;
        // argv and envp are null-terminated arrays of C strings that live
        // until the call returns.
        cvt_nz(unsafe {
            libc::posix_spawn(
                &mut pid,
                self.program.as_ptr(),
                &actions.0,
                &attr.0,
                argv.as_ptr(),
                envp.as_ptr(),
            )
        })?;
        Pid::from_raw(pid).ok_or_else(|| io::Error::other("posix_spawn gave pid 0"))
    }
}

type SpawnJob = (Prepared, OwnedFd, std::sync::mpsc::Sender<io::Result<Pid>>);

/// The thread that spawns children which must die with this process.
///
/// Linux delivers PR_SET_PDEATHSIG when the *thread* that created the child
/// exits, not the process (prctl(2)); spawned from a short-lived thread, the
/// worker would die with that thread. This thread lives as long as the
/// process, so the signal comes exactly when the process dies.
fn spawner() -> io::Result<&'static Mutex<std::sync::mpsc::Sender<SpawnJob>>> {
    static SPAWNER: OnceLock<Mutex<std::sync::mpsc::Sender<SpawnJob>>> = OnceLock::new();
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
    std::thread::Builder::new()
        .name("multiproc-spawner".into())
        .spawn(move || {
            for (prepared, channel, reply) in rx {
                let _ = reply.send(prepared.spawn(channel.as_fd()));
            }
        })?;
    Ok(SPAWNER.get_or_init(|| Mutex::new(tx)))
}

/// Starts `req.exe` with the child's end of a fresh socketpair at fd 3.
pub(crate) fn spawn(req: &SpawnRequest<'_>) -> io::Result<(Child, Channel)> {
    REAPER.retry();
    let (parent_end, child_end) = stream_socketpair()?;
    // dup2(fd, fd) would keep FD_CLOEXEC on older C libraries, so the
    // child's end must not already be fd 3.
    let child_end = if child_end.as_raw_fd() == CHILD_FD {
        rustix::io::fcntl_dupfd_cloexec(&child_end, CHILD_FD + 1)?
    } else {
        child_end
    };
    let prepared = Prepared::new(req)?;
    let pid = if req.kill_on_parent_death && cfg!(target_os = "linux") {
        let (tx, rx) = std::sync::mpsc::channel();
        lock(spawner()?)
            .send((prepared, child_end, tx))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))??
        // The spawner dropped its copy of the child's end.
    } else {
        let pid = prepared.spawn(child_end.as_fd())?;
        // The parent's copy of the child's end goes away before anything is
        // written, so a child that dies early gives EPIPE instead of a hang
        // (CPython gh-118981).
        drop(child_end);
        pid
    };
    let child = Child {
        pid,
        pidfd: open_pidfd(pid),
        status: Mutex::new(None),
        own_group: req.new_group,
    };
    Ok((
        child,
        Channel {
            fd: parent_end,
            wr: None,
            socket: true,
            bulk: None,
        },
    ))
}

#[cfg(target_os = "linux")]
fn open_pidfd(pid: Pid) -> Option<OwnedFd> {
    /// Set once `pidfd_open` said ENOSYS (Linux < 5.3).
    static NO_PIDFD: AtomicBool = AtomicBool::new(false);
    if NO_PIDFD.load(Ordering::Relaxed) {
        return None;
    }
    // The child is ours and not yet reaped, so `pid` cannot name anyone
    // else here.
    match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::NOSYS) => {
            NO_PIDFD.store(true, Ordering::Relaxed);
            None
        }
        Err(_) => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn open_pidfd(_pid: Pid) -> Option<OwnedFd> {
    None
}

/// A spawned child process. The authority to signal or wait is the pidfd
/// where there is one; without it, the pid, which stays valid because it is
/// reaped only under `status`'s lock.
#[derive(Debug)]
pub(crate) struct Child {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    status: Mutex<Option<RawStatus>>,
    own_group: bool,
}

fn raw_status(st: WaitIdStatus) -> RawStatus {
    match (st.exit_status(), st.terminating_signal()) {
        (Some(code), _) => RawStatus::Exited(code),
        (None, Some(sig)) => RawStatus::Signaled(sig),
        // Not asked for (WSTOPPED/WCONTINUED are not passed).
        (None, None) => RawStatus::Exited(-1),
    }
}

impl Child {
    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    /// Reaps the child if it has exited, without blocking. Must be called
    /// with the status lock held: only then may the pid be reaped.
    fn try_reap(&self, slot: &mut Option<RawStatus>) -> io::Result<Option<RawStatus>> {
        if let Some(st) = *slot {
            return Ok(Some(st));
        }
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let res = retry_intr(|| match &self.pidfd {
            #[cfg(target_os = "linux")]
            Some(fd) => match rustix::process::waitid(WaitId::PidFd(fd.as_fd()), opts) {
                // Linux 5.3 has pidfd_open but not P_PIDFD.
                Err(Errno::INVAL) => rustix::process::waitid(WaitId::Pid(self.pid), opts),
                other => other,
            },
            _ => rustix::process::waitid(WaitId::Pid(self.pid), opts),
        });
        match res? {
            Some(st) => {
                let st = raw_status(st);
                *slot = Some(st);
                Ok(Some(st))
            }
            None => Ok(None),
        }
    }

    /// Waits for the exit, up to `timeout`; the status is recorded only
    /// once `waitid` reported it.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<RawStatus>> {
        let deadline = deadline::deadline_of(timeout);
        let mut backoff = Duration::from_micros(200);
        loop {
            if let Some(st) = self.try_reap(&mut lock(&self.status))? {
                return Ok(Some(st));
            }
            let left = deadline::left(deadline);
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            match (&self.pidfd, left) {
                (Some(fd), _) => {
                    // A pidfd becomes readable when the process exits
                    // (pidfd_open(2)); reaping happens on the next turn.
                    wait_readable(fd.as_fd(), left)?;
                }
                (None, None) => {
                    // Block without reaping, so a concurrent terminate()
                    // can't hit a recycled pid; reap under the lock next turn.
                    match rustix::process::waitid(
                        WaitId::Pid(self.pid),
                        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                    ) {
                        Ok(_) | Err(Errno::INTR) | Err(Errno::CHILD) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                (None, Some(left)) => {
                    // No pidfd and a timeout: nothing to block on, so poll.
                    std::thread::sleep(backoff.min(left));
                    backoff = (backoff * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// Sends `sig` to the child (or its process group), under the status
    /// lock: never after the child was reaped, when its pid could name a
    /// stranger. Exited-but-not-reaped is not an error either.
    fn signal(&self, sig: Signal, group: bool) -> io::Result<()> {
        if group && !self.own_group {
            // Its group is ours (or our parent's): signalling it would hit
            // us and everyone else in it.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the worker does not lead a process group of its own (ask for one with own_process_group(true))",
            ));
        }
        let slot = lock(&self.status);
        if slot.is_some() {
            return Ok(());
        }
        let res = match &self.pidfd {
            _ if group => rustix::process::kill_process_group(self.pid, sig),
            Some(fd) => pidfd_signal(fd.as_fd(), self.pid, sig),
            None => rustix::process::kill_process(self.pid, sig),
        };
        drop(slot);
        match res {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends SIGTERM. Records nothing: the process may still be running.
    pub(crate) fn terminate(&self) -> io::Result<()> {
        self.signal(Signal::TERM, false)
    }

    /// Sends SIGKILL.
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL, false)
    }

    /// Windows keeps a copy of the child's end; Unix closed it at spawn.
    pub(crate) fn release_bootstrap_peer(&self) {}
}

#[cfg(target_os = "linux")]
fn pidfd_signal(fd: BorrowedFd<'_>, _pid: Pid, sig: Signal) -> rustix::io::Result<()> {
    rustix::process::pidfd_send_signal(fd, sig)
}

#[cfg(not(target_os = "linux"))]
fn pidfd_signal(_fd: BorrowedFd<'_>, pid: Pid, sig: Signal) -> rustix::io::Result<()> {
    rustix::process::kill_process(pid, sig)
}

impl Drop for Child {
    fn drop(&mut self) {
        let reaped = match self.try_reap(&mut lock(&self.status)) {
            Ok(st) => st.is_some(),
            Err(_) => true, // ECHILD: someone else reaped it; nothing to do
        };
        if !reaped {
            // Still running: hand it to the reaper so it never stays a zombie.
            let child = Child {
                pid: self.pid,
                pidfd: self.pidfd.take(),
                status: Mutex::new(None),
                own_group: self.own_group,
            };
            REAPER.adopt(Arc::new(child));
        }
    }
}

/// Has `child` reaped once it exits, although others still hold it (a
/// daemonic child dropped by its `Process` stays in the daemon list until
/// this process exits, so its `Drop` doesn't run).
pub(crate) fn reap_in_background(child: &Arc<Child>) {
    if matches!(child.try_reap(&mut lock(&child.status)), Ok(None)) {
        REAPER.adopt(Arc::clone(child));
    }
}

/// Children that were dropped while running, reaped once they exit by a
/// background thread, so that none stays a zombie.
///
/// Dropping never fails: the thread and its wake pipe are created on first
/// use, and when that isn't possible (the fd limit, the thread or process
/// limit) the child stays listed, and the list is swept without blocking
/// at the next drop or spawn, which also try to start the thread again.
/// Until then an exited child stays a zombie.
struct Reaper {
    children: Mutex<Vec<Arc<Child>>>,
    added: Condvar,
    /// Written to when a child is added, so that the thread polls it too.
    wake: OnceLock<(OwnedFd, OwnedFd)>,
    /// The thread runs (set once, under `start`).
    started: AtomicBool,
    start: Mutex<()>,
}

static REAPER: Reaper = Reaper {
    children: Mutex::new(Vec::new()),
    added: Condvar::new(),
    wake: OnceLock::new(),
    started: AtomicBool::new(false),
    start: Mutex::new(()),
};

impl Reaper {
    fn adopt(&self, child: Arc<Child>) {
        lock(&self.children).push(child);
        self.kick();
    }

    /// Makes sure the listed children get reaped: wakes the thread, or,
    /// when it can't be started, reaps those that have exited right now.
    fn kick(&self) {
        if !self.started.load(Ordering::Acquire) {
            let _start = lock(&self.start);
            if !self.started.load(Ordering::Acquire) && !self.try_start() {
                // Under `start`: the thread can't begin watching these
                // children while they are removed here.
                lock(&self.children)
                    .retain(|c| matches!(c.try_reap(&mut lock(&c.status)), Ok(None)));
                return;
            }
        }
        self.added.notify_one();
        if let Some((_, w)) = self.wake.get() {
            // Non-blocking: a full pipe already wakes the thread.
            let _ = rustix::io::write(w, &[1]);
        }
    }

    /// Starts the thread (called under `start`); false if it can't be.
    fn try_start(&self) -> bool {
        if self.wake.get().is_none() {
            match nonblocking_pipe() {
                Ok(p) => {
                    let _ = self.wake.set(p);
                }
                Err(_) => return false,
            }
        }
        let started = std::thread::Builder::new()
            .name("multiproc-reaper".into())
            .spawn(|| REAPER.run())
            .is_ok();
        self.started.store(started, Ordering::Release);
        started
    }

    /// At a spawn: another chance for children listed while the thread
    /// could not be started.
    fn retry(&self) {
        if !self.started.load(Ordering::Acquire) && !lock(&self.children).is_empty() {
            self.kick();
        }
    }

    fn run(&self) {
        let Some((wake, _)) = self.wake.get() else {
            return; // set before the thread is started
        };
        loop {
            // Our own references, so the pidfds stay open while polled even
            // if another thread drops its `Child` meanwhile.
            let watched: Vec<Arc<Child>> = {
                let mut list = lock(&self.children);
                list.retain(|c| matches!(c.try_reap(&mut lock(&c.status)), Ok(None)));
                while list.is_empty() {
                    list = self.added.wait(list).unwrap_or_else(|e| e.into_inner());
                }
                list.clone()
            };
            let mut polls: Vec<rustix::event::PollFd<'_>> = Vec::with_capacity(watched.len() + 1);
            polls.push(rustix::event::PollFd::new(
                wake,
                rustix::event::PollFlags::IN,
            ));
            for fd in watched.iter().filter_map(|c| c.pidfd.as_ref()) {
                polls.push(rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN));
            }
            // Without a pidfd for every child, look again every 100 ms.
            let all_pidfd = polls.len() == watched.len() + 1;
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            let _ = rustix::event::poll(&mut polls, (!all_pidfd).then_some(&timeout));
            if polls[0].revents().contains(rustix::event::PollFlags::IN) {
                let mut buf = [0u8; 64];
                let _ = rustix::io::read(wake, &mut buf);
            }
        }
    }
}

/// A close-on-exec, non-blocking pipe.
fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = cloexec_pipe()?;
    for fd in [&r, &w] {
        let flags = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok((r, w))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn retry_intr<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

/// The longest single poll: `i32::MAX` milliseconds (24.8 days), what
/// poll(2)'s `int` timeout holds where rustix has no ppoll (macOS); longer
/// waits poll again until their deadline.
const MAX_POLL: Duration = Duration::from_millis(i32::MAX as u64);

/// A poll timeout, clamped to [`MAX_POLL`].
fn to_timespec(d: Duration) -> rustix::event::Timespec {
    let d = d.min(MAX_POLL);
    rustix::event::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// Waits until `fd` is readable or `timeout` passes (at most [`MAX_POLL`]
/// at a time: the caller loops until its deadline); true if readable.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ts = timeout.map(to_timespec);
    let mut polls = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    match rustix::event::poll(&mut polls, ts.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Handles to hand to the child with its bootstrap data.
#[derive(Default)]
pub(crate) struct HandleTransfer {
    fds: Vec<OwnedFd>,
}

impl HandleTransfer {
    /// Queues a copy of `h`; the token is its index in what the child receives.
    pub(crate) fn add(&mut self, _child: &Child, h: BorrowedRaw<'_>) -> io::Result<u64> {
        self.fds.push(rustix::io::fcntl_dupfd_cloexec(h, 0)?);
        Ok((self.fds.len() - 1) as u64)
    }
}

fn broken_pipe(e: Errno) -> io::Error {
    if e == Errno::PIPE || e == Errno::CONNRESET {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "child exited before the bootstrap data was written",
        )
    } else {
        e.into()
    }
}

/// One end of a channel: the parent's end of the bootstrap socket, or an
/// end of a `Pipe`, which is made of pipes (a pair for duplex): on Linux a
/// pipe round trip costs about half what an `AF_UNIX` socket's does.
#[derive(Debug)]
pub(crate) struct Channel {
    /// The socket, or the pipe end this end reads from (a write-only end:
    /// the pipe end it writes to).
    fd: OwnedFd,
    /// The pipe end a duplex pipe end writes to.
    wr: Option<OwnedFd>,
    /// `fd` is a socket: send with MSG_NOSIGNAL, receive with recv.
    socket: bool,
    /// A `Pipe` end's bulk lane: a socket for the bodies of big messages,
    /// which a socket moves about twice as fast as a pipe (the framing
    /// says which messages take it; see `connection.rs`).
    bulk: Option<OwnedFd>,
}

impl Channel {
    /// Writes `data`, the fds riding along with its first bytes: at most
    /// [`FDS_PER_MESSAGE`] per `sendmsg`, each batch but the last on one
    /// byte of its own (the child collects them with every read, see
    /// [`ChildChannel::read`]), so any number of fds can go.
    pub(crate) fn send_bootstrap(
        &self,
        _child: &Child,
        data: &[u8],
        transfer: HandleTransfer,
    ) -> io::Result<()> {
        let mut sent = 0;
        let batches = transfer.fds.len().div_ceil(FDS_PER_MESSAGE);
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        for (i, batch) in transfer.fds.chunks(FDS_PER_MESSAGE).enumerate() {
            let end = if i + 1 == batches {
                data.len().min(sent + (1 << 16))
            } else {
                sent + 1
            };
            if end > data.len() || sent == end {
                // Each token is at least a byte of the data, so this takes
                // handles that were added but never written down.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} handles need more than the {} bytes of bootstrap data to carry them",
                        transfer.fds.len(),
                        data.len()
                    ),
                ));
            }
            let borrowed: Vec<BorrowedFd<'_>> = batch.iter().map(|f| f.as_fd()).collect();
            let mut anc = SendAncillaryBuffer::new(&mut space);
            if !anc.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                return Err(io::Error::other("ancillary buffer too small"));
            }
            let part = &data[sent..end];
            sent += retry_intr(|| {
                rustix::net::sendmsg(&self.fd, &[io::IoSlice::new(part)], &mut anc, SEND_FLAGS)
            })
            .map_err(|e| match e.raw_os_error().map(Errno::from_raw_os_error) {
                Some(errno) => broken_pipe(errno),
                None => e,
            })?;
        }
        while sent < data.len() {
            match rustix::net::send(&self.fd, &data[sent..], SEND_FLAGS) {
                Ok(n) => sent += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(broken_pipe(e)),
            }
        }
        Ok(())
    }

    /// Writes what fits. A socket never raises SIGPIPE (MSG_NOSIGNAL); a
    /// pipe whose reader is gone does, which Rust programs ignore (std
    /// sets SIGPIPE to SIG_IGN before `main`, and `init` does in workers),
    /// so the write fails with EPIPE instead.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.wr {
            Some(w) => retry_intr(|| rustix::io::write(w, buf)),
            None if self.socket => retry_intr(|| rustix::net::send(&self.fd, buf, SEND_FLAGS)),
            None => retry_intr(|| rustix::io::write(&self.fd, buf)),
        }
    }
}

/// The child's end of the bootstrap channel.
#[derive(Debug)]
pub(crate) struct ChildChannel {
    fd: OwnedFd,
    /// The fds received so far, in the order they were sent (a token is
    /// an index here); filled by every read.
    received: RefCell<Vec<Option<OwnedFd>>>,
}

/// Takes fd `token.handle`, after checking that it is fd 3 (where `spawn`
/// places the channel; never stdin, stdout or stderr, which a program
/// started by inetd or a service manager may have as a socket) and an open
/// socket.
pub(crate) fn open_bootstrap(token: BootToken) -> io::Result<ChildChannel> {
    if token.handle != CHILD_FD as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the marker names fd {}, but the bootstrap channel is always fd {CHILD_FD}",
                token.handle
            ),
        ));
    }
    let raw = CHILD_FD;
    // SAFETY: F_GETFD on any integer is sound; it fails with EBADF when the
    // fd is not open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("fd {raw} is not open: {}", io::Error::last_os_error()),
        ));
    }
    // SAFETY: the fd is open (checked above) and nothing else in this
    // process owns it: it was placed here by our parent's posix_spawn.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        // Not ours: give the fd back untouched.
        std::mem::forget(fd);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {raw} is not a socket"),
        ));
    }
    // Grandchildren must not inherit it.
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(ChildChannel {
        fd,
        received: RefCell::new(Vec::new()),
    })
}

impl ChildChannel {
    /// Reads exactly `buf.len()` bytes, collecting the fds that ride along.
    pub(crate) fn recv_header(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.read(&mut buf[got..])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(())
    }

    /// Reads from the parent, collecting the fds that ride along (they may
    /// come with any byte of the bootstrap data, a batch per `sendmsg`); 0
    /// is end of file. A plain read(2) would close them unseen.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let msg = retry_intr(|| {
            rustix::net::recvmsg(
                &self.fd,
                &mut [io::IoSliceMut::new(&mut *buf)],
                &mut anc,
                RECV_FLAGS,
            )
        })?;
        let mut received = self.received.borrow_mut();
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                received.extend(fds.map(Some));
            }
        }
        if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            // Fds were dropped for want of room: the tokens no longer match.
            return Err(io::Error::other(
                "passed handles were cut off (MSG_CTRUNC): too many in one message",
            ));
        }
        Ok(msg.bytes)
    }

    /// Writes to the parent without raising SIGPIPE.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        retry_intr(|| rustix::net::send(&self.fd, buf, SEND_FLAGS))
    }

    /// Takes the fd the parent passed under `token` (once).
    pub(crate) fn take_handle(&mut self, token: u64) -> io::Result<OwnedRaw> {
        usize::try_from(token)
            .ok()
            .and_then(|i| self.received.get_mut().get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no passed handle {token}, or it was taken already"),
                )
            })
    }
}

// Used by `close_inheritable` and the test hooks.
#[cfg(any(not(target_vendor = "apple"), feature = "test-hooks"))]
fn fd_dir() -> &'static str {
    if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    }
}

/// Every open fd of this process (without the one used to list them).
#[cfg(any(not(target_vendor = "apple"), feature = "test-hooks"))]
fn open_fds() -> io::Result<Vec<u64>> {
    let dir = rustix::fs::open(
        fd_dir(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let own = dir.as_raw_fd() as u64;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::new(dir)? {
        let entry = entry?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            if n != own {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The number of open fds.
#[cfg(feature = "test-hooks")]
pub(crate) fn open_handle_count() -> io::Result<usize> {
    Ok(open_fds()?.len())
}

/// The open fds beyond stdin, stdout and stderr.
#[cfg(feature = "test-hooks")]
pub(crate) fn open_ipc_handles() -> io::Result<Vec<u64>> {
    Ok(open_fds()?.into_iter().filter(|&fd| fd > 2).collect())
}

impl Child {
    /// SIGTERM to the child's process group.
    pub(crate) fn terminate_tree(&self) -> io::Result<()> {
        self.signal(Signal::TERM, true)
    }

    /// SIGKILL to the child's process group.
    pub(crate) fn kill_tree(&self) -> io::Result<()> {
        self.signal(Signal::KILL, true)
    }

    /// The pidfd, which becomes readable when the process exits.
    pub(crate) fn sentinel(&self) -> Option<BorrowedRaw<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }
}

impl Channel {
    /// Reads what is there within `timeout`; `Some(0)` at EOF or when
    /// `child` has exited and nothing is left to read.
    pub(crate) fn read_timeout(
        &self,
        child: Option<&Child>,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> io::Result<Option<usize>> {
        read_timeout(
            self.fd.as_fd(),
            self.socket,
            child.and_then(Child::sentinel),
            buf,
            timeout,
        )
    }
}

/// Waits for `fd` to be readable (or `exit` to fire), then reads.
pub(crate) fn read_timeout(
    fd: BorrowedFd<'_>,
    socket: bool,
    exit: Option<BorrowedFd<'_>>,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<Option<usize>> {
    use rustix::event::{PollFd, PollFlags};
    let deadline = deadline::deadline_of(timeout);
    loop {
        let left = deadline::left(deadline).map(to_timespec);
        let mut polls = vec![PollFd::new(&fd, PollFlags::IN)];
        if let Some(e) = &exit {
            polls.push(PollFd::new(e, PollFlags::IN));
        }
        match rustix::event::poll(&mut polls, left.as_ref()) {
            Ok(0) if deadline::passed(deadline) => return Ok(None),
            Ok(0) => continue, // a clamped poll ended before the deadline
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let data_ready = !polls[0].revents().is_empty();
        let exited = polls.get(1).is_some_and(|p| !p.revents().is_empty());
        if !socket {
            // A pipe: poll said readable (data or EOF), so read won't block
            // (only one reader at a time: the Connection holds a lock).
            if data_ready {
                return Ok(Some(retry_intr(|| rustix::io::read(fd, &mut *buf))?));
            }
            if exited {
                return Ok(Some(0));
            }
            continue;
        }
        match rustix::net::recv(fd, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Ok(Some(n)),
            Err(Errno::AGAIN) if exited => return Ok(Some(0)),
            Err(Errno::AGAIN) | Err(Errno::INTR) => {}
            Err(Errno::CONNRESET) => return Ok(Some(0)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Child side: die with SIGKILL when the parent dies (prctl(2)
/// PR_SET_PDEATHSIG), then check the parent didn't die before that was
/// armed: we'd have been re-parented already, and get an error saying so
/// (the worker then exits with `NO_CHANNEL` and its stderr line).
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(parent_pid: u32) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if ppid != parent_pid {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the parent (pid {parent_pid}) is gone: this process's parent is now pid {ppid}"
            ),
        ));
    }
    Ok(())
}

/// macOS and the BSDs have no parent-death signal; see the crate docs.
#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_parent_pid: u32) -> io::Result<()> {
    Ok(())
}

/// A pidfd for any process (Linux); it becomes readable when it exits.
#[cfg(feature = "test-hooks")]
pub(crate) fn watch_process(pid: u32) -> io::Result<OwnedRaw> {
    #[cfg(target_os = "linux")]
    {
        let pid = Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
        Ok(rustix::process::pidfd_open(
            pid,
            rustix::process::PidfdFlags::empty(),
        )?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Waits until at least one of `objs` is readable (a pidfd of an exited
/// process, a socket with data or EOF); returns the indices that are.
pub(crate) fn wait_any(
    objs: &[BorrowedRaw<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    use rustix::event::{PollFd, PollFlags};
    let deadline = deadline::deadline_of(timeout);
    loop {
        let left = deadline::left(deadline).map(to_timespec);
        let mut polls: Vec<PollFd<'_>> =
            objs.iter().map(|o| PollFd::new(o, PollFlags::IN)).collect();
        match rustix::event::poll(&mut polls, left.as_ref()) {
            // A clamped poll that ended before the deadline: again.
            Ok(0) if !deadline::passed(deadline) => continue,
            Ok(_) => {
                return Ok(polls
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect())
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A close-on-exec pipe with a larger buffer where Linux allows it (fewer
/// switches between writer and reader for big messages).
fn big_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = cloexec_pipe()?;
    #[cfg(target_os = "linux")]
    let _ = rustix::pipe::fcntl_setpipe_size(&w, 1 << 20);
    Ok((r, w))
}

/// A connected pair of channels for `Pipe`: two pipes for duplex (one
/// each way), one for simplex (reader, writer).
pub(crate) fn pipe(duplex: bool) -> io::Result<(Channel, Channel)> {
    let end = |fd, wr, bulk| Channel {
        fd,
        wr,
        socket: false,
        bulk: Some(bulk),
    };
    let (ba, bb) = stream_socketpair()?;
    let (r1, w1) = big_pipe()?;
    if !duplex {
        return Ok((end(r1, None, ba), end(w1, None, bb)));
    }
    let (r2, w2) = big_pipe()?;
    Ok((end(r1, Some(w2), ba), end(r2, Some(w1), bb)))
}

impl Channel {
    /// Blocks until there is data, then appends at most `max` bytes of it
    /// to `v` without zero-filling the space first; 0 at EOF.
    pub(crate) fn read_append(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        read_append_fd(self.fd.as_fd(), v, max)
    }

    /// Rebuilds a passed end from its fds, each in the role
    /// [`pass_handles`](Self::pass_handles) gave it.
    pub(crate) fn from_passed(parts: super::ChannelParts<OwnedRaw>) -> io::Result<Channel> {
        Ok(Channel {
            fd: parts.main,
            wr: parts.write,
            socket: parts.main_is_socket,
            bulk: parts.bulk,
        })
    }

    /// The fds that make up this end, each in its role, to pass to a child.
    pub(crate) fn pass_handles(&self) -> super::ChannelParts<BorrowedRaw<'_>> {
        super::ChannelParts {
            main: self.fd.as_fd(),
            main_is_socket: self.socket,
            write: self.wr.as_ref().map(|w| w.as_fd()),
            bulk: self.bulk.as_ref().map(|b| b.as_fd()),
        }
    }

    /// Whether this end has a bulk lane for big message bodies.
    pub(crate) fn has_bulk(&self) -> bool {
        self.bulk.is_some()
    }

    /// Writes what fits to the bulk lane (without SIGPIPE).
    pub(crate) fn write_bulk(&self, buf: &[u8]) -> io::Result<usize> {
        let b = self
            .bulk
            .as_ref()
            .ok_or_else(|| io::Error::other("no bulk lane"))?;
        retry_intr(|| rustix::net::send(b, buf, SEND_FLAGS))
    }

    /// Blocks until the bulk lane has data, then appends at most `max`
    /// bytes of it to `v` (no zero-fill); 0 at EOF.
    pub(crate) fn read_bulk_append(&self, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let b = self
            .bulk
            .as_ref()
            .ok_or_else(|| io::Error::other("no bulk lane"))?;
        read_append_fd(b.as_fd(), v, max)
    }

    /// The handle that becomes ready when there is something to read.
    pub(crate) fn as_raw(&self) -> BorrowedRaw<'_> {
        self.fd.as_fd()
    }

    /// Makes reads of this end's pipe return at once when it is empty
    /// (`O_NONBLOCK`), so that [`read_append_watch`](Self::read_append_watch)
    /// can look for data before it polls; true if done. Only for an end that
    /// no other process holds: the flag belongs to the open pipe, which an
    /// inherited or passed copy shares. The bulk lane is left alone (its
    /// writes must block); its reads don't wait with `MSG_DONTWAIT`.
    pub(crate) fn set_nonblocking_reads(&self) -> bool {
        if self.socket {
            return false;
        }
        rustix::fs::fcntl_getfl(&self.fd)
            .and_then(|fl| rustix::fs::fcntl_setfl(&self.fd, fl | rustix::fs::OFlags::NONBLOCK))
            .is_ok()
    }

    /// [`read_append`](Self::read_append) (with `bulk`:
    /// [`read_bulk_append`](Self::read_bulk_append)) that also returns 0
    /// once `peer` has exited and nothing it wrote is left, even while
    /// other processes (its children, which inherited or were passed its
    /// end) keep the pipe open. `nonblocking`: this end's pipe was made
    /// non-blocking by [`set_nonblocking_reads`](Self::set_nonblocking_reads),
    /// so data that is already there is read without a poll. Without a
    /// pidfd (Linux < 5.3, macOS) it is the plain read: end of file then
    /// comes when every holder closed.
    pub(crate) fn read_append_watch(
        &self,
        bulk: bool,
        v: &mut Vec<u8>,
        max: usize,
        peer: &Child,
        nonblocking: bool,
    ) -> io::Result<usize> {
        let (fd, socket) = match (&self.bulk, bulk) {
            (Some(b), true) => (b.as_fd(), true),
            (None, true) => return Err(io::Error::other("no bulk lane")),
            (_, false) => (self.fd.as_fd(), self.socket),
        };
        let Some(exit) = peer.sentinel() else {
            return read_append_fd(fd, v, max);
        };
        // A busy worker's results are often there already: look first
        // where a read can't block, and poll only an empty channel.
        let can_try = socket || nonblocking;
        loop {
            if can_try {
                if let Some(n) = try_read_append(fd, socket, v, max)? {
                    return Ok(n);
                }
            }
            if !readable_or_exited(fd, exit)? {
                return Ok(0);
            }
            if !can_try {
                // Readable, and we are its only reader: this won't block.
                return read_append_fd(fd, v, max);
            }
        }
    }
}

/// Appends at most `max` bytes of what `fd` has to `v` without waiting:
/// `None` when there is nothing yet (a socket is read with `MSG_DONTWAIT`,
/// a pipe must be non-blocking); `Some(0)` at end of file.
fn try_read_append(
    fd: BorrowedFd<'_>,
    socket: bool,
    v: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    v.reserve(max);
    let spare = &mut v.spare_capacity_mut()[..max];
    let n = loop {
        let got = if socket {
            rustix::net::recv(fd, &mut *spare, rustix::net::RecvFlags::DONTWAIT)
                .map(|((init, _), _)| init.len())
        } else {
            rustix::io::read(fd, &mut *spare).map(|(init, _)| init.len())
        };
        match got {
            Ok(n) => break n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::CONNRESET) => break 0,
            Err(e) => return Err(e.into()),
        }
    };
    let len = v.len() + n;
    // SAFETY: read(2) / recv(2) initialized the first `n` bytes of the
    // spare capacity, which directly follow the current length.
    unsafe { v.set_len(len) };
    Ok(Some(n))
}

/// Waits until `fd` is readable (true: data or end of file), or `exit` (a
/// pidfd) fires with nothing left to read on `fd` (false).
fn readable_or_exited(fd: BorrowedFd<'_>, exit: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags};
    loop {
        let mut polls = [
            PollFd::new(&fd, PollFlags::IN),
            PollFd::new(&exit, PollFlags::IN),
        ];
        match rustix::event::poll(&mut polls, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if !polls[0].revents().is_empty() {
            return Ok(true);
        }
        if !polls[1].revents().is_empty() {
            // poll may have looked at `fd` just before the last write and
            // at the pidfd after the exit; everything written before the
            // exit is in the pipe now, so look once more.
            let mut last = [PollFd::new(&fd, PollFlags::IN)];
            let zero = to_timespec(Duration::ZERO);
            retry_intr(|| rustix::event::poll(&mut last, Some(&zero)))?;
            return Ok(!last[0].revents().is_empty());
        }
    }
}

/// This process's command line, also before `main`, where std has it only
/// with glibc (which passes argv to `.init_array` constructors such as
/// `test_support!`'s); with musl it is empty there, so Linux reads
/// `/proc/self/cmdline` instead.
pub(crate) fn args_os() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    #[cfg(target_os = "linux")]
    if args.is_empty() {
        use std::os::unix::ffi::OsStringExt;
        if let Ok(raw) = std::fs::read("/proc/self/cmdline") {
            let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
            return raw
                .split(|&b| b == 0)
                .map(|a| OsString::from_vec(a.to_vec()))
                .collect();
        }
    }
    args
}

/// Nothing lingers on Unix (see the Windows version).
#[cfg(feature = "test-hooks")]
pub(crate) fn settle() -> usize {
    0
}

/// Workers ignore SIGPIPE, as std makes every Rust program do before
/// `main` (a worker started by `test_support!` runs before that): writing
/// to a pipe whose reader is gone then fails with EPIPE instead of killing
/// the worker.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no
    // handler code; it is what std does at startup.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Blocks until `fd` has data, then appends at most `max` bytes of it to
/// `v` without zero-filling the space first; 0 at EOF.
fn read_append_fd(fd: BorrowedFd<'_>, v: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    v.reserve(max);
    let spare = &mut v.spare_capacity_mut()[..max];
    let n = loop {
        match rustix::io::read(fd, &mut *spare) {
            Ok((init, _)) => break init.len(),
            Err(Errno::INTR) => {}
            Err(Errno::CONNRESET) => break 0,
            Err(e) => return Err(e.into()),
        }
    };
    let len = v.len() + n;
    // SAFETY: read(2) initialized the first `n` bytes of the spare
    // capacity, which directly follow the current length.
    unsafe { v.set_len(len) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_timeouts_are_clamped_to_what_poll_takes() {
        let ts = to_timespec(Duration::MAX);
        assert_eq!(ts.tv_sec as u64, MAX_POLL.as_secs());
        assert_eq!(ts.tv_nsec as u32, MAX_POLL.subsec_nanos());
        let ts = to_timespec(Duration::from_millis(1_500));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (1, 500_000_000));
    }
}
