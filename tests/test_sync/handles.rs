//! Handles: counts after many cycles, forged wire forms refused at decode.

use super::*;

/// A Lock decoded from whatever the parent wrote (see [`Forged`]).
fn take_lock(_: Forged) {}

/// A `Value<u32>` decoded from what the parent wrote: a `Value<u64>`.
fn take_value_u32(_: ValueOfAnotherSize) {}

multiproc::entry!(take_lock, take_value_u32);

// ------------------------------------------------------------ resources

#[test]
fn a_thousand_create_pass_drop_cycles_leave_the_handle_count_as_it_was() {
    let _serial = SERIAL.write().unwrap_or_else(|e| e.into_inner());
    let batch = || {
        (0..100)
            .map(|_| {
                (
                    Lock::new().unwrap(),
                    RLock::new().unwrap(),
                    Semaphore::new(1).unwrap(),
                    Event::new().unwrap(),
                    Condition::new().unwrap(),
                    Value::new(7u64).unwrap(),
                    Barrier::new(2).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Warm up what a first spawn sets up once.
    Process::<()>::spawn(take_all, batch())
        .unwrap()
        .join_timeout(LONG)
        .unwrap()
        .unwrap();
    let before = multiproc::test_hooks::open_handle_count().unwrap();
    for _ in 0..10 {
        let mut p = Process::<()>::spawn(take_all, batch()).unwrap();
        p.join_timeout(LONG).unwrap().expect("child done");
    }
    assert_eq!(multiproc::test_hooks::open_handle_count().unwrap(), before);
}

// ------------------------------------------------------------ bad input

/// What the parent writes where the child reads a `Lock`: a tag (the
/// variant index of the wire form's tag), handles, a word — the layout of
/// a real lock's wire form, with anything in it.
enum Forged {
    Raw(u32, Vec<PassedHandle>),
    Other(Semaphore),
}

impl Serialize for Forged {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Forged::Raw(tag, handles) => (tag, handles, 0u64).serialize(s),
            Forged::Other(sem) => sem.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Forged {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lock::deserialize(d)?;
        unreachable!("the parent only sends forgeries")
    }
}

/// A handle that is no synchronization object: a pipe end.
fn pipe_end() -> PassedHandle {
    let (r, _w) = std::io::pipe().unwrap();
    PassedHandle::new(r.into())
}

/// How many handles a lock's wire form has here.
const LOCK_HANDLES: usize = if cfg!(windows) { 2 } else { 1 };

fn refused(forged: Forged) -> String {
    let mut p = Process::<()>::spawn(take_lock, forged).unwrap();
    let e = p.join_timeout(LONG).unwrap_err();
    assert!(e.is_bootstrap_failure(), "{e}");
    e.to_string()
}

#[test]
fn forged_locks_are_refused_at_decode() {
    let _s = shared();
    // A pipe where the lock's objects should be.
    let e = refused(Forged::Raw(
        0,
        (0..LOCK_HANDLES).map(|_| pipe_end()).collect(),
    ));
    assert!(e.contains("synchronization object refused"), "{e}");
    // Too few handles: refused before any is taken.
    let e = refused(Forged::Raw(0, vec![]));
    assert!(e.contains("0 handles where"), "{e}");
    // Another primitive, with its own tag.
    let e = refused(Forged::Other(Semaphore::new(1).unwrap()));
    assert!(e.contains("Semaphore arrived where a Lock"), "{e}");
    // An unknown tag.
    let e = refused(Forged::Raw(99, vec![pipe_end()]));
    assert!(!e.is_empty());
}

#[test]
fn the_fuzz_seeds_decode_to_errors_outside_a_worker() {
    // Reading the seeds opens fds (the directory, each file): not while
    // the handle-count test counts.
    let _s = shared();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/sync");
    let mut n = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(f.unwrap().path()).unwrap();
        // Well-formed up to the handles, which only a worker can take.
        assert_eq!(multiproc::fuzzing::sync_wire(&data), 0);
        for cut in 0..data.len() {
            assert_eq!(multiproc::fuzzing::sync_wire(&data[..cut]), 0);
        }
        n += 1;
    }
    assert!(n >= 4);
}

/// Written as a `Value<u64>`, read as a `Value<u32>`.
struct ValueOfAnotherSize(Value<u64>);

impl Serialize for ValueOfAnotherSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ValueOfAnotherSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::<u32>::deserialize(d)?;
        unreachable!("the parent only sends a Value<u64>")
    }
}

#[test]
fn a_value_of_another_size_is_refused_at_decode() {
    let _s = shared();
    let forged = ValueOfAnotherSize(Value::new(7u64).unwrap());
    let mut p = Process::<()>::spawn(take_value_u32, &forged).unwrap();
    let e = p.join_timeout(LONG).unwrap_err();
    assert!(e.is_bootstrap_failure(), "{e}");
    assert!(
        e.to_string()
            .contains("a Value of 8 bytes arrived where its type has 4"),
        "{e}"
    );
    // Still ours, untouched.
    assert_eq!(forged.0.get().unwrap(), 7);
}
