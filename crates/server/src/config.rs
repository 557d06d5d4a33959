//! Server configuration: a TOML file, every field optional, overridden by
//! command-line flags (see `cli`). `docs/server.md` documents it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::address::Advertised;
use crate::tls::TlsConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Control-connection listen address.
    pub listen: SocketAddr,
    /// Directory served; users' homes are below it.
    pub root: PathBuf,
    /// TOML users file (see `users`), re-read when it changes.
    pub users_file: Option<PathBuf>,
    pub anonymous: AnonymousConfig,
    pub passive: PassiveConfig,
    pub active: ActiveConfig,
    pub limits: Limits,
    pub tls: TlsConfig,
    pub ops: OpsConfig,
    pub shutdown: ShutdownConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OpsConfig {
    /// HTTP listener for /healthz, /readyz and /metrics; none if unset.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ShutdownConfig {
    /// On SIGTERM, how long running transfers may take to finish before
    /// their sessions are closed with 421.
    pub grace_seconds: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_seconds: 30 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AnonymousConfig {
    /// Allow `anonymous`/`ftp` logins, always read-only.
    pub enabled: bool,
    /// Their home, relative to the root.
    pub home: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PassiveConfig {
    /// The only ports data connections are accepted on, e.g. "30000-30009".
    pub ports: PortRange,
    /// IPv4 address or DNS name put in PASV replies.
    pub advertised_address: Option<Advertised>,
    /// File holding the advertised address; watched, and preferred over
    /// `advertised-address` whenever it is non-empty.
    pub advertised_address_file: Option<PathBuf>,
    /// What PASV does while no address is known.
    pub when_address_unknown: UnknownAddress,
    /// Clients in these networks get the control connection's local address
    /// (in-cluster clients reach the pod directly).
    pub internal_cidrs: Vec<IpNet>,
    /// Accept data connections from any source IP, for load balancers that
    /// SNAT. Each passive port then serves one waiting session at a time.
    pub allow_foreign_data_source: bool,
    /// How long a transfer command waits for the client's data connection.
    pub data_connect_timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownAddress {
    /// Advertise the control connection's local address.
    UseLocal,
    /// Refuse PASV with 425 until an address is known (EPSV still works).
    Refuse,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ActiveConfig {
    /// Allow PORT/EPRT. The target must be the control connection's peer.
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// Close a session with no command for this long (not during transfers).
    pub idle_timeout_seconds: u64,
    /// Abort a transfer (426) whose data connection moved no data for this
    /// long; the session goes on.
    pub data_timeout_seconds: u64,
    /// Delay before answering a failed login.
    pub failed_login_delay_ms: u64,
    /// Failed logins before the session is closed.
    pub max_login_attempts: u32,
    /// Failed logins from one client IP, within `lockout-seconds`, before
    /// every login from it is refused for `lockout-seconds`.
    pub max_failed_logins_per_ip: u32,
    pub lockout_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:2121".parse().unwrap(),
            root: PathBuf::from("ftp-root"),
            users_file: None,
            anonymous: AnonymousConfig::default(),
            passive: PassiveConfig::default(),
            active: ActiveConfig::default(),
            limits: Limits::default(),
            tls: TlsConfig::default(),
            ops: OpsConfig::default(),
            shutdown: ShutdownConfig::default(),
        }
    }
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        AnonymousConfig {
            enabled: false,
            home: "/".into(),
        }
    }
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            ports: PortRange {
                min: 30000,
                max: 30009,
            },
            advertised_address: None,
            advertised_address_file: None,
            when_address_unknown: UnknownAddress::UseLocal,
            internal_cidrs: Vec::new(),
            allow_foreign_data_source: false,
            data_connect_timeout_seconds: 30,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1000,
            max_sessions_per_ip: 100,
            idle_timeout_seconds: 300,
            data_timeout_seconds: 300,
            failed_login_delay_ms: 1000,
            max_login_attempts: 3,
            max_failed_logins_per_ip: 10,
            lockout_seconds: 300,
        }
    }
}

impl Limits {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_seconds)
    }
}

