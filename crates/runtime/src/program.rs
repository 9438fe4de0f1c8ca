//! Services as code: what `palette generate --code rust` builds on.
//!
//! A generated workspace has one Rust function per API whose body is the
//! API's PFA — a function per state, its transitions a `match` on the
//! transition [`Cx::transition`] draws, its calls [`Cx::calls`] — and a
//! `main` that hands the table of those functions to [`main`]. The binary
//! then serves the system exactly as `palette serve` does (same
//! `system.json`, ports, peers, spans, arguments), running each API's
//! function instead of walking its PFA. The causal target, the live top-up
//! of work and the absorption of transport time stay inside [`Cx`], so an
//! unedited generated system behaves like the interpreted one; a researcher
//! replaces a `cx.work(…)` with real work, or adds real calls, and the rest
//! of the system stays as the model says.
//!
//! ```
//! use palette_runtime::program::{Cx, Stop};
//!
//! /// A leaf API: its observed latency, as sleep (or real work in its place).
//! async fn lookup(cx: &mut Cx<'_>) -> Result<(), Stop> {
//!     let work = cx.leaf_work();
//!     cx.work(work);
//!     Ok(())
//! }
//!
//! let programs = palette_runtime::programs![(0, "cache Get") => lookup];
//! assert_eq!(programs.len(), 1);
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub use palette_model::ApiId;

use crate::config::{PeerHosts, SystemConfig};
pub use crate::execute::{Cx, Stop};
use crate::server::{ServeOptions, ShutdownSignals, start};

/// What an API's function returns, boxed so a table can hold them.
pub type Body<'a> = Pin<Box<dyn Future<Output = Result<(), Stop>> + Send + 'a>>;

/// An API's generated function, as the table holds it.
pub type ApiBody = for<'a, 's> fn(&'a mut Cx<'s>) -> Body<'a>;

/// Builds a [`Programs`] table from `(API id, "service operation") =>
/// async fn` entries; the names are checked against the model at start-up.
#[macro_export]
macro_rules! programs {
    ($(($api:expr, $name:expr) => $body:path),* $(,)?) => {
        $crate::program::Programs::new(vec![$((
            $api,
            $name,
            {
                fn boxed<'a, 's>(cx: &'a mut $crate::execute::Cx<'s>) -> $crate::program::Body<'a> {
                    Box::pin($body(cx))
                }
                boxed as $crate::program::ApiBody
            },
        )),*])
    };
}

/// The generated functions of a binary, by API.
#[derive(Clone, Default)]
pub struct Programs {
    /// Indexed by API id; `None`: the API walks its PFA.
    by_api: Arc<Vec<Option<ApiBody>>>,
    /// Each entry's API name, to check the binary was made from this model.
    names: Arc<Vec<(ApiId, &'static str)>>,
}

impl std::fmt::Debug for Programs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Programs({} APIs)", self.len())
    }
}

/// Why a table of generated functions does not fit the system it is asked to serve.
#[derive(Debug, thiserror::Error)]
#[error(
    "this binary was generated from another model: {0}; generate the code again from the model in system.json \
     (`palette generate MODEL -o DIR --code rust`)"
)]
pub struct MismatchError(String);

