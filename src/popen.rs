//! `Popen`: one worker process, as CPython's `popen_spawn_win32.Popen`.

use std::borrow::Borrow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::handles::{self, duplicate_for_child};
use crate::codec::reply::{Reply, ReplyError, ReplyReader};
use crate::deadline;
use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::spawn;
use crate::status::ExitStatus;
use crate::sys;

static EXECUTABLE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Sets the program that workers run, for every later spawn in this process
/// (Python's `multiprocessing.set_executable`).
///
/// By default a worker runs the current executable, which must call
/// [`init`](crate::init) first thing in `main`. Set another program when the
/// current one can't act as a worker:
/// - multiproc lives in a library loaded by a host that isn't yours (a
///   plugin in a Python interpreter, a service host): point this at a small
///   helper program that loads that same library file and calls a function
///   of it that calls `init()` (the build check below is about the library
///   that holds multiproc, so a program that merely links the same source
///   is another build);
/// - the current executable is a launcher that re-executes another binary
///   (a venv-style launcher): name the real binary, so the bootstrap channel
///   reaches the process that reads it.
///
/// [`reset_executable`] restores the default. Every place that names an
/// executable takes the same type as this function, `impl AsRef<Path>` (as
/// `std::process::Command` does): [`PopenBuilder::executable`],
/// [`ProcessBuilder::executable`](crate::ProcessBuilder::executable),
/// [`PoolBuilder::executable`](crate::PoolBuilder::executable).
///
/// # The build check
///
/// The worker must be the same build as the parent; otherwise it exits
/// with [`exit_code::BUILD_MISMATCH`](crate::exit_code::BUILD_MISMATCH) before running anything, and
/// [`Process::join`](crate::Process::join) reports a bootstrap failure that
/// says so. Parent and worker compare a hash of:
/// - the bootstrap protocol version and multiproc's crate version;
/// - the entry table: every registered entry's id and signature (the type
///   names of its function, argument and result);
/// - the link-time identity of the binary module (executable or shared
///   library) that holds multiproc's code, read from its headers in memory:
///   on Linux the GNU build id (a hash of the linked output, written by
///   linkers with `--build-id`, the default of most distributions' GCC and
///   Clang); on Windows the PE link time stamp, checksum and image size.
///
/// A path set here is started as it is, whatever file is there at the
/// time: only the default, this process's own executable, is started from
/// the running image (see [`executable`] for what each platform does when
/// that file is replaced on disk).
///
/// So a copy of the same file passes, and a rebuild that changed any code
/// (an argument struct whose fields changed type but not size, say) is
/// refused. Not caught: on macOS, and on Linux for a binary linked without
/// a build id, only the first two are compared, so two builds with the
/// same entry names and signatures are taken as one; on Windows, two links
/// of the same code with the time stamp turned off (`/Brepro`,
/// `--no-insert-timestamp`) that also have the same checksum and size.
pub fn set_executable(path: impl AsRef<Path>) {
    *EXECUTABLE.write().unwrap_or_else(|e| e.into_inner()) = Some(path.as_ref().to_path_buf());
}

