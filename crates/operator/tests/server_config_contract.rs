//! The server.toml the operator generates is one kubeftp-server accepts:
//! the server refuses unknown keys, so a renamed key fails here rather
//! than in a crash-looping pod.

use kubeftp_api::FtpServerSpec;
use kubeftp_operator::build::server_config::server_toml;

fn accepted_by_server(spec_yaml: &str) -> kubeftp_server::Config {
    let spec: FtpServerSpec = serde_yaml::from_str(spec_yaml).expect("a spec");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(&path, server_toml(&spec)).unwrap();
    let config = kubeftp_server::Config::from_file(&path)
        .unwrap_or_else(|e| panic!("kubeftp-server refused the config: {e:#}\n{spec_yaml}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("kubeftp-server refused the config: {e:#}\n{spec_yaml}"));
    config
}

#[test]
fn minimal_config_is_accepted() {
    accepted_by_server("users: {secretName: u}\nstorage: {emptyDir: {}}");
}

/// The settings mean to the server what the spec says.
#[test]
fn settings_reach_the_server() {
    let config = accepted_by_server(
        "
users: {secretName: u}
limits: {maxLoginAttempts: 5, maxFailedLoginsPerIP: 50, lockoutSeconds: 900}
tls: {secretName: cert, implicitPort: 990, requireSessionReuse: false}
shutdownGraceSeconds: 120
storage: {emptyDir: {}}
",
    );
    assert!(!config.tls.require_session_reuse);
    assert_eq!(config.limits.max_login_attempts, 5);
    assert_eq!(config.limits.max_failed_logins_per_ip, 50);
    assert_eq!(config.limits.lockout_seconds, 900);
    assert_eq!(config.shutdown.grace_seconds, 120);
    assert_eq!(
        config.tls.implicit_listen,
        Some("0.0.0.0:9990".parse().unwrap())
    );
}

#[test]
fn config_with_every_option_is_accepted() {
    accepted_by_server(
        "
anonymous: {enabled: true, home: /pub}
users: {secretName: u}
activeMode: true
service: {externalTrafficPolicy: Cluster, controlPort: 2100}
passive:
  portRange: {min: 40000, max: 40048}
  advertisedAddress: ftp.example.com
  internalCIDRs: [10.0.0.0/8, 192.168.0.0/16]
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
    accepted_by_server(
        "anonymous: {enabled: true}\ntls: {secretName: cert}\nstorage: {emptyDir: {}}\npassive: {advertisedAddress: 203.0.113.9}",
    );
}
