//! Where a pool listens for workers that may run on other hosts
//! ([`Launcher::slurm`](super::Launcher::slurm),
//! [`Launcher::listen_on_host`](super::Launcher::listen_on_host), and SPMD
//! rank 0): the address in `MULTIPROC_LISTEN_ADDR` when it is set, else
//! the address this host's name resolves to; port 0 (any free one) unless
//! the variable names one. One mechanism for both kinds of pool, so one
//! variable moves both.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Kind, Result};
use crate::net::Address;
use crate::sys;

/// Where pools listen for workers on other hosts, instead of the address
/// this host's name resolves to.
pub(super) const LISTEN_ENV: &str = "MULTIPROC_LISTEN_ADDR";

/// The address to listen on for workers on other hosts: `MULTIPROC_LISTEN_ADDR`,
/// else this host's name's (see [`pick`]).
pub(super) fn host_address() -> Result<Address> {
    let over = std::env::var(LISTEN_ENV).ok();
    pick(over.as_deref(), &sys::hostname(), sys::resolve_host)
}

fn usage(why: String) -> Error {
    Error::new(Kind::Usage(why))
}

/// The address to listen on: `over` (the variable's value: an IP address,
/// `IP:port`, `[IPv6]:port`, a host name or `host:port`) when it is set
/// and not blank, else the address `host` (this host's name) resolves to,
/// through `resolve` (the system resolver, or a table in tests). A name
/// that resolves to several addresses gives the first one that other
/// hosts can reach ([`choose`]).
fn pick(
    over: Option<&str>,
    host: &str,
    resolve: impl Fn(&str) -> io::Result<Vec<IpAddr>>,
) -> Result<Address> {
    let Some(s) = over.map(str::trim).filter(|s| !s.is_empty()) else {
        let ip = match resolve(host) {
            Ok(ips) => choose(&ips).ok_or_else(|| "resolves to no address".to_string()),
            Err(e) => Err(format!("does not resolve ({e})")),
        };
        return ip.map(|ip| Address::Tcp((ip, 0).into())).map_err(|why| {
            usage(format!(
                "this host's name, `{host}`, {why}, so the pool has no address of this host \
                 to listen on for workers on other hosts: set {LISTEN_ENV} to an address of \
                 this host that they reach (an IP address, IP:port or host:port)"
            ))
        });
    };
    let bad = |why: &str| {
        usage(format!(
            "{LISTEN_ENV} is `{s}`, {why} (it takes an address of this host that workers on \
             other hosts reach: an IP address, IP:port, a host name or host:port)"
        ))
    };
    let a: SocketAddr = if let Ok(ip) = s.parse::<IpAddr>() {
        (ip, 0).into()
    } else if let Ok(a) = s.parse::<SocketAddr>() {
        a
    } else {
        // A host name, with a port or without.
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(bad("not an address"));
        }
        let (name, port) = match s.split_once(':') {
            None => (s, 0),
            Some((name, port)) => match port.parse::<u16>() {
                Ok(port) => (name, port),
                Err(_) => return Err(bad("not an address: its port is not one")),
            },
        };
        if name.is_empty() {
            return Err(bad("not an address: it has no host"));
        }
        let ips = resolve(name).map_err(|e| bad(&format!("a name that does not resolve ({e})")))?;
        let ip = choose(&ips).ok_or_else(|| bad("a name that resolves to no address"))?;
        (ip, port).into()
    };
    if a.ip().is_unspecified() || a.ip().is_multicast() {
        return Err(bad(
            "not an address of one interface, which the workers are given to connect to",
        ));
    }
    Ok(Address::Tcp(a))
}

