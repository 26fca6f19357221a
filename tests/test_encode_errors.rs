//! A value that can't be serialized: the error says why, in the words of
//! the `Serialize` impl or the OS (postcard alone says only "Serde
//! Serialization Error").

use multiproc::{Connection, Pipe, Pool, Process};
use serde::{Serialize, Serializer};

multiproc::test_support!();

/// Fails to serialize with its own message.
#[derive(Debug)]
struct Thirteen;

impl Serialize for Thirteen {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("13 cannot be serialized"))
    }
}

/// Serializes as its number, except 13.
#[derive(Debug, serde::Deserialize)]
struct Num(u32);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 cannot be serialized"));
        }
        s.serialize_u32(self.0)
    }
}

fn double(n: Num) -> u32 {
    n.0 * 2
}

fn first(v: Vec<Num>) -> u32 {
    v.first().map_or(0, |n| n.0)
}

/// Echoes one message back.
fn echo_one(conn: Connection) {
    if let Ok(m) = conn.recv_bytes() {
        let _ = conn.send_bytes(&m);
    }
}

multiproc::entry!(double, first, echo_one);

#[cfg(unix)]
multiproc::entry!(spawn_under_a_low_fd_limit);

fn assert_custom(err: &multiproc::Error) {
    assert!(err.is_encode(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::Encode);
    assert!(err.to_string().contains("13 cannot be serialized"), "{err}");
}

#[test]
fn connection_send_keeps_the_serialize_message() {
    let (a, _b) = Pipe::duplex().unwrap();
    assert_custom(&a.send(&Thirteen).unwrap_err());
    // Nested inside other values too.
    assert_custom(&a.send(&(1u8, vec![Num(1), Num(13)])).unwrap_err());
    // The connection still works.
    a.send(&Num(7)).unwrap();
    assert_eq!(_b.recv::<u32>().unwrap(), 7);
}

#[test]
fn process_spawn_keeps_the_serialize_message() {
    assert_custom(&Process::spawn(double, Num(13)).unwrap_err());
    assert_custom(&Process::spawn(first, vec![Num(1), Num(13)]).unwrap_err());
}

#[test]
fn pool_map_and_submit_keep_the_serialize_message() {
    let pool = Pool::new(1).unwrap();
    assert_custom(&pool.submit(double, Num(13)).get().unwrap_err());
    let err = pool.map(double, [Num(1), Num(13), Num(3)]).unwrap_err();
    assert_custom(&err);
    let got: Vec<_> = pool.imap(double, [Num(1), Num(13), Num(3)]).collect();
    assert_eq!(got.len(), 3);
    assert_eq!(*got[0].as_ref().unwrap(), 2);
    assert_custom(got[1].as_ref().unwrap_err());
    assert_eq!(*got[2].as_ref().unwrap(), 6);
}

#[test]
fn passing_a_connection_outside_a_spawn_or_message_says_so() {
    // Serialized for no other process (not a spawn, a pool task or a
    // message): there is nowhere for its handles to go.
    let (c, _d) = Pipe::duplex().unwrap();
    let err = serde_json::to_string(&c).unwrap_err();
    assert!(err.to_string().contains("pass_handle"), "{err}");
}

/// What one spawn attempt under a lowered fd limit gave.
#[cfg(unix)]
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Attempt {
    extra: u64,
    what: String,
    ok: bool,
    is_encode: bool,
    /// `Error::kind`, as `Debug` shows it.
    kind: String,
    /// `Error::io_error` is EMFILE.
    io_emfile: bool,
    /// The display of the error.
    message: String,
    /// An `io::Error` with EMFILE somewhere in its `source()` chain.
    emfile_source: bool,
}

#[cfg(unix)]
fn attempt(extra: u64, what: &'static str, r: Result<(), multiproc::Error>) -> Attempt {
    match r {
        Ok(()) => Attempt {
            extra,
            what: what.into(),
            ok: true,
            is_encode: false,
            kind: String::new(),
            io_emfile: false,
            message: String::new(),
            emfile_source: false,
        },
        Err(e) => {
            let mut emfile_source = false;
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    emfile_source |= io.raw_os_error() == Some(libc::EMFILE);
                }
                src = s.source();
            }
            Attempt {
                extra,
                what: what.into(),
                ok: false,
                is_encode: e.is_encode(),
                kind: format!("{:?}", e.kind()),
                io_emfile: e.io_error().and_then(|e| e.raw_os_error()) == Some(libc::EMFILE),
                message: e.to_string(),
                emfile_source,
            }
        }
    }
}

/// In a worker: lowers RLIMIT_NOFILE to the fds open now plus `extra`,
/// for `extra` = 0, 1, ..., then spawns a `Process` with a `Connection`
/// argument and starts a `Pool`, until both succeed.
#[cfg(unix)]
fn spawn_under_a_low_fd_limit(_: ()) -> Vec<Attempt> {
    let (mine, theirs) = Pipe::duplex().unwrap();
    let (mut popen_ok, mut pool_ok) = (false, false);
    let mut out = Vec::new();
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`, which we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    for extra in 0..64u64 {
        lim.rlim_cur = (highest + 1 + extra) as libc::rlim_t;
        // SAFETY: setrlimit reads `lim`; lowering the soft limit is allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        if !popen_ok {
            // The child gets a copy of `theirs` (3 fds on Unix).
            let r = multiproc::PopenBuilder::new()
                .spawn(echo_one, &theirs)
                .map(|p| {
                    mine.send_bytes(b"x").unwrap();
                    assert_eq!(mine.recv_bytes().unwrap(), b"x");
                    drop(p);
                });
            let a = attempt(extra, "Popen::spawn with a Connection", r);
            popen_ok = a.ok;
            out.push(a);
        }
        if !pool_ok {
            let r = Pool::new(1).map(drop);
            let a = attempt(extra, "Pool::new", r);
            pool_ok = a.ok;
            out.push(a);
        }
        if popen_ok && pool_ok {
            break;
        }
    }
    // Every fd taken: making a pipe fails with the OS error itself.
    lim.rlim_cur = (highest + 1) as libc::rlim_t;
    // SAFETY: setrlimit reads `lim`; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    out.push(attempt(0, "Pipe::duplex", Pipe::duplex().map(drop)));
    drop(filler);
    out
}

#[cfg(unix)]
#[test]
fn fd_exhaustion_while_passing_handles_names_the_os_error() {
    let attempts = Process::spawn(spawn_under_a_low_fd_limit, ())
        .unwrap()
        .join()
        .unwrap();
    let show = || format!("{attempts:#?}");
    for what in ["Popen::spawn with a Connection", "Pool::new"] {
        let mine: Vec<&Attempt> = attempts.iter().filter(|a| a.what == what).collect();
        assert!(
            mine.last().is_some_and(|a| a.ok),
            "{what} never succeeded: {}",
            show()
        );
        // Some attempt failed while serializing (passing the handles), and
        // every failure names the OS error.
        assert!(
            mine.iter()
                .any(|a| !a.ok && a.is_encode && a.emfile_source && a.io_emfile),
            "{what}: no encode failure with EMFILE as its source and io_error: {}",
            show()
        );
        for a in mine.iter().filter(|a| !a.ok) {
            assert!(
                a.message.contains("Too many open files") || a.message.contains("os error 24"),
                "{what}: {a:?}"
            );
        }
    }
    let pipe = attempts.iter().find(|a| a.what == "Pipe::duplex").unwrap();
    assert!(!pipe.ok && pipe.kind == "Io" && pipe.io_emfile, "{pipe:?}");
}
