//! What only a long-running supervisor (`oort serve`) sets up: a raised
//! open-files limit, the subreaper role, and the reaper process that cleans
//! up after the supervisor when it is killed with SIGKILL.
//!
//! The parent-death signal reaches only a plugin itself; a child it forked
//! that ignores SIGTERM, or that left the plugin's process group with
//! `setsid`, would survive a SIGKILLed supervisor. The reaper is a second,
//! tiny process (`oort __reaper <runtime dir>`) that blocks reading a pipe
//! whose write end only the supervisor holds: end of file means the
//! supervisor is gone, and the reaper kills every process listed in
//! `<runtime dir>/procs` (pid and start time, so a reused pid is never hit),
//! with everything descending from them. If the reaper itself was killed too,
//! the next supervisor on the same runtime root does the same for the stale
//! folder before removing it.
//!
//! A PID namespace would make all of this the kernel's job (the namespace's
//! init dies, every process in it dies), but creating one needs
//! CAP_SYS_ADMIN or an unprivileged user namespace, which many distributions
//! and container runtimes disable; the mechanism here works for any user.

use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use super::{sys, watchdog, RuntimeDir};

/// The hidden subcommand that runs the reaper.
pub const REAPER_COMMAND: &str = "__reaper";

/// Holds the write end of the reaper's pipe for the supervisor's lifetime.
static REAPER_PIPE: OnceLock<Mutex<Option<std::process::ChildStdin>>> = OnceLock::new();

/// Sets up daemon mode. `exe` is an executable that runs [`reaper_main`]
/// when called with [`REAPER_COMMAND`] (the `oort` binary itself).
pub fn install_daemon_guard(runtime: &RuntimeDir, exe: &Path) -> std::io::Result<()> {
    match sys::raise_open_files_limit() {
        Ok((old, new)) if new > old => tracing::info!("raised the open-files limit from {old} to {new}"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
    sys::become_child_subreaper()?;
    let procs_file = runtime.path().join("procs");
    let reaper = watchdog::spawning(|| {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(exe)
            .arg(REAPER_COMMAND)
            .arg(runtime.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            // Its own group: a Ctrl-C meant for the supervisor must not end
            // the reaper before it has done its work.
            .process_group(0)
            .spawn()?;
        let pid = child.id();
        Ok(((child.stdin.take(), pid), pid))
    })?;
    let (stdin, pid) = reaper;
    REAPER_PIPE
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(stdin.ok_or_else(|| std::io::Error::other("the reaper has no stdin pipe"))?);
    watchdog::enable_daemon_mode(procs_file, pid);
    super::cgroup::enable();
    Ok(())
}

/// The reaper: waits until its stdin reaches end of file (the supervisor is
/// gone), then kills the plugin trees recorded in `<dir>/procs`.
pub fn reaper_main(dir: &Path) -> std::process::ExitCode {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let killed = watchdog::kill_recorded(&dir.join("procs"));
    if killed > 0 {
        eprintln!("oort reaper: the supervisor died; killed {killed} plugin processes it left behind");
    }
    std::process::ExitCode::SUCCESS
}
