//! The broadcast row: a child sums a 1 GiB `Frozen<u64>`, vs the parent;
//! which pages the block got, and why the child is slower.

use std::time::Instant;

use multiproc::{Pages, Process};

use crate::cpython::cpython_json;
use crate::table::Figures;
use crate::{interleaved, Sizes};

/// The broadcast row's child: sums the frozen block it maps.
fn sum_block(block: multiproc::Frozen<u64>) -> u64 {
    sum_u64(&block)
}

fn sum_u64(v: &[u64]) -> u64 {
    v.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// What one pass of a thread costs: CPU time (ns) and minor page faults.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Cost {
    cpu_ns: u64,
    faults: u64,
}

impl Cost {
    /// This thread's totals so far (Linux: /proc/thread-self/schedstat and
    /// stat; zero elsewhere).
    fn now() -> Cost {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/{f}"));
        let cpu_ns = read("schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        // minflt is the 10th field; the 2nd (comm) may hold spaces.
        let faults = read("stat")
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(7)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        Cost { cpu_ns, faults }
    }

    fn since(self, start: Cost) -> Cost {
        Cost {
            cpu_ns: self.cpu_ns.saturating_sub(start.cpu_ns),
            faults: self.faults.saturating_sub(start.faults),
        }
    }

    fn ms(self) -> f64 {
        self.cpu_ns as f64 / 1e6
    }
}

/// The broadcast row's cause, measured in one more (untimed) child: the
/// first pass over the block (its pages mapped as it goes), a second pass
/// (mapped), and dropping it (unmapping); each pass's sum.
fn sum_block_costs(block: multiproc::Frozen<u64>) -> ([Cost; 3], u64, u64) {
    let t0 = Cost::now();
    let first = std::hint::black_box(sum_u64(&block));
    let t1 = Cost::now();
    let second = std::hint::black_box(sum_u64(&block));
    let t2 = Cost::now();
    drop(block);
    let t3 = Cost::now();
    ([t1.since(t0), t2.since(t1), t3.since(t2)], first, second)
}

multiproc::entry!(sum_block, sum_block_costs);

/// The broadcast row: a child spawned with a 1 GiB frozen block sums it
/// (spawn to join) vs the parent summing its own mapping, GiB/s from the
/// mean of `big_rounds` interleaved runs. Under the table: which pages the
/// block got (Linux) and what making it cost (`SharedMut` + fill); where
/// they were huge pages, the same measured with `Pages::Small` in the same
/// run; where they were not, why; the cause line; CPython's figure.
pub(crate) fn broadcast(
    sz: &Sizes,
    no_cpython: bool,
    info: &mut Vec<String>,
) -> Result<Figures, String> {
    let huge = broadcast_rounds(sz, Pages::Huge, Some(&mut *info))?;
    if cfg!(target_os = "linux") {
        let kind = match (huge.page_kb, huge.thp_kb) {
            (4, 0) => None,
            (4, thp) => Some(format!(
                "{thp} kB of them transparent huge pages (shmem_enabled: {})",
                shmem_thp()
            )),
            _ => Some("hugetlb".to_string()),
        };
        if let Some(kind) = kind {
            let small = broadcast_rounds(sz, Pages::Small, None)?;
            info.push(format!(
                "broadcast: the block got {} kB pages, {kind}; making it (SharedMut + fill) took \
                 {:.0} ms ({:.0} ms CPU); the same row with Pages::Small, same run: made in \
                 {:.0} ms ({:.0} ms CPU), child {:.2} vs parent {:.2} GiB/s, ratio {:.2}x",
                huge.page_kb,
                huge.make_s * 1e3,
                huge.make_cpu.ms(),
                small.make_s * 1e3,
                small.make_cpu.ms(),
                1.0 / small.child,
                1.0 / small.parent,
                small.parent / small.child
            ));
        } else {
            let free = meminfo("HugePages_Free:").unwrap_or(0);
            let total = meminfo("HugePages_Total:").unwrap_or(0);
            info.push(format!(
                "broadcast: the block got {} kB pages (made in {:.0} ms): no huge pages \
                 ({free} of {total} hugetlb 2 MiB pages free, 512 needed; no transparent ones: \
                 a kernel before 6.1, shmem_enabled {}, or too little memory available)",
                huge.page_kb,
                huge.make_s * 1e3,
                shmem_thp(),
            ));
        }
    } else {
        info.push(format!(
            "broadcast: making the block (SharedMut + fill) took {:.0} ms",
            huge.make_s * 1e3
        ));
    }
    let line = if no_cpython {
        "broadcast: cpython n/a (not run: --no-cpython)".to_string()
    } else {
        match cpython_broadcast() {
            Ok((rate, python)) => format!(
                "broadcast: cpython {python} shared_memory + numpy, a spawned Process sums 1 GiB: \
                 {rate:.2} GiB/s (including the child's start)"
            ),
            Err(why) => format!("broadcast: cpython n/a ({why})"),
        }
    };
    info.push(line);
    Ok(Figures {
        ours: 1.0 / huge.child,
        baseline: Some(1.0 / huge.parent),
    })
}

/// One measurement of the broadcast row.
struct Rounds {
    /// Seconds per GiB: the child (spawn to join), the parent.
    child: f64,
    parent: f64,
    /// The page size (kB) of the block's mapping here (Linux; 4
    /// elsewhere), and how much of it (kB) is mapped by transparent huge
    /// pages (after the parent's sums).
    page_kb: u64,
    thp_kb: u64,
    /// Seconds to make the block (`SharedMut::zeroed_with_pages` and the
    /// fill), wall clock and this thread's CPU.
    make_s: f64,
    make_cpu: Cost,
}

/// One measurement of the broadcast row with a new 1 GiB block of
/// `pages`. With `cause`, the cause line (Linux) goes there.
fn broadcast_rounds(
    sz: &Sizes,
    pages: Pages,
    cause: Option<&mut Vec<String>>,
) -> Result<Rounds, String> {
    const GIB: usize = 1 << 30;
    let t = Instant::now();
    let c = Cost::now();
    let mut block = multiproc::SharedMut::<u64>::zeroed_with_pages(GIB / 8, pages)
        .map_err(|e| e.to_string())?;
    for (i, x) in block.iter_mut().enumerate() {
        *x = i as u64;
    }
    let make_s = t.elapsed().as_secs_f64();
    let make_cpu = Cost::now().since(c);
    let block = block.freeze().map_err(|e| e.to_string())?;
    let page_kb = smaps_kb(block.as_ptr() as usize, "KernelPageSize:").unwrap_or(4);
    let expected = sum_u64(&block);
    let mut bad = None;
    let (child, parent) = interleaved(
        sz.big_rounds,
        || match Process::spawn(sum_block, &block).and_then(|mut p| p.join()) {
            Ok(got) if got == expected => {}
            Ok(got) => bad = Some(format!("the child summed {got}, not {expected}")),
            Err(e) => bad = Some(e.to_string()),
        },
        || assert_eq!(std::hint::black_box(sum_u64(&block)), expected),
    );
    if let Some(why) = bad {
        return Err(why);
    }
    let thp_kb = smaps_kb(block.as_ptr() as usize, "ShmemPmdMapped:").unwrap_or(0);
    if let (Some(info), true) = (cause, cfg!(target_os = "linux")) {
        info.push(broadcast_cause(&block, expected, page_kb, thp_kb)?);
    }
    Ok(Rounds {
        child,
        parent,
        page_kb,
        thp_kb,
        make_s,
        make_cpu,
    })
}

/// Linux: the shared-memory transparent huge page setting.
fn shmem_thp() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .ok()
        .and_then(|s| Some(s.split_once('[')?.1.split_once(']')?.0.to_string()))
        .unwrap_or_else(|| "n/a".into())
}

