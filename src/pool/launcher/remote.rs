//! [`Remote`], the parent's side of a command launcher: its listener and
//! key, a launch (the command with the address, key and token in its
//! environment), and the wait for its workers to connect back, say hello
//! and prove to be this build — several launches wait at once, and one
//! that accepts another's worker hands it over ([`Arrivals`]).

use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "test-hooks")]
use super::hooks;
use super::kind::NTASKS;
use super::{hex, launched_worker, Hello, AUTHKEY_ENV, BY_RANK_ENV, CONNECT_ENV, TOKEN_ENV};
use crate::connection::Connection;
use crate::deadline;
use crate::error::{Error, Kind, Result};
use crate::net::{Address, Listener};
use crate::pool::protocol::Heartbeat;
use crate::spawn;
use crate::status::ExitStatus;
use crate::sys;

/// How long a launched worker has to connect back.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a failed launch waits for the rest of its command's stderr.
const STDERR_LINGER: Duration = Duration::from_secs(1);

/// `why`, then the last of the launcher command's stderr, if it wrote any.
fn with_stderr(why: String, child: &sys::CommandChild) -> String {
    match child.stderr_tail(STDERR_LINGER) {
        tail if tail.is_empty() => why,
        tail => format!("{why}; the end of its stderr:\n{tail}"),
    }
}

/// The parent's side of a command launcher: its listener and key.
#[derive(Debug)]
pub(in crate::pool) struct Remote {
    template: Vec<String>,
    /// Whether the workers' output is prefixed.
    prefix_output: bool,
    heartbeat: Heartbeat,
    listener: Listener,
    key: Vec<u8>,
    next_token: AtomicU64,
    /// The template names `{ntasks}`: the pool's first workers are
    /// started by one command ([`Remote::launch_all`]).
    all_at_once: bool,
    /// Workers that one command started and that no worker slot took yet.
    pending: std::sync::Mutex<Vec<Launch>>,
    /// The launches being waited for: several wait at once (each in its
    /// worker's reader), and the one that accepts another's worker hands
    /// it over here.
    arrivals: std::sync::Mutex<Arrivals>,
}

/// The tokens whose workers are waited for, and the workers that
/// connected back and that the launch of their token has not taken yet.
#[derive(Debug, Default)]
struct Arrivals {
    waited: std::collections::HashSet<u64>,
    arrived: std::collections::HashMap<u64, (Connection, Hello)>,
}

/// While a launch waits for its workers: their tokens count as waited
/// for; once it is done, what arrived for them and was not taken is
/// closed.
struct Waiting<'a> {
    arrivals: &'a std::sync::Mutex<Arrivals>,
    tokens: std::ops::Range<u64>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        forget(self.arrivals, self.tokens.clone());
    }
}

/// `tokens` are no longer waited for: what arrived for them is closed.
/// (A launch whose command started but whose wait never began — its
/// worker's threads could not be started, and the command was killed —
/// leaves its token noted until the pool ends: a number in a set.)
fn forget(arrivals: &std::sync::Mutex<Arrivals>, tokens: std::ops::Range<u64>) {
    let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    for t in tokens {
        a.waited.remove(&t);
        a.arrived.remove(&t);
    }
}

/// A worker that a command started with `{ntasks}` ([`Remote::launch_all`])
/// and that connected back.
pub(in crate::pool) struct Launch {
    /// The command, shared with the other workers it started.
    pub(in crate::pool) command: Arc<sys::CommandChild>,
    pub(in crate::pool) conn: Connection,
    /// The host the worker said it runs on.
    pub(in crate::pool) host: String,
    /// The worker's own pid, as it said (on that host).
    pub(in crate::pool) pid: u32,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch").field("host", &self.host).finish()
    }
}

fn spawn_error(program: &str, why: std::io::Error) -> Error {
    Error::new(Kind::Spawn {
        exe: program.into(),
        source: why,
    })
}

