//! `palette bench generate`: `palette generate` of a system of thousands of
//! services, against copying the model file (the I/O floor) in the same run.
//!
//! The model is fitted (once, reused) to Alibaba-like traces from the
//! project's generator; each measured run is a child process reading the
//! model, generating every file and writing the directory, so its peak
//! memory is its own. With `--code` the run also writes each service as
//! Rust and formats it, as `palette generate --code rust` does; `--build`
//! then builds that project with `cargo build --release` (from nothing,
//! then again after one service's module changed), timing it and sampling
//! the compilers' memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use palette_model::{FilterNames, FitOptions, Fitter, ModelKind, TraceFilter, build_model_owned};
use palette_trace::{CallTree, NoProgress, ReadOptions, read_traces};
use serde::{Deserialize, Serialize};

use crate::cmd::bench::{file_mib, generated_input, machine, peak_rss_kib};
use crate::cmd::thousands;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example (the run recorded in BENCHMARKS.md):\n  \
    cargo build --release && target/release/palette bench generate --services 3050 --dir /tmp/pbg\n  \
    target/release/palette bench generate --services 100 --rows 200000 --build --dir /tmp/pbg100")]
pub struct Args {
    /// Services of the generated Alibaba-like traces (the model has those
    /// the rows reach: nearly all).
    #[arg(long, default_value_t = 3050)]
    pub services: u32,
    /// Rows of the traces the model is fitted to.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Runs of each measurement; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Where the traces, the model and the systems go (inputs reused).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// Generate each service as Rust too (`palette generate --code rust`).
    #[arg(long)]
    pub code: bool,
    /// Build the generated Rust project (implies --code): from nothing, and
    /// after an edit of one service's module.
    #[arg(long)]
    pub build: bool,
}

/// What one measured `generate` reports.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GenMeasured {
    /// Reading and checking model.json.
    pub load_s: f64,
    /// Making every file in memory.
    pub generate_s: f64,
    /// Writing the directory atomically.
    pub write_s: f64,
    /// rustfmt over the generated code (0 without --code).
    #[serde(default)]
    pub format_s: f64,
    pub seconds: f64,
    pub peak_rss_kib: u64,
    pub services: u64,
    pub files: u64,
    pub bytes: u64,
}

/// The measured work, as `palette generate MODEL -o OUT --force` does it.
pub fn worker(model: &Path, out: &Path, code: bool) -> anyhow::Result<()> {
    let start = Instant::now();
    let m = crate::cmd::show::load(model)?;
    let load_s = start.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut opts = palette_system::GenerateOptions::default();
    if code {
        opts.code = Some(crate::cmd::generate::rust_code_options(None)?);
    }
    let g = palette_system::generate(m, &opts)?;
    let generate_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    palette_system::write_dir(out, &g.files, true)?;
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if code {
        crate::cmd::generate::format_code(out, &g.files);
    }
    let format_s = t.elapsed().as_secs_f64();
    let r = GenMeasured {
        load_s,
        generate_s,
        write_s,
        format_s,
        seconds: start.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib().unwrap_or(0),
        services: g.config.services.len() as u64,
        files: g.files.len() as u64,
        bytes: g.files.iter().map(|f| f.content.len() as u64).sum(),
    };
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// The model of `rows` rows over `services` services, fitted unless there.
fn model_file(dir: &Path, rows: u64, services: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("model-{rows}-{services}.json"));
    if path.exists() {
        return Ok(path);
    }
    let csv = generated_input(dir, rows, services)?;
    eprintln!("fitting {}…", csv.display());
    let mut fitter = Fitter::new(FitOptions::default(), TraceFilter::default());
    let names = FilterNames::default();
    let mut sink = |tree: &CallTree| {
        fitter.add(tree, &names);
        Ok(())
    };
    let read = read_traces(std::slice::from_ref(&csv), &ReadOptions::default(), &NoProgress, &mut sink)?;
    let model =
        build_model_owned(fitter.into_partial(&read.names, vec![csv.display().to_string()]), ModelKind::Palette, 1);
    palette_trace::write::write_atomically(&path, |w| model.write_json(w))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let model = model_file(&args.dir, args.rows, args.services)?;
    let exe = std::env::current_exe().context("cannot find the palette binary")?;
    let out = args.dir.join("generated-system");
    let copy = args.dir.join("model-copy.json");
    let repeat = args.repeat.max(1);
    let (mut runs, mut copies) = (Vec::new(), Vec::new());
    for run in 1..=repeat {
        eprintln!("measuring generate and copy ({run}/{repeat})…");
        let t = Instant::now();
        std::fs::copy(&model, &copy).with_context(|| format!("cannot copy to {}", copy.display()))?;
        copies.push(t.elapsed().as_secs_f64());
        let mut cmd = Command::new(&exe);
        cmd.args(["bench", "generate-worker"]).arg(&model).arg(&out);
        if args.code || args.build {
            cmd.arg("--code");
        }
        let o = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
        if !o.status.success() {
            anyhow::bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr).trim());
        }
        let text = String::from_utf8_lossy(&o.stdout);
        let line = text.lines().last().unwrap_or("");
        runs.push(serde_json::from_str::<GenMeasured>(line).with_context(|| format!("{cmd:?} printed `{line}`"))?);
    }
    let _ = std::fs::remove_file(&copy);
    let builds = if args.build { Some(build_twice(&out.join("code"), &args.dir.join("code-target"))?) } else { None };
    let _ = std::fs::remove_dir_all(&out);
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let m = runs.swap_remove(runs.len() / 2);
    let cp = median(copies);
    println!(
        "palette generate of a model fitted to {} Alibaba-style rows ({} services generated), median of {repeat} runs; {}",
        thousands(args.rows),
        thousands(args.services as u64),
        machine()
    );
    println!(
        "{:>8}  {:>9}  {:>6}  {:>9}  {:>7}  {:>10}  {:>7}  {:>8}  {:>9}  {:>9}  {:>8}  {:>10}",
        "services",
        "model MiB",
        "files",
        "out MiB",
        "total s",
        "load s",
        "gen s",
        "write s",
        "rustfmt s",
        "peak RSS",
        "copy s",
        "total/copy"
    );
    println!(
        "{:>8}  {:>9.1}  {:>6}  {:>9.1}  {:>7.2}  {:>10.2}  {:>7.2}  {:>8.2}  {:>9.2}  {:>9}  {:>8.2}  {:>10}",
        thousands(m.services),
        file_mib(&model),
        thousands(m.files),
        m.bytes as f64 / (1024.0 * 1024.0),
        m.seconds,
        m.load_s,
        m.generate_s,
        m.write_s,
        m.format_s,
        format!("{} MiB", m.peak_rss_kib / 1024),
        cp,
        format!("{:.1}x", m.seconds / cp),
    );
    if let Some(builds) = builds {
        println!();
        println!("cargo build --release of the generated code ({} services)", thousands(m.services));
        println!("{:<34}  {:>9}  {:>16}  {:>15}", "build", "seconds", "peak RSS (rustc)", "peak RSS (all)");
        for b in builds {
            println!(
                "{:<34}  {:>9.1}  {:>16}  {:>15}",
                b.what,
                b.seconds,
                format!("{} MiB", b.peak_one_kib / 1024),
                format!("{} MiB", b.peak_all_kib / 1024)
            );
        }
    }
    Ok(())
}

