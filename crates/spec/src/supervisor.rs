//! The contract between a supervisor (`palette_system::Supervisor`) and the
//! children it starts (`palette serve`, generated binaries): the child learns
//! its supervisor's pid from the environment and asks to die with it.

/// Tells a supervised child its supervisor's process id.
pub const SUPERVISOR_PID_ENV: &str = "PALETTE_SUPERVISOR_PID";

/// Called by a child a supervisor started (`palette serve` and generated
/// binaries do, first thing): asks the kernel for SIGTERM when the supervisor goes away —
/// stopped, crashed or killed with SIGKILL — so that no service outlives
/// the command that started it. A process not started by a supervisor is
/// left alone. An error means the supervisor is already gone (it died
/// between starting the child and this call): the child should exit.
pub fn die_with_supervisor() -> std::io::Result<()> {
    let Some(supervisor) = std::env::var(SUPERVISOR_PID_ENV).ok().and_then(|v| v.parse::<i32>().ok()) else {
        return Ok(());
    };
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
    // Checked after asking: a supervisor that died before the request
    // left this process with another parent, and no signal will come.
    match rustix::process::getppid() {
        Some(parent) if parent.as_raw_nonzero().get() == supervisor => Ok(()),
        _ => Err(std::io::Error::other(format!("its supervisor (pid {supervisor}) has exited"))),
    }
}