/// Undoes [`set_executable`]: later spawns run this process's own
/// executable again (see [`executable`]).
pub fn reset_executable() {
    *EXECUTABLE.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The program the next worker will run.
///
/// By default that is this process's own executable: the path it was
/// started from, as [`init`](crate::init) found it. Workers then run the
/// image that is running, not whatever file is at that path now, so a
/// binary replaced on disk while the program runs (a package upgrade, an
/// installer, `cargo build`) never gets to run as a worker of this one:
/// - Linux: workers are started from the running image (`/proc/self/exe`,
///   where `/proc` is mounted). Their `argv[0]` is this path; their
///   `current_exe()` is the path this process was started from, with
///   ` (deleted)` appended once the file was replaced.
/// - Windows: a running `.exe` can be renamed (not overwritten or
///   deleted), which is how it is replaced. `init` opens the file
///   (sharing read, write and delete, so it is in no upgrade's way), and a
///   spawn starts workers from where that file is now, found from the
///   handle (`GetFinalPathNameByHandleW` follows renames) and checked
///   after the process was created, still suspended: a process created
///   from another file is terminated before it runs. `argv[0]` stays this
///   path; the workers' `current_exe()` is where the file is. If the file
///   can't be found (Wine 8, whose `GetFinalPathNameByHandleW` does not
///   follow renames), the spawn fails as below.
/// - macOS and the other Unix systems: a process can only be started from
///   a path, so each spawn checks that the file at this path is still the
///   one `init` saw (device and inode). Not caught: a file overwritten in
///   place, or replaced in the moment between that check and the spawn
///   (the bootstrap's build check, see [`set_executable`], still refuses
///   another multiproc build).
///
/// Where the running image can't be started, the spawn fails with an
/// [`ErrorKind::Spawn`](crate::ErrorKind::Spawn) error whose message says
/// that this program's executable was replaced or removed on disk since it
/// started; [`Pool::new`](crate::Pool::new) fails with it, and a running
/// pool that can't replace a worker for this reason is broken
/// ([`Error::is_pool_broken`](crate::Error::is_pool_broken)), naming it. A program that didn't call `init` before the
/// replacement (or whose executable couldn't be opened then) starts
/// workers from the path, as with [`set_executable`].
pub fn executable() -> Result<PathBuf> {
    if let Some(p) = EXECUTABLE.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return Ok(p);
    }
    match spawn::running_image() {
        Some(image) => Ok(image.path().to_path_buf()),
        None => current_exe(),
    }
}

fn current_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| Error::new(Kind::CurrentExe(e)))
}

/// Where one of a worker's standard streams goes (or, for stdin, comes
/// from): set per stream with `stdin`, `stdout` and `stderr` on
/// [`PopenBuilder`], [`ProcessBuilder`](crate::ProcessBuilder) and
/// [`PoolBuilder`](crate::PoolBuilder) alike.
///
/// `Inherit` and `Null` are set up by the spawn itself, before the worker
/// runs any code: on Unix with `posix_spawn` file actions, on Windows with
/// the standard handles of `STARTUPINFOEX`, inherited through
/// `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` (only those handles: nothing else
/// is inheritable into a worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stdio {
    /// This process's own stream, whatever it is (a terminal, a console,
    /// a file, a pipe). The default for stdout and stderr.
    #[default]
    Inherit,
    /// The null device: reading gives end of file at once, writes are
    /// discarded. The default for stdin (as CPython gives its children),
    /// so that a worker neither competes with this process for its input
    /// nor, in the background of a terminal, gets stopped by reading it.
    Null,
    /// stdout and stderr only: a pipe to this process, read with
    /// [`Popen::take_stdout`] / [`Popen::take_stderr`] (or `Process`'s).
    /// The worker installs the pipe itself once its bootstrap is through;
    /// until then (code that runs before `main`) the stream is inherited.
    /// As with `std::process`, a worker that fills the pipe while nobody
    /// reads it waits until someone does. Refused for stdin, and for a
    /// pool's workers (there is no one stream to hand back): spawning or
    /// building fails with [`ErrorKind::Usage`](crate::ErrorKind::Usage).
    Capture,
}

/// Options for spawning a [`Popen`]; `&mut self` setters, then
/// [`spawn`](PopenBuilder::spawn).
#[derive(Clone, Debug)]
pub struct PopenBuilder {
    executable: Option<PathBuf>,
    kill_on_drop: bool,
    daemon: bool,
    own_group: bool,
    /// stdin, stdout, stderr.
    stdio: [Stdio; 3],
    /// The worker sends replies on the channel, each at most this long (a
    /// `Process` reads them).
    reply_cap: Option<u64>,
    options: spawn::WorkerOptions,
}

impl Default for PopenBuilder {
    fn default() -> Self {
        PopenBuilder {
            executable: None,
            kill_on_drop: false,
            daemon: false,
            own_group: false,
            // stdin: the null device, as CPython gives its children.
            stdio: [Stdio::Null, Stdio::Inherit, Stdio::Inherit],
            reply_cap: None,
            options: spawn::WorkerOptions::default(),
        }
    }
}

impl PopenBuilder {
    /// Default options: the default executable, stdin the null device,
    /// stdout and stderr inherited, in this process's process group, no
    /// kill on drop.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs this program instead of the default (see [`set_executable`]).
    pub fn executable(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.executable = Some(path.as_ref().to_path_buf());
        self
    }

