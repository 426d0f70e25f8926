//! Intra-op parallelism. A run executes on its caller's thread; the thread pool a run may use for
//! parallel kernels is set for that thread by [`enter`] (the session does this per run). Kernels ask
//! [`threads`] how many parts to split into and hand the parts to [`for_each`]. Without a pool
//! (one-thread sessions, wasm32, or code already running on a pool worker) everything runs inline
//! on the calling thread: no pool is entered, and two one-thread runs on two threads never share
//! or wait for anything.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
pub use pool::ThreadPool;

/// Stand-in on targets without threads; no pool is ever built there.
#[cfg(target_arch = "wasm32")]
pub struct ThreadPool(());

#[cfg(target_arch = "wasm32")]
impl ThreadPool {
    pub fn current_num_threads(&self) -> usize {
        1
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<ThreadPool>>> = const { RefCell::new(None) };
    /// Set while this thread runs parts of a parallel kernel: nested kernels run inline.
    static IN_PARALLEL: Cell<bool> = const { Cell::new(false) };
}

/// A pool for `threads`-way kernels (the caller plus `threads - 1` workers); `None` when one
/// thread is asked for or threads are unavailable.
pub fn build_pool(threads: usize) -> Option<Arc<ThreadPool>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if threads > 1 {
            return ThreadPool::new(threads).map(Arc::new);
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
    if IN_PARALLEL.with(|f| f.get()) {
        return 1;
    }
    CURRENT.with(|c| c.borrow().as_ref().map_or(1, |p| p.current_num_threads()))
}

/// Runs `f` on every item: split over the current pool (the calling thread takes part) when
/// there is one and more than one item, otherwise in order on this thread.
pub fn for_each<I: Send, F: Fn(I) + Sync + Send>(items: Vec<I>, f: F) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if items.len() > 1 && !IN_PARALLEL.with(|p| p.get()) {
            let pool = CURRENT.with(|c| c.borrow().clone());
            if let Some(pool) = pool {
                let slots = pool::Slots::new(items);
                // SAFETY: the pool calls the task once per index below `len`.
                pool.run(slots.len(), &|i| {
                    if let Some(item) = unsafe { slots.take(i) } {
                        f(item)
                    }
                });
                return;
            }
        }
    }
    items.into_iter().for_each(f);
}

#[cfg(not(target_arch = "wasm32"))]
mod pool {
    //! A small fork-join pool: the caller publishes a task of N indices, workers that are
    //! spinning (or woken from sleep) and the caller claim indices from one counter, and the
    //! caller returns when every index is done and no worker still holds the task. Workers spin
    //! briefly after each task before sleeping, so back-to-back kernels do not pay a wake-up.

    use std::any::Any;
    use std::cell::UnsafeCell;
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use super::IN_PARALLEL;

    type Task<'a> = dyn Fn(usize) + Sync + 'a;

    /// How long an idle worker spins before it sleeps.
    const SPIN: Duration = Duration::from_micros(200);

    struct Shared {
        /// Held by the caller whose task is running.
        busy: AtomicBool,
        /// Bumped for each task.
        epoch: AtomicUsize,
        /// True while the current task accepts workers.
        open: AtomicBool,
        /// Workers that may be reading the task.
        active: AtomicUsize,
        /// The current task, with its lifetime erased; valid while `open` or `active > 0`.
        task: UnsafeCell<Option<*const Task<'static>>>,
        count: AtomicUsize,
        next: AtomicUsize,
        done: AtomicUsize,
        panic: Mutex<Option<Box<dyn Any + Send>>>,
        sleepers: AtomicUsize,
        lock: Mutex<()>,
        wake: Condvar,
        shutdown: AtomicBool,
    }

    // SAFETY: `task` is written only by the caller holding `busy` while no worker can read it
    // (before `open` is set, after `active` drops to 0); everything else is atomics and locks.
    unsafe impl Sync for Shared {}
    // SAFETY: as above.
    unsafe impl Send for Shared {}

