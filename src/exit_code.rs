//! How a worker process ends, by exit code.
//!
//! A worker exits with one of these codes when multiproc itself ends it.
//! An entry function may exit with any code itself (`std::process::exit(n)`,
//! a signal, an abort) — these included — so a code alone does not say who
//! ended the worker; [`Process::join`](crate::Process::join) tells them
//! apart by what the worker said, not by the code (see below).
//!
//! | code | constant | meaning |
//! |---|---|---|
//! | 0 | [`SUCCESS`] | the entry function returned |
//! | 101 | [`PANIC`] | the entry function panicked (Rust's own panic exit code) |
//! | 200 | [`BAD_COMMAND_LINE`] | the worker marker on the command line is malformed |
//! | 201 | [`NO_CHANNEL`] | the bootstrap channel could not be opened or read (parent gone, bad handle; on Unix a marker naming another fd than 3), the parent was gone before the parent-death check was armed, or the worker could not set up its standard streams (the null device, captured output) |
//! | 202 | [`TRUNCATED`] | the bootstrap data ended early (the parent died or closed the channel) |
//! | 203 | [`BAD_MAGIC`] | the bootstrap data does not start with multiproc's magic bytes |
//! | 204 | [`VERSION_MISMATCH`] | parent and worker speak different protocol versions |
//! | 205 | [`BUILD_MISMATCH`] | the worker executable is not the parent's build (see [`set_executable`](crate::set_executable) for what is compared) |
//! | 206 | [`UNKNOWN_ENTRY`] | the worker has no entry function by the requested id |
//! | 207 | [`TOO_LARGE`] | a length in the bootstrap data is over its cap (nothing was allocated for it) |
//! | 208 | [`BAD_PAYLOAD`] | the worker options or the arguments could not be decoded (the arguments for the entry's type) |
//! | 209 | [`RESULT_UNDELIVERED`] | the entry finished (returned, panicked, or its arguments could not be decoded) but what it has to report could not be sent back; 210 stays 210 |
//! | 210 | [`BAD_RESULT`] | the entry returned, but its result could not be serialized |
//! | 211 | [`PARENT_GONE`] | a pool worker started by a launcher command ([`Launcher::command`](crate::Launcher::command)) lost its pool: the connection to it ended (the parent exited or was killed, or the pool shut the connection down to end this worker) or nothing came from the parent for the heartbeat timeout ([`Launcher::heartbeat`](crate::Launcher::heartbeat)); an SPMD worker rank ([`Launcher::spmd`](crate::Launcher::spmd)) heard nothing from rank 0 for the heartbeat timeout (the end of its connection is its normal end there: 0); the worker exits at once, even in the middle of a task |
//! | 212 | [`SPMD_NO_POOL`] | an SPMD worker rank (see [`Launcher::spmd`](crate::Launcher::spmd)) could not join rank 0's pool: no rendezvous file within the time limit, rank 0 unreachable, refused by it, or silent or gone before it sent the pool's configuration (waited for twice the time limit); it prints why on stderr |
//! | 65536 | [`TERMINATE`] | Windows: ended by `terminate()` (`TerminateProcess(h, 0x10000)`, as CPython) |
//!
//! Every bootstrap failure (200–208) also prints one line on stderr,
//! `multiproc worker <pid>: bootstrap failed: <reason>`, and happens without
//! waiting for anything but the parent's data. (A 208 for the arguments
//! prints its line to the worker's stderr as set up by then: captured
//! output, when the parent asked for it.) A 210 also prints one line, naming
//! the entry and why its result cannot be serialized; a panic (101) prints
//! Rust's panic message; 209 prints nothing of its own; a 211 prints one
//! line, `multiproc launched worker <pid>: <why>; exiting` (an SPMD rank:
//! `multiproc SPMD rank <pid>: …`), except when the connection simply
//! ended (how a pool ends such a worker).
//!
//! # How `Process::join` tells a bootstrap failure from the entry's exit
//!
//! A worker spawned by [`Process`](crate::Process) reports on its bootstrap
//! channel: `started` once its bootstrap is through (right before the entry
//! runs), then the result, the panic, or why the result could not be
//! encoded; or, instead of all that, why its bootstrap failed, when it got
//! far enough to read the parent's header. `join` reports a bootstrap
//! failure ([`Error::is_bootstrap_failure`](crate::Error::is_bootstrap_failure))
//! when the worker said so, or when it exited with a code from 200–208
//! before saying `started` (it could not open or read the channel, say);
//! an exit after `started` is the entry's own, whatever the code
//! ([`Error::is_no_result`](crate::Error::is_no_result)). A
//! [`Popen`](crate::Popen) reads no replies: its
//! [`ExitStatus`](crate::ExitStatus) gives just the code.

/// The entry function returned.
pub const SUCCESS: i32 = 0;
/// The entry function panicked.
pub const PANIC: i32 = 101;
/// The worker marker on the command line is malformed.
pub const BAD_COMMAND_LINE: i32 = 200;
/// The bootstrap channel could not be opened or read, the parent was gone
/// before the parent-death check was armed, or the standard streams could
/// not be set up.
pub const NO_CHANNEL: i32 = 201;
/// The bootstrap data ended early.
pub const TRUNCATED: i32 = 202;
/// The bootstrap data does not start with the magic bytes.
pub const BAD_MAGIC: i32 = 203;
/// Parent and worker speak different protocol versions.
pub const VERSION_MISMATCH: i32 = 204;
/// The worker executable is not the parent's build.
pub const BUILD_MISMATCH: i32 = 205;
/// The requested entry function is unknown to the worker.
pub const UNKNOWN_ENTRY: i32 = 206;
/// A length in the bootstrap data is over its cap.
pub const TOO_LARGE: i32 = 207;
/// The worker options or the arguments could not be decoded.
pub const BAD_PAYLOAD: i32 = 208;
/// The result could not be sent back.
pub const RESULT_UNDELIVERED: i32 = 209;
/// The entry returned, but its result could not be serialized.
pub const BAD_RESULT: i32 = 210;
/// A launched pool worker lost its pool (its connection ended, or no
/// heartbeat came for the timeout), or an SPMD worker rank heard nothing
/// from rank 0 for the heartbeat timeout.
pub const PARENT_GONE: i32 = 211;
/// An SPMD worker rank could not join rank 0's pool
/// ([`Launcher::spmd`](crate::Launcher::spmd)).
pub const SPMD_NO_POOL: i32 = 212;
/// Windows: the exit code `terminate()` gives (CPython's `TERMINATE`).
pub const TERMINATE: i32 = 0x10000;

/// A short description of a code from the table, if it is one of ours.
pub(crate) fn describe(code: i32) -> Option<&'static str> {
    Some(match code {
        PANIC => "panicked",
        BAD_COMMAND_LINE => "bootstrap: malformed command line",
        NO_CHANNEL => "bootstrap: no channel",
        TRUNCATED => "bootstrap: truncated data",
        BAD_MAGIC => "bootstrap: bad magic",
        VERSION_MISMATCH => "bootstrap: protocol version mismatch",
        BUILD_MISMATCH => "bootstrap: build mismatch",
        UNKNOWN_ENTRY => "bootstrap: unknown entry",
        TOO_LARGE => "bootstrap: length over cap",
        BAD_PAYLOAD => "bootstrap: undecodable arguments",
        RESULT_UNDELIVERED => "result undelivered",
        BAD_RESULT => "result not serializable",
        PARENT_GONE => "lost its pool",
        SPMD_NO_POOL => "SPMD rank could not join rank 0's pool",
        TERMINATE if cfg!(windows) => "terminated",
        _ => return None,
    })
}