impl Programs {
    pub fn new(entries: Vec<(ApiId, &'static str, ApiBody)>) -> Programs {
        let len = entries.iter().map(|(a, _, _)| *a as usize + 1).max().unwrap_or(0);
        let mut by_api = vec![None; len];
        let mut names = Vec::with_capacity(entries.len());
        for (api, name, body) in entries {
            by_api[api as usize] = Some(body);
            names.push((api, name));
        }
        Programs { by_api: Arc::new(by_api), names: Arc::new(names) }
    }

    /// How many APIs have a function.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The function of `api`, if the binary has one.
    pub fn get(&self, api: ApiId) -> Option<ApiBody> {
        self.by_api.get(api as usize).copied().flatten()
    }

    /// Checks every function's API against the model: same id, same name.
    pub fn check(&self, config: &SystemConfig) -> Result<(), MismatchError> {
        let model = &config.model;
        for &(api, name) in self.names.iter() {
            if api as usize >= model.apis.len() {
                return Err(MismatchError(format!("API {api} (`{name}`) is not in it")));
            }
            let there = model.api_name(api);
            if there != name {
                return Err(MismatchError(format!("API {api} is `{there}` there, `{name}` here")));
            }
        }
        Ok(())
    }
}

// The supervisor contract is the spec's, shared with `palette-system`.
pub use palette_spec::supervisor::{SUPERVISOR_PID_ENV, die_with_supervisor};

const USAGE: &str = "usage: BINARY [serve] SYSTEM (--all | --service=NAME[,NAME…]) [--listen-host ADDR] \
                     [--peers loopback|dns] [--instance N] [--drain SECONDS]";

/// The arguments `palette serve` takes, which `palette up`, compose and
/// Kubernetes pass: a generated binary is a drop-in for `palette serve`.
fn parse_args(args: &[String]) -> Result<(PathBuf, ServeOptions), String> {
    let mut args = args.iter().map(String::as_str).peekable();
    if args.peek() == Some(&"serve") {
        args.next();
    }
    let mut system = None;
    let mut opts = ServeOptions::default();
    let mut services: Vec<String> = Vec::new();
    let mut all = false;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next().map(String::from)).ok_or(format!("{flag} needs a value"));
        match flag {
            "--all" => all = true,
            "--service" => services.extend(value()?.split(',').map(String::from)),
            "--listen-host" => {
                let v = value()?;
                opts.listen_host = v.parse::<IpAddr>().map_err(|e| format!("--listen-host {v}: {e}"))?;
            }
            "--peers" => {
                opts.peers = match value()?.as_str() {
                    "loopback" => PeerHosts::Loopback,
                    "dns" => PeerHosts::Dns,
                    other => return Err(format!("--peers {other}: loopback or dns")),
                }
            }
            "--instance" => {
                let v = value()?;
                opts.instance = Some(v.parse().map_err(|e| format!("--instance {v}: {e}"))?);
            }
            "--drain" => {
                let v = value()?;
                let secs: f64 = v.trim_end_matches('s').parse().map_err(|e| format!("--drain {v}: {e}"))?;
                opts.drain = Duration::try_from_secs_f64(secs).map_err(|e| format!("--drain {v}: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            f if f.starts_with('-') => return Err(format!("unknown flag {f}")),
            path if system.is_none() => system = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    let system = system.ok_or("no SYSTEM (a system.json)")?;
    if all != services.is_empty() {
        return Err("pass --all or --service (not both)".into());
    }
    opts.services = (!all).then_some(services);
    opts.base_dir = match system.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((system, opts))
}

/// Serves the system named on the command line with `programs` until
/// SIGINT or SIGTERM; exit codes as `palette serve` (0, 1, 2 usage, 65 bad
/// system.json, 130/143 after a signal).
pub fn main(programs: Programs) -> ExitCode {
    let name = std::env::args().next().unwrap_or_else(|| "service".into());
    if let Err(e) = die_with_supervisor() {
        eprintln!("{name}: not starting: {e}");
        return ExitCode::from(1);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (system, mut opts) = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{name}: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match SystemConfig::load(&system) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            return ExitCode::from(if e.is_bad_data() { 65 } else { 2 });
        }
    };
    if let Err(e) = programs.check(&config) {
        eprintln!("{name}: error: {e}");
        return ExitCode::from(65);
    }
    opts.programs = programs;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: error: cannot start Tokio: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        // Caught before anyone is told the services are up.
        let mut signals = match ShutdownSignals::listen() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{name}: error: cannot catch SIGINT and SIGTERM: {e}");
                return ExitCode::from(1);
            }
        };
        let running = match start(config, &opts).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{name}: error: {e}");
                return ExitCode::from(1);
            }
        };
        for (service, addr) in running.listening() {
            println!("{service} listening on http://{addr} (generated code)");
        }
        let signal = signals.recv().await;
        eprintln!("{name}: {signal}: stopping (draining for up to {:?}; {signal} again to quit now)", opts.drain);
        let quitting = name.clone();
        tokio::spawn(async move {
            let again = signals.recv().await;
            eprintln!("{quitting}: {again} again: quitting now");
            std::process::exit(if again == "SIGINT" { 130 } else { 143 });
        });
        let stats = running.shutdown().await;
        eprintln!("{name}: stopped; {} spans exported, {} dropped", stats.exported, stats.dropped);
        ExitCode::from(if signal == "SIGINT" { 130 } else { 143 })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_arguments_are_those_of_palette_serve() {
        let (path, o) =
            parse_args(&args("serve sys/system.json --service=a,b --listen-host 0.0.0.0 --peers dns")).unwrap();
        assert_eq!(path, PathBuf::from("sys/system.json"));
        assert_eq!(o.services, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(o.listen_host.to_string(), "0.0.0.0");
        assert_eq!(o.peers, PeerHosts::Dns);
        assert_eq!(o.base_dir, PathBuf::from("sys"));
        let (_, o) = parse_args(&args("system.json --all --instance=1 --drain 2s")).unwrap();
        assert_eq!((o.services, o.instance, o.drain), (None, Some(1), Duration::from_secs(2)));
        assert!(parse_args(&args("system.json")).unwrap_err().contains("--all or --service"));
        assert!(parse_args(&args("system.json --all --bogus")).unwrap_err().contains("unknown flag --bogus"));
        assert!(parse_args(&args("--all")).unwrap_err().contains("no SYSTEM"));
    }
}
