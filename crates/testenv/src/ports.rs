//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};

use crate::error::{IoContext, Result};

/// `N` distinct loopback TCP ports that were free a moment ago. All `N` are
/// held until the last is found, so they differ from each other. Another
/// process can still take one before our child binds it (an outgoing
/// connection's ephemeral port, rarely); the control plane then starts
/// again on fresh ports.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context(|| "binding a free loopback port".into())?;
        *port = listener
            .local_addr()
            .context(|| "reading the bound port".into())?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    #[test]
    fn gives_distinct_bindable_ports() {
        let ports: [u16; 8] = super::free_ports().unwrap();
        let mut unique = ports.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
