pub fn run(_a: Args) -> anyhow::Result<()> {
    Ok(())
}
#[derive(clap::Args, Debug)]
pub struct Args {}
