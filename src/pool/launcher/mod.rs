//! [`Launcher`]: how a pool starts its workers — as local child processes
//! (the default), or through a command (`sh -c`, `srun`, `ssh host`) that
//! starts the worker program somewhere, which connects back to a
//! [`Listener`](crate::Listener) of the pool's, authenticated with a key
//! made for the pool.
//!
//! The parent side ([`Remote`]): one listener and one random 32-byte key
//! per pool; each launch runs the command with the address, the key (hex)
//! and a token in environment variables — never on the command line,
//! which `ps` shows anyone — and waits until the worker with that token
//! connects back (or the command exits, or
//! [`CONNECT_TIMEOUT`](remote::CONNECT_TIMEOUT) passes).
//! The worker says which build it is; another build is refused. Then the
//! worker gets its [`WorkerConfig`] and runs the same loop as a local
//! worker (`worker_loop`) over the TCP connection, its frames read by a
//! thread that exits the worker when the connection ends.
//!
//! Its files: `kind.rs`, the [`Launcher`] kinds and options (what a pool
//! is told); `remote.rs`, the parent's side of a command launcher
//! ([`Remote`]: the launch and the wait for its worker to connect back);
//! `serve.rs`, a worker's side over TCP once it joined (its loop, its
//! heartbeats, its exit when the pool is gone), for launched workers and
//! SPMD ranks; `hooks.rs`, test hooks. This file: what both sides share
//! (the environment's names, [`Hello`], the key in hex) and the launched
//! worker's entry.

#[cfg(feature = "test-hooks")]
pub(crate) mod hooks;
mod kind;
mod remote;
mod serve;

use serde::{Deserialize, Serialize};

use super::protocol::WorkerConfig;
use crate::net::Client;
use crate::spawn;
use crate::sys;
pub use kind::Launcher;
pub(super) use remote::Remote;
pub(super) use serve::{serve_pool, Served};

/// The address of the pool's listener, for a launched worker.
pub(super) const CONNECT_ENV: &str = "MULTIPROC_CONNECT";
/// The pool's key, hex, for a launched worker.
pub(super) const AUTHKEY_ENV: &str = "MULTIPROC_AUTHKEY";
/// Which launch this worker is, so the pool knows its connection.
pub(super) const TOKEN_ENV: &str = "MULTIPROC_WORKER_TOKEN";
/// Set when one command starts several workers (`{ntasks}`): each adds
/// its rank (`SLURM_PROCID`, …) to the token.
pub(super) const BY_RANK_ENV: &str = "MULTIPROC_WORKER_TOKEN_BY_RANK";

/// What a launched worker (or an SPMD rank) says first. The token stays
/// the first field in every build, so that a hello of another build that
/// this one can't read is still known to be from one of its launches.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Hello {
    /// Which launch it is (an SPMD rank: its rank).
    pub(super) token: u64,
    pub(super) build: u64,
    pub(super) pid: u32,
    /// The host it runs on (its name as that host knows it).
    pub(super) host: String,
}

/// Why a task whose arguments carry handles is refused on a pool of
/// launched workers.
pub(super) fn handles_refused() -> crate::encode::EncodeError {
    crate::encode::EncodeError::Custom(
        "its arguments carry handles (a Connection, shared memory, a lock, …), which can't \
         reach workers started by a launcher command"
            .into(),
    )
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A launched worker's entry (named by `LAUNCHED_ENTRY_ENV`, run by
/// `init`): connects back with what the environment says, says hello,
/// takes its configuration and runs the pool's worker loop. Defined in
/// this file because its entry id is its path
/// (`multiproc::pool::launcher::launched_worker`).
pub(super) fn launched_worker(_: ()) {
    let var = |k: &str| {
        let v = std::env::var(k).ok();
        // Not for the worker's own children.
        std::env::remove_var(k);
        v
    };
    let (addr, key, token) = (var(CONNECT_ENV), var(AUTHKEY_ENV), var(TOKEN_ENV));
    let by_rank = var(BY_RANK_ENV).is_some();
    let (Some(addr), Some(key), Some(mut token)) = (
        addr,
        key.as_deref().and_then(unhex),
        token.and_then(|t| t.parse::<u64>().ok()),
    ) else {
        eprintln!(
            "multiproc launched worker {}: {CONNECT_ENV}, {AUTHKEY_ENV} or {TOKEN_ENV} is \
             missing or malformed",
            std::process::id()
        );
        std::process::exit(crate::exit_code::NO_CHANNEL);
    };
    if by_rank {
        // One of several workers one command started: which one.
        match super::spmd::rank_from_env() {
            Ok(Some(r)) => token += u64::from(r.rank),
            Ok(None) | Err(_) => {
                eprintln!(
                    "multiproc launched worker {}: started as one of {{ntasks}} workers, but \
                     no rank variable (SLURM_PROCID in a job step, OMPI_COMM_WORLD_RANK, \
                     PMI_RANK) says which",
                    std::process::id()
                );
                std::process::exit(crate::exit_code::NO_CHANNEL);
            }
        }
    }
    let conn = match Client::connect(addr.as_str(), Some(&key)) {
        // Only this process holds it (see `Remote::wait_for`).
        Ok(c) => c.reading_ahead(),
        Err(e) => {
            // The pool's host name may resolve only to a loopback address.
            let hint = match addr.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => format!(
                    " ({} is a loopback address, which a worker on another host than the \
                     pool's can't reach: the pool must listen on an address of its host that \
                     this one reaches — Launcher::listen_on_host, with {} where that host's \
                     name resolves to a loopback address, or Launcher::listen)",
                    a.ip(),
                    super::address::LISTEN_ENV
                ),
                _ => String::new(),
            };
            eprintln!(
                "multiproc launched worker {} on host {}: cannot connect back to {addr}: \
                 {e}{hint}",
                std::process::id(),
                sys::hostname()
            );
            std::process::exit(crate::exit_code::NO_CHANNEL);
        }
    };
    let hello = Hello {
        token,
        build: spawn::build_id(),
        pid: std::process::id(),
        host: sys::hostname(),
    };
    // Test hook: the hello of an older build (no host yet), to check
    // that the parent refuses it as another build's.
    #[cfg(feature = "test-hooks")]
    if var("MULTIPROC_TEST_OLD_HELLO").is_some() {
        let old = (hello.token, hello.build, hello.pid);
        let _ = conn.send(&old);
        return;
    }
    if conn.send(&hello).is_err() {
        return;
    }
    let Ok(cfg) = conn.recv::<WorkerConfig>() else {
        return;
    };
    serve_pool(conn, cfg, Served::Launched);
}

#[allow(unsafe_code)] // linkme registers the entry through a link section
mod registration {
    crate::entry!(super::launched_worker);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_hex() {
        let key: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&key)).unwrap(), key);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
