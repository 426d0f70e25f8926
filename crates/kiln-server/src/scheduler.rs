//! Per-model scheduler: a bounded queue feeding dedicated compute threads, with optional dynamic
//! batching along the first dimension; cheap requests run inline (below).
//!
//! `submit` either enqueues at once or answers 503 with `Retry-After`; a queued request whose
//! client has gone away is dropped without computing; one that waited longer than the model's
//! timeout is answered 503.
//!
//! `run` skips the queue for cheap requests: it computes on the calling (async runtime) thread
//! when dynamic batching is off, the queue is empty, fewer than `instances` runs are in progress,
//! at least `INLINE_MIN_SAMPLES` runs have been timed, and the predicted run time is at most the
//! model's `inline_max_us` (default 50 µs; 0 disables). The prediction is the moving average of
//! measured run times, scaled up when the request has more input elements than the average
//! request. Anything else goes through the queue to the compute threads, so a slow model never
//! holds up the runtime's I/O threads for longer than that bound.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_engine::Session;
use kiln_tensor::{Dim, Tensor, TensorData, Value, ValueType};
use tokio::sync::oneshot;

use crate::config::{Batching, ModelConfig};
use crate::error::ServeError;
use crate::metrics::ModelStats;

pub type Outputs = Vec<(String, Value)>;
pub type Reply = oneshot::Receiver<Result<Outputs, ServeError>>;

struct Job {
    inputs: Vec<(String, Tensor)>,
    reply: oneshot::Sender<Result<Outputs, ServeError>>,
    enqueued: Instant,
}

/// The queue and compute threads of one model version. Dropping it lets the threads finish the
/// queued work and exit.
pub struct Scheduler {
    tx: SyncSender<Job>,
    stats: Arc<ModelStats>,
    name: String,
    shared: Arc<Shared>,
    instances: usize,
    inline_max_ns: u64,
}

/// Timed runs needed before a model may run inline.
pub const INLINE_MIN_SAMPLES: u64 = 8;

/// What the compute threads and the inline path share: the session and the run-time estimate.
struct Shared {
    session: Arc<Session>,
    stats: Arc<ModelStats>,
    /// Runs in progress (compute threads and inline).
    running: AtomicUsize,
    /// Moving averages (1/8 weight) of run time and of input elements per run, and the sample count.
    avg_ns: AtomicU64,
    avg_elems: AtomicU64,
    samples: AtomicU64,
}

impl Shared {
    fn execute(&self, inputs: Vec<(String, Tensor)>, batch: usize) -> Result<Outputs, ServeError> {
        let elems: usize = inputs.iter().map(|(_, t)| t.len()).sum();
        let start = Instant::now();
        let feeds = inputs.into_iter().map(|(n, t)| (n, Value::Tensor(t))).collect();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.session.run(feeds)));
        let ns = start.elapsed().as_nanos() as u64;
        self.stats.compute.observe_ns(ns);
        self.stats.executions.fetch_add(1, Relaxed);
        self.stats.batch_size.observe_n(batch as u64);
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.stats.last_inference_ms.store(ms, Relaxed);
        if result.as_ref().map(|r| r.is_ok()).unwrap_or(false) {
            let n = self.samples.fetch_add(1, Relaxed);
            let blend = |a: &AtomicU64, x: u64| {
                let old = a.load(Relaxed);
                a.store(if n == 0 { x } else { old - old / 8 + x / 8 }, Relaxed);
            };
            blend(&self.avg_ns, ns);
            blend(&self.avg_elems, elems as u64);
        }
        match result {
            Ok(r) => r.map_err(ServeError::from),
            Err(_) => Err(ServeError::Internal("model execution failed: internal error in a kernel".into())),
        }
    }
}

