//! Intra-op parallelism. A run executes on its caller's thread; the thread pool a run may use for
//! parallel kernels is set for that thread by [`enter`] (the session does this per run). Kernels ask
//! [`threads`] how many parts to split into and hand the parts to [`for_each`]. Without a pool
//! (one-thread sessions, wasm32, or code already running on a pool worker) everything runs inline
//! on the calling thread: no pool is entered, and two one-thread runs on two threads never share
//! or wait for anything.

use std::cell::RefCell;
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
pub use rayon::ThreadPool;

/// Stand-in on targets without threads; no pool is ever built there.
#[cfg(target_arch = "wasm32")]
pub struct ThreadPool(());

#[cfg(target_arch = "wasm32")]
impl ThreadPool {
    fn current_num_threads(&self) -> usize {
        1
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<ThreadPool>>> = const { RefCell::new(None) };
}

/// Builds a pool of `threads` workers; `None` when one thread is asked for or threads are unavailable.
pub fn build_pool(threads: usize) -> Option<Arc<ThreadPool>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if threads > 1 {
            return rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("kiln-worker-{i}"))
                .build()
                .ok()
                .map(Arc::new);
        }
    }
    let _ = threads;
    None
}

/// Restores the calling thread's previous pool when dropped.
pub struct PoolGuard {
    prev: Option<Arc<ThreadPool>>,
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// Makes `pool` the pool that parallel kernels on this thread use until the guard is dropped.
pub fn enter(pool: Option<Arc<ThreadPool>>) -> PoolGuard {
    let prev = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), pool));
    PoolGuard { prev }
}

/// How many parts a kernel on this thread should split its work into (1: run inline).
pub fn threads() -> usize {
    CURRENT.with(|c| c.borrow().as_ref().map_or(1, |p| p.current_num_threads()))
}

/// Runs `f` on every item: on the current pool when there is one and more than one item,
/// otherwise in order on this thread.
pub fn for_each<I: Send, F: Fn(I) + Sync + Send>(items: Vec<I>, f: F) {
    if items.len() > 1 {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let pool = CURRENT.with(|c| c.borrow().clone());
            if let Some(pool) = pool {
                use rayon::prelude::*;
                pool.install(|| items.into_par_iter().for_each(f));
                return;
            }
        }
    }
    items.into_iter().for_each(f);
}

/// Splits `data` into whole groups of `unit` elements, one part per thread when it holds at least
/// `min_len` elements (otherwise one part), and runs `f(first_group_index, part)` on each part.
pub fn split_mut<T: Send, F: Fn(usize, &mut [T]) + Sync + Send>(data: &mut [T], unit: usize, min_len: usize, f: F) {
    let unit = unit.max(1);
    let groups = data.len() / unit;
    let parts = threads().min(groups).min(data.len() / min_len.max(1)).max(1);
    if parts == 1 {
        f(0, data);
        return;
    }
    let per = groups.div_ceil(parts);
    let items: Vec<(usize, &mut [T])> =
        data.chunks_mut(per * unit).enumerate().map(|(i, c)| (i * per, c)).collect();
    for_each(items, |(g, c)| f(g, c));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn inline_without_pool() {
        assert_eq!(threads(), 1);
        let me = std::thread::current().id();
        for_each((0..8).collect(), |_| assert_eq!(std::thread::current().id(), me));
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn pool_is_per_thread_and_restored() {
        let pool = build_pool(2);
        assert!(pool.is_some());
        {
            let _g = enter(pool);
            assert_eq!(threads(), 2);
            let n = AtomicUsize::new(0);
            for_each((0..100).collect::<Vec<usize>>(), |i| {
                // Nested kernels on a worker run inline.
                assert_eq!(threads(), 1);
                n.fetch_add(i, Ordering::Relaxed);
            });
            assert_eq!(n.into_inner(), 4950);
            // Another thread does not see this thread's pool.
            std::thread::spawn(|| assert_eq!(threads(), 1)).join().unwrap();
            // split_mut covers every group once, in whole groups.
            let mut v = vec![0usize; 1000];
            split_mut(&mut v, 10, 1, |g, part| {
                assert_eq!(part.len() % 10, 0);
                for (k, x) in part.iter_mut().enumerate() {
                    *x += g * 10 + k;
                }
            });
            assert!(v.iter().enumerate().all(|(i, &x)| x == i));
        }
        assert_eq!(threads(), 1);
    }
}
