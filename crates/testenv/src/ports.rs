//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};

use crate::error::{IoContext, Result};

/// A loopback TCP port that was free a moment ago. The kernel hands out
/// ephemeral ports round-robin, so a port just released is unlikely to be
/// handed to anyone else before our child process binds it.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context(|| "binding a free loopback port".into())?;
    Ok(listener
        .local_addr()
        .context(|| "reading the bound port".into())?
        .port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn gives_distinct_bindable_ports() {
        let a = super::free_port().unwrap();
        let b = super::free_port().unwrap();
        assert_ne!(a, b);
        std::net::TcpListener::bind(("127.0.0.1", a)).unwrap();
    }
}