    pub struct ThreadPool {
        shared: Arc<Shared>,
        handles: Vec<JoinHandle<()>>,
        threads: usize,
    }

    impl ThreadPool {
        pub(super) fn new(threads: usize) -> Option<ThreadPool> {
            let shared = Arc::new(Shared {
                busy: AtomicBool::new(false),
                epoch: AtomicUsize::new(0),
                open: AtomicBool::new(false),
                active: AtomicUsize::new(0),
                task: UnsafeCell::new(None),
                count: AtomicUsize::new(0),
                next: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                panic: Mutex::new(None),
                sleepers: AtomicUsize::new(0),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                shutdown: AtomicBool::new(false),
            });
            let mut handles = Vec::new();
            for i in 1..threads {
                let sh = shared.clone();
                let h = std::thread::Builder::new().name(format!("kiln-worker-{i}")).spawn(move || worker(&sh));
                match h {
                    Ok(h) => handles.push(h),
                    Err(_) => break,
                }
            }
            if handles.is_empty() {
                return None;
            }
            let threads = handles.len() + 1;
            Some(ThreadPool { shared, handles, threads })
        }

        /// Threads that take part in a task (workers plus the caller).
        pub fn current_num_threads(&self) -> usize {
            self.threads
        }

        /// Calls `f(i)` for every `i < count`, on the workers and this thread; returns when all
        /// are done. When the pool is busy with another caller's task, runs everything here.
        pub(super) fn run(&self, count: usize, f: &Task<'_>) {
            let sh = &*self.shared;
            if sh.busy.compare_exchange(false, true, Acquire, Relaxed).is_err() {
                (0..count).for_each(f);
                return;
            }
            // SAFETY: the erased reference is only dereferenced while this call waits below.
            let erased: *const Task<'static> = unsafe { std::mem::transmute::<&Task<'_>, *const Task<'static>>(f) };
            // SAFETY: no worker reads `task` now: `open` is false and `active` is 0.
            unsafe { *sh.task.get() = Some(erased) };
            sh.count.store(count, Relaxed);
            sh.next.store(0, Relaxed);
            sh.done.store(0, Relaxed);
            sh.open.store(true, SeqCst);
            sh.epoch.fetch_add(1, SeqCst);
            if sh.sleepers.load(SeqCst) > 0 {
                let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
                sh.wake.notify_all();
            }
            run_items(sh, f);
            let mut spins = 0u32;
            while sh.done.load(Acquire) < count {
                spins = backoff(spins);
            }
            sh.open.store(false, SeqCst);
            while sh.active.load(SeqCst) != 0 {
                spins = backoff(spins);
            }
            // SAFETY: no worker holds the task any more.
            unsafe { *sh.task.get() = None };
            let panic = sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
            sh.busy.store(false, Release);
            if let Some(p) = panic {
                resume_unwind(p);
            }
        }
    }

    impl Drop for ThreadPool {
        fn drop(&mut self) {
            self.shared.shutdown.store(true, SeqCst);
            {
                let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.shared.wake.notify_all();
            }
            for h in self.handles.drain(..) {
                let _ = h.join();
            }
        }
    }

    fn backoff(spins: u32) -> u32 {
        if spins < 200 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        spins.saturating_add(1)
    }

    /// Claims and runs indices of the current task until none are left.
    fn run_items(sh: &Shared, f: &Task<'_>) {
        let count = sh.count.load(Relaxed);
        let was = IN_PARALLEL.with(|p| p.replace(true));
        loop {
            let i = sh.next.fetch_add(1, AcqRel);
            if i >= count {
                break;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
                let mut slot = sh.panic.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(p);
            }
            sh.done.fetch_add(1, Release);
        }
        IN_PARALLEL.with(|p| p.set(was));
    }