    /// Kill the worker when the `Popen` is dropped (default: false; a
    /// dropped `Popen` leaves the worker running).
    pub fn kill_on_drop(&mut self, yes: bool) -> &mut Self {
        self.kill_on_drop = yes;
        self
    }

    /// Where the worker's stdin comes from: [`Stdio::Null`] (the default)
    /// or [`Stdio::Inherit`], this process's stdin. [`Stdio::Capture`] is
    /// refused: [`spawn`](Self::spawn) fails with
    /// [`ErrorKind::Usage`](crate::ErrorKind::Usage).
    pub fn stdin(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[0] = stdio;
        self
    }

    /// Where the worker's stdout goes (default [`Stdio::Inherit`]).
    pub fn stdout(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[1] = stdio;
        self
    }

    /// Where the worker's stderr goes (default [`Stdio::Inherit`]).
    pub fn stderr(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[2] = stdio;
        self
    }

    /// Where the worker's stdout and stderr go: the same as
    /// [`stdout`](Self::stdout) and [`stderr`](Self::stderr) with `stdio`
    /// (stdin stays as [`stdin`](Self::stdin) set it).
    pub fn stdio(&mut self, stdio: Stdio) -> &mut Self {
        self.stdout(stdio).stderr(stdio)
    }

    /// The stdin, stdout and stderr settings.
    pub(crate) fn stdio_settings(&self) -> [Stdio; 3] {
        self.stdio
    }

    /// Unix: the worker leads a new process group, which
    /// [`Popen::kill_tree`] and [`Popen::terminate_tree`] signal (default:
    /// false).
    ///
    /// By default a worker stays in this process's process group, as
    /// CPython's children do, so the terminal's signals (Ctrl-C: SIGINT,
    /// Ctrl-\\: SIGQUIT, a hangup) reach it along with this process. A
    /// worker that leads its own group is outside the terminal's foreground
    /// job: Ctrl-C doesn't reach it (use
    /// [`kill_on_parent_death`](Self::kill_on_parent_death) so it goes with
    /// this process), and if it reads the terminal it is stopped (SIGTTIN).
    /// Workers it starts stay in its group unless they ask for their own,
    /// so a tree kill reaches nested workers too.
    ///
    /// Windows: changes nothing; every worker gets its own job object,
    /// which the tree operations use.
    pub fn own_process_group(&mut self, yes: bool) -> &mut Self {
        self.own_group = yes;
        self
    }

