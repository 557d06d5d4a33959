//! The address put in PASV replies, and how it is chosen for each client.
//!
//! Sources, in order: the watched address file (written by the operator from
//! the load balancer's status), then the static setting. Clients inside
//! `internal-cidrs` always get the control connection's local address. With
//! no address known, the `when-address-unknown` policy decides. DNS names are
//! resolved at PASV time (cached briefly), never just once at startup; a name
//! that does not resolve within 2 s counts as no address known.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use tokio::sync::watch;

use crate::config::UnknownAddress;

/// How long a resolved DNS name, or a failed lookup, is reused.
const DNS_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long a PASV waits for a DNS lookup.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
/// Resolves a name: the system resolver, or a stand-in in tests.
type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

fn system_lookup(name: String) -> LookupFuture {
    Box::pin(async move {
        let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    })
}

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
        // 300.1.1.1, 1.2.3, 010.0.0.1: meant as addresses, and resolvers
        // read such names as numbers (1.2.3 as 1.2.0.3, 010 in octal).
        let last = host.rsplit('.').next().unwrap_or(host);
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{s:?} is not a valid IPv4 address (write four decimal numbers up to 255)"
            ));
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
    lookup: Lookup,
    /// When each name was looked up, and its address if it had one.
    dns_cache: Mutex<HashMap<String, (Instant, Option<Ipv4Addr>)>>,
    /// Held during a lookup, so concurrent PASVs wait for one lookup.
    lookups: tokio::sync::Mutex<()>,
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
            lookup: Arc::new(system_lookup),
            dns_cache: Mutex::default(),
            lookups: tokio::sync::Mutex::default(),
        }
    }

    /// The externally advertised address right now, if any.
    pub fn current(&self) -> Option<Advertised> {
        self.file
            .as_ref()
            .and_then(|rx| rx.borrow().clone())
            .or_else(|| self.fixed.clone())
    }

    /// Why a PASV from outside the cluster would get no address now, if it
    /// would not: none known, or a name that does not resolve (looked up as
    /// PASV looks it up, cache included).
    pub async fn unavailable(&self) -> Option<PasvAddressError> {
        match self.current() {
            Some(Advertised::Ip(_)) => None,
            Some(Advertised::Host(name)) => match self.resolve(&name).await {
                Some(_) => None,
                None => Some(PasvAddressError::Unresolvable(name)),
            },
            None => Some(PasvAddressError::NotKnown),
        }
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
        let unknown = match self.current() {
            Some(Advertised::Ip(ip)) => return Ok(ip),
            Some(Advertised::Host(name)) => match self.resolve(&name).await {
                Some(ip) => return Ok(ip),
                None => PasvAddressError::Unresolvable(name),
            },
            None => PasvAddressError::NotKnown,
        };
        match self.when_unknown {
            UnknownAddress::UseLocal => local_v4(),
            UnknownAddress::Refuse => Err(unknown),
        }
    }

    /// The IPv4 address of `name`, if it has one. Lookups are bounded by
    /// [`DNS_TIMEOUT`], and failures are cached like successes, so a dead
    /// resolver costs one wait per [`DNS_CACHE_TTL`], not one per PASV.
    async fn resolve(&self, name: &str) -> Option<Ipv4Addr> {
        if let Some(cached) = self.cached(name) {
            return cached;
        }
        let _one_at_a_time = self.lookups.lock().await;
        if let Some(cached) = self.cached(name) {
            return cached; // looked up while we waited
        }
        let ip = match tokio::time::timeout(DNS_TIMEOUT, (self.lookup)(name.to_string())).await {
            Ok(Ok(addrs)) => addrs.into_iter().find_map(|a| match a {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            }),
            Ok(Err(e)) => {
                tracing::warn!(name, error = %e, "cannot resolve the advertised address");
                None
            }
            Err(_) => {
                tracing::warn!(name, "DNS lookup of the advertised address timed out");
                None
            }
        };
        self.dns_cache
            .lock()
            .unwrap()
            .insert(name.to_string(), (Instant::now(), ip));
        ip
    }

    /// A cache entry younger than the TTL: `Some(None)` for a failed lookup.
    fn cached(&self, name: &str) -> Option<Option<Ipv4Addr>> {
        let cache = self.dns_cache.lock().unwrap();
        let (at, ip) = cache.get(name)?;
        (at.elapsed() < DNS_CACHE_TTL).then_some(*ip)
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
        for numeric in ["300.1.1.1", "1.2.3", "010.0.0.1", "01.02.03.04"] {
            let err = numeric.parse::<Advertised>().unwrap_err();
            assert!(err.contains("not a valid IPv4 address"), "{numeric}: {err}");
        }
        assert!("host-1.example.com".parse::<Advertised>().is_ok());
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

    /// A resolver that never answers, counting the lookups it was asked for.
    fn hanging_resolver(book: AddressBook) -> (AddressBook, Arc<std::sync::atomic::AtomicUsize>) {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let lookup: Lookup = Arc::new(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(std::future::pending())
        });
        (AddressBook { lookup, ..book }, calls)
    }

    #[tokio::test]
    async fn a_hanging_dns_lookup_is_bounded_cached_and_falls_back() {
        let name = Some(Advertised::Host("lb.example.com".into()));
        let (book, calls) = hanging_resolver(AddressBook::new(
            name.clone(),
            None,
            vec![],
            UnknownAddress::UseLocal,
        ));
        let started = Instant::now();
        let (peer, local) = (ip("198.51.100.1"), ip("10.0.0.1"));
        // Concurrent PASVs share one lookup; all fall back to the local address.
        let (a, b, c) = tokio::join!(
            book.for_client(peer, local),
            book.for_client(peer, local),
            book.for_client(peer, local),
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        for got in [a, b, c] {
            assert_eq!(got, Ok(Ipv4Addr::new(10, 0, 0, 1)));
        }
        // The failure is cached: no new lookup, no new wait.
        let again = Instant::now();
        assert_eq!(
            book.for_client(peer, local).await,
            Ok(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert!(again.elapsed() < DNS_TIMEOUT);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);

        let (refuse, _) =
            hanging_resolver(AddressBook::new(name, None, vec![], UnknownAddress::Refuse));
        assert_eq!(
            refuse.for_client(peer, local).await,
            Err(PasvAddressError::Unresolvable("lb.example.com".into()))
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
