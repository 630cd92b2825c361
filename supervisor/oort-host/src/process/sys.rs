//! The one place where the operating system needs `unsafe`: code that runs in
//! the forked child between `fork` and `exec`, and the few libc calls std does
//! not wrap (signals, rlimits, `prctl`, `waitpid` on one pid).
//!
//! Only async-signal-safe libc calls are allowed in the pre-exec hook (no
//! allocation, no locks), because the child of a multi-threaded parent may hold
//! any lock at fork time.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::process::CommandExt;

/// One resource limit to set in the child before `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rlimit {
    /// Private writable memory (heap, anonymous mappings, stacks), in bytes.
    Data(u64),
    /// CPU time in seconds; the kernel sends SIGXCPU when it is spent.
    Cpu(u64),
    /// Open file descriptors.
    OpenFiles(u64),
}

/// What the pre-exec hook does besides the parent-death signal.
#[derive(Debug, Default)]
pub(super) struct ChildSetup {
    pub rlimits: Vec<Rlimit>,
    /// A cgroup v2 `cgroup.procs` file the child moves itself into, so that it
    /// and everything it forks is accounted there from its first instruction.
    pub cgroup_procs: Option<CString>,
}

/// Arranges for the child to receive SIGTERM when the supervisor dies, even by
/// SIGKILL, and to exit at once if the supervisor is already gone; sets its
/// resource limits and, with cgroup v2, its cgroup.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
/// the process; the process module therefore forks only from one long-lived
/// thread (see `spawner`). SIGTERM rather than SIGKILL gives the plugin the
/// chance to remove its socket file, which the protocol requires on SIGTERM.
pub(super) fn prepare_child(cmd: &mut std::process::Command, setup: ChildSetup) {
    let parent = std::process::id() as libc::pid_t;
    // Everything the closure needs is computed here, in the parent: the child
    // must not allocate.
    let rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = setup
        .rlimits
        .iter()
        .map(|r| {
            let (resource, soft, hard) = match *r {
                Rlimit::Data(v) => (libc::RLIMIT_DATA, v, v),
                // SIGXCPU at the soft limit names the cause; the kernel's
                // SIGKILL at the hard one, for a plugin that ignores SIGXCPU.
                Rlimit::Cpu(v) => (libc::RLIMIT_CPU, v, v.saturating_add(5)),
                Rlimit::OpenFiles(v) => (libc::RLIMIT_NOFILE, v, v),
            };
            (resource, libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t })
        })
        .collect();
    let cgroup = setup.cgroup_procs;
    // SAFETY: the closure calls only async-signal-safe functions (prctl,
    // getppid, _exit, getrlimit, setrlimit, open, write, close) on memory
    // prepared before the fork, and touches no memory shared with other threads.
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
            if let Some(procs) = &cgroup {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" names the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (resource, limit) in &rlimits {
                // A limit can only go down without privileges: never ask for
                // more than the current hard limit.
                let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::getrlimit(*resource, &mut current) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let max = limit.rlim_max.min(current.rlim_max);
                let wanted = libc::rlimit { rlim_cur: limit.rlim_cur.min(max), rlim_max: max };
                if libc::setrlimit(*resource, &wanted) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
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

/// Sends `signal` to one process.
pub(super) fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    if pid == 0 || pid > i32::MAX as u32 {
        // 0 and "negative" pids would name groups: never by accident.
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether a process with this pid is alive: it exists and is not a zombie
/// (a killed process stays a zombie until its parent reaps it, and signal 0
/// still reaches a zombie).
pub(super) fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// Whether `/proc` shows the process as a zombie (`Z`) or dead (`X`); false
/// when `/proc` cannot tell.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may
    // itself hold spaces and parentheses.
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// The effective user id, to check ownership of the runtime directory.
pub(super) fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// Raises the soft limit of open files to the hard limit. A daemon holds a
/// socket, a pipe pair and a stream per plugin process and rule, so the
/// traditional soft limit of 1024 is far too low while the hard limit usually
/// is not. Returns the (old, new) soft limit.
pub(super) fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((old, lim.rlim_cur))
}

/// The current hard limit of open files, the most a plugin can be given.
pub(super) fn open_files_hard_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_max
}

/// Makes this process the reaper of its orphaned descendants: a plugin's child
/// whose parent died is re-parented to the supervisor instead of init, so the
/// supervisor still sees (and kills) it.
pub(super) fn become_child_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps `pid` if it is a zombie child of ours; never waits. Only for pids
/// that are not `tokio::process::Child`ren, whose status tokio must collect.
pub(super) fn reap(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG writes only `status`.
    let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    rc == pid as libc::pid_t
}

/// Clock ticks per second, the unit of CPU times in `/proc/<pid>/stat`.
pub(super) fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The page size, the unit of RSS in `/proc/<pid>/stat`.
pub(super) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}