/// One run in progress.
struct RunningGuard<'a>(&'a AtomicUsize);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Scheduler {
    pub fn start(name: &str, session: Arc<Session>, config: &ModelConfig, stats: Arc<ModelStats>) -> Result<Scheduler, ServeError> {
        let (tx, rx) = sync_channel::<Job>(config.queue_size);
        let rx = Arc::new(Mutex::new(rx));
        let batching = config.batching.clone().filter(|_| batchable(&session));
        let timeout = Duration::from_millis(config.timeout_ms);
        let shared = Arc::new(Shared {
            session,
            stats: stats.clone(),
            running: AtomicUsize::new(0),
            avg_ns: AtomicU64::new(0),
            avg_elems: AtomicU64::new(0),
            samples: AtomicU64::new(0),
        });
        let inline_max_ns = if batching.is_some() { 0 } else { config.inline_max_us.saturating_mul(1000) };
        for i in 0..config.instances.max(1) {
            let w = Worker { shared: shared.clone(), rx: rx.clone(), stats: stats.clone(), batching: batching.clone(), timeout };
            std::thread::Builder::new()
                .name(format!("kiln-{name}-{i}"))
                .spawn(move || w.run())
                .map_err(|e| ServeError::Internal(format!("cannot start compute thread for '{name}': {e}")))?;
        }
        Ok(Scheduler { tx, stats, name: name.to_string(), shared, instances: config.instances.max(1), inline_max_ns })
    }

    /// Runs a request: inline when it is cheap and nothing is waiting (see the module docs),
    /// otherwise through the queue.
    pub async fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Outputs, ServeError> {
        if let Some(guard) = self.inline_slot(&inputs) {
            let r = self.shared.execute(inputs, 1);
            drop(guard);
            return r;
        }
        let rx = self.submit(inputs)?;
        rx.await.map_err(|_| ServeError::Internal("the compute thread stopped before answering".into()))?
    }

    fn inline_slot(&self, inputs: &[(String, Tensor)]) -> Option<RunningGuard<'_>> {
        let sh = &self.shared;
        if self.inline_max_ns == 0 || self.stats.queue_depth.load(Relaxed) != 0 || sh.samples.load(Relaxed) < INLINE_MIN_SAMPLES {
            return None;
        }
        let elems: u64 = inputs.iter().map(|(_, t)| t.len() as u64).sum();
        let avg_elems = sh.avg_elems.load(Relaxed).max(1);
        let predicted = sh.avg_ns.load(Relaxed).saturating_mul(elems.max(avg_elems)) / avg_elems;
        if predicted > self.inline_max_ns {
            return None;
        }
        let mut cur = sh.running.load(Relaxed);
        loop {
            if cur >= self.instances {
                return None;
            }
            match sh.running.compare_exchange_weak(cur, cur + 1, Relaxed, Relaxed) {
                Ok(_) => return Some(RunningGuard(&sh.running)),
                Err(now) => cur = now,
            }
        }
    }

    /// Enqueues a request; the receiver yields the model's outputs.
    pub fn submit(&self, inputs: Vec<(String, Tensor)>) -> Result<Reply, ServeError> {
        let (reply, rx) = oneshot::channel();
        let job = Job { inputs, reply, enqueued: Instant::now() };
        self.stats.queue_depth.fetch_add(1, Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.stats.queue_depth.fetch_sub(1, Relaxed);
                Err(match e {
                    TrySendError::Full(_) => ServeError::Unavailable {
                        message: format!("model '{}' is overloaded: its queue is full, retry later", self.name),
                        retry_after: 1,
                    },
                    TrySendError::Disconnected(_) => ServeError::Unavailable {
                        message: format!("model '{}' is being unloaded", self.name),
                        retry_after: 1,
                    },
                })
            }
        }
    }
}

/// Dynamic batching applies only when every input and output has a symbolic first dimension.
fn batchable(session: &Session) -> bool {
    let sym_first = |t: &ValueType| match t {
        ValueType::Tensor { shape: Some(s), .. } => matches!(s.0.first(), Some(Dim::Sym(_))),
        _ => false,
    };
    session.inputs().iter().all(|i| sym_first(&i.ty)) && session.outputs().iter().all(|o| sym_first(&o.ty))
}

struct Worker {
    shared: Arc<Shared>,
    rx: Arc<Mutex<Receiver<Job>>>,
    stats: Arc<ModelStats>,
    batching: Option<Batching>,
    timeout: Duration,
}

