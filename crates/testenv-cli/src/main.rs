//! `kubeftp-testenv`: the test control plane for a person.
//!
//!   kubeftp-testenv up   --dir DIR   start in the background, print the kubeconfig
//!   kubeftp-testenv down --dir DIR   stop it and remove DIR
//!   kubeftp-testenv run  --dir DIR   run in the foreground until SIGINT/SIGTERM
//!
//! `run` writes DIR/pid when it starts and DIR/kubeconfig once the control
//! plane is ready; `up` starts `run` detached and waits for the kubeconfig.

mod daemon;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the control plane in the background and print its kubeconfig path.
    Up {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop the control plane started by `up` and remove its directory.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run the control plane in the foreground until interrupted.
    Run {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Up { dir } => {
            let kubeconfig = daemon::up(&dir)?;
            let tools = kubeftp_testenv::tools::tools_dir();
            println!("control plane ready; kubeconfig: {}", kubeconfig.display());
            println!("  export KUBECONFIG={}", kubeconfig.display());
            println!(
                "  export PATH={}:$PATH   # pinned kubectl, helm",
                tools.display()
            );
            Ok(())
        }
        Command::Down { dir } => daemon::down(&dir),
        Command::Run { dir } => daemon::run(&dir),
    }
}
