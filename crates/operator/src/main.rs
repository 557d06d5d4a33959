use clap::Parser;
use kubeftp_operator::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", kubeftp_operator::crd::crd_yaml());
            Ok(())
        }
        Command::Run(args) => anyhow::bail!("not implemented yet: {args:?}"),
    }
}
