//! Model repository in Triton's layout: `DIR/<model>/<version>/model.onnx` with an optional
//! `DIR/<model>/config.toml`, or a bare `DIR/<model>.onnx` (version 1). Without a directory, the
//! built-in demo models are served. Loading a model again keeps every version that fails to load
//! serving its previous copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::{Dim, ValueType};

use crate::config::{ModelConfig, VersionPolicy};
use crate::datatype::v2_name;
use crate::error::ServeError;
use crate::metrics::ModelStats;
use crate::scheduler::Scheduler;

/// The demo models compiled into the binary: (name, ONNX bytes).
pub const BUILTIN_MODELS: [(&str, &[u8]); 2] = [
    ("iris", include_bytes!("../../../models/demo/iris/1/model.onnx")),
    ("digits", include_bytes!("../../../models/demo/digits/1/model.onnx")),
];

/// One loaded, servable model version.
pub struct LoadedVersion {
    pub model: String,
    pub version: u64,
    pub session: Arc<Session>,
    pub scheduler: Scheduler,
    pub stats: Arc<ModelStats>,
    /// File it came from and its modification time (None for built-in models).
    source: Option<(PathBuf, Option<SystemTime>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelState {
    Ready,
    Unavailable,
    Unloaded,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "READY",
            ModelState::Unavailable => "UNAVAILABLE",
            ModelState::Unloaded => "UNLOADED",
        }
    }
}

/// A model with its served versions.
pub struct ModelEntry {
    pub name: String,
    pub config: ModelConfig,
    pub versions: BTreeMap<u64, Arc<LoadedVersion>>,
    pub state: ModelState,
    /// Why the model (or some version) is not serving; empty when all is well.
    pub reason: String,
}

/// Where a model's files are.
#[derive(Default)]
struct Found {
    config: Option<PathBuf>,
    versions: BTreeMap<u64, PathBuf>,
}

pub struct Repository {
    root: Option<PathBuf>,
    models: RwLock<BTreeMap<String, Arc<ModelEntry>>>,
    load_lock: std::sync::Mutex<()>,
}

impl Repository {
    /// Opens a repository directory and loads every model in it.
    pub fn open(root: &Path) -> Result<Repository, String> {
        if !root.is_dir() {
            return Err(format!("model repository '{}' is not a directory", root.display()));
        }
        let repo = Repository { root: Some(root.to_path_buf()), models: RwLock::new(BTreeMap::new()), load_lock: Default::default() };
        let found = scan(root)?;
        if found.is_empty() {
            return Err(format!(
                "model repository '{}' holds no models (expected <model>/<version>/model.onnx or <model>.onnx)",
                root.display()
            ));
        }
        for name in found.keys() {
            let _ = repo.load_inner(name, false);
        }
        Ok(repo)
    }

    /// The built-in demo models.
    pub fn builtin() -> Result<Repository, String> {
        let mut models = BTreeMap::new();
        for (name, bytes) in BUILTIN_MODELS {
            let config = ModelConfig::default();
            let session = Session::from_bytes(bytes, SessionOptions::default().with_threads(config.threads))
                .map_err(|e| format!("built-in model '{name}': {e}"))?;
            let v = start_version(name, 1, session, &config, None).map_err(|e| e.to_string())?;
            let mut versions = BTreeMap::new();
            versions.insert(1, Arc::new(v));
            models.insert(
                name.to_string(),
                Arc::new(ModelEntry { name: name.to_string(), config, versions, state: ModelState::Ready, reason: String::new() }),
            );
        }
        Ok(Repository { root: None, models: RwLock::new(models), load_lock: Default::default() })
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    pub fn entry(&self, name: &str) -> Option<Arc<ModelEntry>> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub fn entries(&self) -> Vec<Arc<ModelEntry>> {
        self.models.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Finds a ready model version (the highest when no version is given).
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedVersion>, ServeError> {
        let entry = self
            .entry(name)
            .ok_or_else(|| ServeError::NotFound(format!("Request for unknown model: '{name}' is not found")))?;
        match version.filter(|v| !v.is_empty()) {
            None => entry.versions.values().next_back().cloned().ok_or_else(|| ServeError::Unavailable {
                message: format!("model '{name}' has no ready version{}", reason_suffix(&entry.reason)),
                retry_after: 5,
            }),
            Some(v) => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| ServeError::NotFound(format!("Request for unknown model: '{name}' version '{v}' is not found")))?;
                entry.versions.get(&n).cloned().ok_or_else(|| {
                    ServeError::NotFound(format!("Request for unknown model: '{name}' version {n} is not found"))
                })
            }
        }
    }

