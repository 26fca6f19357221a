//! Producers and consumers killed at random: nothing put is lost or
//! duplicated.

use super::*;

// ------------------------------------------------------------ chaos

/// xorshift64*: a reproducible random sequence from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Producer {
    id: u64,
    acked: Shared<AtomicU64>,
    process: Process<()>,
}

/// Producers and consumers killed at random (SIGKILL / TerminateProcess)
/// while they put and get: nothing hangs, no item arrives twice, every
/// item whose `put` returned arrives unless a consumer was killed after
/// `get` handed it the item (the one item its `holding` names), no
/// item a producer never put arrives, and the queue keeps working for the
/// survivors and replacements. 100 kills on Linux; 30 under Wine, where
/// each replacement's start takes a large part of a second.
#[test]
fn producers_and_consumers_killed_at_random_lose_nothing_that_was_put_and_duplicate_nothing() {
    let kills: usize = if cfg!(windows) { 30 } else { 100 };
    let per_producer: u64 = if cfg!(windows) { 2_000 } else { 20_000 };
    // MULTIPROC_CHAOS_SEED=0x… replays a printed seed's choice of victims
    // (the timing of each kill is the machine's).
    let seed = match std::env::var("MULTIPROC_CHAOS_SEED") {
        Ok(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("a hex seed"),
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            (now.unwrap().as_nanos() as u64 ^ u64::from(std::process::id())) | 1
        }
    };
    eprintln!("chaos seed {seed:#x}");
    let mut rng = Rng(seed);

    let mut args: Chaos = (
        Queue::builder().max_bytes(1 << 14).build().unwrap(),
        Queue::builder().max_bytes(64 << 20).build().unwrap(),
        0,
        per_producer,
        Shared::new(AtomicU64::new(0)).unwrap(),
    );
    let mut next_id = 0u64;
    let spawn_producer = |args: &mut Chaos, next_id: &mut u64| {
        let acked = Shared::new(AtomicU64::new(0)).unwrap();
        let id = *next_id;
        *next_id += 1;
        args.2 = id;
        args.4 = acked.clone();
        let process = spawn_tied(produce_acked, &*args).unwrap();
        Producer { id, acked, process }
    };
    // A consumer and the item it has in hand.
    let spawn_consumer = |args: &mut Chaos| {
        let holding = Shared::new(AtomicU64::new(NONE)).unwrap();
        args.4 = holding.clone();
        (spawn_tied(forward, &*args).unwrap(), holding)
    };

    let mut producers: Vec<Producer> = (0..4)
        .map(|_| spawn_producer(&mut args, &mut next_id))
        .collect();
    let mut consumers: Vec<(Process<()>, Shared<AtomicU64>)> =
        (0..4).map(|_| spawn_consumer(&mut args)).collect();
    // The items killed consumers had in hand.
    let mut in_hand: Vec<u64> = Vec::new();
    // id → (items acked, killed)
    let mut done: HashMap<u64, (u64, bool)> = HashMap::new();
    let mut consumer_kills = 0u64;

    for k in 0..kills {
        // Let some work happen before each kill: wait for more items to
        // come through, or for every producer to be done.
        let target = args.1.len().unwrap() + 100;
        let give_up = Instant::now() + LONG;
        while args.1.len().unwrap() < target
            && producers
                .iter()
                .any(|p| p.acked.load(Ordering::Acquire) < per_producer)
        {
            if Instant::now() >= give_up {
                // Where everyone was (a process asleep on a free lock hung
                // this once: see `a_waiter_that_swallows_the_release_wakeup_
                // does_not_strand_the_next` in test_sync/lock.rs).
                let ps: Vec<_> = producers
                    .iter()
                    .map(|p| (p.id, p.process.pid(), p.acked.load(Ordering::Acquire)))
                    .collect();
                let cs: Vec<_> = consumers
                    .iter()
                    .map(|(c, h)| (c.pid(), h.load(Ordering::SeqCst)))
                    .collect();
                panic!(
                    "no progress before kill {k} (seed {seed:#x}): producers (id, pid, acked) \
                     {ps:?}, consumers (pid, holding) {cs:?}, queued {:?}, sleepers {:?}, \
                     forwarded {:?}",
                    args.0.len(),
                    multiproc::test_hooks::queue_sleepers(&args.0),
                    args.1.len()
                );
            }
            std::thread::yield_now();
        }
        let i = (rng.next() % 8) as usize;
        if i < 4 {
            let fresh = spawn_producer(&mut args, &mut next_id);
            let mut victim = std::mem::replace(&mut producers[i], fresh);
            victim.process.kill().unwrap();
            let _ = join_within(&mut victim.process);
            let acked = victim.acked.load(Ordering::Acquire);
            let killed = acked < per_producer;
            done.insert(victim.id, (acked, killed));
        } else {
            let fresh = spawn_consumer(&mut args);
            let (mut victim, holding) = std::mem::replace(&mut consumers[i - 4], fresh);
            victim.kill().unwrap();
            let _ = join_within(&mut victim);
            consumer_kills += 1;
            match holding.load(Ordering::SeqCst) {
                NONE => {}
                x => in_hand.push(x),
            }
        }
    }

    // The survivors finish; then the consumers drain and end.
    for p in &mut producers {
        join_within(&mut p.process).unwrap();
        done.insert(p.id, (p.acked.load(Ordering::Acquire), false));
    }
    let (q, out, ..) = args;
    q.close().unwrap();
    for (c, _) in &mut consumers {
        join_within(c).unwrap();
    }
    assert!(q.try_get().unwrap_err().is_queue_closed());

    let mut seen: HashMap<u64, u32> = HashMap::new();
    loop {
        match out.try_get() {
            Ok(x) => *seen.entry(x).or_default() += 1,
            Err(e) if e.is_empty() => break,
            Err(e) => panic!("{e}"),
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "items received twice: {twice:?}");
    let mut missing = Vec::new();
    for (&id, &(acked, killed)) in &done {
        for i in 0..acked {
            if !seen.contains_key(&(id * STRIDE + i)) {
                missing.push(id * STRIDE + i);
            }
        }
        // A killed producer's next item may or may not have gone in.
        let limit = if killed { acked + 1 } else { acked };
        if !killed {
            assert_eq!(acked, per_producer, "producer {id} finished");
        }
        let beyond: Vec<_> = seen
            .keys()
            .filter(|&&x| x / STRIDE == id && x % STRIDE >= limit)
            .collect();
        assert!(beyond.is_empty(), "producer {id} never put {beyond:?}");
    }
    let strangers: Vec<_> = seen
        .keys()
        .filter(|&&x| !done.contains_key(&(x / STRIDE)))
        .collect();
    assert!(strangers.is_empty(), "items of no producer: {strangers:?}");
    let lost_in_get: Vec<_> = missing.iter().filter(|x| !in_hand.contains(x)).collect();
    assert!(
        lost_in_get.is_empty(),
        "{} acknowledged items lost that no killed consumer had in hand \
         ({consumer_kills} consumers killed, holding {in_hand:?}): {:?}",
        lost_in_get.len(),
        &lost_in_get[..lost_in_get.len().min(20)]
    );
    eprintln!(
        "{} producers ({} killed), {consumer_kills} consumers killed, {} items, \
         {} lost in the hands of killed consumers",
        done.len(),
        done.values().filter(|d| d.1).count(),
        seen.len(),
        missing.len()
    );
}
