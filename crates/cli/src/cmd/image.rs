//! `palette image`: the container image of a generated system, made from
//! this `palette` binary (the work is `palette_system::image`).

use std::time::Instant;

use palette_system::generate::DEFAULT_IMAGE;
use palette_system::image;

#[derive(clap::Args, Debug)]
#[command(after_help = "The image is FROM scratch: this binary, the shared libraries `ldd` lists for it, \
    a non-root user (uid 10001) and /etc/palette. It is imported with `docker import`, so no base image, \
    registry, Rust toolchain or BuildKit is needed. The generated compose.yaml and k8s/ run it as they \
    run the image the generated Dockerfile builds.\n\n\
    Examples:\n  \
    palette image\n  \
    palette image --tag registry.example:5000/palette:0.1 && docker push registry.example:5000/palette:0.1")]
pub struct Args {
    /// The image's name (what `palette generate --image` names; compose and k8s/ run it).
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_IMAGE)]
    pub tag: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?;
    let started = Instant::now();
    eprintln!("palette image: importing {} and its libraries as {} …", binary.display(), args.tag);
    let report = image::import(&binary, &args.tag)?;
    println!(
        "built image {} ({}; {} files, {:.1} MB) from {} in {:.1}s",
        report.tag,
        short_id(&report.id),
        report.files.len(),
        report.bytes as f64 / 1e6,
        binary.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}
