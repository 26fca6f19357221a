//! [`Barrier`]: processes wait until all of them have arrived; a party
//! that dies breaks it instead of hanging the others.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{self, ObjectWire, Tag};
use crate::deadline;
use crate::error::{Error, Kind, Result};
use crate::sys::{self, LockStatus};

/// The state words, in the shared block.
const COUNT: usize = 0;
const GENERATION: usize = 1;
const BROKEN: usize = 2;
const PARTIES: usize = 3;
/// The round the last [`Barrier::reset`] ended, and how many resets there
/// were: a waiter of that round that arrived before the reset was reset.
const RESET_ROUND: usize = 4;
const RESETS: usize = 5;
const WORDS: usize = 6;

/// Why it broke, in the `BROKEN` word.
const NOT_BROKEN: u32 = 0;
const ABORTED: u32 = 1;
const TIMED_OUT: u32 = 2;
/// Not kept in the `BROKEN` word (a reset mends the barrier): what a
/// waiter of a round that was reset is told.
const RESET: u32 = 3;
/// `PARTY_DIED + i`: party slot `i`'s holder died.
const PARTY_DIED: u32 = 16;

/// How often a waiter looks for dead parties.
const PROBE: Duration = Duration::from_millis(50);

/// A barrier for a fixed number of parties across processes (Python's
/// `multiprocessing.Barrier`): [`wait`](Barrier::wait) returns once
/// `parties` calls are waiting, in every one of them, and the barrier is
/// ready for the next round.
///
/// **A party that dies.** Each process (thread) that takes part calls
/// [`register`](Barrier::register) once and keeps the returned
/// [`BarrierParty`] while it takes part: registering holds one of the
/// barrier's per-party locks (robust mutexes on Linux, kernel mutexes on
/// Windows), which the OS releases, marked, when the holder dies.
/// Waiters look at those locks every 50 ms; when one was left by a dead
/// holder, the barrier breaks: every waiter, and every later `wait`, gets
/// an error of kind [`BrokenBarrier`](crate::ErrorKind::BrokenBarrier)
/// instead of waiting for good. Dropping a `BarrierParty` (or its thread
/// ending without dropping it) ends the registration; the latter counts
/// as a death.
///
/// **A party that never registered and dies is not noticed**: nothing
/// tells the others it is gone, so they wait for it for good (a
/// [`wait_timeout`](Barrier::wait_timeout) ends that, by breaking the
/// barrier). Have every party that may die register. (macOS detects no
/// dead holder at all, registered or not: see the crate docs' "Sharing
/// state".)
///
/// A timeout ([`wait_timeout`](Barrier::wait_timeout)) and
/// [`abort`](Barrier::abort) break it too, as in Python. A broken barrier
/// stays broken until [`reset`](Barrier::reset).
///
/// ```
/// let b = multiproc::Barrier::new(1)?;
/// let _me = b.register()?;
/// assert_eq!(b.wait()?, 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Barrier {
    lock: sys::SysMutex,
    state: sys::Shm,
    events: [sys::SysEvent; 2],
    slots: Vec<sys::SysMutex>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// A registered party of a [`Barrier`] (see [`Barrier::register`]);
/// dropping it ends the registration. Not `Send`: the registering thread
/// holds the party's lock.
#[must_use = "the registration ends when the party is dropped"]
pub struct BarrierParty<'a> {
    barrier: &'a Barrier,
    slot: usize,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for BarrierParty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierParty")
            .field("slot", &self.slot)
            .finish()
    }
}

impl Drop for BarrierParty<'_> {
    fn drop(&mut self) {
        let _ = self.barrier.slots[self.slot].unlock();
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn broken(why: u32, parties: usize) -> Error {
    Error::new(Kind::BrokenBarrier(match why {
        w if w >= PARTY_DIED + parties as u32 => {
            "a process died holding the barrier's state lock".into()
        }
        ABORTED => "it was aborted".into(),
        TIMED_OUT => "a wait timed out".into(),
        RESET => "it was reset while this party waited".into(),
        w if w >= PARTY_DIED => format!("registered party {} died", w - PARTY_DIED),
        w => format!("reason {w}"),
    }))
}

/// The state lock, held; unlocks on drop.
struct StateGuard<'a>(&'a Barrier);

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.lock.unlock();
    }
}

