//! [`PopenBuilder`], the options of a spawn, and [`Stdio`], where a
//! worker's standard streams go.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::daemons::register_daemon;
use super::executable::{current_exe, EXECUTABLE};
use super::{ChildOutput, Popen};
use crate::codec::handles::{self, duplicate_for_child};
use crate::codec::reply::ReplyReader;
use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::spawn;
use crate::status::ExitStatus;
use crate::sys;

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

    /// Runs this program instead of the default (see [`set_executable`](crate::set_executable)).
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
    /// executable was replaced. See [`executable`](crate::executable) for each platform.
    pub fn spawn<F, A, R>(&self, entry: F, args: impl Borrow<A>) -> Result<Popen>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
    {
        self.spawn_encoded(entry, args.borrow())
    }

    /// [`spawn`](Self::spawn) with `args` written from a value that
    /// serializes as the entry's argument does (`(ChildEnd(&c), &a)` for
    /// `(Connection, A)`): the caller makes sure it does.
    pub(crate) fn spawn_encoded<F, A, R, W>(&self, entry: F, args: &W) -> Result<Popen>
    where
        F: Fn(A) -> R + Copy + 'static,
        W: Serialize + ?Sized,
    {
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
                    // A pipe always has its handle.
                    let raw = w.as_raw().ok_or_else(|| {
                        Error::io("captured output", std::io::ErrorKind::Unsupported.into())
                    })?;
                    *slot = Some(duplicate_for_child(raw)?);
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