impl Config {
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        Ok(config)
    }

    /// Checks what serde cannot: relations between fields.
    pub fn validate(&self) -> anyhow::Result<()> {
        let range = self.passive.ports;
        if range.contains(self.listen.port()) {
            anyhow::bail!(
                "the control port {} lies inside the passive range {range}",
                self.listen.port()
            );
        }
        self.tls.validate()?;
        if self.limits.max_sessions == 0 || self.limits.max_sessions_per_ip == 0 {
            anyhow::bail!("limits.max-sessions and limits.max-sessions-per-ip must be at least 1");
        }
        let limits = &self.limits;
        for (name, value, min) in [
            (
                "limits.idle-timeout-seconds",
                limits.idle_timeout_seconds,
                1,
            ),
            (
                "limits.data-timeout-seconds",
                limits.data_timeout_seconds,
                1,
            ),
            ("limits.lockout-seconds", limits.lockout_seconds, 1),
            (
                "passive.data-connect-timeout-seconds",
                self.passive.data_connect_timeout_seconds,
                1,
            ),
            ("shutdown.grace-seconds", self.shutdown.grace_seconds, 0),
        ] {
            if !(min..=MAX_SECONDS).contains(&value) {
                anyhow::bail!(
                    "{name} must be between {min} and {MAX_SECONDS} (30 days), not {value}"
                );
            }
        }
        if limits.failed_login_delay_ms > 60_000 {
            anyhow::bail!(
                "limits.failed-login-delay-ms must be at most 60000, not {}",
                limits.failed_login_delay_ms
            );
        }
        if limits.max_login_attempts == 0 || limits.max_failed_logins_per_ip == 0 {
            anyhow::bail!(
                "limits.max-login-attempts and limits.max-failed-logins-per-ip must be at least 1"
            );
        }
        Ok(())
    }
}

/// The longest time any timeout may be set to: beyond it, deadlines risk
/// overflowing the clock, and no setting needs more.
const MAX_SECONDS: u64 = 30 * 24 * 3600;

/// An inclusive port range, written `MIN-MAX` (or a single port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + use<> {
        self.min..=self.max
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (min, max) = s.split_once('-').unwrap_or((s, s));
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("{p:?} is not a port number (1-65535)"))
        };
        let (min, max) = (port(min)?, port(max)?);
        if min > max {
            return Err(format!(
                "passive range {s}: the first port must not exceed the last"
            ));
        }
        Ok(PortRange { min, max })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let c: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:2121"
            root = "/srv/ftp"
            users-file = "/etc/kubeftp/users.toml"
            [anonymous]
            enabled = true
            home = "pub"
            [passive]
            ports = "30000-30009"
            advertised-address = "ftp.example.com"
            advertised-address-file = "/run/kubeftp/address"
            when-address-unknown = "refuse"
            internal-cidrs = ["10.0.0.0/8"]
            [limits]
            max-sessions = 10
            [tls]
            mode = "required"
            cert-file = "/etc/kubeftp/tls/tls.crt"
            key-file = "/etc/kubeftp/tls/tls.key"
            implicit-listen = "0.0.0.0:9990"
            [ops]
            listen = "0.0.0.0:9090"
            [shutdown]
            grace-seconds = 5
            "#,
        )
        .unwrap();
        assert_eq!(
            c.passive.ports,
            PortRange {
                min: 30000,
                max: 30009
            }
        );
        assert_eq!(c.passive.when_address_unknown, UnknownAddress::Refuse);
        assert_eq!(c.limits.max_sessions, 10);
        assert_eq!(c.limits.idle_timeout_seconds, 300);
        assert_eq!(c.tls.mode, crate::tls::TlsMode::Required);
        assert_eq!(c.shutdown.grace_seconds, 5);
        c.validate().unwrap();
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(
            toml::from_str::<Config>("lisen = \"x\"")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
        assert!(
            "30010-30000"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("must not exceed")
        );
        assert!("0-5".parse::<PortRange>().is_err());
        let c = Config {
            listen: "127.0.0.1:30005".parse().unwrap(),
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("inside the passive range")
        );
    }

    /// Timeouts of zero (a session closed before its first command, a
    /// lockout that never locks) or too large for the clock (a panic
    /// when a deadline is computed) are refused, naming the setting.
    #[test]
    fn timeouts_and_limits_are_bounded() {
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            change(&mut c);
            c.validate().unwrap_err().to_string()
        };
        let huge = u64::MAX / 2;
        for (change, name) in [
            (
                &(|c: &mut Config| c.limits.idle_timeout_seconds = 0) as &dyn Fn(&mut Config),
                "idle-timeout",
            ),
            (
                &|c: &mut Config| c.limits.lockout_seconds = 0,
                "lockout-seconds",
            ),
            (
                &|c: &mut Config| c.limits.lockout_seconds = huge,
                "lockout-seconds",
            ),
            (
                &|c: &mut Config| c.limits.data_timeout_seconds = huge,
                "data-timeout",
            ),
            (
                &|c: &mut Config| c.passive.data_connect_timeout_seconds = 0,
                "data-connect",
            ),
            (
                &|c: &mut Config| c.shutdown.grace_seconds = huge,
                "grace-seconds",
            ),
            (
                &|c: &mut Config| c.limits.failed_login_delay_ms = huge,
                "failed-login-delay",
            ),
            (
                &|c: &mut Config| c.limits.max_failed_logins_per_ip = 0,
                "max-failed-logins",
            ),
        ] {
            let message = refused(change);
            assert!(message.contains(name), "{name}: {message}");
        }
        let mut c = Config::default();
        c.shutdown.grace_seconds = 0;
        c.validate().unwrap();
    }
}