/// Of the addresses a host name resolves to (in the resolver's order),
/// the first that other hosts can reach — not loopback, not link-local
/// (an IPv6 one needs a scope the other hosts don't share) — else the
/// first at all (a name that only resolves to a loopback address, as on a
/// machine that has no other, or Debian's `127.0.1.1` convention: enough
/// for workers on this host). `None` when there is none (the wildcard
/// and multicast addresses are none).
fn choose(ips: &[IpAddr]) -> Option<IpAddr> {
    let usable = |ip: &&IpAddr| !ip.is_unspecified() && !ip.is_multicast();
    let link_local = |ip: &IpAddr| match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => ip.is_unicast_link_local(),
    };
    ips.iter()
        .filter(usable)
        .find(|ip| !ip.is_loopback() && !link_local(ip))
        .or_else(|| ips.iter().find(usable))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that knows `table` (name, its addresses) and nothing else.
    fn table<'a>(
        table: &'a [(&'a str, &'a [&'a str])],
    ) -> impl Fn(&str) -> io::Result<Vec<IpAddr>> + 'a {
        move |name| match table.iter().find(|(n, _)| *n == name) {
            Some((_, ips)) => Ok(ips.iter().map(|ip| ip.parse().unwrap()).collect()),
            None => Err(io::Error::other("Name or service not known")),
        }
    }

    fn tcp(s: &str) -> Address {
        Address::Tcp(s.parse().unwrap())
    }

    #[test]
    fn the_host_names_first_address_other_hosts_reach_is_chosen() {
        let hosts: &[(&str, &[&str])] = &[
            ("alone", &["127.0.0.1"]),
            ("debian", &["127.0.1.1"]),
            ("node1", &["127.0.1.1", "10.1.0.5", "10.2.0.5"]),
            (
                "node2",
                &["::1", "fe80::1", "169.254.3.4", "2001:db8::5", "10.1.0.6"],
            ),
            ("odd", &["0.0.0.0", "224.0.0.1", "::1"]),
        ];
        let at = |host| pick(None, host, table(hosts)).unwrap();
        // Only loopback: it is the address (workers on this host reach it).
        assert_eq!(at("alone"), tcp("127.0.0.1:0"));
        assert_eq!(at("debian"), tcp("127.0.1.1:0"));
        // Past loopback and link-local addresses, in the resolver's order.
        assert_eq!(at("node1"), tcp("10.1.0.5:0"));
        assert_eq!(at("node2"), tcp("[2001:db8::5]:0"));
        // The wildcard and multicast addresses are no address to listen on.
        assert_eq!(at("odd"), tcp("[::1]:0"));
    }

    #[test]
    fn a_host_name_that_does_not_resolve_is_an_error_naming_it_and_the_variable() {
        let hosts: &[(&str, &[&str])] = &[("empty", &[]), ("wild", &["0.0.0.0"])];
        for host in ["nowhere", "empty", "wild"] {
            let e = pick(None, host, table(hosts)).unwrap_err();
            assert!(e.is_usage(), "{e}");
            let text = e.to_string();
            assert!(text.contains(&format!("`{host}`")), "{text}");
            assert!(text.contains("set MULTIPROC_LISTEN_ADDR"), "{text}");
        }
        let e = pick(None, "nowhere", table(hosts)).unwrap_err().to_string();
        assert!(
            e.contains("`nowhere`, does not resolve (Name or service not known)"),
            "{e}"
        );
        let e = pick(None, "empty", table(hosts)).unwrap_err().to_string();
        assert!(e.contains("`empty`, resolves to no address"), "{e}");
    }

    #[test]
    fn the_variable_takes_an_ip_a_socket_address_or_a_host_name() {
        let hosts: &[(&str, &[&str])] = &[("node1-ib", &["127.0.1.1", "10.9.0.5"])];
        // The host name is not looked up when the variable is set.
        let at = |v| pick(Some(v), "nowhere", table(hosts)).unwrap();
        assert_eq!(at("127.0.0.2"), tcp("127.0.0.2:0"));
        assert_eq!(at(" 10.1.0.5\n"), tcp("10.1.0.5:0"));
        assert_eq!(at("10.1.0.5:7000"), tcp("10.1.0.5:7000"));
        assert_eq!(at("::1"), tcp("[::1]:0"));
        assert_eq!(at("[2001:db8::5]:7000"), tcp("[2001:db8::5]:7000"));
        assert_eq!(at("node1-ib"), tcp("10.9.0.5:0"));
        assert_eq!(at("node1-ib:7000"), tcp("10.9.0.5:7000"));
        // Blank is unset: the host name's address.
        let alone: &[(&str, &[&str])] = &[("alone", &["127.0.0.1"])];
        assert_eq!(
            pick(Some("  "), "alone", table(alone)).unwrap(),
            tcp("127.0.0.1:0")
        );
    }

    #[test]
    fn a_bad_variable_is_an_error_naming_it_and_its_value() {
        let hosts: &[(&str, &[&str])] = &[("multi", &["224.0.0.1"])];
        for v in [
            "0.0.0.0",
            "0.0.0.0:7000",
            "[::]:7000",
            "224.0.0.1",
            "unix:/tmp/pool.sock",
            r"\\.\pipe\pool",
            "10.1.0.5:99999",
            "10.1.0.5:",
            ":7000",
            "node1 node2",
            "nowhere",
            "nowhere:7000",
            "multi",
        ] {
            let e = pick(Some(v), "alone", table(hosts)).unwrap_err();
            assert!(e.is_usage(), "{v}: {e}");
            assert!(
                e.to_string()
                    .contains(&format!("MULTIPROC_LISTEN_ADDR is `{v}`, ")),
                "{v}: {e}"
            );
        }
        let e = pick(Some("nowhere"), "alone", table(hosts)).unwrap_err();
        assert!(
            e.to_string()
                .contains("a name that does not resolve (Name or service not known)"),
            "{e}"
        );
    }
}