    /// The worker's name, as [`current_process_name`](crate::current_process_name)
    /// reports it inside the worker.
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.options.name = Some(name.into());
        self
    }

    /// Make the worker die when this process dies, even when it is killed
    /// outright (default: false).
    ///
    /// Windows: the worker is placed in a job object with
    /// `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE` before it runs any code; only
    /// this process holds the job's handle. Linux: the worker arms
    /// `PR_SET_PDEATHSIG` (SIGKILL) and re-checks `getppid()` for a parent
    /// that died during the spawn; since Linux ties that signal to the
    /// spawning *thread*, such workers are spawned from a thread that lives
    /// as long as the process. macOS: not available (the worker outlives a
    /// killed parent).
    pub fn kill_on_parent_death(&mut self, yes: bool) -> &mut Self {
        self.options.die_with_parent = yes;
        self
    }

    /// The worker is daemonic ([`ProcessBuilder::daemon`](crate::ProcessBuilder::daemon)):
    /// it is terminated when this process exits normally (an exit
    /// handler), and the OS layer makes sure it ends with this process
    /// where exit handlers don't run.
    pub(crate) fn daemon(&mut self, yes: bool) -> &mut Self {
        self.daemon = yes;
        self
    }

    /// Have the worker send replies on its channel (see
    /// [`codec::reply`](crate::codec::reply)); a reply over `max_len` bytes
    /// fails [`Popen::read_reply`].
    pub(crate) fn want_reply(&mut self, max_len: u64) -> &mut Self {
        self.reply_cap = Some(max_len);
        self
    }

    /// Starts a worker that runs `entry(args)`.
    ///
    /// Returns once the bootstrap data (entry and arguments) is fully
    /// written. `entry` must be a plain `fn` item registered with
    /// [`entry!`](crate::entry).
    ///
    /// `args` is the entry's argument or a reference to it (anything that
    /// [`Borrow`]s as it), the same for every spawn ([`Popen::spawn`],
    /// [`Process::spawn`](crate::Process::spawn) and their builders): it is
    /// serialized before this returns, so nothing needs to own it after.
    /// Give a value away (`spawn(f, conn)`: it is dropped once sent), or
    /// lend it and keep using it (`spawn(f, &conn)`: a
    /// [`Connection`](crate::Connection) the worker and this process then
    /// both hold, as a CPython parent keeps the objects it passed).
    ///
    /// The worker runs this program's running build (unless another
    /// executable was named), even after the file it was started from was
    /// replaced on disk; where that can't be done (macOS, or Windows when
    /// the renamed file can't be found) this fails with an
    /// [`ErrorKind::Spawn`](crate::ErrorKind::Spawn) error that says the
    /// executable was replaced. See [`executable`] for each platform.
    pub fn spawn<F, A, R>(&self, entry: F, args: impl Borrow<A>) -> Result<Popen>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
    {
        let args = args.borrow();
        let name = spawn::entry_id(&entry);
        if spawn::find_entry(name).is_none() {
            return Err(Error::new(Kind::UnknownEntry(name.to_string())));
        }
        self.spawn_raw(name, &mut |_| {
            encode::to_vec(args).map_err(|source| {
                Error::new(Kind::Encode {
                    entry: name.to_string(),
                    source,
                })
            })
        })
    }

    /// Starts a worker and sends it `data` as its full bootstrap (header
    /// included): the hook behind the bad-input tests. A test hook (feature `test-hooks`), not part of the
    /// stable API.
    #[cfg(feature = "test-hooks")]
    pub fn spawn_with_raw_bootstrap(&self, data: &[u8]) -> Result<Popen> {
        let mut p = self.spawn_bytes(&mut |_| Ok(data.to_vec()))?;
        p.channel = None; // the parent's side is done: the child sees EOF next
        Ok(p)
    }

    fn spawn_raw(
        &self,
        entry: &str,
        payload: &mut dyn FnMut(&sys::Child) -> Result<Vec<u8>>,
    ) -> Result<Popen> {
        // Our write ends go away when this returns, so the readers see end
        // of file once the worker (and whatever inherited them) exited.
        let mut pipes = [None, None];
        let capture = [self.stdio[1], self.stdio[2]].map(|s| s == Stdio::Capture);
        for (pipe, _) in pipes.iter_mut().zip(capture).filter(|(_, yes)| *yes) {
            *pipe = Some(
                sys::pipe(false)
                    .map_err(|e| Error::io("cannot create a pipe for captured output", e))?,
            );
        }
        let mut popen = self.spawn_bytes(&mut |child| {
            let body = payload(child)?;
            let mut options = self.options.clone();
            for (slot, pipe) in options.capture.iter_mut().zip(&pipes) {
                if let Some((_, w)) = pipe {
                    *slot = Some(duplicate_for_child(w.as_raw())?);
                }
            }
            let mut data =
                spawn::encode_header(entry, self.reply_cap.is_some(), &options, body.len());
            data.extend_from_slice(&body);
            Ok(data)
        })?;
        popen.output = pipes.map(|p| p.map(|(r, _)| ChildOutput(r)));
        Ok(popen)
    }

    fn spawn_bytes(
        &self,
        bootstrap: &mut dyn FnMut(&sys::Child) -> Result<Vec<u8>>,
    ) -> Result<Popen> {
        if self.stdio[0] == Stdio::Capture {
            return Err(Error::new(Kind::Usage(
                "stdin cannot be Stdio::Capture (only stdout and stderr can be captured): \
                 use Stdio::Null or Stdio::Inherit"
                    .into(),
            )));
        }
        let (exe, image) = match &self.executable {
            Some(p) => (p.clone(), None),
            None => {
                let set = EXECUTABLE.read().unwrap_or_else(|e| e.into_inner()).clone();
                match (set, spawn::running_image()) {
                    (Some(p), _) => (p, None),
                    _ if !spawn::init_called() => return Err(Error::new(Kind::NotInitialized)),
                    (None, Some(image)) => (image.path().to_path_buf(), Some(image)),
                    (None, None) => (current_exe()?, None),
                }
            }
        };
        let args = |t: sys::BootToken| vec![spawn::marker_arg(t).into()];
        let req = sys::SpawnRequest {
            exe: &exe,
            image,
            args: &args,
            // Captured streams are inherited until the worker installs
            // its pipe.
            stdio: self.stdio.map(|s| match s {
                Stdio::Null => sys::StdioMode::Null,
                Stdio::Inherit | Stdio::Capture => sys::StdioMode::Inherit,
            }),
            kill_on_parent_death: self.options.die_with_parent,
            daemon: self.daemon,
            new_group: self.own_group,
        };
        let (child, channel) =
            sys::spawn(&req).map_err(|source| Error::new(Kind::Spawn { exe, source }))?;
        let popen = Popen {
            child: Arc::new(child),
            channel: Some(channel),
            reply: self.reply_cap.map(ReplyReader::new),
            output: [None, None],
            kill_on_drop: true, // until the bootstrap is through
        };
        let (data, transfer) = handles::spawning(&popen.child, || bootstrap(&popen.child));
        let data = match data {
            Ok(d) => d,
            Err(e) => return Err(popen.abandon(e)),
        };
        let sent = match &popen.channel {
            Some(ch) => ch.send_bootstrap(&popen.child, &data, transfer),
            None => Ok(()),
        };
        if let Err(source) = sent {
            // The child died (or stopped reading): report how it ended.
            let pid = popen.child.id();
            return Err(match popen.child.wait(Some(Duration::from_secs(1))) {
                Ok(Some(st)) => {
                    let status = ExitStatus(st);
                    drop(popen);
                    Error::new(Kind::ExitedEarly { pid, status })
                }
                _ => popen.abandon(Error::new(Kind::Bootstrap { pid, source })),
            });
        }
        let mut popen = popen;
        popen.kill_on_drop = self.kill_on_drop;
        if self.daemon {
            register_daemon(&popen.child);
        }
        Ok(popen)
    }
}