/// Linux: the `field` (kB) of this process's mapping that holds `addr`
/// (/proc/self/smaps: `KernelPageSize:`, `ShmemPmdMapped:`); `None`
/// elsewhere.
fn smaps_kb(addr: usize, field: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_once(' ').and_then(|(r, _)| r.split_once('-'));
        if let Some((lo, hi)) = range {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside && line.starts_with(field) {
            return line.split_whitespace().nth(1)?.parse().ok();
        }
    }
    None
}

/// A field of /proc/meminfo (a count, or kB); `None` where there is none.
fn meminfo(field: &str) -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Linux: why the child is slower than the parent, measured (CPU time, not
/// wall clock, so other load doesn't blur it): the parent's sum of its
/// mapped block against one more child's passes (see `sum_block_costs`),
/// the block's page size (`page_kb`) and, for base pages, the
/// shared-memory transparent huge page setting.
fn broadcast_cause(
    block: &multiproc::Frozen<u64>,
    expected: u64,
    page_kb: u64,
    thp_kb: u64,
) -> Result<String, String> {
    let t0 = Cost::now();
    let sum = std::hint::black_box(sum_u64(block));
    let parent = Cost::now().since(t0);
    if sum != expected {
        return Err(format!("the parent summed {sum}, not {expected}"));
    }
    let ([first, second, unmap], a, b) = Process::spawn(sum_block_costs, block)
        .and_then(|mut p| p.join())
        .map_err(|e| e.to_string())?;
    if (a, b) != (expected, expected) {
        return Err(format!("the child summed {a} and {b}, not {expected}"));
    }
    let pages = block.len() * 8 / (page_kb as usize * 1024);
    let kind = match (page_kb, thp_kb) {
        (4, 0) => format!("shmem THP: {}", shmem_thp()),
        (4, _) => format!("{thp_kb} kB as THP, shmem THP: {}", shmem_thp()),
        _ => "hugetlb".to_string(),
    };
    Ok(format!(
        "broadcast, why (CPU ms per /proc/thread-self/schedstat, one more child): parent sum \
         {:.0}; child: first pass {:.0} with {} page faults mapping {pages} {page_kb}-KiB pages \
         ({kind}), second pass {:.0}, unmap {:.0}; ratio in CPU {:.2}x",
        parent.ms(),
        first.ms(),
        first.faults,
        second.ms(),
        unmap.ms(),
        parent.ms() / (first.ms() + unmap.ms()),
    ))
}

/// `scripts/bench_cpython.py --broadcast`: (GiB/s, python version).
fn cpython_broadcast() -> Result<(f64, String), String> {
    let json = cpython_json("--broadcast")?;
    let rate = json
        .get("broadcast_gib_s")
        .and_then(serde_json::Value::as_f64)
        .ok_or("no broadcast_gib_s in the script's JSON")?;
    let python = json
        .get("python")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    Ok((rate, python.to_string()))
}
