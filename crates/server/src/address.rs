//! The address put in PASV replies, and how it is chosen for each client.
//!
//! Sources, in order: the watched address file (written by the operator from
//! the load balancer's status), then the static setting. Clients inside
//! `internal-cidrs` always get the control connection's local address. With
//! no address known, the `when-address-unknown` policy decides. DNS names are
//! resolved at PASV time (cached briefly), never just once at startup.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use tokio::sync::watch;

use crate::config::UnknownAddress;

/// How long a resolved DNS name is reused.
const DNS_CACHE_TTL: Duration = Duration::from_secs(5);

/// An advertised address: an IPv4 address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertised {
    Ip(Ipv4Addr),
    Host(String),
}

impl FromStr for Advertised {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Advertised::Ip(ip));
        }
        if s.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "{s}: PASV can only advertise IPv4 addresses (IPv6 clients use EPSV, which needs none)"
            ));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let host = s.strip_suffix('.').unwrap_or(s);
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(format!("{s:?} is neither an IPv4 address nor a DNS name"));
        }
        Ok(Advertised::Host(host.to_ascii_lowercase()))
    }
}

impl fmt::Display for Advertised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Advertised::Ip(ip) => ip.fmt(f),
            Advertised::Host(h) => h.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for Advertised {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Parses the address file: empty or missing means "not known yet".
pub fn parse_address_file(content: Option<&[u8]>) -> Result<Option<Advertised>, String> {
    let text = std::str::from_utf8(content.unwrap_or_default())
        .map_err(|_| "address file is not UTF-8".to_string())?;
    match text.trim() {
        "" => Ok(None),
        t => t.parse().map(Some),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasvAddressError {
    #[error("the passive address is not known yet; try EPSV or retry shortly")]
    NotKnown,
    #[error("cannot resolve the passive address {0}")]
    Unresolvable(String),
    #[error("this connection has no IPv4 address to advertise; use EPSV")]
    NoIpv4,
}

pub struct AddressBook {
    fixed: Option<Advertised>,
    file: Option<watch::Receiver<Option<Advertised>>>,
    internal: Vec<IpNet>,
    when_unknown: UnknownAddress,
    dns_cache: Mutex<HashMap<String, (Instant, Ipv4Addr)>>,
}

impl AddressBook {
    pub fn new(
        fixed: Option<Advertised>,
        file: Option<watch::Receiver<Option<Advertised>>>,
        internal: Vec<IpNet>,
        when_unknown: UnknownAddress,
    ) -> Self {
        AddressBook {
            fixed,
            file,
            internal,
            when_unknown,
            dns_cache: Mutex::default(),
        }
    }

    /// The externally advertised address right now, if any.
    pub fn current(&self) -> Option<Advertised> {
        self.file
            .as_ref()
            .and_then(|rx| rx.borrow().clone())
            .or_else(|| self.fixed.clone())
    }

    /// The IPv4 address to put in a PASV reply for a client at `peer` whose
    /// control connection arrived on `local`.
    pub async fn for_client(
        &self,
        peer: IpAddr,
        local: IpAddr,
    ) -> Result<Ipv4Addr, PasvAddressError> {
        let peer = peer.to_canonical();
        let local_v4 = || match local.to_canonical() {
            IpAddr::V4(v4) => Ok(v4),
            IpAddr::V6(_) => Err(PasvAddressError::NoIpv4),
        };
        if self.internal.iter().any(|net| net.contains(&peer)) {
            return local_v4();
        }
        match self.current() {
            Some(Advertised::Ip(ip)) => Ok(ip),
            Some(Advertised::Host(name)) => self.resolve(&name).await,
            None => match self.when_unknown {
                UnknownAddress::UseLocal => local_v4(),
                UnknownAddress::Refuse => Err(PasvAddressError::NotKnown),
            },
        }
    }

    async fn resolve(&self, name: &str) -> Result<Ipv4Addr, PasvAddressError> {
        if let Some((at, ip)) = self.dns_cache.lock().unwrap().get(name)
            && at.elapsed() < DNS_CACHE_TTL
        {
            return Ok(*ip);
        }
        let unresolvable = || PasvAddressError::Unresolvable(name.to_string());
        let addrs = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|_| unresolvable())?;
        let ip = addrs
            .filter_map(|a| match a.ip() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .next()
            .ok_or_else(unresolvable)?;
        self.dns_cache
            .lock()
            .unwrap()
            .insert(name.to_string(), (Instant::now(), ip));
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ips_and_names_and_rejects_the_rest() {
        assert_eq!(
            "203.0.113.7".parse(),
            Ok(Advertised::Ip(Ipv4Addr::new(203, 0, 113, 7)))
        );
        assert_eq!(
            " LB.Example.com.\n".parse(),
            Ok(Advertised::Host("lb.example.com".into()))
        );
        assert!(
            "2001:db8::1"
                .parse::<Advertised>()
                .unwrap_err()
                .contains("IPv4")
        );
        assert!("bad_name!".parse::<Advertised>().is_err());
        assert!("-a.com".parse::<Advertised>().is_err());
        assert_eq!(parse_address_file(Some(b"  \n")), Ok(None));
        assert_eq!(parse_address_file(None), Ok(None));
    }

    #[tokio::test]
    async fn file_beats_fixed_and_internal_clients_get_local() {
        let (tx, rx) = watch::channel(None);
        let book = AddressBook::new(
            Some(Advertised::Ip(Ipv4Addr::new(1, 1, 1, 1))),
            Some(rx),
            vec!["10.0.0.0/8".parse().unwrap()],
            UnknownAddress::Refuse,
        );
        let local = ip("10.1.2.3");
        assert_eq!(
            book.for_client(ip("198.51.100.1"), local).await,
            Ok(Ipv4Addr::new(1, 1, 1, 1))
        );
        tx.send_replace(Some(Advertised::Ip(Ipv4Addr::new(2, 2, 2, 2))));
        assert_eq!(
            book.for_client(ip("198.51.100.1"), local).await,
            Ok(Ipv4Addr::new(2, 2, 2, 2))
        );
        assert_eq!(
            book.for_client(ip("10.9.9.9"), local).await,
            Ok(Ipv4Addr::new(10, 1, 2, 3))
        );
        // IPv4-mapped peers (dual-stack listener) are matched as IPv4.
        assert_eq!(
            book.for_client(ip("::ffff:10.9.9.9"), ip("::ffff:10.1.2.3"))
                .await,
            Ok(Ipv4Addr::new(10, 1, 2, 3))
        );
    }

    #[tokio::test]
    async fn unknown_address_policy() {
        let refuse = AddressBook::new(None, None, vec![], UnknownAddress::Refuse);
        assert_eq!(
            refuse.for_client(ip("198.51.100.1"), ip("10.0.0.1")).await,
            Err(PasvAddressError::NotKnown)
        );
        let local = AddressBook::new(None, None, vec![], UnknownAddress::UseLocal);
        assert_eq!(
            local.for_client(ip("198.51.100.1"), ip("10.0.0.1")).await,
            Ok(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(
            local.for_client(ip("::1"), ip("::1")).await,
            Err(PasvAddressError::NoIpv4)
        );
    }

    #[tokio::test]
    async fn names_are_resolved_at_pasv_time() {
        let book = AddressBook::new(
            Some(Advertised::Host("localhost".into())),
            None,
            vec![],
            UnknownAddress::Refuse,
        );
        assert_eq!(
            book.for_client(ip("198.51.100.1"), ip("10.0.0.1")).await,
            Ok(Ipv4Addr::LOCALHOST)
        );
    }
}
