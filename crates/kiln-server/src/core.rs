//! The one `infer` call every protocol front-end adapts to, and the shared server state.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use kiln_tensor::{Tensor, Value, ValueType};

use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::datatype::v2_name;
use crate::error::ServeError;
use crate::metrics::ServerStats;
use crate::repository::Repository;

/// A decoded inference request.
pub struct CoreRequest {
    pub model: String,
    pub version: Option<String>,
    pub inputs: Vec<(String, Tensor)>,
    /// Outputs to return, in this order; `None` means all tensor outputs in model order.
    pub outputs: Option<Vec<String>>,
}

pub struct CoreResponse {
    pub model_name: String,
    pub model_version: String,
    pub outputs: Vec<(String, Tensor)>,
}

/// State shared by every front-end.
pub struct ServerState {
    pub repo: Repository,
    pub config: ServerConfig,
    pub auth: Auth,
    pub stats: ServerStats,
    pub shutting_down: AtomicBool,
}

pub type SharedState = Arc<ServerState>;

impl ServerState {
    pub fn new(repo: Repository, config: ServerConfig) -> SharedState {
        let auth = Auth::new(&config.api_keys);
        Arc::new(ServerState { repo, config, auth, stats: ServerStats::default(), shutting_down: AtomicBool::new(false) })
    }

    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Relaxed)
    }

    /// Validates the request against the model, queues it, and waits for the result.
    pub async fn infer(&self, req: CoreRequest) -> Result<CoreResponse, ServeError> {
        let lv = self.repo.resolve(&req.model, req.version.as_deref())?;
        let start = Instant::now();
        let result = self.infer_on(&lv, req).await;
        let stats = &lv.stats;
        match &result {
            Ok(_) => stats.success.fetch_add(1, Relaxed),
            Err(_) => stats.failure.fetch_add(1, Relaxed),
        };
        if result.is_ok() {
            stats.request.observe_ns(start.elapsed().as_nanos() as u64);
        }
        if matches!(result, Err(ServeError::Unavailable { .. })) {
            self.stats.rejected_overload.fetch_add(1, Relaxed);
        }
        result
    }

    async fn infer_on(&self, lv: &crate::repository::LoadedVersion, req: CoreRequest) -> Result<CoreResponse, ServeError> {
        let session = &lv.session;
        let model = &lv.model;
        for (name, t) in &req.inputs {
            let io = session.inputs().iter().find(|i| &i.name == name).ok_or_else(|| {
                let names: Vec<&str> = session.inputs().iter().map(|i| i.name.as_str()).collect();
                ServeError::bad(format!("unexpected inference input '{name}' for model '{model}' (inputs: {})", names.join(", ")))
            })?;
            if let ValueType::Tensor { dtype, shape } = &io.ty {
                if t.dtype() != *dtype {
                    return Err(ServeError::bad(format!(
                        "inference input '{name}' has datatype {} but model '{model}' expects {}",
                        v2_name(t.dtype()),
                        v2_name(*dtype)
                    )));
                }
                if let Some(s) = shape {
                    if !s.accepts(t.shape()) {
                        return Err(ServeError::bad(format!(
                            "inference input '{name}' has shape {:?} but model '{model}' expects {}",
                            t.shape(),
                            format!("[{}]", crate::repository::v2_shape(&io.ty).iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
                        )));
                    }
                }
            }
        }
        for (i, (name, _)) in req.inputs.iter().enumerate() {
            if req.inputs[..i].iter().any(|(n, _)| n == name) {
                return Err(ServeError::bad(format!("inference input '{name}' is given more than once")));
            }
        }
        for io in session.inputs() {
            if !req.inputs.iter().any(|(n, _)| n == &io.name) {
                return Err(ServeError::bad(format!(
                    "expected {} inputs but got {}: model '{model}' needs input '{}'",
                    session.inputs().len(),
                    req.inputs.len(),
                    io.name
                )));
            }
        }
        if let Some(wanted) = &req.outputs {
            for w in wanted {
                if !session.outputs().iter().any(|o| &o.name == w) {
                    let names: Vec<&str> = session.outputs().iter().map(|o| o.name.as_str()).collect();
                    return Err(ServeError::bad(format!(
                        "unexpected inference output '{w}' for model '{model}' (outputs: {})",
                        names.join(", ")
                    )));
                }
            }
        }
        let outputs = lv.scheduler.run(req.inputs).await?;
        let mut out = Vec::new();
        match &req.outputs {
            None => {
                for (n, v) in outputs {
                    if let Value::Tensor(t) = v {
                        out.push((n, t));
                    }
                }
            }
            Some(wanted) => {
                let mut outputs: Vec<(String, Option<Value>)> = outputs.into_iter().map(|(n, v)| (n, Some(v))).collect();
                for w in wanted {
                    let slot = outputs.iter_mut().find(|(n, _)| n == w).and_then(|(_, v)| v.take());
                    match slot {
                        Some(Value::Tensor(t)) => out.push((w.clone(), t)),
                        Some(other) => {
                            return Err(ServeError::bad(format!(
                                "output '{w}' is {}, which the V2 protocol cannot carry",
                                other.describe()
                            )))
                        }
                        None => return Err(ServeError::bad(format!("output '{w}' is requested more than once"))),
                    }
                }
            }
        }
        if let Some((n, t)) = out.iter().find(|(_, t)| !crate::datatype::v2_supported(t.dtype())) {
            return Err(ServeError::Internal(format!(
                "output '{n}' has element type {}, which the V2 protocol cannot carry",
                t.dtype().name()
            )));
        }
        Ok(CoreResponse { model_name: model.clone(), model_version: lv.version.to_string(), outputs: out })
    }
}
