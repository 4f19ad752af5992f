//! Work over many objects on several threads, each taking the next item
//! from a shared counter (so one slow item does not hold up a share of the
//! rest): `check --read-data` reading packs, `repair index` scanning them.

use std::sync::Mutex;

use super::{RepoError, Repository};
use crate::interrupt;

/// Runs `work` on each of `items`, on as many threads as cores, or as
/// requests the store wants in flight (a network store: each thread waits
/// on its reads). Each thread folds into a state of its own (`init`);
/// returns every thread's state, or the first error. An interrupt stops
/// every thread before its next item.
pub fn each_on_workers<T: Sync, S: Send>(
    repo: &Repository,
    items: &[T],
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> Result<(), RepoError> + Sync,
) -> Result<Vec<S>, RepoError> {
    let next = Mutex::new(0usize);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = cores
        .max(repo.sink().capabilities().concurrency.min(16))
        .min(items.len())
        .max(1);
    let (next, init, work) = (&next, &init, &work);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut state = init();
                    loop {
                        let i = {
                            let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                            *n += 1;
                            *n - 1
                        };
                        let Some(item) = items.get(i) else { break };
                        if interrupt::is_set() {
                            return Err(RepoError::Interrupted);
                        }
                        work(&mut state, item)?;
                    }
                    Ok(state)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(RepoError::ThreadPanicked)))
            .collect()
    })
}
