//! The one worker pool of the batch steps: threads pulling items from a shared queue, each folding
//! its items into its own state; the first error stops the other threads.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Runs `work(&mut state, item)` for every item on up to `workers` threads, each starting from
/// `init()` and ending with `finish(&mut state)`. Returns the states of all threads, or the first
/// error (the others stop at their next item).
pub fn fold_parallel<I, S, Init, Work, Finish>(
    items: impl IntoIterator<Item = I>,
    workers: usize,
    init: Init,
    work: Work,
    finish: Finish,
) -> Result<Vec<S>>
where
    I: Send,
    S: Send,
    Init: Fn() -> S + Sync,
    Work: Fn(&mut S, I) -> Result<()> + Sync,
    Finish: Fn(&mut S) -> Result<()> + Sync,
{
    let queue = Mutex::new(items.into_iter().collect::<VecDeque<I>>());
    let threads = workers
        .max(1)
        .min(queue.lock().map(|q| q.len()).unwrap_or(1).max(1));
    let cancelled = AtomicBool::new(false);
    let worker = || -> Result<S> {
        let _stop_others_on_panic = CancelOnPanic(&cancelled);
        let mut state = init();
        let outcome = (|| {
            while !cancelled.load(Ordering::Relaxed) {
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                let Some(item) = next else { break };
                work(&mut state, item)?;
            }
            finish(&mut state)
        })();
        if outcome.is_err() {
            cancelled.store(true, Ordering::Relaxed);
        }
        outcome.map(|()| state)
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invariant("a worker thread panicked".into())))
            })
            .collect()
    })
}

/// Stops the other workers at their next item when this one panics.
struct CancelOnPanic<'a>(&'a AtomicBool);

impl Drop for CancelOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_every_item_once_and_stops_on_error() {
        let states = fold_parallel(
            1..=100u64,
            3,
            || 0u64,
            |s, i| {
                *s += i;
                Ok(())
            },
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(states.iter().sum::<u64>(), 5050);
        let e = fold_parallel(
            1..=100u64,
            2,
            || (),
            |_, i| {
                if i == 7 {
                    Err(Error::Invariant("seven".into()))
                } else {
                    Ok(())
                }
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("seven"));
    }

    #[test]
    fn a_panic_is_an_error_and_stops_the_others() {
        use std::sync::atomic::AtomicUsize;
        let done = AtomicUsize::new(0);
        let e = fold_parallel(
            0..10_000u64,
            2,
            || (),
            |_, i| {
                if i == 3 {
                    panic!("worker bug");
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
                done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("panicked"));
        assert!(
            done.load(Ordering::Relaxed) < 9_000,
            "the other worker stopped early"
        );
    }
}
