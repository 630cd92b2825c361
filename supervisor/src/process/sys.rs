//! The one place where the operating system needs `unsafe`: code that runs in
//! the forked child between `fork` and `exec`.
//!
//! Only async-signal-safe libc calls are allowed here (no allocation, no locks),
//! because the child of a multi-threaded parent may hold any lock at fork time.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;

/// Arranges for the child to receive SIGTERM when the supervisor dies, even by
/// SIGKILL, and to exit at once if the supervisor is already gone.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
/// the process; the process module therefore forks only from one long-lived
/// thread (see `spawner`). SIGTERM rather than SIGKILL gives the plugin the
/// chance to remove its socket file, which the protocol requires on SIGTERM.
pub(super) fn die_with_parent(cmd: &mut std::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure calls only async-signal-safe functions (prctl,
    // getppid, _exit) and touches no memory shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would
            // ever send the signal, so leave now.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Sends `signal` to every process in the process group `pgid`.
pub(super) fn signal_group(pgid: u32, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a
    // process group.
    let rc = unsafe { libc::kill(-(pgid as libc::pid_t), signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether a process with this pid exists (it may be a zombie).
pub(super) fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The effective user id, to check ownership of the runtime directory.
pub(super) fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}
