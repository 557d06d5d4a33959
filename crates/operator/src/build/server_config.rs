//! server.toml, the config file of kubeftp-server (docs/server.md).

use kubeftp_api::limits::{
    CONTAINER_CONTROL_PORT, CONTAINER_IMPLICIT_TLS_PORT, CONTAINER_OPS_PORT,
};
use kubeftp_api::{FtpServerSpec, TlsMode, TrafficPolicy};
use serde::Serialize;

/// Where the pod mounts each input; the config and the StatefulSet agree
/// through these.
pub mod paths {
    pub const CONFIG_DIR: &str = "/etc/kubeftp/config";
    pub const CONFIG_FILE: &str = "/etc/kubeftp/config/server.toml";
    pub const CONFIG_KEY: &str = "server.toml";
    pub const ADDRESSES_DIR: &str = "/run/kubeftp/addresses";
    pub const USERS_DIR: &str = "/etc/kubeftp/users";
    pub const USERS_FILE: &str = "/etc/kubeftp/users/users.toml";
    pub const USERS_KEY: &str = "users.toml";
    pub const TLS_DIR: &str = "/etc/kubeftp/tls";
    pub const TLS_CERT: &str = "/etc/kubeftp/tls/tls.crt";
    pub const TLS_KEY: &str = "/etc/kubeftp/tls/tls.key";
    pub const DATA_DIR: &str = "/srv/ftp";
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ServerConfig {
    listen: String,
    root: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    users_file: Option<&'static str>,
    anonymous: Anonymous,
    passive: Passive,
    active: Active,
    limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
    ops: Ops,
    shutdown: Shutdown,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Anonymous {
    enabled: bool,
    home: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Passive {
    ports: String,
    when_address_unknown: &'static str,
    internal_cidrs: Vec<String>,
    allow_foreign_data_source: bool,
}

#[derive(Serialize)]
struct Active {
    enabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sessions: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sessions_per_ip: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_login_attempts: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_failed_logins_per_ip: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lockout_seconds: Option<i32>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Tls {
    mode: &'static str,
    cert_file: &'static str,
    key_file: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    implicit_listen: Option<String>,
    require_session_reuse: bool,
}

#[derive(Serialize)]
struct Ops {
    listen: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Shutdown {
    /// The StatefulSet's terminationGracePeriodSeconds leaves room for it.
    grace_seconds: i32,
}

/// server.toml for `spec`. The advertised address, `passive.advertisedAddress`
/// included, comes only from the address file (`--advertised-address-file`),
/// which the server re-reads: an address change never restarts the pods,
/// as a change here would. Until it is known PASV is refused rather than
/// answered with the pod's own, unreachable address.
pub fn server_toml(spec: &FtpServerSpec) -> String {
    let config = ServerConfig {
        listen: format!("0.0.0.0:{CONTAINER_CONTROL_PORT}"),
        root: paths::DATA_DIR,
        users_file: spec.users.as_ref().map(|_| paths::USERS_FILE),
        anonymous: Anonymous {
            enabled: spec.anonymous.enabled,
            home: spec.anonymous.home.clone(),
        },
        passive: Passive {
            ports: spec.passive.port_range.to_string(),
            when_address_unknown: "refuse",
            internal_cidrs: spec.passive.internal_cidrs.clone(),
            // With policy Cluster, kube-proxy may SNAT data connections to a
            // node's address, so the source no longer matches the client.
            allow_foreign_data_source: spec.service.external_traffic_policy
                == TrafficPolicy::Cluster,
        },
        active: Active {
            enabled: spec.active_mode,
        },
        limits: Limits {
            max_sessions: spec.limits.max_sessions,
            max_sessions_per_ip: spec.limits.max_sessions_per_ip,
            idle_timeout_seconds: spec.limits.idle_timeout_seconds,
            max_login_attempts: spec.limits.max_login_attempts,
            max_failed_logins_per_ip: spec.limits.max_failed_logins_per_ip,
            lockout_seconds: spec.limits.lockout_seconds,
        },
        tls: spec.tls.as_ref().map(|tls| Tls {
            mode: match tls.mode {
                TlsMode::Required => "required",
                TlsMode::Optional => "optional",
            },
            cert_file: paths::TLS_CERT,
            key_file: paths::TLS_KEY,
            implicit_listen: tls
                .implicit_port
                .map(|_| format!("0.0.0.0:{CONTAINER_IMPLICIT_TLS_PORT}")),
            require_session_reuse: tls.require_session_reuse,
        }),
        ops: Ops {
            listen: format!("0.0.0.0:{CONTAINER_OPS_PORT}"),
        },
        shutdown: Shutdown {
            grace_seconds: spec.shutdown_grace_seconds,
        },
    };
    let body = toml::to_string(&config).expect("the config serializes to TOML");
    format!(
        "# Generated by kubeftp-operator from the FtpServer spec; edits are overwritten.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FtpServerSpec {
        serde_yaml::from_str(yaml).expect("a spec")
    }

    fn parse(yaml: &str) -> toml::Table {
        server_toml(&spec(yaml)).parse().expect("valid TOML")
    }

    #[test]
    fn minimal_spec() {
        let config = parse("users: {secretName: u}\nstorage: {emptyDir: {}}");
        let expected: toml::Table = r#"
            listen = "0.0.0.0:2121"
            root = "/srv/ftp"
            users-file = "/etc/kubeftp/users/users.toml"
            [anonymous]
            enabled = false
            home = "/"
            [passive]
            ports = "30000-30009"
            when-address-unknown = "refuse"
            internal-cidrs = []
            allow-foreign-data-source = false
            [active]
            enabled = false
            [limits]
            [ops]
            listen = "0.0.0.0:9090"
            [shutdown]
            grace-seconds = 30
        "#
        .parse()
        .unwrap();
        assert_eq!(config, expected);
    }

    #[test]
    fn every_option() {
        let config = parse(
            "
anonymous: {enabled: true, home: /pub}
activeMode: true
service: {externalTrafficPolicy: Cluster}
passive:
  portRange: {min: 40000, max: 40048}
  advertisedAddress: ftp.example.com
  internalCIDRs: [10.0.0.0/8]
limits:
  maxSessions: 10
  maxSessionsPerIP: 2
  idleTimeoutSeconds: 60
  maxLoginAttempts: 5
  maxFailedLoginsPerIP: 50
  lockoutSeconds: 900
tls: {secretName: cert, mode: Optional, implicitPort: 990}
shutdownGraceSeconds: 120
storage: {emptyDir: {}}
",
        );
        assert!(!config.contains_key("users-file"));
        assert_eq!(config["anonymous"]["home"].as_str(), Some("/pub"));
        assert_eq!(config["active"]["enabled"].as_bool(), Some(true));
        let passive = &config["passive"];
        assert_eq!(passive["ports"].as_str(), Some("40000-40048"));
        // The override goes to the address file only (see below).
        assert!(
            !passive
                .as_table()
                .unwrap()
                .contains_key("advertised-address")
        );
        assert_eq!(passive["internal-cidrs"][0].as_str(), Some("10.0.0.0/8"));
        assert_eq!(passive["allow-foreign-data-source"].as_bool(), Some(true));
        let limits = &config["limits"];
        assert_eq!(limits["max-sessions"].as_integer(), Some(10));
        assert_eq!(limits["max-sessions-per-ip"].as_integer(), Some(2));
        assert_eq!(limits["idle-timeout-seconds"].as_integer(), Some(60));
        assert_eq!(limits["max-login-attempts"].as_integer(), Some(5));
        assert_eq!(limits["max-failed-logins-per-ip"].as_integer(), Some(50));
        assert_eq!(limits["lockout-seconds"].as_integer(), Some(900));
        assert_eq!(config["shutdown"]["grace-seconds"].as_integer(), Some(120));
        let tls = &config["tls"];
        assert_eq!(tls["mode"].as_str(), Some("optional"));
        assert_eq!(tls["cert-file"].as_str(), Some("/etc/kubeftp/tls/tls.crt"));
        assert_eq!(tls["key-file"].as_str(), Some("/etc/kubeftp/tls/tls.key"));
        // The Service maps the implicitPort to this fixed container port.
        assert_eq!(tls["implicit-listen"].as_str(), Some("0.0.0.0:9990"));
        assert_eq!(tls["require-session-reuse"].as_bool(), Some(true));
    }

    #[test]
    fn no_implicit_listener_unless_asked() {
        let config =
            parse("users: {secretName: u}\nstorage: {emptyDir: {}}\ntls: {secretName: cert}");
        assert_eq!(config["tls"]["mode"].as_str(), Some("required"));
        assert!(
            !config["tls"]
                .as_table()
                .unwrap()
                .contains_key("implicit-listen")
        );
    }

    /// The override reaches the server through the address file, which it
    /// re-reads; were it in server.toml, whose hash is in the pod template,
    /// changing it would restart every pod.
    #[test]
    fn advertised_address_is_not_in_server_toml() {
        let base = "users: {secretName: u}\nstorage: {emptyDir: {}}";
        let plain = server_toml(&spec(base));
        for address in ["ftp.example.com", "203.0.113.9"] {
            let with = server_toml(&spec(&format!(
                "{base}\npassive: {{advertisedAddress: {address}}}"
            )));
            assert_eq!(with, plain);
        }
    }
}