impl Barrier {
    /// The most parties a barrier can have.
    pub const MAX_PARTIES: usize = 256;

    /// A barrier for `parties` parties (1 to [`Barrier::MAX_PARTIES`]).
    pub fn new(parties: usize) -> Result<Barrier> {
        if !(1..=Self::MAX_PARTIES).contains(&parties) {
            return Err(Error::new(Kind::Usage(format!(
                "a barrier has 1 to {} parties, not {parties}",
                Self::MAX_PARTIES
            ))));
        }
        let err = "cannot create a barrier";
        let mut state = sys::Shm::create(WORDS * std::mem::size_of::<u32>()).map_err(io(err))?;
        state.share();
        let slots = (0..parties)
            .map(|_| sys::SysMutex::new(false))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io(err))?;
        let b = Barrier {
            lock: sys::SysMutex::new(false).map_err(io(err))?,
            state,
            events: [
                sys::SysEvent::new().map_err(io(err))?,
                sys::SysEvent::new().map_err(io(err))?,
            ],
            slots,
        };
        b.words()?[PARTIES].store(parties as u32, Ordering::Relaxed);
        Ok(b)
    }

    fn words(&self) -> Result<&[AtomicU32]> {
        super::state_words(&self.state, WORDS, "cannot use a barrier")
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.slots.len()
    }

    /// Takes the state lock; a process that died holding it breaks the
    /// barrier (the state may be half updated).
    fn state(&self) -> Result<(StateGuard<'_>, &[AtomicU32])> {
        let words = self.words()?;
        let status = self
            .lock
            .lock(None)
            .map_err(io("cannot lock a barrier's state"))?;
        let g = StateGuard(self);
        match status {
            LockStatus::Acquired => {}
            LockStatus::OwnerDied => {
                self.lock.mark_consistent();
                self.break_locked(words, PARTY_DIED + self.slots.len() as u32)?;
            }
            s => {
                return Err(Error::io(
                    "cannot lock a barrier's state",
                    std::io::Error::other(format!("{s:?}")),
                ))
            }
        }
        Ok((g, words))
    }

    /// With the state lock held: breaks it for `why`, waking every waiter.
    fn break_locked(&self, words: &[AtomicU32], why: u32) -> Result<()> {
        if words[BROKEN].load(Ordering::Relaxed) == NOT_BROKEN {
            words[BROKEN].store(why, Ordering::Relaxed);
        }
        for e in &self.events {
            e.set().map_err(io("cannot wake a barrier's waiters"))?;
        }
        Ok(())
    }

    /// A registered party's lock left by a dead holder, if any (made free
    /// again).
    fn dead_party(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .find_map(|(i, slot)| match slot.try_lock() {
                Ok(LockStatus::OwnerDied) => {
                    slot.mark_consistent();
                    let _ = slot.unlock();
                    Some(i)
                }
                Ok(LockStatus::Acquired) => {
                    let _ = slot.unlock();
                    None
                }
                _ => None,
            })
    }

    /// Registers the calling thread as a party (see the type's docs).
    /// [`Usage`](crate::ErrorKind::Usage) if all parties are registered.
    pub fn register(&self) -> Result<BarrierParty<'_>> {
        // A waiter probing a free slot holds it for a moment: look again.
        for _ in 0..3 {
            for (i, slot) in self.slots.iter().enumerate() {
                let status = slot
                    .try_lock()
                    .map_err(io("cannot register with a barrier"))?;
                let party = || BarrierParty {
                    barrier: self,
                    slot: i,
                    _not_send: PhantomData,
                };
                match status {
                    LockStatus::Acquired => return Ok(party()),
                    LockStatus::OwnerDied => {
                        // Its last holder died: that breaks the barrier.
                        slot.mark_consistent();
                        let p = party();
                        let (_g, words) = self.state()?;
                        self.break_locked(words, PARTY_DIED + i as u32)?;
                        return Ok(p);
                    }
                    _ => {}
                }
            }
            std::thread::yield_now();
        }
        Err(Error::new(Kind::Usage(format!(
            "all {} parties of the barrier are registered",
            self.slots.len()
        ))))
    }

    /// Waits until all parties wait; the caller's arrival index (0 for the
    /// first, `parties - 1` for the one that released the others).
    /// [`BrokenBarrier`](crate::ErrorKind::BrokenBarrier) if it is or
    /// gets broken.
    pub fn wait(&self) -> Result<usize> {
        self.wait_until(None)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout` (any `Duration`;
    /// `Duration::MAX`: no limit); a timeout breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_until(super::until(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<usize> {
        let (g, words) = self.state()?;
        let why = words[BROKEN].load(Ordering::Relaxed);
        if why != NOT_BROKEN {
            return Err(broken(why, self.slots.len()));
        }
        let gen = words[GENERATION].load(Ordering::Relaxed);
        let resets = words[RESETS].load(Ordering::Relaxed);
        let index = words[COUNT].fetch_add(1, Ordering::Relaxed) as usize;
        let err = "cannot wait on a barrier";
        if index + 1 >= self.slots.len() {
            // The last one: release this round, arm the next.
            words[COUNT].store(0, Ordering::Relaxed);
            self.events[(gen as usize + 1) % 2]
                .clear()
                .map_err(io(err))?;
            words[GENERATION].store(gen.wrapping_add(1), Ordering::Relaxed);
            self.events[gen as usize % 2].set().map_err(io(err))?;
            return Ok(index);
        }
        drop(g);
        loop {
            let nap = deadline::deadline(PROBE);
            let until = match (deadline, nap) {
                (Some(d), Some(n)) => Some(d.min(n)),
                (d, n) => d.or(n),
            };
            self.events[gen as usize % 2].wait(until).map_err(io(err))?;
            let (_g, words) = self.state()?;
            if words[GENERATION].load(Ordering::Relaxed) != gen {
                // The round is over: released, or reset.
                if words[RESETS].load(Ordering::Relaxed) != resets
                    && words[RESET_ROUND].load(Ordering::Relaxed) == gen
                {
                    return Err(broken(RESET, self.slots.len()));
                }
                return Ok(index);
            }
            let why = words[BROKEN].load(Ordering::Relaxed);
            if why != NOT_BROKEN {
                return Err(broken(why, self.slots.len()));
            }
            let why = if let Some(i) = self.dead_party() {
                PARTY_DIED + i as u32
            } else if deadline::passed(deadline) {
                TIMED_OUT
            } else {
                continue;
            };
            self.break_locked(words, why)?;
            return Err(broken(
                words[BROKEN].load(Ordering::Relaxed),
                self.slots.len(),
            ));
        }
    }

    /// Breaks the barrier: every waiter and every later wait gets
    /// [`BrokenBarrier`](crate::ErrorKind::BrokenBarrier).
    pub fn abort(&self) -> Result<()> {
        let (_g, words) = self.state()?;
        self.break_locked(words, ABORTED)
    }

    /// Makes it as new (Python's `reset`): not broken, nobody waiting.
    /// Whoever waits in the current round gets
    /// [`BrokenBarrier`](crate::ErrorKind::BrokenBarrier) ("reset"); later
    /// waits start a new round. Live registrations stay; registered
    /// parties that died are forgotten (whether or not anyone noticed
    /// yet), their places free for new processes to
    /// [`register`](Barrier::register) in. A waiter that had not yet
    /// noticed an earlier break is told "reset" instead: an error either
    /// way.
    pub fn reset(&self) -> Result<()> {
        let (_g, words) = self.state()?;
        let err = "cannot reset a barrier";
        // Free the places of dead parties now, or the next registration
        // in one would break the barrier again.
        for _ in 0..self.slots.len() {
            if self.dead_party().is_none() {
                break;
            }
        }
        let gen = words[GENERATION].load(Ordering::Relaxed);
        words[RESET_ROUND].store(gen, Ordering::Relaxed);
        let resets = words[RESETS].load(Ordering::Relaxed);
        words[RESETS].store(resets.wrapping_add(1), Ordering::Relaxed);
        words[COUNT].store(0, Ordering::Relaxed);
        words[BROKEN].store(NOT_BROKEN, Ordering::Relaxed);
        // As a release: arm the next round's event, wake this round's.
        self.events[(gen as usize + 1) % 2]
            .clear()
            .map_err(io(err))?;
        words[GENERATION].store(gen.wrapping_add(1), Ordering::Relaxed);
        self.events[gen as usize % 2].set().map_err(io(err))
    }

    /// Whether it is broken.
    pub fn is_broken(&self) -> Result<bool> {
        let (_g, words) = self.state()?;
        Ok(words[BROKEN].load(Ordering::Relaxed) != NOT_BROKEN)
    }

    /// How many wait in the current round.
    pub fn n_waiting(&self) -> Result<usize> {
        let (_g, words) = self.state()?;
        Ok(words[COUNT].load(Ordering::Relaxed) as usize)
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let state = (
            self.state.handle_to_pass().into_iter().collect(),
            self.state.len() as u64,
        );
        let slots = self
            .slots
            .iter()
            .map(|m| wire::ser::<S::Error>(m.parts()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        (
            Tag::Barrier,
            wire::ser::<S::Error>(self.lock.parts())?,
            wire::ser::<S::Error>(state)?,
            wire::ser::<S::Error>(self.events[0].parts())?,
            wire::ser::<S::Error>(self.events[1].parts())?,
            slots,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        type Wire = (
            Tag,
            ObjectWire,
            ObjectWire,
            ObjectWire,
            ObjectWire,
            Vec<ObjectWire>,
        );
        let (tag, lock, state, e0, e1, slots) = Wire::deserialize(d)?;
        wire::check_tag(tag, Tag::Barrier)?;
        let len = WORDS * std::mem::size_of::<u32>();
        if !(1..=Self::MAX_PARTIES).contains(&slots.len()) || state.word != len as u64 {
            return Err(wire::refuse(format!(
                "a barrier with {} parties and a state of {} bytes",
                slots.len(),
                state.word
            )));
        }
        let mutex = |w| {
            wire::de(w, sys::SysMutex::HANDLES, |h, word| {
                sys::SysMutex::from_parts(h, word, false)
            })
        };
        let event = |w| wire::de(w, sys::SysEvent::HANDLES, sys::SysEvent::from_parts);
        let b = Barrier {
            lock: mutex(lock)?,
            state: wire::de(state, 1, |mut h, _| {
                let handle = h.pop().expect("one handle, counted");
                sys::Shm::open(handle, len, sys::ShmAccess::ReadWrite)
            })?,
            events: [event(e0)?, event(e1)?],
            slots: slots
                .into_iter()
                .map(mutex)
                .collect::<std::result::Result<Vec<_>, _>>()?,
        };
        let parties = b.words().map_err(wire::refuse)?[PARTIES].load(Ordering::Relaxed);
        if parties as usize != b.slots.len() {
            return Err(wire::refuse(format!(
                "a barrier of {parties} parties arrived with {} party locks",
                b.slots.len()
            )));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_meet_and_the_barrier_is_reusable() {
        let b = Arc::new(Barrier::new(3).unwrap());
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let _p = b.register().unwrap();
                    (b.wait().unwrap(), b.wait().unwrap())
                })
            })
            .collect();
        let _p = b.register().unwrap();
        let mine = (b.wait().unwrap(), b.wait().unwrap());
        let mut firsts: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap().0).collect();
        firsts.push(mine.0);
        firsts.sort();
        assert_eq!(firsts, [0, 1, 2]);
        assert!(!b.is_broken().unwrap());
    }

    #[test]
    fn a_timeout_and_an_abort_break_it() {
        let b = Barrier::new(2).unwrap();
        let e = b.wait_timeout(Duration::from_millis(1)).unwrap_err();
        assert!(e.is_broken_barrier(), "{e}");
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(b.wait().unwrap_err().is_broken_barrier());
        let b = Barrier::new(2).unwrap();
        b.abort().unwrap();
        assert!(b.is_broken().unwrap());
        let e = b.wait().unwrap_err();
        assert!(e.to_string().contains("aborted"), "{e}");
        assert!(Barrier::new(0).unwrap_err().is_usage());
    }

    #[test]
    fn a_reset_mends_it_and_fails_the_waiters_of_the_round() {
        let b = Arc::new(Barrier::new(2).unwrap());
        b.abort().unwrap();
        b.reset().unwrap();
        assert!(!b.is_broken().unwrap());
        assert_eq!(b.n_waiting().unwrap(), 0);
        // A waiter of the current round is told.
        let b2 = Arc::clone(&b);
        let t = std::thread::spawn(move || {
            let _p = b2.register().unwrap();
            b2.wait().unwrap_err()
        });
        let start = Instant::now();
        while b.n_waiting().unwrap() == 0 {
            assert!(start.elapsed() < Duration::from_secs(30), "never waited");
            std::thread::yield_now();
        }
        b.reset().unwrap();
        let e = t.join().unwrap();
        assert!(e.is_broken_barrier(), "{e}");
        assert!(e.to_string().contains("reset"), "{e}");
        assert!(!b.is_broken().unwrap());
        // And the next round works.
        let b2 = Arc::clone(&b);
        let t = std::thread::spawn(move || {
            let _p = b2.register().unwrap();
            b2.wait().unwrap()
        });
        let _p = b.register().unwrap();
        let mut got = [b.wait().unwrap(), t.join().unwrap()];
        got.sort();
        assert_eq!(got, [0, 1]);
    }

    #[test]
    fn a_reset_forgets_a_dead_party_nobody_had_noticed() {
        let b = Arc::new(Barrier::new(2).unwrap());
        let b2 = Arc::clone(&b);
        // Registered by a thread that ends without dropping its party: a
        // death (the OS marks the party's lock as left by a dead holder).
        std::thread::spawn(move || std::mem::forget(b2.register().unwrap()))
            .join()
            .unwrap();
        assert!(!b.is_broken().unwrap(), "nobody waited: nobody noticed");
        b.reset().unwrap();
        // Its place is free and clean: registering there breaks nothing.
        let _a = b.register().unwrap();
        let b2 = Arc::clone(&b);
        let t = std::thread::spawn(move || {
            let _p = b2.register().unwrap();
            b2.wait().unwrap()
        });
        let mut got = [b.wait().unwrap(), t.join().unwrap()];
        got.sort();
        assert_eq!(got, [0, 1]);
        assert!(!b.is_broken().unwrap());
    }

    #[test]
    fn the_fuzz_seed_is_well_formed_up_to_the_handles_and_a_wrong_size_is_refused() {
        let seed = include_bytes!("../../fuzz/seeds/sync/barrier");
        let e = crate::encode::from_bytes::<Barrier>(seed).unwrap_err();
        let why = e.why.unwrap();
        assert!(
            why.contains("cannot take") || why.contains("handles where"),
            "{why}"
        );
        // The state of the barrier before `reset`: refused by its size.
        let mut old = seed.to_vec();
        old[6] = 0x10;
        let e = crate::encode::from_bytes::<Barrier>(&old).unwrap_err();
        assert!(e.why.unwrap().contains("a state of 16 bytes"));
    }

    #[test]
    fn more_registrations_than_parties_are_refused() {
        let b = Barrier::new(1).unwrap();
        let p = b.register().unwrap();
        assert!(b.register().unwrap_err().is_usage());
        drop(p);
        drop(b.register().unwrap());
    }
}
