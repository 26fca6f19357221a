//! Launcher commands: an arbitrary program (`sh -c …`, `srun …`, `ssh
//! host …`) that starts a pool worker somewhere, which then connects back
//! (`pool/launcher.rs`). std's `Command`, with stdin the null device,
//! stdout inherited, and stderr a pipe that a thread copies to this
//! process's stderr as it comes, keeping the last [`STDERR_TAIL`] bytes for
//! the error of a launch that fails; the child's pid stays ours (unreaped)
//! until it is waited for, so `kill` never hits a reused pid.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::RawStatus;
use crate::deadline;

/// How much of a launcher command's stderr is kept for its error.
pub(crate) const STDERR_TAIL: usize = 2048;

/// The last [`STDERR_TAIL`] bytes of a command's stderr, and whether the
/// stream ended.
#[derive(Debug, Default)]
struct Tail {
    bytes: Mutex<(Vec<u8>, bool)>,
    ended: Condvar,
}

/// A started launcher command.
#[derive(Debug)]
pub(crate) struct CommandChild {
    child: Mutex<Child>,
    status: Mutex<Option<RawStatus>>,
    pid: u32,
    tail: Arc<Tail>,
}

/// Copies `from` to this process's stderr until it ends, keeping its last
/// [`STDERR_TAIL`] bytes in `tail`.
fn copy_stderr(mut from: impl Read, tail: &Tail) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let _ = io::stderr().write_all(&buf[..n]);
        let mut t = tail.bytes.lock().unwrap_or_else(|e| e.into_inner());
        t.0.extend_from_slice(&buf[..n]);
        if t.0.len() > STDERR_TAIL {
            let cut = t.0.len() - STDERR_TAIL;
            t.0.drain(..cut);
        }
    }
    tail.bytes.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
    tail.ended.notify_all();
}

/// Starts `argv` (the program, then its arguments) with `env` added to
/// this process's environment.
pub(crate) fn spawn_command(
    argv: &[OsString],
    env: &[(String, String)],
) -> io::Result<CommandChild> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let tail = Arc::new(Tail::default());
    if let Some(stderr) = child.stderr.take() {
        let t = Arc::clone(&tail);
        let copier = std::thread::Builder::new()
            .name(format!("multiproc-launch-e{}", child.id()))
            .spawn(move || copy_stderr(stderr, &t));
        if let Err(e) = copier {
            // Not started: no zombie, no orphan (the pipe closed with the
            // closure).
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    Ok(CommandChild {
        pid: child.id(),
        child: Mutex::new(child),
        status: Mutex::new(None),
        tail,
    })
}

fn raw_status(s: std::process::ExitStatus) -> RawStatus {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return RawStatus::Signaled(sig);
        }
    }
    RawStatus::Exited(s.code().unwrap_or(-1))
}

impl CommandChild {
    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// The last [`STDERR_TAIL`] bytes of its stderr (lossy UTF-8, trimmed),
    /// after waiting at most `linger` for the stream to end (it ends when
    /// the command and everything it started that holds it have exited).
    pub(crate) fn stderr_tail(&self, linger: Duration) -> String {
        let until = deadline::deadline(linger);
        let mut t = self.tail.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while !t.1 && !deadline::passed(until) {
            let left = until.map_or(Duration::from_secs(3600), |u| {
                u.saturating_duration_since(std::time::Instant::now())
            });
            t = self
                .tail
                .ended
                .wait_timeout(t, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        String::from_utf8_lossy(&t.0).trim().to_string()
    }

    /// How it ended, if it did (without waiting).
    pub(crate) fn try_wait(&self) -> io::Result<Option<RawStatus>> {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            *status = child.try_wait()?.map(raw_status);
        }
        Ok(*status)
    }

    /// Waits at most `timeout` (`None`: forever) for it to end. std has no
    /// wait with a timeout for a `Child`: this looks every 10 ms (a
    /// launcher's end is waited for only once its worker's channel ended).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<RawStatus>> {
        let deadline = deadline::deadline_of(timeout);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if deadline::passed(deadline) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it (SIGKILL / `TerminateProcess`); `Ok` if it already ended.
    pub(crate) fn kill(&self) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.kill() {
            Ok(()) => Ok(()),
            // It ended between the two looks.
            Err(_) if child.try_wait().ok().flatten().is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for CommandChild {
    /// Kills a launcher still running and reaps it, so it leaves no
    /// zombie and no orphan.
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// This machine's host name, as a launched worker reports it (`uname`'s
/// node name; on Windows `COMPUTERNAME`); `"?"` if it has none.
pub(crate) fn hostname() -> String {
    #[cfg(unix)]
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    #[cfg(windows)]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    if name.is_empty() {
        "?".into()
    } else {
        name
    }
}
