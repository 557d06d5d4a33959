//! `kubeftp-cluster`: a single-node Kubernetes cluster on this machine,
//! from the pinned components (`make tools`) and Debian's containerd, runc
//! and CNI plugins, with a load-balancer stand-in and a volume
//! provisioner. Needs root. `make up` and `make e2e` drive it.
//!
//!   kubeftp-cluster up   [--images DIR]  start in the background, print the kubeconfig
//!   kubeftp-cluster down                 stop it and remove everything it made
//!   kubeftp-cluster run  [--images DIR]  run in the foreground until SIGINT/SIGTERM
//!   kubeftp-cluster load FILE.tar...     import OCI image archives into the node

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use kubeftp_cluster::layout::Dirs;
use kubeftp_cluster::{daemon, node};

#[derive(Parser)]
#[command(about = "A local single-node Kubernetes cluster for kubeftp's end-to-end tests")]
struct Cli {
    /// The cluster's state: images, pods, volumes, kubeconfig.
    #[arg(long, global = true, default_value = "/var/lib/kubeftp-cluster")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster in the background and print its kubeconfig path.
    Up {
        /// Import every OCI image archive (*.tar) in this directory.
        #[arg(long)]
        images: Option<PathBuf>,
    },
    /// Stop the cluster and remove everything it made.
    Down,
    /// Run the cluster in the foreground until interrupted.
    Run {
        #[arg(long)]
        images: Option<PathBuf>,
    },
    /// Import OCI image archives into the running node.
    Load { archives: Vec<PathBuf> },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let dirs = Dirs::new(&cli.dir);
    match cli.command {
        Command::Up { images } => {
            let kubeconfig = daemon::up(&dirs, images.as_deref())?;
            let tools = kubeftp_testenv::tools::tools_dir();
            println!("cluster ready; kubeconfig: {}", kubeconfig.display());
            println!("  export KUBECONFIG={}", kubeconfig.display());
            println!(
                "  export PATH={}:$PATH   # pinned kubectl, helm",
                tools.display()
            );
            Ok(())
        }
        Command::Down => daemon::down(&dirs),
        Command::Run { images } => daemon::run(&dirs, images.as_deref()),
        Command::Load { archives } => {
            for archive in &archives {
                node::import_image(&dirs, archive)?;
                println!("imported {}", archive.display());
            }
            Ok(())
        }
    }
}
