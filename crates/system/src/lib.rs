//! # palette-system
//!
//! Brief overview: where a model becomes a system you can run. [`generate()`]
//! turns a model into a system directory — `system.json` (the
//! `palette-system/1` file every service process loads: services with
//! their DNS host labels and ports, the model, work mode, tracing, limits),
//! `compose.yaml`, Kubernetes manifests under `k8s/`, a `Dockerfile` and a
//! `README.md` — and [`write_dir`] writes it atomically. [`up`] runs such a
//! system as local `palette serve` processes under a [`Supervisor`] that
//! checks ports, waits for health, restarts crashed services with backoff
//! and stops them all on request.
//!
//! ```
//! use palette_system::{generate, GenerateOptions};
//! # use palette_model::{build_model, FitOptions, Fitter, ModelKind, TraceFilter};
//! # use palette_trace::{read_traces, CallTree, NoProgress, ReadOptions};
//! # let dir = std::env::temp_dir().join(format!("palette-system-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("traces.jsonl");
//! # let t = palette_testkit::system::generate(&palette_testkit::examples::figure1(), 50, 1);
//! # palette_trace::write::write_otlp_lines(std::fs::File::create(&path).unwrap(), t.traces.iter().map(Vec::as_slice), &t.names).unwrap();
//! # let mut fitter = Fitter::new(FitOptions::default(), TraceFilter::default());
//! # let names = palette_model::FilterNames::default();
//! # let read = read_traces(&[path], &ReadOptions::default(), &NoProgress, &mut |tree: &CallTree| { fitter.add(tree, &names); Ok(()) }).unwrap();
//! # let model = build_model(&fitter.into_partial(&read.names, vec![]), ModelKind::Palette, 1);
//! // `model` is a fitted palette_model::Model (services A, B and C).
//! let opts = GenerateOptions { name: "figure1".into(), ..GenerateOptions::default() };
//! let system = generate(model, &opts)?;
//! let ports: Vec<u16> = system.config.services.iter().map(|s| s.port).collect();
//! assert_eq!(ports, [7000, 7001, 7002]);
//! assert!(system.file("k8s/services/b.yaml").unwrap().contains("kind: Deployment"));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), palette_system::GenerateError>(())
//! ```

pub mod code;
pub mod compose;
pub mod docker;
pub mod dockerfile;
pub mod generate;
pub mod image;
pub mod k8s;
pub mod readme;
pub mod supervise;
pub mod up;
mod yaml;

pub use generate::{GenerateError, GenerateOptions, Generated, GeneratedFile, generate, write_dir};
pub use supervise::{ChildSpec, Endpoint, StopReport, Supervisor, SupervisorError, SupervisorOptions};
pub use up::{LocalSystem, UpOptions};
