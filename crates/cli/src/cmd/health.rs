//! `palette health`: whether a served service answers `GET /healthz` — the
//! health check of the generated compose services, which need no curl in
//! their image.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::cmd::UsageError;

#[derive(clap::Args, Debug)]
#[command(after_help = "Exit 0 when the service answers 200 within about a second, 1 otherwise.\n\n\
    Example:\n  palette health 127.0.0.1:7000")]
pub struct Args {
    /// HOST:PORT of a `palette serve` service.
    #[arg(value_name = "ADDR")]
    pub addr: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let addrs: Vec<SocketAddr> = args
        .addr
        .to_socket_addrs()
        .map_err(|e| UsageError(format!("`{}` is not HOST:PORT ({e})", args.addr)))?
        .collect();
    if addrs.iter().any(|a| palette_system::supervise::healthy(*a)) {
        println!("{} healthy", args.addr);
        Ok(())
    } else {
        anyhow::bail!("{} did not answer GET /healthz with 200", args.addr)
    }
}
