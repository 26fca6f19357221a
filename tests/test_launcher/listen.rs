//! Where the pool listens for its workers.

use super::*;

// ------------------------------------------------------------ where the pool listens

/// A launcher command that appends the address its worker is given
/// (`MULTIPROC_CONNECT`) as a line to the file `log`, then runs the worker.
#[cfg(unix)]
fn recording_launcher(log: &str) -> Launcher {
    Launcher::command([
        "sh",
        "-c",
        "printf '%s\\n' \"$MULTIPROC_CONNECT\" >> \"$1\"; exec \"$0\"",
        "{exe}",
        log,
    ])
}

/// Runs `scenario_listening_pool` with `launcher` (see there) and
/// `MULTIPROC_LISTEN_ADDR` set to `listen_addr` (`None`: unset); the
/// addresses its two workers were given.
#[cfg(unix)]
fn addresses_given(launcher: &str, listen_addr: Option<&str>) -> Vec<std::net::SocketAddr> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let log = std::env::temp_dir().join(format!(
        "multiproc-listen-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&log);
    let out = scenario("listen::scenario_listening_pool", |cmd| {
        cmd.env("LISTEN_TEST_LOG", &log)
            .env("LISTEN_TEST_LAUNCHER", launcher);
        match listen_addr {
            Some(a) => cmd.env("MULTIPROC_LISTEN_ADDR", a),
            None => cmd.env_remove("MULTIPROC_LISTEN_ADDR"),
        };
    });
    assert!(out.status.success(), "{}", out.status);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REPORT mapped"),
        "the scenario ran"
    );
    let text = std::fs::read_to_string(&log).expect("the launcher wrote its addresses");
    std::fs::remove_file(&log).unwrap();
    let given: Vec<std::net::SocketAddr> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(given.len(), 2, "one line per worker: {text:?}");
    assert_eq!(given[0], given[1], "one listener for the pool");
    assert_ne!(given[0].port(), 0);
    given
}

#[cfg(unix)]
#[test]
#[ignore = "a scenario, run by the tests of where a pool listens"]
fn scenario_listening_pool() {
    if !in_scenario("listen::scenario_listening_pool") {
        return;
    }
    println!();
    let log = std::env::var("LISTEN_TEST_LOG").unwrap();
    let launcher = match std::env::var("LISTEN_TEST_LAUNCHER").unwrap().as_str() {
        "host" => recording_launcher(&log).listen_on_host(),
        "default" => recording_launcher(&log),
        "given" => recording_launcher(&log).listen((std::net::Ipv4Addr::new(127, 0, 0, 3), 0)),
        other => panic!("no launcher {other}"),
    };
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(launcher)
        .build()
        .unwrap();
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    drop(p);
    println!("REPORT mapped");
}

#[cfg(unix)]
#[test]
fn a_host_address_pool_listens_where_this_hosts_name_resolves_and_maps_exactly() {
    // Network tests stay on loopback: where this host's name resolves to
    // another address, the variable gives a loopback one instead.
    let (want, listen_addr) = match common::loopback_host_address() {
        Some(ip) => (ip, None),
        None => ([127, 0, 0, 1].into(), Some("127.0.0.1")),
    };
    let given = addresses_given("host", listen_addr);
    assert_eq!(given[0].ip(), want);
}

// Any 127.x address is this machine's on Linux (`lo` is 127.0.0.0/8).
#[cfg(target_os = "linux")]
#[test]
fn the_listen_address_variable_moves_a_host_address_pool() {
    let given = addresses_given("host", Some("127.0.0.2"));
    assert_eq!(given[0].ip(), std::net::Ipv4Addr::new(127, 0, 0, 2));
}

#[cfg(target_os = "linux")]
#[test]
fn the_listen_address_variable_leaves_a_default_or_given_address_alone() {
    let given = addresses_given("default", Some("127.0.0.2"));
    assert_eq!(given[0].ip(), std::net::Ipv4Addr::new(127, 0, 0, 1));
    let given = addresses_given("given", Some("127.0.0.2"));
    assert_eq!(given[0].ip(), std::net::Ipv4Addr::new(127, 0, 0, 3));
}

#[test]
fn a_bad_listen_address_variable_fails_the_build_of_a_host_address_pool_naming_it() {
    let out = scenario("listen::scenario_bad_listen_address", |cmd| {
        cmd.env("MULTIPROC_LISTEN_ADDR", "0.0.0.0");
    });
    assert!(out.status.success(), "{}", out.status);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REPORT refused 3, loopback pool mapped"),
        "the scenario ran"
    );
}

#[test]
#[ignore = "a scenario, run by a_bad_listen_address_variable_fails_the_build_of_a_host_address_pool_naming_it"]
fn scenario_bad_listen_address() {
    if !in_scenario("listen::scenario_bad_listen_address") {
        return;
    }
    println!();
    // `Launcher::slurm()` (both forms) listens on this host's address, so
    // the variable is read, and refused, before any srun runs.
    let host_pools = [
        Launcher::slurm(),
        Launcher::slurm().all_at_once(),
        Launcher::command(["{exe}"]).listen_on_host(),
    ];
    let mut refused = 0;
    for launcher in host_pools {
        let e = PoolBuilder::new()
            .workers(1)
            .launcher(launcher)
            .build()
            .unwrap_err();
        assert!(e.is_usage(), "{e}");
        assert!(
            e.to_string()
                .contains("MULTIPROC_LISTEN_ADDR is `0.0.0.0`, not an address of one interface"),
            "{e}"
        );
        refused += 1;
    }
    // A `Launcher::command` pool listens on loopback and reads no variable.
    let p = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command(["{exe}"]))
        .build()
        .unwrap();
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    println!("REPORT refused {refused}, loopback pool mapped");
}

#[cfg(unix)]
#[test]
fn a_worker_that_cannot_reach_a_loopback_address_says_why() {
    // As a worker on another host would be told the address of a pool
    // whose host name resolves to a loopback address: nothing listens on
    // port 1 here.
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "sh",
            "-c",
            "export MULTIPROC_CONNECT=127.0.0.1:1; exec \"$0\"",
            "{exe}",
        ]))
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "on host {}: cannot connect back to 127.0.0.1:1: ",
            host_name()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(
            "(127.0.0.1 is a loopback address, which a worker on another host than the pool's \
             can't reach: the pool must listen on an address of its host that this one reaches \
             — Launcher::listen_on_host, with MULTIPROC_LISTEN_ADDR where that host's name \
             resolves to a loopback address, or Launcher::listen)"
        ),
        "{msg}"
    );
}