impl Remote {
    pub(super) fn new(
        template: &[String],
        listen: &Address,
        prefix_output: bool,
        heartbeat: Heartbeat,
    ) -> Result<Remote> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| {
            Error::io(
                "cannot make the pool's key",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let listener = Listener::bind(listen, Some(&key))?;
        Ok(Remote {
            template: template.to_vec(),
            prefix_output,
            heartbeat,
            listener,
            key,
            next_token: AtomicU64::new(1),
            all_at_once: template.iter().any(|a| a.contains(NTASKS)),
            pending: std::sync::Mutex::new(Vec::new()),
            arrivals: std::sync::Mutex::new(Arrivals::default()),
        })
    }

    /// The heartbeats of its workers' connections.
    pub(in crate::pool) fn heartbeat(&self) -> Heartbeat {
        self.heartbeat
    }

    /// The template with `{exe}` and `{ntasks}` filled in.
    fn argv(&self, ntasks: usize) -> Result<Vec<OsString>> {
        let exe = crate::popen::executable()?;
        let ntasks = ntasks.to_string();
        Ok(self
            .template
            .iter()
            .map(|a| {
                let a = a.replace(NTASKS, &ntasks);
                let parts: Vec<&str> = a.split("{exe}").collect();
                let mut s = OsString::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        s.push(exe.as_os_str());
                    }
                    s.push(p);
                }
                s
            })
            .collect())
    }

    /// Starts the command for `ntasks` workers, with the first of as many
    /// tokens in its environment; the command and the first token.
    fn start_command(&self, ntasks: usize) -> Result<(sys::CommandChild, u64)> {
        let argv = self.argv(ntasks)?;
        let token = self.next_token.fetch_add(ntasks as u64, Ordering::Relaxed);
        let entry = spawn::entry_id(&launched_worker).to_string();
        let mut env = vec![
            (spawn::LAUNCHED_ENTRY_ENV.to_string(), entry),
            (CONNECT_ENV.to_string(), self.listener.address().to_string()),
            (AUTHKEY_ENV.to_string(), hex(&self.key)),
            (TOKEN_ENV.to_string(), token.to_string()),
        ];
        if self.all_at_once {
            env.push((BY_RANK_ENV.to_string(), "1".to_string()));
        }
        // Waited for from before the command starts: its workers may
        // connect back before this launch's wait begins, and another
        // launch's wait that accepts one then hands it over instead of
        // closing it (which the worker takes as the pool gone: exit 0).
        let tokens = token..token + ntasks as u64;
        self.arrivals().waited.extend(tokens.clone());
        match sys::spawn_command(&argv, &env, self.prefix_output) {
            Ok(child) => Ok((child, token)),
            Err(e) => {
                forget(&self.arrivals, tokens);
                Err(spawn_error(&self.template[0], e))
            }
        }
    }

    fn arrivals(&self) -> std::sync::MutexGuard<'_, Arrivals> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// With `{ntasks}` in the template: runs the command once for the
    /// pool's first `n` workers and waits until all connected back; the
    /// pool's next `n` worker starts take them
    /// ([`take_pending`](Self::take_pending)). Nothing otherwise.
    pub(in crate::pool) fn launch_all(&self, n: usize) -> Result<()> {
        if !self.all_at_once {
            return Ok(());
        }
        let (child, first) = self.start_command(n)?;
        let joined = self.wait_for(first, n, &child, &self.template[0])?;
        let child = Arc::new(child);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Taken from the back: the first rank first.
        for (conn, hello) in joined.into_iter().rev() {
            pending.push(Launch {
                command: Arc::clone(&child),
                conn,
                host: hello.host,
                pid: hello.pid,
            });
        }
        Ok(())
    }

    /// A worker that [`launch_all`](Self::launch_all) started and that no
    /// worker slot took yet.
    pub(in crate::pool) fn take_pending(&self) -> Option<Launch> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Starts the command for one worker (`{ntasks}` = 1), without
    /// waiting for it: the command and the token its worker will say.
    /// [`connect_back`](Self::connect_back) waits for the worker.
    pub(in crate::pool) fn start_one(&self) -> Result<(sys::CommandChild, u64)> {
        self.start_command(1)
    }

    /// Waits (up to the connect timeout) until the worker of `token`,
    /// which `child` started, connected back and said it is this build;
    /// its connection and what it said. Ends early, with the command's
    /// status, if the command exits first (or is killed: the pool's
    /// drop while a launch is pending).
    pub(in crate::pool) fn connect_back(
        &self,
        token: u64,
        child: &sys::CommandChild,
    ) -> Result<(Connection, Hello)> {
        let (conn, hello) = self
            .wait_for(token, 1, child, &self.template[0])?
            .pop()
            .expect("one worker");
        child.set_output_prefix(&hello.host, hello.pid);
        Ok((conn, hello))
    }

    /// Accepts until the workers of tokens `first..first + n` connected
    /// back, in token order; connections of other launches (one that
    /// timed out before) are closed.
    fn wait_for(
        &self,
        first: u64,
        n: usize,
        child: &sys::CommandChild,
        program: &str,
    ) -> Result<Vec<(Connection, Hello)>> {
        let deadline = deadline::deadline(CONNECT_TIMEOUT);
        let mine = first..first + n as u64;
        // `start_command` noted them as waited for; no longer once this
        // wait ends, however it ends.
        let waiting = Waiting {
            arrivals: &self.arrivals,
            tokens: mine.clone(),
        };
        #[cfg(feature = "test-hooks")]
        hooks::before_wait(first);
        let mut joined: Vec<Option<(Connection, Hello)>> = (0..n).map(|_| None).collect();
        // The command exited, and no connection was in its handshake
        // since: an accept that finds nothing now means no worker of the
        // command is left to arrive.
        let mut settled = false;
        while joined.iter().any(Option::is_none) {
            // Workers of this launch that another launch's wait accepted.
            let handed: Vec<(Connection, Hello)> = {
                let mut a = self.arrivals();
                mine.clone().filter_map(|t| a.arrived.remove(&t)).collect()
            };
            for (conn, hello) in handed {
                let slot = hello
                    .token
                    .checked_sub(first)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| joined.get_mut(i));
                if let Some(slot) = slot {
                    *slot = Some((conn, hello));
                }
            }
            if joined.iter().all(Option::is_some) {
                break;
            }
            // A slice, to look at the command between waits.
            let accepted = self.listener.accept_timeout(Duration::from_millis(50));
            if matches!(accepted, Ok(Some(_))) {
                settled = false;
            }
            if let Ok(Some(conn)) = accepted {
                if conn.poll(Some(Duration::from_secs(10))).unwrap_or(false) {
                    let hello = match conn.recv_bytes() {
                        Ok(bytes) => match postcard::from_bytes::<Hello>(&bytes) {
                            Ok(hello) => Some(hello),
                            Err(e) => {
                                // The token comes first in every build's
                                // hello: one of ours that this build can't
                                // read is a worker of another build.
                                let token = postcard::take_from_bytes::<u64>(&bytes)
                                    .ok()
                                    .map(|(t, _)| t);
                                if token.is_some_and(|t| (first..first + n as u64).contains(&t)) {
                                    let _ = child.kill();
                                    return Err(spawn_error(
                                        program,
                                        std::io::Error::other(format!(
                                            "the launched worker sent a hello of {} bytes that \
                                             this build can't read ({e}): a worker of a \
                                             different build/protocol; workers must run the \
                                             parent's build",
                                            bytes.len()
                                        )),
                                    ));
                                }
                                None
                            }
                        },
                        Err(_) => None,
                    };
                    if let Some(hello) = hello {
                        let token = hello.token;
                        let slot = token
                            .checked_sub(first)
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| joined.get_mut(i))
                            .filter(|s| s.is_none());
                        let kept = if let Some(slot) = slot {
                            *slot = Some((conn, hello));
                            true
                        } else {
                            // Another launch's worker: handed to it;
                            // not ours: closed.
                            let mut a = self.arrivals();
                            if a.waited.contains(&token) && !a.arrived.contains_key(&token) {
                                a.arrived.insert(token, (conn, hello));
                                true
                            } else {
                                drop(conn);
                                false
                            }
                        };
                        #[cfg(feature = "test-hooks")]
                        hooks::hello_read(token);
                        if kept {
                            continue;
                        }
                    }
                }
                // Not ours: closed by the drop.
            }
            let missing = joined.iter().filter(|j| j.is_none()).count();
            let which = if n == 1 {
                "its worker".to_string()
            } else {
                format!("{missing} of its {n} workers")
            };
            let exited = child
                .try_wait()
                .map_err(|e| Error::io("cannot watch a launcher command", e))?;
            if let Some(status) = exited.filter(|_| settled) {
                return Err(spawn_error(
                    program,
                    std::io::Error::other(with_stderr(
                        format!(
                            "the launcher command (pid {}) exited with {} before {which} \
                             connected back",
                            child.id(),
                            ExitStatus(status)
                        ),
                        child,
                    )),
                ));
            }
            if exited.is_some() {
                // A worker that connected back, said hello and exited at
                // once (its command with it) may still be in the
                // listener's handshake thread, or just handed over for
                // `accept`: not lost. The command's exit is the error only
                // once no handshake is pending and the next accept finds
                // nothing (a thread counts as pending until it has handed
                // its connection over).
                #[cfg(feature = "test-hooks")]
                hooks::saw_exit();
                settled = !self.listener.handshakes_pending();
            }
            if deadline::passed(deadline) {
                let _ = child.kill();
                let who = if n == 1 {
                    "the launched worker".to_string()
                } else {
                    format!("{missing} of the {n} launched workers")
                };
                return Err(spawn_error(
                    program,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        with_stderr(
                            format!(
                                "{who} did not connect back to {} within {:?}",
                                self.listener.address(),
                                CONNECT_TIMEOUT
                            ),
                            child,
                        ),
                    ),
                ));
            }
        }
        drop(waiting);
        let joined: Vec<(Connection, Hello)> = joined.into_iter().flatten().collect();
        for (_, hello) in &joined {
            if hello.build != spawn::build_id() {
                let _ = child.kill();
                return Err(spawn_error(
                    program,
                    std::io::Error::other(format!(
                        "the launched worker (pid {} on host {}) is another build of the \
                         program: workers must run the parent's build",
                        hello.pid, hello.host
                    )),
                ));
            }
        }
        // Only this process holds them: they read ahead from now on, as a
        // local worker's channel.
        Ok(joined
            .into_iter()
            .map(|(conn, hello)| (conn.reading_ahead(), hello))
            .collect())
    }
}
