//! Configuration: per-model `config.toml` (instances, queue, batching, version policy) and the
//! server-wide `kiln.toml` (ports, body limit, CORS, API keys, access log).

use std::path::Path;

use serde::Deserialize;

/// Which versions of a model are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The N highest versions.
    Latest(usize),
    All,
    Specific(Vec<u64>),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    latest: Option<usize>,
    all: Option<bool>,
    specific: Option<Vec<u64>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatching {
    max_queue_delay_us: Option<u64>,
    preferred_batch_sizes: Option<Vec<usize>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelConfig {
    instances: Option<usize>,
    threads: Option<usize>,
    queue_size: Option<usize>,
    timeout_ms: Option<u64>,
    inline_max_us: Option<u64>,
    max_batch_size: Option<usize>,
    version_policy: Option<RawPolicy>,
    dynamic_batching: Option<RawBatching>,
}

/// Dynamic batching settings (only used when `max_batch_size > 1` and the model has a batch dim).
#[derive(Clone, Debug, PartialEq)]
pub struct Batching {
    pub max_batch_size: usize,
    pub max_queue_delay_us: u64,
    pub preferred_batch_sizes: Vec<usize>,
}

/// Settings of one model, from `DIR/<model>/config.toml` or defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Compute threads (model instances) serving this model's queue.
    pub instances: usize,
    /// Intra-op threads per run (0: one per core, in a pool owned by the model).
    pub threads: usize,
    /// Requests that may wait in the queue before the server answers 503.
    pub queue_size: usize,
    /// A request still queued after this long is answered 503.
    pub timeout_ms: u64,
    /// Requests predicted to run within this many microseconds run on the I/O thread instead of
    /// queueing (see `scheduler`); 0 always queues.
    pub inline_max_us: u64,
    pub version_policy: VersionPolicy,
    /// `None`: each request runs alone.
    pub batching: Option<Batching>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        ModelConfig {
            instances: cores,
            threads: 0,
            queue_size: 1024,
            timeout_ms: 30_000,
            inline_max_us: 50,
            version_policy: VersionPolicy::Latest(1),
            batching: None,
        }
    }
}

impl ModelConfig {
    pub fn parse(text: &str) -> Result<ModelConfig, String> {
        let raw: RawModelConfig = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        let mut c = ModelConfig::default();
        if let Some(n) = raw.instances {
            if n == 0 {
                return Err("instances must be at least 1".into());
            }
            c.instances = n;
        }
        if let Some(n) = raw.threads {
            c.threads = n;
        }
        if let Some(n) = raw.queue_size {
            if n == 0 {
                return Err("queue_size must be at least 1".into());
            }
            c.queue_size = n;
        }
        if let Some(n) = raw.timeout_ms {
            c.timeout_ms = n;
        }
        if let Some(n) = raw.inline_max_us {
            c.inline_max_us = n;
        }
        if let Some(p) = raw.version_policy {
            c.version_policy = match (p.latest, p.all, p.specific) {
                (Some(n), None, None) if n > 0 => VersionPolicy::Latest(n),
                (None, Some(true), None) => VersionPolicy::All,
                (None, None, Some(v)) if !v.is_empty() => VersionPolicy::Specific(v),
                _ => {
                    return Err(
                        "version_policy needs exactly one of: latest = N (N >= 1), all = true, specific = [versions]".into()
                    )
                }
            };
        }
        let max_batch = raw.max_batch_size.unwrap_or(0);
        if max_batch > 1 {
            let b = raw.dynamic_batching.unwrap_or_default();
            c.batching = Some(Batching {
                max_batch_size: max_batch,
                max_queue_delay_us: b.max_queue_delay_us.unwrap_or(100),
                preferred_batch_sizes: b.preferred_batch_sizes.unwrap_or_default(),
            });
        } else if raw.dynamic_batching.is_some() {
            return Err("dynamic_batching needs max_batch_size > 1".into());
        }
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<ModelConfig, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => ModelConfig::parse(&t).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ModelConfig::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// One API key: only its SHA-256 is stored.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    /// Models this key may use; empty means all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Sustained requests per second (token bucket); absent means unlimited.
    pub rate_per_sec: Option<f64>,
    /// Bucket size; defaults to one second of `rate_per_sec`.
    pub burst: Option<f64>,
}

/// Server-wide settings (`kiln.toml`); flags override them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub model_repository: Option<String>,
    pub host: String,
    pub http_port: u16,
    /// 0 disables gRPC... unless set explicitly; `None` means the default 8001.
    pub grpc_port: Option<u16>,
    pub max_body_bytes: usize,
    /// Allowed CORS origins; `["*"]` allows any; empty disables CORS headers.
    pub cors_origins: Vec<String>,
    pub access_log: bool,
    /// Seconds between repository scans for changed models; 0 disables polling.
    pub poll_interval_secs: u64,
    pub api_keys: Vec<ApiKey>,
    /// Async runtime (network I/O) threads; 0: one per core.
    pub io_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model_repository: None,
            host: "127.0.0.1".into(),
            http_port: 8000,
            grpc_port: Some(8001),
            max_body_bytes: 64 << 20,
            cors_origins: Vec::new(),
            access_log: false,
            poll_interval_secs: 0,
            api_keys: Vec::new(),
            io_threads: 0,
        }
    }
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.to_string().trim().replace('\n', " ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_policy_and_batching() {
        let c = ModelConfig::parse(
            "instances = 2\nmax_batch_size = 8\n[version_policy]\nspecific = [1, 3]\n[dynamic_batching]\nmax_queue_delay_us = 500\n",
        )
        .unwrap();
        assert_eq!(c.instances, 2);
        assert_eq!(c.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(c.batching.as_ref().map(|b| (b.max_batch_size, b.max_queue_delay_us)), Some((8, 500)));
        assert!(ModelConfig::parse("[version_policy]\nlatest = 1\nall = true\n").is_err());
        assert!(ModelConfig::parse("bogus = 1").is_err());
    }
}
