//! Free loopback ports.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;

use crate::error::{IoContext, Result};

/// Where ports are picked: above the ports Kubernetes components listen on
/// by default (the local cluster's kubelet, kube-proxy and scheduler run
/// beside the control plane: 10248-10259), below the node-port range
/// (30000-32767, which kube-proxy redirects) and Linux's default ephemeral
/// range (32768-60999).
const PICK: Range<u16> = 20000..30000;
/// Random tries before falling back to a port the kernel picks.
const TRIES: usize = 200;

/// `N` distinct loopback TCP ports that were free a moment ago, picked at
/// random from [`PICK`], below the kernel's ephemeral range: outgoing
/// connections take their local ports from that range, so none of them can
/// grab one of these between now and the moment our child binds it (one
/// did, when these came from the kernel's own choice). All `N` are held until the last is found,
/// so they differ from each other. A port another process binds meanwhile
/// is still possible; the control plane then starts again on fresh ports.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let range = below_ephemeral();
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let tries = if range.is_empty() { 0 } else { TRIES };
        let listener = (0..tries)
            .find_map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, random_in(&range))).ok());
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .context(|| "binding a free loopback port".into())?,
        };
        *port = listener
            .local_addr()
            .context(|| "reading the bound port".into())?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// [`PICK`], cut short where the ephemeral range starts lower; empty if
/// it starts below [`PICK`] altogether.
fn below_ephemeral() -> Range<u16> {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range_start(&text))
        .unwrap_or(PICK.end);
    PICK.start..start.clamp(PICK.start, PICK.end)
}

fn parse_range_start(text: &str) -> Option<u16> {
    text.split_whitespace().next()?.parse().ok()
}

fn random_in(range: &Range<u16>) -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    let span = u64::from(range.end - range.start);
    range.start + (hasher.finish() % span) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_distinct_ports_below_the_ephemeral_range() {
        let ports: [u16; 8] = free_ports().unwrap();
        let mut unique = ports.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        let range = below_ephemeral();
        for port in ports {
            assert!(range.contains(&port), "{port} not in {range:?}");
        }
    }

    #[test]
    fn the_range_ends_where_the_ephemeral_one_starts() {
        assert_eq!(parse_range_start("32768\t60999\n"), Some(32768));
        assert_eq!(parse_range_start(""), None);
        let range = below_ephemeral();
        assert!(range.start < range.end, "{range:?}");
        assert!(range.end <= 30000, "clear of the node ports");
        let picks: Vec<u16> = (0..100).map(|_| random_in(&range)).collect();
        assert!(picks.iter().all(|p| range.contains(p)));
        assert!(picks.iter().any(|&p| p != picks[0]), "not random");
    }
}