    fn worker(sh: &Shared) {
        let mut seen = sh.epoch.load(SeqCst);
        loop {
            let mut since = Instant::now();
            let mut polls = 0u32;
            let e = loop {
                if sh.shutdown.load(Acquire) {
                    return;
                }
                let e = sh.epoch.load(SeqCst);
                if e != seen {
                    break e;
                }
                polls += 1;
                if polls % 16 != 0 {
                    std::hint::spin_loop();
                    continue;
                }
                if since.elapsed() < SPIN {
                    // Let a runnable thread that shares this core (often the caller) go first.
                    std::thread::yield_now();
                    continue;
                }
                let g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
                sh.sleepers.fetch_add(1, SeqCst);
                if sh.epoch.load(SeqCst) == seen && !sh.shutdown.load(SeqCst) {
                    drop(sh.wake.wait(g).unwrap_or_else(|e| e.into_inner()));
                } else {
                    drop(g);
                }
                sh.sleepers.fetch_sub(1, SeqCst);
                since = Instant::now();
            };
            seen = e;
            sh.active.fetch_add(1, SeqCst);
            if sh.open.load(SeqCst) && sh.epoch.load(SeqCst) == e {
                // SAFETY: the task of epoch `e` stays valid until `active` drops back to 0.
                if let Some(t) = unsafe { *sh.task.get() } {
                    // SAFETY: see above.
                    run_items(sh, unsafe { &*t });
                }
            }
            sh.active.fetch_sub(1, SeqCst);
        }
    }

    /// Items handed out by index, each taken once.
    pub(super) struct Slots<I>(Vec<UnsafeCell<Option<I>>>);

    // SAFETY: each slot is taken by exactly one thread (the one that claimed its index).
    unsafe impl<I: Send> Sync for Slots<I> {}

    impl<I> Slots<I> {
        pub(super) fn new(items: Vec<I>) -> Slots<I> {
            Slots(items.into_iter().map(|i| UnsafeCell::new(Some(i))).collect())
        }
        pub(super) fn len(&self) -> usize {
            self.0.len()
        }
        /// # Safety
        /// Each index must be taken by one thread at most.
        pub(super) unsafe fn take(&self, i: usize) -> Option<I> {
            self.0.get(i).and_then(|c| (*c.get()).take())
        }
    }
}

/// Splits `data` into whole groups of `unit` elements, one part per thread when it holds at least
/// `min_len` elements (otherwise one part), and runs `f(first_group_index, part)` on each part.
pub fn split_mut<T: Send, F: Fn(usize, &mut [T]) + Sync + Send>(data: &mut [T], unit: usize, min_len: usize, f: F) {
    split_mut_by(data, unit, min_len, 1, f)
}

/// As [`split_mut`], with up to `per_thread` parts per thread (each still of at least `min_len`
/// elements), handed out as threads become free: for work whose threads may run at different
/// speeds, such as memory-bound loops sharing the memory bus.
pub fn split_mut_by<T: Send, F: Fn(usize, &mut [T]) + Sync + Send>(data: &mut [T], unit: usize, min_len: usize, per_thread: usize, f: F) {
    let unit = unit.max(1);
    let groups = data.len() / unit;
    let threads = threads();
    let parts = if threads == 1 { 1 } else { (threads * per_thread.max(1)).min(groups).min(data.len() / min_len.max(1)).max(1) };
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

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn one_pool_shared_by_concurrent_callers() {
        let pool = build_pool(3);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let _g = enter(pool);
                    for round in 0..200usize {
                        let n = AtomicUsize::new(0);
                        let items: Vec<usize> = (0..(round % 7 + 2)).collect();
                        let want: usize = items.iter().map(|i| i * t + round).sum();
                        for_each(items, |i| {
                            n.fetch_add(i * t + round, Ordering::Relaxed);
                        });
                        assert_eq!(n.into_inner(), want);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_panicking_part_reaches_the_caller_and_the_pool_stays_usable() {
        let pool = build_pool(2);
        let _g = enter(pool);
        let r = std::panic::catch_unwind(|| {
            for_each((0..8).collect::<Vec<usize>>(), |i| {
                if i == 5 {
                    panic!("part 5 failed");
                }
            })
        });
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        for_each((0..64).collect::<Vec<usize>>(), |i| {
            n.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(n.into_inner(), 2016);
    }
}
