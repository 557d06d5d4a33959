//! Command line of `kubeftp-operator`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::Settings;
use crate::context::Config;

/// The server image that matches this operator's version.
pub const DEFAULT_SERVER_IMAGE: &str =
    concat!("kubeftp/kubeftp-server:", env!("CARGO_PKG_VERSION"));

#[derive(Parser, Debug)]
#[command(version, about = "Kubernetes operator for kubeftp FTP servers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the FtpServer CustomResourceDefinition as YAML.
    Crd,
    /// Run the operator.
    Run(RunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// kubeftp-server image for FtpServers that name none.
    #[arg(long, env = "KUBEFTP_SERVER_IMAGE", default_value = DEFAULT_SERVER_IMAGE)]
    pub server_image: String,
    /// Watch only this namespace; default: all.
    #[arg(long, env = "KUBEFTP_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Reconcile every FtpServer at least this often, in seconds.
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,
    /// Log format on stderr; RUST_LOG filters.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl RunArgs {
    pub fn config(&self) -> Config {
        Config {
            settings: Settings {
                server_image: self.server_image.clone(),
            },
            namespace: self.namespace.clone(),
            resync: Duration::from_secs(self.resync_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["kubeftp-operator", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("run")
        };
        let config = args.config();
        assert_eq!(config.settings.server_image, "kubeftp/kubeftp-server:0.1.0");
        assert_eq!(config.namespace, None);
        assert_eq!(config.resync, Duration::from_secs(300));
        assert_eq!(args.log_format, LogFormat::Json);
    }
}