impl Worker {
    fn run(self) {
        loop {
            let jobs = {
                let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
                let first = match rx.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let mut jobs = vec![first];
                if let Some(b) = &self.batching {
                    let deadline = Instant::now() + Duration::from_micros(b.max_queue_delay_us);
                    let mut rows: usize = jobs[0].inputs.first().and_then(|(_, t)| t.shape().first().copied()).unwrap_or(1);
                    while rows < b.max_batch_size && !b.preferred_batch_sizes.contains(&rows) {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        match rx.recv_timeout(deadline - now) {
                            Ok(j) => {
                                rows += j.inputs.first().and_then(|(_, t)| t.shape().first().copied()).unwrap_or(1);
                                jobs.push(j);
                            }
                            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                }
                jobs
            };
            self.stats.queue_depth.fetch_sub(jobs.len(), Relaxed);
            let live: Vec<Job> = jobs
                .into_iter()
                .filter_map(|j| {
                    if j.reply.is_closed() {
                        return None;
                    }
                    let waited = j.enqueued.elapsed();
                    self.stats.queue.observe_ns(waited.as_nanos() as u64);
                    if waited > self.timeout {
                        let _ = j.reply.send(Err(ServeError::Unavailable {
                            message: format!("request timed out after {} ms in the queue", waited.as_millis()),
                            retry_after: 1,
                        }));
                        return None;
                    }
                    Some(j)
                })
                .collect();
            match live.len() {
                0 => {}
                1 => {
                    for j in live {
                        let r = self.execute(j.inputs, 1);
                        let _ = j.reply.send(r);
                    }
                }
                _ => self.run_batch(live),
            }
        }
    }

    fn execute(&self, inputs: Vec<(String, Tensor)>, batch: usize) -> Result<Outputs, ServeError> {
        self.shared.running.fetch_add(1, Relaxed);
        let _guard = RunningGuard(&self.shared.running);
        self.shared.execute(inputs, batch)
    }

    fn run_batch(&self, jobs: Vec<Job>) {
        let Some((merged, rows)) = concat(&jobs) else {
            for j in jobs {
                let r = self.execute(j.inputs, 1);
                let _ = j.reply.send(r);
            }
            return;
        };
        let total: usize = rows.iter().sum();
        match self.execute(merged, jobs.len()) {
            Ok(outputs) => {
                if let Some(parts) = split(&outputs, &rows, total) {
                    for (j, p) in jobs.into_iter().zip(parts) {
                        let _ = j.reply.send(Ok(p));
                    }
                } else {
                    for j in jobs {
                        let r = self.execute(j.inputs, 1);
                        let _ = j.reply.send(r);
                    }
                }
            }
            Err(_) => {
                // One bad request must not fail the others: run each alone for its own answer.
                for j in jobs {
                    let r = self.execute(j.inputs, 1);
                    let _ = j.reply.send(r);
                }
            }
        }
    }
}

/// Concatenates the jobs' inputs along dim 0, if they agree on names, dtypes and trailing dims.
fn concat(jobs: &[Job]) -> Option<(Vec<(String, Tensor)>, Vec<usize>)> {
    let first = &jobs[0].inputs;
    let mut rows = Vec::with_capacity(jobs.len());
    for j in jobs {
        if j.inputs.len() != first.len() {
            return None;
        }
        let r = j.inputs.first()?.1.shape().first().copied()?;
        rows.push(r);
    }
    let total: usize = rows.iter().sum();
    let mut merged = Vec::with_capacity(first.len());
    for (k, (name, t0)) in first.iter().enumerate() {
        let tail = t0.shape().get(1..)?;
        let per_row: usize = tail.iter().product();
        let mut data = TensorData::with_capacity(t0.dtype(), total * per_row);
        for (j, &r) in jobs.iter().zip(&rows) {
            let (n, t) = j.inputs.get(k)?;
            if n != name || t.dtype() != t0.dtype() || t.shape().get(1..)? != tail || t.shape().first() != Some(&r) {
                return None;
            }
            data.extend_from(t.data(), 0..t.len());
        }
        let mut shape = vec![total];
        shape.extend_from_slice(tail);
        merged.push((name.clone(), Tensor::new(shape, data).ok()?));
    }
    Some((merged, rows))
}

/// Splits batched outputs back into per-request outputs.
fn split(outputs: &Outputs, rows: &[usize], total: usize) -> Option<Vec<Outputs>> {
    let mut parts: Vec<Outputs> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for (name, v) in outputs {
        let t = v.as_tensor()?;
        if t.shape().first() != Some(&total) {
            return None;
        }
        let per_row: usize = t.shape()[1..].iter().product();
        let mut start = 0usize;
        for (p, &r) in parts.iter_mut().zip(rows) {
            let mut data = TensorData::with_capacity(t.dtype(), r * per_row);
            data.extend_from(t.data(), start * per_row..(start + r) * per_row);
            let mut shape = vec![r];
            shape.extend_from_slice(&t.shape()[1..]);
            p.push((name.clone(), Value::Tensor(Tensor::new(shape, data).ok()?)));
            start += r;
        }
    }
    Some(parts)
}
