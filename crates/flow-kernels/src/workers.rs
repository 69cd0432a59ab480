//! Keeping rayon's other threads awake between parallel regions.
//!
//! A training step on the CPU backends is a chain of short parallel regions (each kernel,
//! each weight gradient, the optimizer's update) with serial work in between (the autodiff
//! graph, small tensor ops). rayon's idle threads spin only briefly and then sleep on a
//! futex, so after a serial stretch every region waits for a sleeping thread to be woken,
//! ten times longer than an awake thread takes to start (docs/benchmarks.md has the
//! measurement). A vae-planar training step has ~15 such regions, a realnvp-moons step ~60.
//!
//! [`with_hot_workers`] runs a closure while every other thread of the pool polls for work
//! instead of sleeping — what the OpenMP threads behind PyTorch's CPU operators do between
//! parallel regions (they spin for a while before they sleep). The price: those threads
//! keep their cores busy for the whole closure, serial stretches included, so it suits a
//! machine given over to the training run, not one shared with other work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use burn::tensor::backend::Backend;

/// Sets the flag when dropped: the pollers stop even if the closure panics (otherwise
/// rayon's scope would wait for them forever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `f` on a thread of rayon's global pool while each of the pool's other threads
/// polls for work (`rayon::yield_now`) instead of sleeping between parallel regions; see
/// the [module docs](self) for why and at what price. Returns `f`'s result; a panic in
/// `f` propagates after the pollers have stopped. With one thread it just runs `f`. `f`
/// sees this thread's [`crate::with_reference`] switch wherever it runs.
///
/// ```
/// use rayon::prelude::*;
/// let total: u64 = flow_kernels::workers::with_hot_workers(|| {
///     (0..100).map(|_| (0..1000u64).into_par_iter().sum::<u64>()).sum()
/// });
/// assert_eq!(total, 100 * 499_500);
/// ```
pub fn with_hot_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let others = rayon::current_num_threads().saturating_sub(1);
    if others == 0 {
        return f();
    }
    let f = crate::carrying_switch(f);
    let stop = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    rayon::scope(|s| {
        let stop_guard = StopOnDrop(&stop);
        for _ in 0..others {
            s.spawn(|_| {
                started.fetch_add(1, Ordering::AcqRel);
                // Until every poller has started, poll nothing: a poller that took another
                // poller's job would leave a thread asleep.
                while started.load(Ordering::Acquire) < others && !stop.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                while !stop.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // The pollers must be taken by the other threads before `f` runs: this thread,
        // waiting inside `f` for a parallel region, could otherwise pick one up itself
        // and poll until `f` returns, which it then never would.
        while started.load(Ordering::Acquire) < others {
            std::hint::spin_loop();
        }
        let out = f();
        drop(stop_guard);
        out
    })
}

/// [`with_hot_workers`] when `B` is one of the CPU backends (`Flex`, `NdArray`: the
/// backend a program runs on, without `Autodiff`), else just `f()`:
/// on a GPU backend the CPU threads are the driver's, and polling would take their cores.
///
/// ```
/// # #[cfg(feature = "ndarray")] {
/// let rows = flow_kernels::workers::with_hot_workers_on::<burn::backend::NdArray, _>(|| 128);
/// assert_eq!(rows, 128);
/// # }
/// ```
pub fn with_hot_workers_on<B: Backend, R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match crate::backends::host_resident::<B>() {
        true => with_hot_workers(f),
        false => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::with_hot_workers;
    use rayon::prelude::*;

    /// The closure runs on a thread of the global pool (the test's thread is not one) but
    /// sees the caller's `with_reference` switch.
    #[test]
    fn the_callers_switch_follows_the_closure() {
        let caller = std::thread::current().id();
        let (off, thread) = crate::with_reference(|| {
            with_hot_workers(|| (crate::enabled(), std::thread::current().id()))
        });
        assert!(!off, "the kernels ran inside with_reference");
        if rayon::current_num_threads() > 1 {
            assert_ne!(thread, caller, "the closure ran on the pool");
        }
    }

    /// Nested parallel work on pools of 1–4 threads: the pollers run its jobs, and every
    /// thread is released at the end (the pool's `install` would hang otherwise).
    #[test]
    fn parallel_work_inside_completes_on_every_pool_size() {
        for threads in 1..=4 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            let total: u64 = pool.install(|| {
                with_hot_workers(|| {
                    (0..200)
                        .map(|i| (0..1000u64).into_par_iter().map(|j| j * i).sum::<u64>())
                        .sum()
                })
            });
            assert_eq!(total, 499_500 * (0..200).sum::<u64>(), "{threads} threads");
        }
    }

    #[test]
    fn a_panic_in_the_closure_propagates_and_stops_the_pollers() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("a pool");
        let caught = pool.install(|| {
            std::panic::catch_unwind(|| with_hot_workers(|| -> u32 { panic!("in the closure") }))
        });
        assert!(caught.is_err());
        // The pool still runs work: no thread is left polling.
        assert_eq!(
            pool.install(|| (0..100u32).into_par_iter().sum::<u32>()),
            4950
        );
    }
}