/// One timed `cargo build --release`.
struct Build {
    what: &'static str,
    seconds: f64,
    /// The largest compiler process's peak (VmHWM, sampled).
    peak_one_kib: u64,
    /// The most memory the build's processes held at one time (VmRSS summed, sampled).
    peak_all_kib: u64,
}

/// Builds `code` with a fresh target directory, then again after one state's work changed in one module.
fn build_twice(code: &Path, target: &Path) -> anyhow::Result<Vec<Build>> {
    let _ = std::fs::remove_dir_all(target);
    let first = build(code, target, "from nothing (dependencies too)")?;
    let module = std::fs::read_dir(code.join("src"))
        .with_context(|| format!("cannot list {}/src", code.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs") && !p.ends_with("main.rs") && !p.ends_with("api.rs"))
        .min()
        .context("the generated code has no service module")?;
    // An edit as a researcher would make one: one state's work halved.
    let text = std::fs::read_to_string(&module)?;
    let edited = text.replacen("cx.work(work);", "cx.work(work / 2);", 1);
    anyhow::ensure!(edited != text, "{} has no `cx.work(work);` to edit", module.display());
    std::fs::write(&module, edited)?;
    let again = build(code, target, "after an edit of one state's work")?;
    Ok(vec![first, again])
}

fn build(code: &Path, target: &Path, what: &'static str) -> anyhow::Result<Build> {
    eprintln!("cargo build --release in {} ({what})…", code.display());
    let started = Instant::now();
    let mut child = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet"])
        .current_dir(code)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .spawn()
        .context("cannot run cargo")?;
    let (mut peak_one_kib, mut peak_all_kib) = (0, 0);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let (one, all) = descendants_memory_kib(child.id());
        peak_one_kib = peak_one_kib.max(one);
        peak_all_kib = peak_all_kib.max(all);
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    if !status.success() {
        anyhow::bail!("cargo build --release in {} failed ({status})", code.display());
    }
    Ok(Build { what, seconds: started.elapsed().as_secs_f64(), peak_one_kib, peak_all_kib })
}

/// The largest VmHWM and the summed VmRSS of `root`'s descendants (from /proc).
fn descendants_memory_kib(root: u32) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir("/proc") else { return (0, 0) };
    let mut parent_of = std::collections::HashMap::new();
    let mut memory = std::collections::HashMap::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let field = |name: &str| {
            status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        };
        if let Some(ppid) = field("PPid:") {
            parent_of.insert(pid, ppid as u32);
        }
        memory.insert(pid, (field("VmHWM:").unwrap_or(0), field("VmRSS:").unwrap_or(0)));
    }
    let descends = |mut pid: u32| {
        while let Some(&p) = parent_of.get(&pid) {
            if p == root {
                return true;
            }
            pid = p;
        }
        false
    };
    let (mut one, mut all) = (0, 0);
    for (&pid, &(hwm, rss)) in &memory {
        if pid == root || descends(pid) {
            one = one.max(hwm);
            all += rss;
        }
    }
    (one, all)
}
