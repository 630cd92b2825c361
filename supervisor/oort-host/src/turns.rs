//! Tickets that keep overlapping calls on one instance in the order they
//! were made, across a failure and a new stream.

use super::*;

/// Tickets that order overlapping calls: each call takes the next one, and
/// [`Turn::wait_for_earlier`] waits until every call with a smaller ticket has
/// finished (succeeded, failed for good, or been dropped).
#[derive(Default)]
pub(super) struct Turns {
    pub(super) next: AtomicU64,
    /// Tickets finished out of order, above the watermark.
    pub(super) finished: Mutex<std::collections::BTreeSet<u64>>,
    /// Every ticket below this has finished.
    pub(super) watermark: tokio::sync::watch::Sender<u64>,
}

pub(super) struct Turn<'a> {
    pub(super) turns: &'a Turns,
    pub(super) ticket: u64,
}

impl Turns {
    pub(super) fn take(&self) -> Turn<'_> {
        Turn { turns: self, ticket: self.next.fetch_add(1, Ordering::Relaxed) }
    }
}

impl Turn<'_> {
    pub(super) async fn wait_for_earlier(&self) {
        let mut watermark = self.turns.watermark.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = watermark.wait_for(|w| *w >= self.ticket).await;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut finished = lock(&self.turns.finished);
        let watermark = &self.turns.watermark;
        watermark.send_if_modified(|w| {
            // In order, the common case, needs no bookkeeping.
            if *w == self.ticket {
                *w += 1;
            } else {
                finished.insert(self.ticket);
            }
            while finished.remove(&*w) {
                *w += 1;
            }
            // Wakes only callers that wait (each subscribes first, then
            // reads the value under the channel's lock): the value changes
            // either way, and a call in flight needs no wake-up of nobody.
            watermark.receiver_count() > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `wait_for_earlier` of `turn` finishes at once. (Real time, not
    /// tokio's paused clock: that needs the `test-util` feature, which would
    /// build tokio and everything on it a second time.)
    async fn released(turn: &Turn<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), turn.wait_for_earlier()).await.is_ok()
    }

    #[tokio::test]
    async fn a_turn_waits_for_every_earlier_one_in_any_order_of_finishing() {
        let turns = Turns::default();
        let (first, second, third) = (turns.take(), turns.take(), turns.take());
        assert!(released(&first).await, "the first turn has nobody to wait for");
        assert!(!released(&third).await);
        // Finishing out of order: the third is still behind the first.
        drop(second);
        assert!(!released(&third).await);
        drop(first);
        assert!(released(&third).await);
        // A later ticket waits for the third, which has not finished.
        let fourth = turns.take();
        assert!(!released(&fourth).await);
        drop(third);
        assert!(released(&fourth).await);
    }

    #[tokio::test]
    async fn a_waiting_turn_is_woken_when_the_earlier_one_is_dropped() {
        let turns = Arc::new(Turns::default());
        let first = turns.take();
        let waiter = {
            let turns = turns.clone();
            tokio::spawn(async move {
                let second = turns.take();
                second.wait_for_earlier().await;
                tokio::time::Instant::now()
            })
        };
        // A negative check needs time: a waiter that ignored the first turn
        // would have finished within this.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dropped_at = tokio::time::Instant::now();
        drop(first);
        let woke_at = waiter.await.unwrap();
        assert!(woke_at >= dropped_at, "the second turn went before the first finished");
    }
}