    /// Names and states of every model the repository knows, for the repository index.
    pub fn index(&self) -> Result<Vec<(String, Option<u64>, ModelState, String)>, ServeError> {
        let mut out = Vec::new();
        let loaded = self.models.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut names: Vec<String> = loaded.keys().cloned().collect();
        if let Some(root) = &self.root {
            for n in scan(root).map_err(ServeError::Internal)?.into_keys() {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names.sort();
        for n in names {
            match loaded.get(&n) {
                Some(e) if !e.versions.is_empty() => {
                    for v in e.versions.keys() {
                        out.push((n.clone(), Some(*v), e.state, e.reason.clone()));
                    }
                }
                Some(e) => out.push((n.clone(), None, e.state, e.reason.clone())),
                None => out.push((n.clone(), None, ModelState::Unloaded, String::new())),
            }
        }
        Ok(out)
    }

    /// Loads (or reloads) a model from the repository directory. Versions whose file did not
    /// change are kept as they are; a version that fails to load keeps serving its old copy.
    pub fn load(&self, name: &str) -> Result<(), ServeError> {
        self.load_inner(name, true)
    }

    /// `force`: read every selected version again even when its file looks unchanged.
    fn load_inner(&self, name: &str, force: bool) -> Result<(), ServeError> {
        let _guard = self.load_lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(root) = &self.root else {
            return match self.entry(name) {
                Some(_) => Ok(()),
                None => Err(ServeError::NotFound(format!("no model named '{name}' (the server runs the built-in models)"))),
            };
        };
        let mut found = scan(root).map_err(ServeError::Internal)?;
        let Some(f) = found.remove(name) else {
            return Err(ServeError::NotFound(format!("no model named '{name}' in the repository {}", root.display())));
        };
        let old = self.entry(name);
        let config_path = f.config.clone().unwrap_or_else(|| root.join(name).join("config.toml"));
        let config = match ModelConfig::load(&config_path) {
            Ok(c) => c,
            Err(e) => {
                self.set_failed(name, old, e.clone());
                return Err(ServeError::BadRequest(format!("failed to load '{name}': {e}")));
            }
        };
        let wanted: Vec<u64> = match &config.version_policy {
            VersionPolicy::Latest(n) => f.versions.keys().rev().take(*n).copied().collect(),
            VersionPolicy::All => f.versions.keys().copied().collect(),
            VersionPolicy::Specific(v) => v.iter().copied().filter(|x| f.versions.contains_key(x)).collect(),
        };
        let same_config = old.as_ref().map(|o| o.config == config).unwrap_or(false);
        let mut versions = BTreeMap::new();
        let mut errors = Vec::new();
        for v in wanted {
            let Some(path) = f.versions.get(&v) else { continue };
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let previous = old.as_ref().and_then(|o| o.versions.get(&v).cloned());
            if let Some(p) = &previous {
                if !force && same_config && p.source.as_ref().map(|(sp, mt)| sp == path && *mt == mtime).unwrap_or(false) {
                    versions.insert(v, p.clone());
                    continue;
                }
            }
            let loaded = Session::from_file(path, SessionOptions::default().with_threads(config.threads))
                .map_err(|e| e.to_string())
                .and_then(|s| start_version(name, v, s, &config, Some((path.clone(), mtime))).map_err(|e| e.to_string()));
            match loaded {
                Ok(lv) => {
                    versions.insert(v, Arc::new(lv));
                }
                Err(e) => {
                    errors.push(format!("version {v}: {e}"));
                    if let Some(p) = previous {
                        versions.insert(v, p);
                    }
                }
            }
        }
        let state = if versions.is_empty() { ModelState::Unavailable } else { ModelState::Ready };
        let reason = if errors.is_empty() && versions.is_empty() {
            "no version matches the version policy".to_string()
        } else {
            errors.join("; ")
        };
        let entry = ModelEntry { name: name.to_string(), config, versions, state, reason: reason.clone() };
        self.models.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), Arc::new(entry));
        if state == ModelState::Unavailable || !errors.is_empty() {
            return Err(ServeError::BadRequest(format!("failed to load '{name}': {reason}")));
        }
        Ok(())
    }

