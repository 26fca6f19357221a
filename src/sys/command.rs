//! Launcher commands: an arbitrary program (`sh -c …`, `srun …`, `ssh
//! host …`) that starts a pool worker somewhere, which then connects back
//! (`pool/launcher.rs`). std's `Command`, with stdin the null device and
//! the rest inherited; the child's pid stays ours (unreaped) until it is
//! waited for, so `kill` never hits a reused pid.

use std::ffi::OsString;
use std::io;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::RawStatus;
use crate::deadline;

/// A started launcher command.
#[derive(Debug)]
pub(crate) struct CommandChild {
    child: Mutex<Child>,
    status: Mutex<Option<RawStatus>>,
    pid: u32,
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
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    Ok(CommandChild {
        pid: child.id(),
        child: Mutex::new(child),
        status: Mutex::new(None),
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
