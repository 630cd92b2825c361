//! One signal that tells every long-running task to stop.

use tokio::sync::watch;

/// A cloneable handle: `trigger` on any clone wakes `wait` on all of them.
#[derive(Clone)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown { tx: std::sync::Arc::new(tx), rx }
    }
}

impl Shutdown {
    /// Asks everyone to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// Resolves once `trigger` was called (immediately if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Resolves on SIGINT or SIGTERM, or when triggered.
    pub async fn wait_for_signal(&self) {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            _ = self.wait() => {}
        }
        self.trigger();
    }
}
