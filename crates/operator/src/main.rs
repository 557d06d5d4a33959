use clap::Parser;
use kubeftp_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", kubeftp_operator::crd::crd_yaml()),
        Command::Run(args) => kubeftp_operator::run::run(args).await?,
    }
    Ok(())
}
