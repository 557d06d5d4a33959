//! Test support: running work where the blocking pool is small enough to
//! be taken by a few stuck jobs.

use std::future::Future;
use std::time::Duration;

/// Runs the future `work` makes on a runtime with one worker and two
/// blocking-pool threads. Panics if it has not finished within 30 s: what
/// the callers catch is work that waits forever for a taken pool.
pub fn with_two_blocking_threads<F: Future>(work: impl FnOnce() -> F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime");
    let outcome =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), work()).await });
    // Jobs stuck on the pool would keep a normal shutdown waiting.
    runtime.shutdown_background();
    outcome.expect("the blocking pool is taken")
}
