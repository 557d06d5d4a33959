//! Command line of `kubeftp-operator`.

use clap::{Args, Parser, Subcommand};

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
pub struct RunArgs {}
