//! Parent side: starting a child with `posix_spawn`, from a spawner thread
//! where the child must die with this process.

use std::ffi::{CString, OsString};
use std::io;
use std::mem::MaybeUninit;
#[cfg(not(target_vendor = "apple"))]
use std::os::fd::RawFd;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, OnceLock};

use rustix::process::Pid;

#[cfg(not(target_vendor = "apple"))]
use super::open_fds;
use super::{
    channel::Channel, child::Child, cvt_nz, lock, pidfd::open_pidfd, reaper::REAPER,
    stream_socketpair, CHILD_FD,
};
use crate::sys::{BootToken, SpawnRequest, StdioMode};

/// An initialized `posix_spawn_file_actions_t`, destroyed when dropped.
///
/// It stays in the box it was initialized in (POSIX does not say the
/// object may move), and exists only once `init` succeeded, so `Drop`
/// never destroys an uninitialized one.
pub(super) struct FileActions(Box<MaybeUninit<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut fa = Box::new(MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit());
        // SAFETY: `fa` is valid writable memory for the structure.
        cvt_nz(unsafe { libc::posix_spawn_file_actions_init(fa.as_mut_ptr()) })?;
        Ok(Self(fa))
    }

    /// The initialized structure, for the `posix_spawn_file_actions_*` calls.
    fn as_mut_ptr(&mut self) -> *mut libc::posix_spawn_file_actions_t {
        self.0.as_mut_ptr()
    }

    /// The initialized structure, for `posix_spawn`.
    fn as_ptr(&self) -> *const libc::posix_spawn_file_actions_t {
        self.0.as_ptr()
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once here.
        unsafe { libc::posix_spawn_file_actions_destroy(self.as_mut_ptr()) };
    }
}

/// The signature of `posix_spawn_file_actions_addclosefrom_np`.
#[cfg(not(target_vendor = "apple"))]
pub(super) type AddCloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;

/// `posix_spawn_file_actions_addclosefrom_np(3)`, looked up at run time
/// (once): glibc has it since 2.34 and FreeBSD since 13.1, but older glibc
/// (Debian 11, RHEL 8) and musl don't, and naming it at link time would
/// keep the crate from linking there. A static musl binary has no dynamic
/// symbols at all: `None` there too.
#[cfg(not(target_vendor = "apple"))]
pub(super) fn addclosefrom() -> Option<AddCloseFrom> {
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
pub(super) fn close_inheritable(actions: &mut FileActions) -> io::Result<()> {
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
            cvt_nz(unsafe { libc::posix_spawn_file_actions_addclose(actions.as_mut_ptr(), fd) })?;
        }
    }
    Ok(())
}

/// An initialized `posix_spawnattr_t`, destroyed when dropped (kept in
/// its box and created only once `init` succeeded, as [`FileActions`]).
pub(super) struct SpawnAttr(Box<MaybeUninit<libc::posix_spawnattr_t>>);

impl SpawnAttr {
    fn new() -> io::Result<Self> {
        let mut attr = Box::new(MaybeUninit::<libc::posix_spawnattr_t>::uninit());
        // SAFETY: `attr` is valid writable memory for the structure.
        cvt_nz(unsafe { libc::posix_spawnattr_init(attr.as_mut_ptr()) })?;
        Ok(Self(attr))
    }

    /// The initialized structure, for the `posix_spawnattr_*` calls.
    fn as_mut_ptr(&mut self) -> *mut libc::posix_spawnattr_t {
        self.0.as_mut_ptr()
    }

    /// The initialized structure, for `posix_spawn`.
    fn as_ptr(&self) -> *const libc::posix_spawnattr_t {
        self.0.as_ptr()
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once here.
        unsafe { libc::posix_spawnattr_destroy(self.as_mut_ptr()) };
    }
}

pub(super) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a program path, argument or environment variable contains a NUL byte",
        )
    })
}

/// Everything `posix_spawn` needs, owned, so that it can be handed to the
/// spawner thread.
pub(super) struct Prepared {
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
        let program = match req.image {
            Some(image) => image.program()?,
            None => shown.clone(),
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
            libc::posix_spawn_file_actions_adddup2(
                actions.as_mut_ptr(),
                channel.as_raw_fd(),
                CHILD_FD,
            )
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
                        actions.as_mut_ptr(),
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
            Some(f) => cvt_nz(unsafe { f(actions.as_mut_ptr(), CHILD_FD + 1) })?,
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
        cvt_nz(unsafe { libc::posix_spawnattr_setsigmask(attr.as_mut_ptr(), &set) })?;
        // SAFETY: `set` is an initialized sigset_t.
        unsafe { libc::sigaddset(&mut set, libc::SIGPIPE) };
        // SAFETY: `attr` and `set` are initialized.
        cvt_nz(unsafe { libc::posix_spawnattr_setsigdefault(attr.as_mut_ptr(), &set) })?;
        #[allow(unused_mut)]
        let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        if self.new_group {
            // Its own process group (pgid = its pid), so that `kill_tree`
            // reaches everything it starts.
            // SAFETY: `attr` is initialized.
            cvt_nz(unsafe { libc::posix_spawnattr_setpgroup(attr.as_mut_ptr(), 0) })?;
            flags |= libc::POSIX_SPAWN_SETPGROUP;
        }
        #[cfg(target_vendor = "apple")]
        {
            flags |= libc::POSIX_SPAWN_CLOEXEC_DEFAULT;
        }
        // SAFETY: `attr` is initialized.
        cvt_nz(unsafe { libc::posix_spawnattr_setflags(attr.as_mut_ptr(), flags as _) })?;

        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer is valid and NUL-terminated where required;
        // argv and envp are null-terminated arrays of C strings that live
        // until the call returns.
        cvt_nz(unsafe {
            libc::posix_spawn(
                &mut pid,
                self.program.as_ptr(),
                actions.as_ptr(),
                attr.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        })?;
        Pid::from_raw(pid).ok_or_else(|| io::Error::other("posix_spawn gave pid 0"))
    }
}

pub(super) type SpawnJob = (Prepared, OwnedFd, std::sync::mpsc::Sender<io::Result<Pid>>);

/// The thread that spawns children which must die with this process.
///
/// Linux delivers PR_SET_PDEATHSIG when the *thread* that created the child
/// exits, not the process (prctl(2)); spawned from a short-lived thread, the
/// worker would die with that thread. This thread lives as long as the
/// process, so the signal comes exactly when the process dies.
pub(super) fn spawner() -> io::Result<&'static Mutex<std::sync::mpsc::Sender<SpawnJob>>> {
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
            out_of_step: Default::default(),
        },
    ))
}