/// A running worker process: CPython's `Popen` for the spawn start method.
///
/// # Drop
///
/// Dropping a `Popen` (or calling [`close`](Popen::close)) releases its
/// handles but does **not** kill the worker, as with `std::process::Child`;
/// ask for that with [`PopenBuilder::kill_on_drop`]. On Unix a worker that
/// is still running when dropped is reaped by a background thread once it
/// exits, so no zombie stays behind. Dropping never fails: if that thread
/// can't be started (the fd or thread limit is reached), the worker is
/// listed and reaped at a later drop or spawn, which try again; until then
/// it may stay a zombie once it exits.
/// A worker dropped right after `spawn` still starts (see the crate docs'
/// caveats for the one exception on Windows).
pub struct Popen {
    child: Arc<sys::Child>,
    channel: Option<sys::Channel>,
    /// The worker's replies, when it was asked for them.
    reply: Option<ReplyReader>,
    /// The read ends of captured stdout / stderr, until taken.
    output: [Option<ChildOutput>; 2],
    kill_on_drop: bool,
}

/// How far [`Popen::read_reply`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyProgress {
    /// The deadline passed first.
    Pending,
    /// The final reply is in, or the worker closed its channel: see
    /// [`Popen::take_reply`].
    Done,
    /// The worker announced a reply over the cap; nothing more can be read.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The cap.
        max: u64,
    },
}

impl Popen {
    /// A builder for more options; the same as [`PopenBuilder::new`].
    pub fn builder() -> PopenBuilder {
        PopenBuilder::new()
    }

