//! Forks plugin processes from one long-lived thread.
//!
//! The parent-death signal is tied to the thread that forked the child: a child
//! forked from a short-lived thread (tokio's blocking pool retires idle threads)
//! would be killed when that thread exits. One dedicated thread that lives as
//! long as the supervisor avoids that; it is process-wide state on purpose,
//! because the thread's lifetime must be the process's.

use std::sync::mpsc;
use std::sync::OnceLock;

use tokio::sync::oneshot;

type Reply = oneshot::Sender<std::io::Result<tokio::process::Child>>;

struct Job {
    cmd: std::process::Command,
    setup: super::sys::ChildSetup,
    runtime: tokio::runtime::Handle,
    reply: Reply,
}

static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

/// Spawns `cmd` in its own process group, set to die with the supervisor,
/// with the limits and cgroup of `setup`.
pub(super) async fn spawn(
    mut cmd: std::process::Command,
    setup: super::sys::ChildSetup,
) -> std::io::Result<tokio::process::Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("oort-spawner".into())
            .spawn(move || {
                for job in rx {
                    // tokio's child reaping registers with the caller's runtime,
                    // so spawn inside its context.
                    let _guard = job.runtime.enter();
                    let mut std_cmd = job.cmd;
                    super::sys::prepare_child(&mut std_cmd, job.setup);
                    let mut cmd = tokio::process::Command::from(std_cmd);
                    cmd.kill_on_drop(true);
                    // Registered as ours before the orphan sweep can see it.
                    let spawned = super::watchdog::spawning(|| {
                        let child = cmd.spawn()?;
                        let pid = child.id().unwrap_or_default();
                        Ok((child, pid))
                    });
                    let _ = job.reply.send(spawned);
                }
            })
            .expect("the spawner thread can always be created at start-up");
        tx
    });
    let (reply, rx) = oneshot::channel();
    sender
        .send(Job { cmd, setup, runtime: tokio::runtime::Handle::current(), reply })
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.await.map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}
