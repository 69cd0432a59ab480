//! Keeping burn-train's checkpointer threads and the training thread off the device at the
//! same time.
//!
//! burn-train hands each checkpoint's records (clones of the live parameters and optimizer
//! moments) to three checkpointer threads, one per file, which read and drop them while the
//! training thread goes on. burn-fusion 0.21 loses a tensor's handle ("Should have handle
//! for tensor", tracel-ai/burn#4347) when another thread reads or drops it while its own
//! thread still has ops on it queued. [`Handoff`] closes that window: the training thread
//! drains its queue before the records leave ([`Handoff::before_save`], from the
//! checkpointing strategy) and waits for the files before it queues anything else
//! ([`Handoff::wait`], from the end-of-epoch hook, which burn-train runs right after the
//! save); the recorder reports each file it finishes ([`Handoff::written`]). The files are
//! small, so the training thread loses little by waiting.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Files burn-train writes per checkpoint: model, optimizer, learning-rate scheduler.
pub const FILES_PER_CHECKPOINT: usize = 3;

/// How long the training thread waits for a checkpoint's files before it gives up.
const WAIT: Duration = Duration::from_secs(600);

/// The shared count of checkpoint files still being written, and the training device's
/// queue drain. Cloning shares it.
#[derive(Clone)]
pub struct Handoff {
    pending: Arc<(Mutex<usize>, Condvar)>,
    drain: Arc<dyn Fn() + Send + Sync>,
}

impl Handoff {
    /// A handoff whose `drain` waits for every op the training thread has queued on its
    /// device (`Backend::sync`).
    pub fn new(drain: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            pending: Arc::default(),
            drain: Arc::new(drain),
        }
    }

    /// On the training thread, before burn-train hands a checkpoint's records to its
    /// threads: runs the queued ops and expects [`FILES_PER_CHECKPOINT`] files.
    pub fn before_save(&self) {
        (self.drain)();
        *self.lock() += FILES_PER_CHECKPOINT;
    }

    /// On a checkpointer thread: one file is written (or failed), its records read and
    /// dropped.
    pub fn written(&self) {
        let mut pending = self.lock();
        *pending = pending.saturating_sub(1);
        self.pending.1.notify_all();
    }

    /// On the training thread: waits until every expected file is done. `Err` after ten
    /// minutes without (a checkpointer thread died).
    pub fn wait(&self) -> Result<(), String> {
        let (guard, timeout) = self
            .pending
            .1
            .wait_timeout_while(self.lock(), WAIT, |p| *p > 0)
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() && *guard > 0 {
            return Err(format!(
                "{} checkpoint file(s) not written after {} s",
                *guard,
                WAIT.as_secs()
            ));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.pending
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Handoff {
    /// Nothing to drain (a recorder used outside training).
    fn default() -> Self {
        Self::new(|| {})
    }
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("pending", &*self.lock())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_training_thread_drains_first_and_waits_for_every_file() {
        let drained = Arc::new(AtomicUsize::new(0));
        let handoff = Handoff::new({
            let drained = drained.clone();
            move || {
                drained.fetch_add(1, Ordering::SeqCst);
            }
        });
        handoff.before_save();
        assert_eq!(drained.load(Ordering::SeqCst), 1);
        let writers: Vec<_> = (0..FILES_PER_CHECKPOINT)
            .map(|i| {
                let h = handoff.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20 * i as u64));
                    h.written();
                })
            })
            .collect();
        handoff.wait().unwrap();
        assert_eq!(*handoff.lock(), 0);
        for w in writers {
            w.join().unwrap();
        }
    }
}