    fn set_failed(&self, name: &str, old: Option<Arc<ModelEntry>>, reason: String) {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        match old {
            Some(o) => {
                models.insert(
                    name.to_string(),
                    Arc::new(ModelEntry {
                        name: name.to_string(),
                        config: o.config.clone(),
                        versions: o.versions.clone(),
                        state: o.state,
                        reason,
                    }),
                );
            }
            None => {
                models.insert(
                    name.to_string(),
                    Arc::new(ModelEntry {
                        name: name.to_string(),
                        config: ModelConfig::default(),
                        versions: BTreeMap::new(),
                        state: ModelState::Unavailable,
                        reason,
                    }),
                );
            }
        }
    }

    /// Stops serving a model; requests already queued still finish.
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        let _guard = self.load_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        match models.get(name).cloned() {
            Some(e) => {
                models.insert(
                    name.to_string(),
                    Arc::new(ModelEntry {
                        name: name.to_string(),
                        config: e.config.clone(),
                        versions: BTreeMap::new(),
                        state: ModelState::Unloaded,
                        reason: "unloaded".into(),
                    }),
                );
                Ok(())
            }
            None => Err(ServeError::NotFound(format!("no loaded model named '{name}'"))),
        }
    }

    /// Reloads models whose files changed, loads new ones, unloads removed ones (polling).
    pub fn poll(&self) {
        let Some(root) = &self.root else { return };
        let Ok(found) = scan(root) else { return };
        for name in found.keys() {
            if self.entry(name).map(|e| e.state == ModelState::Unloaded).unwrap_or(false) {
                continue;
            }
            if self.needs_reload(name, &found[name]) {
                let _ = self.load_inner(name, false);
            }
        }
        let loaded: Vec<String> = self.models.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        for name in loaded {
            if !found.contains_key(&name) {
                let _ = self.unload(&name);
            }
        }
    }

    fn needs_reload(&self, name: &str, f: &Found) -> bool {
        let Some(e) = self.entry(name) else { return true };
        let config_path = f.config.clone().unwrap_or_default();
        match ModelConfig::load(&config_path) {
            Ok(c) if c != e.config => return true,
            Err(_) => return e.reason.is_empty(),
            _ => {}
        }
        let wanted: Vec<u64> = match &e.config.version_policy {
            VersionPolicy::Latest(n) => f.versions.keys().rev().take(*n).copied().collect(),
            VersionPolicy::All => f.versions.keys().copied().collect(),
            VersionPolicy::Specific(v) => v.iter().copied().filter(|x| f.versions.contains_key(x)).collect(),
        };
        let mut current: Vec<u64> = e.versions.keys().copied().collect();
        let mut w = wanted.clone();
        w.sort();
        current.sort();
        if w != current {
            return true;
        }
        e.versions.values().any(|lv| match &lv.source {
            Some((p, mt)) => std::fs::metadata(p).and_then(|m| m.modified()).ok() != *mt,
            None => false,
        })
    }
}

fn reason_suffix(r: &str) -> String {
    if r.is_empty() {
        String::new()
    } else {
        format!(" ({r})")
    }
}

fn start_version(
    name: &str,
    version: u64,
    session: Session,
    config: &ModelConfig,
    source: Option<(PathBuf, Option<SystemTime>)>,
) -> Result<LoadedVersion, ServeError> {
    let session = Arc::new(session);
    let stats = Arc::new(ModelStats::default());
    let scheduler = Scheduler::start(name, session.clone(), config, stats.clone())?;
    Ok(LoadedVersion { model: name.to_string(), version, session, scheduler, stats, source })
}