    /// Starts a worker with default options; see [`PopenBuilder::spawn`].
    ///
    /// ```
    /// # fn main() -> Result<(), multiproc::Error> {
    /// fn exit_with(code: i32) { std::process::exit(code) }
    /// multiproc::entry!(exit_with);
    /// # multiproc::init();
    /// let p = multiproc::Popen::spawn(exit_with, 42)?;
    /// assert_eq!(p.wait(None)?.unwrap().code(), Some(42));
    /// # Ok(()) }
    /// ```
    pub fn spawn<F, A, R>(entry: F, args: impl Borrow<A>) -> Result<Popen>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
    {
        PopenBuilder::new().spawn(entry, args)
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the worker to exit, at most `timeout` (forever with
    /// `None`, or with a timeout too long to be a deadline, such as
    /// `Duration::MAX`). `Ok(None)` means it is still running. The status is
    /// recorded only once the OS confirmed the exit, and kept: later calls
    /// return it at once. Safe to call from several threads, also while
    /// another calls [`terminate`](Popen::terminate).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let st = self
            .child
            .wait(timeout)
            .map_err(|e| Error::io("cannot wait for the worker", e))?;
        if st.is_some() {
            self.child.release_bootstrap_peer();
        }
        Ok(st.map(ExitStatus))
    }

    /// The exit status if the worker has exited, without blocking.
    pub fn poll(&self) -> Result<Option<ExitStatus>> {
        self.wait(Some(Duration::ZERO))
    }

    /// Asks the worker to stop: SIGTERM on Unix; on Windows
    /// `TerminateProcess` with exit code [`exit_code::TERMINATE`](crate::exit_code::TERMINATE).
    ///
    /// Records no status (the process may still be running; use
    /// [`wait`](Popen::wait)). Calling it again, or after the worker
    /// exited, is not an error.
    pub fn terminate(&self) -> Result<()> {
        self.child
            .terminate()
            .map_err(|e| Error::io("cannot terminate the worker", e))
    }

    /// Kills the worker: SIGKILL on Unix; on Windows the same as
    /// [`terminate`](Popen::terminate), which cannot be ignored there.
    pub fn kill(&self) -> Result<()> {
        self.child
            .kill()
            .map_err(|e| Error::io("cannot kill the worker", e))
    }

    /// Terminates the worker and everything it started (its process group
    /// on Unix, its job object on Windows).
    ///
    /// On Unix the worker must lead its own process group
    /// ([`PopenBuilder::own_process_group`]); otherwise this fails (with an
    /// error of kind `Unsupported` as its source) and signals nothing.
    pub fn terminate_tree(&self) -> Result<()> {
        self.child
            .terminate_tree()
            .map_err(|e| Error::io("cannot terminate the worker's process tree", e))
    }

    /// Kills the worker and everything it started (see
    /// [`terminate_tree`](Self::terminate_tree)).
    pub fn kill_tree(&self) -> Result<()> {
        self.child
            .kill_tree()
            .map_err(|e| Error::io("cannot kill the worker's process tree", e))
    }

    /// Something to pass to [`wait`](crate::wait) that is ready once the
    /// worker has exited.
    pub fn sentinel(&self) -> Sentinel<'_> {
        Sentinel(self)
    }

    /// A watch on the worker's exit that lives on after this `Popen` is
    /// borrowed (or gone): see [`ExitWatch`].
    pub(crate) fn exit_watch(&self) -> ExitWatch {
        ExitWatch(Arc::clone(&self.child))
    }

    /// The worker's captured stdout ([`Stdio::Capture`]), once.
    pub fn take_stdout(&mut self) -> Option<ChildOutput> {
        self.output[0].take()
    }

    /// The worker's captured stderr ([`Stdio::Capture`]), once.
    pub fn take_stderr(&mut self) -> Option<ChildOutput> {
        self.output[1].take()
    }

    /// Releases the handles; the same as dropping (see the type's docs).
    pub fn close(self) {}

    /// Reads the worker's replies until the final one is in or the worker
    /// closed its channel (or exited: whoever else holds its end), waiting
    /// until `deadline` at most. `Done` at once for a worker that sends no
    /// replies.
    pub(crate) fn read_reply(&mut self, deadline: Option<Instant>) -> Result<ReplyProgress> {
        let Some(reader) = self.reply.as_mut() else {
            return Ok(ReplyProgress::Done);
        };
        let mut chunk = Vec::new();
        while !reader.is_done() {
            let Some(channel) = &self.channel else {
                reader.close();
                break;
            };
            if chunk.is_empty() {
                chunk = vec![0u8; 64 * 1024];
            }
            let left = deadline::left(deadline);
            match channel
                .read_timeout(Some(&self.child), &mut chunk, left)
                .map_err(|e| Error::io("cannot read the worker's result", e))?
            {
                None => return Ok(ReplyProgress::Pending),
                Some(0) => reader.close(),
                Some(n) => {
                    if let Err(ReplyError::TooLarge { len, max }) = reader.push(&chunk[..n]) {
                        return Ok(ReplyProgress::TooLarge { len, max });
                    }
                }
            }
        }
        Ok(ReplyProgress::Done)
    }

    /// Whether the worker said its bootstrap is through (only a worker
    /// asked for replies says so).
    pub(crate) fn reply_started(&self) -> bool {
        self.reply.as_ref().is_some_and(ReplyReader::started)
    }

