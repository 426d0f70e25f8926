//! Per model-version counters and histograms, rendered as Prometheus text and as V2 statistics.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Bucket bounds in seconds for the duration histograms.
const DURATION_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A fixed-bucket histogram updated with atomics.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in nanoseconds (durations) or units (batch sizes).
    sum: AtomicU64,
    nanos: bool,
}

impl Histogram {
    fn new(bounds: &'static [f64], nanos: bool) -> Histogram {
        Histogram { bounds, counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(), count: AtomicU64::new(0), sum: AtomicU64::new(0), nanos }
    }
    pub fn observe_ns(&self, ns: u64) {
        let secs = ns as f64 / 1e9;
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(ns, Relaxed);
    }
    pub fn observe_n(&self, n: u64) {
        if let Some(i) = self.bounds.iter().position(|&b| n as f64 <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(n, Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
    pub fn sum_raw(&self) -> u64 {
        self.sum.load(Relaxed)
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0u64;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        let total = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
        let sum = self.sum.load(Relaxed);
        if self.nanos {
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum as f64 / 1e9);
        } else {
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        }
        let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
    }
}

/// Statistics of one loaded model version.
pub struct ModelStats {
    pub success: AtomicU64,
    pub failure: AtomicU64,
    pub request: Histogram,
    pub queue: Histogram,
    pub compute: Histogram,
    pub batch_size: Histogram,
    pub queue_depth: AtomicUsize,
    pub executions: AtomicU64,
    pub last_inference_ms: AtomicU64,
}

impl Default for ModelStats {
    fn default() -> Self {
        ModelStats {
            success: AtomicU64::new(0),
            failure: AtomicU64::new(0),
            request: Histogram::new(&DURATION_BUCKETS, true),
            queue: Histogram::new(&DURATION_BUCKETS, true),
            compute: Histogram::new(&DURATION_BUCKETS, true),
            batch_size: Histogram::new(&BATCH_BUCKETS, false),
            queue_depth: AtomicUsize::new(0),
            executions: AtomicU64::new(0),
            last_inference_ms: AtomicU64::new(0),
        }
    }
}

impl ModelStats {
    /// Appends this version's series in Prometheus text format (HELP/TYPE lines are written once by the caller).
    pub fn render(&self, out: &mut String, model: &str, version: u64) {
        let labels = format!("model=\"{}\",version=\"{version}\"", model.replace('\\', "\\\\").replace('"', "\\\""));
        let _ = writeln!(out, "kiln_inference_requests_success_total{{{labels}}} {}", self.success.load(Relaxed));
        let _ = writeln!(out, "kiln_inference_requests_failure_total{{{labels}}} {}", self.failure.load(Relaxed));
        let _ = writeln!(out, "kiln_inference_executions_total{{{labels}}} {}", self.executions.load(Relaxed));
        let _ = writeln!(out, "kiln_queue_depth{{{labels}}} {}", self.queue_depth.load(Relaxed));
        self.request.render(out, "kiln_request_duration_seconds", &labels);
        self.queue.render(out, "kiln_queue_duration_seconds", &labels);
        self.compute.render(out, "kiln_compute_duration_seconds", &labels);
        self.batch_size.render(out, "kiln_batch_size", &labels);
    }

    /// The `model_stats` entry of `/v2/models/{m}/stats` (Triton's statistics extension).
    pub fn to_json(&self, model: &str, version: u64) -> serde_json::Value {
        let d = |h: &Histogram| serde_json::json!({"count": h.count(), "ns": h.sum_raw()});
        let success = self.success.load(Relaxed);
        let failure = self.failure.load(Relaxed);
        serde_json::json!({
            "name": model,
            "version": version.to_string(),
            "last_inference": self.last_inference_ms.load(Relaxed),
            "inference_count": success,
            "execution_count": self.executions.load(Relaxed),
            "inference_stats": {
                "success": d(&self.request),
                "fail": {"count": failure, "ns": 0},
                "queue": d(&self.queue),
                "compute_infer": d(&self.compute),
            },
        })
    }
}

/// Process-wide counters not tied to a model.
#[derive(Default)]
pub struct ServerStats {
    pub http_requests: AtomicU64,
    pub rejected_overload: AtomicU64,
    pub rejected_rate_limit: AtomicU64,
    pub rejected_auth: AtomicU64,
}

pub const HELP: &str = "# HELP kiln_inference_requests_success_total Successful inference requests.
# TYPE kiln_inference_requests_success_total counter
# HELP kiln_inference_requests_failure_total Failed inference requests.
# TYPE kiln_inference_requests_failure_total counter
# HELP kiln_inference_executions_total Model executions (a batch counts once).
# TYPE kiln_inference_executions_total counter
# HELP kiln_queue_depth Requests waiting in the model's queue.
# TYPE kiln_queue_depth gauge
# HELP kiln_request_duration_seconds Time from admission to response.
# TYPE kiln_request_duration_seconds histogram
# HELP kiln_queue_duration_seconds Time spent waiting in the queue.
# TYPE kiln_queue_duration_seconds histogram
# HELP kiln_compute_duration_seconds Model execution time.
# TYPE kiln_compute_duration_seconds histogram
# HELP kiln_batch_size Requests per execution.
# TYPE kiln_batch_size histogram
";
