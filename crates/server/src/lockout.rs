//! Failed-login lockout per client IP: after too many failures within the
//! window, every login from that IP is refused until the lockout ends,
//! without spending a hash verification on it. A successful login clears
//! nothing: otherwise a client with an account of its own could log in
//! between guesses at another's password and never be locked out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; stale ones are dropped first.
const MAX_TRACKED: usize = 100_000;

pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    state: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

impl LoginLimiter {
    /// `max_failures` failures within `window` lock the IP for `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures,
            window,
            state: Mutex::default(),
        }
    }

    pub fn is_locked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let state = self.state.lock().unwrap();
        matches!(state.get(&ip.to_canonical()), Some(Failures { locked_until: Some(t), .. }) if *t > now)
    }

    /// Records a failure; returns true if the IP is now locked out.
    pub fn failed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        if state.len() >= MAX_TRACKED {
            state.retain(|_, f| {
                now.duration_since(f.since) < self.window || f.locked_until.is_some_and(|t| t > now)
            });
        }
        let f = state.entry(ip.to_canonical()).or_insert(Failures {
            count: 0,
            since: now,
            locked_until: None,
        });
        if now.duration_since(f.since) >= self.window && f.locked_until.is_none_or(|t| t <= now) {
            *f = Failures {
                count: 0,
                since: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.max_failures {
            f.locked_until = Some(now + self.window);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_unlocks_after_the_window() {
        let limiter = LoginLimiter::new(3, Duration::from_millis(200));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!limiter.failed(ip));
        assert!(!limiter.failed(ip));
        assert!(limiter.failed(ip));
        assert!(limiter.is_locked(ip));
        assert!(!limiter.is_locked(other), "per IP");
        std::thread::sleep(Duration::from_millis(250));
        assert!(!limiter.is_locked(ip));
        assert!(!limiter.failed(ip), "a new window starts");
    }

    #[test]
    fn mapped_and_plain_addresses_are_one_client() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        assert!(!limiter.failed("::ffff:192.0.2.1".parse().unwrap()));
        assert!(limiter.failed("192.0.2.1".parse().unwrap()));
        assert!(limiter.is_locked("::ffff:192.0.2.1".parse().unwrap()));
    }
}
