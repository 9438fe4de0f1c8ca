//! A generated system on Docker Compose, driven as `palette up` drives
//! local processes: start it, wait until every published port answers
//! `/healthz`, and on stop let the services flush their spans, copy the
//! span file out of the `spans` volume and remove every container, network
//! and volume the project made.
//!
//! Compose v2 (`docker compose`) is used when the Docker CLI has it, else
//! v1 (`docker-compose`, Debian's package); the generated `compose.yaml`
//! is valid for both.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use palette_spec::config::SystemConfig;

use crate::compose::CONTAINER_DIR;
use crate::supervise::healthy;

/// Why a compose system did not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("neither `docker compose` nor `docker-compose` runs here; install Docker with Compose")]
    NoCompose,
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` failed: {message}")]
    Failed { command: String, message: String },
    #[error("{} has no compose.yaml; write the system with `palette generate MODEL -o DIR`", dir.display())]
    NoComposeFile { dir: PathBuf },
    #[error("{}: no `image:` line; generate the system again", path.display())]
    NoImage { path: PathBuf },
    #[error("not healthy within {timeout:?}: {unhealthy}")]
    Unhealthy { timeout: Duration, unhealthy: String },
    #[error("stopped by a signal while starting")]
    Interrupted,
}

/// The compose command line this machine has.
#[derive(Clone, Debug, PartialEq)]
pub enum ComposeTool {
    /// `docker compose` (the CLI plugin, v2).
    Plugin,
    /// `docker-compose` (the standalone v1 program).
    Standalone,
}

impl ComposeTool {
    /// The first that answers `version`.
    pub fn detect() -> Result<Self, DockerError> {
        let works = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if works("docker", &["compose", "version"]) {
            Ok(ComposeTool::Plugin)
        } else if works("docker-compose", &["version"]) {
            Ok(ComposeTool::Standalone)
        } else {
            Err(DockerError::NoCompose)
        }
    }

    fn command(&self) -> Command {
        match self {
            ComposeTool::Plugin => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            ComposeTool::Standalone => Command::new("docker-compose"),
        }
    }
}

/// Runs `command`, returning its output, or its stderr as the error.
fn run(mut command: Command) -> Result<Output, DockerError> {
    let line = describe(&command);
    let out =
        command.stdin(Stdio::null()).output().map_err(|source| DockerError::Spawn { command: line.clone(), source })?;
    if out.status.success() {
        Ok(out)
    } else {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(DockerError::Failed { command: line, message })
    }
}

fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for a in command.get_args() {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    line
}

/// One generated system as a compose project.
#[derive(Clone, Debug)]
pub struct ComposeSystem {
    /// The system directory (compose.yaml's own directory: the relative
    /// `./system.json` mounts are resolved from it).
    pub dir: PathBuf,
    /// The project name: the system's name, so containers are named after it.
    pub project: String,
    /// Which compose command runs it.
    pub tool: ComposeTool,
}

impl ComposeSystem {
    /// The project of the system in `dir`.
    pub fn new(dir: &Path, config: &SystemConfig, tool: ComposeTool) -> Result<Self, DockerError> {
        if !dir.join("compose.yaml").is_file() {
            return Err(DockerError::NoComposeFile { dir: dir.to_path_buf() });
        }
        Ok(ComposeSystem { dir: dir.to_path_buf(), project: config.name.clone(), tool })
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut c = self.tool.command();
        let file: OsString = self.dir.join("compose.yaml").into();
        c.arg("--project-directory").arg(&self.dir).arg("-f").arg(file).arg("-p").arg(&self.project);
        c.args(args);
        c
    }

    /// The image compose.yaml runs (every service runs the same one).
    pub fn image(&self) -> Result<String, DockerError> {
        let path = self.dir.join("compose.yaml");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| DockerError::Spawn { command: format!("read {}", path.display()), source })?;
        let line = text.lines().find_map(|l| l.trim().strip_prefix("image:")).ok_or(DockerError::NoImage { path })?;
        let value = line.trim();
        let unquoted = serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_string());
        Ok(unquoted.replace("$$", "$"))
    }

    /// Starts every service in the background.
    pub fn up(&self) -> Result<(), DockerError> {
        run(self.compose(&["up", "-d", "--remove-orphans"])).map(drop)
    }

    /// Waits until every published port answers `/healthz`, checking
    /// `interrupted` between rounds.
    pub fn wait_healthy(
        &self,
        config: &SystemConfig,
        timeout: Duration,
        interrupted: impl Fn() -> bool,
    ) -> Result<(), DockerError> {
        let addrs: Vec<(String, SocketAddr)> = config
            .services
            .iter()
            .flat_map(|s| {
                (0..s.instances).map(move |i| {
                    let port = s.port.saturating_add(i as u16);
                    (s.name.clone(), SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
                })
            })
            .collect();
        let start = Instant::now();
        let mut pending = addrs;
        loop {
            pending.retain(|(_, a)| !healthy(*a));
            if pending.is_empty() {
                return Ok(());
            }
            if interrupted() {
                return Err(DockerError::Interrupted);
            }
            if start.elapsed() > timeout {
                let unhealthy = pending.iter().map(|(s, a)| format!("`{s}` at {a}")).collect::<Vec<_>>().join(", ");
                return Err(DockerError::Unhealthy { timeout, unhealthy });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines each service logged, for an error message.
    pub fn logs_tail(&self, lines: usize) -> String {
        let n = lines.to_string();
        match run(self.compose(&["logs", "--no-color", "--tail", &n])) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(no logs: {e})"),
        }
    }

    /// Stops the services (each gets its grace period to drain and flush
    /// spans), so the span file is complete.
    pub fn stop(&self) -> Result<(), DockerError> {
        run(self.compose(&["stop"])).map(drop)
    }

    /// Copies `file` (relative to the services' directory, the `spans`
    /// volume) out of the first service's container to `to`, through a
    /// temporary file beside it. `Ok(false)` when no container has it.
    pub fn copy_out(&self, service_host: &str, file: &str, to: &Path) -> Result<bool, DockerError> {
        let out = run(self.compose(&["ps", "-a", "-q", service_host]))?;
        let ids = String::from_utf8_lossy(&out.stdout);
        let Some(id) = ids.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Ok(false);
        };
        let tmp = to.with_extension("copying");
        let mut cp = Command::new("docker");
        cp.arg("cp").arg(format!("{id}:{CONTAINER_DIR}/{file}")).arg(&tmp);
        match run(cp) {
            Ok(_) => {}
            Err(DockerError::Failed { message, .. }) if message.contains("No such") || message.contains("not find") => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        std::fs::rename(&tmp, to)
            .map_err(|source| DockerError::Spawn { command: format!("rename to {}", to.display()), source })?;
        Ok(true)
    }

    /// Kills every container at once (no grace period), for a user who
    /// asked twice.
    pub fn kill(&self) -> Result<(), DockerError> {
        run(self.compose(&["kill"])).map(drop)
    }

    /// Removes every container, network and volume of the project.
    pub fn down(&self) -> Result<(), DockerError> {
        run(self.compose(&["down", "-v", "--remove-orphans"])).map(drop)
    }
}

/// Whether the Docker daemon has `image`.
pub fn image_exists(image: &str) -> Result<bool, DockerError> {
    let command = format!("docker image inspect {image}");
    let status = Command::new("docker")
        .args(["image", "inspect", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| DockerError::Spawn { command, source })?;
    Ok(status.success())
}
