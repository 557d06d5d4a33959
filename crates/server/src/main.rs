use clap::Parser;

fn main() -> anyhow::Result<()> {
    kubeftp_server::cli::run(kubeftp_server::cli::Cli::parse())
}
