//! `palette generate`: a deployable system directory from a model —
//! `system.json`, `compose.yaml`, `k8s/`, a `Dockerfile` and a `README.md`
//! (the work is `palette_system::generate`).

use std::path::{Path, PathBuf};

use palette_runtime::config::WorkMode;
use palette_system::generate::{DEFAULT_IMAGE, dns_label};
use palette_system::{GenerateError, GenerateOptions, generate, write_dir};

use crate::cmd::UsageError;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette generate model.json -o shop/\n  \
    palette generate model.json -o shop/ --work cpu --base-port 9000 --force\n  \
    palette up shop/")]
pub struct Args {
    /// A model written by `palette fit` or `palette merge`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// The system directory to write (must be empty or absent, unless --force).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// The system's name (a DNS label: compose project, Kubernetes
    /// namespace); by default derived from the output directory's name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Seeds every random choice the services make.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The first service's port; service i listens on base-port + i (a
    /// replicated service takes a port per instance, shifting the ones after it).
    #[arg(long, value_name = "PORT", default_value_t = 7000)]
    pub base_port: u16,
    /// How services spend their sampled local work (work modes recorded in
    /// the model by interventions override it where they apply).
    #[arg(long, value_enum, default_value_t = Work::Sleep)]
    pub work: Work,
    /// Also send spans over OTLP/HTTP to this collector (e.g. http://collector:4318/v1/traces).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The container image compose and Kubernetes run.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// An intervention file to apply to the model first (repeatable; see docs/interventions.md).
    #[arg(long, value_name = "FILE")]
    pub apply: Vec<PathBuf>,
    /// Overwrite the generated files in a non-empty directory (other files
    /// stay; generated code you edited is overwritten too).
    #[arg(long)]
    pub force: bool,
    /// Also write each service as source code under DIR/code/ (`rust`: a
    /// Cargo project, one module per service, one function per API and PFA
    /// state, built with `cargo build --release` there and run with
    /// `palette up DIR --serve-with DIR/code/target/release/NAME-services`).
    #[arg(long, value_enum, value_name = "LANGUAGE")]
    pub code: Option<Code>,
    /// The `palette-runtime` crate the generated code depends on (default:
    /// crates/runtime of the checkout this palette was built from).
    #[arg(long, value_name = "DIR", requires = "code")]
    pub runtime_path: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Work {
    /// Sleep for the sampled time.
    Sleep,
    /// Multiply matrices for it (competes for CPU).
    Cpu,
    /// Touch a buffer for it (competes for memory bandwidth).
    Memory,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Code {
    /// A Cargo project depending on palette-runtime by path.
    Rust,
}

/// The checkout's lock file: the generated project builds with the same versions.
const CHECKOUT_LOCK: &str = include_str!("../../../../Cargo.lock");

/// Where the runtime crate was when this binary was built.
fn default_runtime_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime")
}

fn code_options(args: &Args) -> anyhow::Result<Option<palette_system::code::CodeOptions>> {
    let Some(Code::Rust) = args.code else { return Ok(None) };
    rust_code_options(args.runtime_path.as_deref()).map(Some)
}

/// What `--code rust` generates with: the runtime crate at `runtime_path`
/// (default: this checkout's) and the checkout's lock file.
pub(crate) fn rust_code_options(runtime_path: Option<&Path>) -> anyhow::Result<palette_system::code::CodeOptions> {
    let given = runtime_path.map_or_else(default_runtime_path, Path::to_path_buf);
    let runtime_path =
        std::fs::canonicalize(&given).ok().filter(|p| p.join("Cargo.toml").is_file()).ok_or_else(|| {
            UsageError(format!(
                "{}: no palette-runtime crate there; pass --runtime-path PATH/TO/palette/crates/runtime",
                given.display()
            ))
        })?;
    Ok(palette_system::code::CodeOptions { runtime_path, lock: Some(CHECKOUT_LOCK.to_string()) })
}

/// Formats the generated sources with rustfmt when it is installed:
/// `main.rs`, and the modules whose layout rustfmt might change (see
/// [`palette_system::code::may_need_rustfmt`]), one rustfmt per core.
pub(crate) fn format_code(dir: &Path, generated: &[palette_system::generate::GeneratedFile]) {
    let files: Vec<PathBuf> = generated
        .iter()
        .filter(|f| {
            f.path.starts_with("code/src/")
                && f.path.ends_with(".rs")
                && f.path != "code/src/main.rs"
                && palette_system::code::may_need_rustfmt(&f.content)
        })
        .map(|f| dir.join(&f.path))
        .collect();
    // Given main.rs, rustfmt would format every module it declares too: its
    // text goes through standard input, where no module is followed.
    let mut formatted = format_main(&dir.join("code/src/main.rs")).is_some();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = files.len().div_ceil(cores).max(1);
    let children: Vec<_> = files
        .chunks(per)
        .map(|chunk| std::process::Command::new("rustfmt").args(["--edition", "2024"]).args(chunk).spawn())
        .collect();
    for child in children {
        formatted &= child.and_then(|mut c| c.wait()).is_ok_and(|s| s.success());
    }
    if !formatted {
        eprintln!("palette: note: rustfmt did not run over {}/code/src; the code is unformatted", dir.display());
    }
}

fn format_main(main: &Path) -> Option<()> {
    use std::io::Write;
    let text = std::fs::read(main).ok()?;
    let mut child = std::process::Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(&text).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let tmp = main.with_extension("rs.formatting");
    std::fs::write(&tmp, out.stdout).ok()?;
    std::fs::rename(&tmp, main).ok()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = crate::cmd::show::load(&args.model)?;
    let mut entries = Vec::new();
    for f in &args.apply {
        entries.extend(crate::cmd::edit::load_entries(f, entries.len())?);
    }
    if let Some(e) =
        entries.iter().find(|e| matches!(e.intervention, palette_model::intervene::Intervention::Filter(_)))
    {
        anyhow::bail!(UsageError(format!(
            "entry {} (filter): a filter selects traces, so it only applies when fitting: use it with `palette fit --apply`",
            e.index
        )));
    }
    let model = crate::cmd::edit::apply_files(model, &args.apply, &entries)?;
    let name = args.name.clone().unwrap_or_else(|| default_name(&args.output));
    let opts = GenerateOptions {
        name,
        seed: args.seed,
        base_port: args.base_port,
        work: match args.work {
            Work::Sleep => WorkMode::Sleep,
            Work::Cpu => WorkMode::Cpu,
            Work::Memory => WorkMode::Memory,
        },
        otlp_endpoint: args.otlp_endpoint.clone(),
        image: args.image.clone(),
        code: code_options(&args)?,
    };
    let generated = generate(model, &opts).map_err(|e| classify(e, &args.model))?;
    write_dir(&args.output, &generated.files, args.force).map_err(|e| classify(e, &args.model))?;
    if opts.code.is_some() {
        format_code(&args.output, &generated.files);
    }
    for w in &generated.warnings {
        eprintln!("palette: warning: {w}");
    }
    let c = &generated.config;
    let ports = match (c.services.first(), c.services.last().and_then(|b| b.ports().last())) {
        (Some(a), Some(last)) if a.port != last => format!("ports {}-{last}", a.port),
        (Some(a), _) => format!("port {}", a.port),
        _ => String::new(),
    };
    println!(
        "wrote {}: system `{}`, {} services ({ports}), {} files; run it with `palette up {}`",
        args.output.display(),
        c.name,
        c.services.len(),
        generated.files.len(),
        args.output.display()
    );
    Ok(())
}

/// The output directory's name as a DNS label: `out/Shop_2/` → `shop-2`.
fn default_name(dir: &Path) -> String {
    let base = std::path::absolute(dir).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    base.map(|b| dns_label(&b)).unwrap_or_else(|| "palette".into())
}

fn classify(e: GenerateError, model: &Path) -> anyhow::Error {
    if e.is_usage() {
        UsageError(e.to_string()).into()
    } else if e.is_bad_data() {
        palette_model::file::FileError::BadData { path: model.to_path_buf(), line: 0, message: e.to_string() }.into()
    } else {
        e.into()
    }
}