fn valid_model_name(n: &str) -> bool {
    !n.is_empty() && !n.starts_with('.') && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Lists the models of a repository directory.
fn scan(root: &Path) -> Result<BTreeMap<String, Found>, String> {
    let mut out: BTreeMap<String, Found> = BTreeMap::new();
    let rd = std::fs::read_dir(root).map_err(|e| format!("cannot read model repository '{}': {e}", root.display()))?;
    for ent in rd.flatten() {
        let path = ent.path();
        let Some(fname) = path.file_name().and_then(|s| s.to_str()).map(str::to_string) else { continue };
        if path.is_dir() {
            if !valid_model_name(&fname) {
                continue;
            }
            let mut f = Found::default();
            let cfg = path.join("config.toml");
            if cfg.is_file() {
                f.config = Some(cfg);
            }
            if let Ok(vs) = std::fs::read_dir(&path) {
                for v in vs.flatten() {
                    let vp = v.path();
                    let Some(n) = vp.file_name().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) else { continue };
                    let m = vp.join("model.onnx");
                    if m.is_file() {
                        f.versions.insert(n, m);
                    }
                }
            }
            if !f.versions.is_empty() || f.config.is_some() {
                out.insert(fname, f);
            }
        } else if let Some(stem) = fname.strip_suffix(".onnx") {
            if valid_model_name(stem) && !out.contains_key(stem) {
                let mut f = Found::default();
                f.versions.insert(1, path.clone());
                out.insert(stem.to_string(), f);
            }
        }
    }
    Ok(out)
}

/// V2 shape of a declared type: symbolic dims are -1.
pub fn v2_shape(ty: &ValueType) -> Vec<i64> {
    match ty {
        ValueType::Tensor { shape: Some(s), .. } => s
            .0
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n as i64,
                Dim::Sym(_) => -1,
            })
            .collect(),
        _ => vec![-1],
    }
}

/// V2 datatype of a declared type.
pub fn v2_datatype(ty: &ValueType) -> &'static str {
    match ty {
        ValueType::Tensor { dtype, .. } => v2_name(*dtype),
        _ => "BYTES",
    }
}

/// The `/v2/models/{m}` metadata document.
pub fn metadata_json(entry: &ModelEntry, lv: &LoadedVersion) -> serde_json::Value {
    let tensors = |ios: &[kiln_engine::IoInfo]| {
        ios.iter()
            .map(|io| serde_json::json!({"name": io.name, "datatype": v2_datatype(&io.ty), "shape": v2_shape(&io.ty)}))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "name": entry.name,
        "versions": entry.versions.keys().map(|v| v.to_string()).collect::<Vec<_>>(),
        "platform": "onnxruntime_onnx",
        "inputs": tensors(lv.session.inputs()),
        "outputs": tensors(lv.session.outputs()),
    })
}

/// A Triton-style model configuration (`/v2/models/{m}/config`).
pub fn config_json(entry: &ModelEntry, lv: &LoadedVersion) -> serde_json::Value {
    let tensors = |ios: &[kiln_engine::IoInfo]| {
        ios.iter()
            .map(|io| {
                serde_json::json!({"name": io.name, "data_type": format!("TYPE_{}", match v2_datatype(&io.ty) { "BYTES" => "STRING", d => d }), "dims": v2_shape(&io.ty)})
            })
            .collect::<Vec<_>>()
    };
    let c = &entry.config;
    let mut v = serde_json::json!({
        "name": entry.name,
        "platform": "onnxruntime_onnx",
        "backend": "kiln",
        "max_batch_size": c.batching.as_ref().map(|b| b.max_batch_size).unwrap_or(0),
        "input": tensors(lv.session.inputs()),
        "output": tensors(lv.session.outputs()),
        "instance_group": [{"count": c.instances, "kind": "KIND_CPU"}],
    });
    if let (Some(b), Some(obj)) = (&c.batching, v.as_object_mut()) {
        obj.insert(
            "dynamic_batching".into(),
            serde_json::json!({"max_queue_delay_microseconds": b.max_queue_delay_us, "preferred_batch_size": b.preferred_batch_sizes}),
        );
    }
    v
}
