#!/usr/bin/env python3
"""CPython's multiprocessing.Pool baseline for `examples/bench/`.

For each start method this platform supports (spawn, forkserver, fork),
measures `Pool(2).map(square, range(N), chunksize=1)` and
`Pool(2).map(square, range(N), chunksize=1000)` in tasks/s, the best of 3
runs each on one pool per start method (the pool is started and warmed up
before timing, as the Rust side does). Prints one JSON object on stdout:

    {"chunk1": {"spawn": x, ...}, "chunk1000": {...},
     "best_chunk1": x, "best_chunk1000": y,
     "python": "3.x.y", "n_chunk1": N1, "n_chunk1000": N2, "runs": 3}

plus "errors": {method: message} if a start method failed (the others
still count). Progress goes to stderr; the exit code is 1 when no start
method worked. Usage:

    scripts/bench_cpython.py [--quick] [--n-chunk1 N] [--n-chunk1000 N]
    scripts/bench_cpython.py --broadcast
    scripts/bench_cpython.py --lock
    scripts/bench_cpython.py --queue N

--broadcast measures only the broadcast row instead: a 1 GiB
`shared_memory.SharedMemory` filled with numpy (uint64 0..N), summed by a
spawned `Process` that attaches it by name (numpy on the buffer, no
copy), timed from `start()` to the sum arriving; the mean of 3 runs in
GiB/s: {"broadcast_gib_s": x, "python": "3.x.y"}, or {"error": why}
when numpy is not importable (`scripts/setup-bench.sh` installs it).

--lock measures only the lock row's baseline: an uncontended
`multiprocessing.Lock()` acquire + release in one thread, ns per pair,
the best of 3 runs of 1 000 000: {"lock_ns": x, "python": "3.x.y"}.

--queue N measures only the queue row: a child `Process` puts the ints
0..N into a `multiprocessing.Queue` (then a `SimpleQueue`), the parent
gets them; items/s from the first item received to the last, the best of
3 runs each, with the default start method:
{"queue_items_s": x, "simple_queue_items_s": y, "python": "3.x.y"}.

N defaults to 60 000 (chunksize=1) and 5 000 000 (chunksize=1000), or
20 000 and 1 000 000 with --quick: about 30 s and 6 s on a 2-core VM.
`cargo run --release --example bench` passes its own N, the same it uses.
"""

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time

RUNS = 3
METHODS = ("spawn", "forkserver", "fork")


def square(x):
    return x * x


def best_rate(pool, n, chunksize):
    """The best of RUNS timings of pool.map over range(n), in tasks/s."""
    best = 0.0
    for _ in range(RUNS):
        t = time.perf_counter()
        out = pool.map(square, range(n), chunksize=chunksize)
        dt = time.perf_counter() - t
        if len(out) != n or out[-1] != (n - 1) * (n - 1):
            raise RuntimeError("wrong results from pool.map")
        best = max(best, n / dt)
    return best


def sum_shared(name, n, conn):
    """The broadcast child: attaches the block by name and sums it."""
    import numpy as np
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=name)
    try:
        a = np.ndarray((n,), dtype=np.uint64, buffer=shm.buf)
        conn.send(int(a.sum(dtype=np.uint64)))
        del a
    finally:
        shm.close()


def broadcast():
    """The broadcast row's CPython figure (see the module docs)."""
    try:
        import numpy as np
    except ImportError as e:
        return {"error": f"numpy is not importable ({e}); scripts/setup-bench.sh installs it"}
    from multiprocessing import shared_memory

    size = 1 << 30
    n = size // 8
    ctx = mp.get_context("spawn")
    shm = shared_memory.SharedMemory(create=True, size=size)
    try:
        a = np.ndarray((n,), dtype=np.uint64, buffer=shm.buf)
        a[:] = np.arange(n, dtype=np.uint64)
        expected = int(a.sum(dtype=np.uint64))
        del a
        total = 0.0
        for _ in range(RUNS):
            mine, theirs = ctx.Pipe()
            t = time.perf_counter()
            p = ctx.Process(target=sum_shared, args=(shm.name, n, theirs))
            p.start()
            got = mine.recv()
            p.join()
            total += time.perf_counter() - t
            if got != expected:
                raise RuntimeError(f"the child summed {got}, not {expected}")
        return {"broadcast_gib_s": RUNS / total, "python": platform.python_version()}
    finally:
        shm.close()
        shm.unlink()