    /// The worker's final reply, once [`read_reply`](Popen::read_reply)
    /// is done; taken (a second call finds it missing).
    pub(crate) fn take_reply(&mut self) -> std::result::Result<Reply, ReplyError> {
        match self.reply.as_mut() {
            Some(reader) => reader.finish(),
            None => Err(ReplyError::Missing),
        }
    }

    /// Kills and reaps a child whose spawn failed, then returns `err`.
    fn abandon(self, err: Error) -> Error {
        let _ = self.child.kill();
        let _ = self.child.wait(Some(Duration::from_secs(5)));
        drop(self);
        err
    }
}

/// A borrowed handle on a worker that [`wait`](crate::wait) can watch for
/// its exit; from [`Popen::sentinel`] or
/// [`Process::sentinel`](crate::Process::sentinel).
#[derive(Clone, Copy, Debug)]
pub struct Sentinel<'a>(&'a Popen);

impl Sentinel<'_> {
    /// Something that becomes ready when the worker exits (pidfd /
    /// process handle); `None` where the OS has no such thing (then poll
    /// [`exited`](Self::exited)).
    pub(crate) fn handle(&self) -> Option<sys::BorrowedRaw<'_>> {
        self.0.child.sentinel()
    }

    /// Whether the worker has exited (without blocking).
    pub(crate) fn exited(&self) -> bool {
        matches!(self.0.poll(), Ok(Some(_)))
    }
}

/// A worker's exit, watched by someone that doesn't hold its [`Popen`]
/// (a pool worker's reader thread, through
/// [`Connection::watch_peer`](crate::Connection)): it keeps the process
/// handle / pidfd open, so it stays valid (and the pid unused) for as long
/// as the watch lives, whatever happens to the `Popen`.
#[derive(Clone)]
pub(crate) struct ExitWatch(Arc<sys::Child>);

impl ExitWatch {
    /// Something that becomes ready when the worker exits (pidfd /
    /// process handle); `None` where the OS has no such thing.
    pub(crate) fn handle(&self) -> Option<sys::BorrowedRaw<'_>> {
        self.0.sentinel()
    }
}

impl fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExitWatch").field(&self.0.id()).finish()
    }
}

/// A worker's captured stdout or stderr ([`Stdio::Capture`]): read it to
/// the end to get everything the worker wrote (end of file once it, and
/// every process it passed the stream on to, exited).
pub struct ChildOutput(sys::Channel);

impl fmt::Debug for ChildOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildOutput")
    }
}

impl std::io::Read for ChildOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.0.read_timeout(None, buf, None)?.unwrap_or(0))
    }
}

/// Daemonic children, kept until they exit or this process does.
static DAEMONS: Mutex<Vec<Arc<sys::Child>>> = Mutex::new(Vec::new());

fn register_daemon(child: &Arc<sys::Child>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let _ = sys::at_exit(terminate_daemons);
    });
    let mut list = DAEMONS.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|c| matches!(c.wait(Some(Duration::ZERO)), Ok(None)));
    list.push(Arc::clone(child));
}

/// At exit, as Python's `_exit_function`: terminate daemonic children, then
/// reap them (killing any that ignore SIGTERM for a second).
extern "C" fn terminate_daemons() {
    let list: Vec<Arc<sys::Child>> = match DAEMONS.try_lock() {
        Ok(mut l) => std::mem::take(&mut *l),
        Err(_) => return,
    };
    for c in &list {
        let _ = c.terminate();
    }
    for c in &list {
        if !matches!(c.wait(Some(Duration::from_secs(1))), Ok(Some(_))) {
            let _ = c.kill();
            let _ = c.wait(Some(Duration::from_secs(1)));
        }
    }
}

impl fmt::Debug for Popen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Popen").field("pid", &self.pid()).finish()
    }
}

impl Drop for Popen {
    fn drop(&mut self) {
        if self.kill_on_drop {
            let _ = self.child.kill();
        }
        if Arc::strong_count(&self.child) > 1 {
            // Someone keeps the child (the daemon list, until this process
            // exits), so its own drop, which hands it to the reaper, won't
            // run now: have it reaped once it exits all the same.
            sys::reap_in_background(&self.child);
        }
    }
}