def lock_ns():
    """The lock row's CPython figure (see the module docs)."""
    n = 1_000_000
    lock = mp.get_context("spawn").Lock()
    acquire, release = lock.acquire, lock.release
    best = float("inf")
    for _ in range(RUNS):
        t = time.perf_counter()
        for _ in range(n):
            acquire()
            release()
        best = min(best, (time.perf_counter() - t) * 1e9 / n)
    return {"lock_ns": best, "python": platform.python_version()}


def put_range(q, n):
    """The queue row's producer."""
    for i in range(n):
        q.put(i)


def queue_rate(make, n):
    """The best of RUNS rates of a child putting range(n) into make()."""
    best = 0.0
    for _ in range(RUNS):
        q = make()
        p = mp.Process(target=put_range, args=(q, n))
        p.start()
        total = q.get()
        t = time.perf_counter()
        for _ in range(n - 1):
            total += q.get()
        dt = time.perf_counter() - t
        p.join()
        if total != n * (n - 1) // 2:
            raise RuntimeError("wrong items from the queue")
        best = max(best, (n - 1) / dt)
    return best


def queues(n):
    """The queue row's CPython figures (see the module docs)."""
    return {
        "queue_items_s": queue_rate(mp.Queue, n),
        "simple_queue_items_s": queue_rate(mp.SimpleQueue, n),
        "python": platform.python_version(),
    }


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--queue":
        json.dump(queues(int(sys.argv[2])), sys.stdout)
        print()
        return 0
    if sys.argv[1:] == ["--lock"]:
        json.dump(lock_ns(), sys.stdout)
        print()
        return 0
    if sys.argv[1:] == ["--broadcast"]:
        json.dump(broadcast(), sys.stdout)
        print()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller N (~15 s)")
    ap.add_argument("--n-chunk1", type=int, help="tasks per chunksize=1 run")
    ap.add_argument("--n-chunk1000", type=int, help="tasks per chunksize=1000 run")
    args = ap.parse_args()
    n1 = args.n_chunk1 or (20_000 if args.quick else 60_000)
    n1000 = args.n_chunk1000 or (1_000_000 if args.quick else 5_000_000)

    supported = mp.get_all_start_methods()
    methods = [m for m in METHODS if m in supported]
    res = {"chunk1": {}, "chunk1000": {}}
    errors = {}
    for m in methods:
        try:
            ctx = mp.get_context(m)
            with ctx.Pool(2) as pool:
                pool.map(square, range(1000), chunksize=1)  # warm up both workers
                res["chunk1"][m] = best_rate(pool, n1, 1)
                res["chunk1000"][m] = best_rate(pool, n1000, 1000)
            print(
                f"cpython {m}: chunksize=1 {res['chunk1'][m]:.0f} tasks/s, "
                f"chunksize=1000 {res['chunk1000'][m]:.0f} tasks/s",
                file=sys.stderr,
            )
        except Exception as e:  # one start method failing doesn't stop the rest
            errors[m] = f"{type(e).__name__}: {e}"
            res["chunk1"].pop(m, None)
            res["chunk1000"].pop(m, None)
    res["best_chunk1"] = max(res["chunk1"].values(), default=None)
    res["best_chunk1000"] = max(res["chunk1000"].values(), default=None)
    res["python"] = platform.python_version()
    res["n_chunk1"] = n1
    res["n_chunk1000"] = n1000
    res["runs"] = RUNS
    if errors:
        res["errors"] = errors
    json.dump(res, sys.stdout)
    print()
    return 0 if res["best_chunk1"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
