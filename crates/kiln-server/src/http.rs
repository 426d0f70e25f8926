//! HTTP/REST front-end: the Open Inference Protocol (KServe V2) with Triton's binary tensor,
//! statistics, model configuration and repository extensions, plus Prometheus `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::core::{CoreRequest, CoreResponse, SharedState};
use crate::datatype::{
    parse_shape, parse_v2, tensor_from_json, tensor_from_raw, tensor_to_raw, v2_name, write_json_data, write_json_str, FlatData,
};
use crate::error::ServeError;
use crate::repository::{config_json, metadata_json};

pub const HEADER_LEN: &str = "inference-header-content-length";

/// Builds the router for a server state.
pub fn router(state: SharedState) -> Router {
    let r = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/:model", get(model_metadata))
        .route("/v2/models/:model/versions/:version", get(model_metadata_v))
        .route("/v2/models/:model/ready", get(model_ready))
        .route("/v2/models/:model/versions/:version/ready", get(model_ready_v))
        .route("/v2/models/:model/config", get(model_config))
        .route("/v2/models/:model/versions/:version/config", get(model_config_v))
        .route("/v2/models/:model/stats", get(model_stats))
        .route("/v2/models/:model/versions/:version/stats", get(model_stats_v))
        .route("/v2/models/:model/infer", post(infer))
        .route("/v2/models/:model/versions/:version/infer", post(infer_v))
        .route("/v2/repository/index", post(repo_index))
        .route("/v2/repository/models/:model/load", post(repo_load))
        .route("/v2/repository/models/:model/unload", post(repo_unload))
        .route("/metrics", get(metrics))
        .fallback(not_found);
    let gateway = !state.config.cors_origins.is_empty() || state.config.access_log;
    let r = r.with_state(state.clone());
    if gateway {
        r.layer(axum::middleware::from_fn_with_state(state, gateway_layer))
    } else {
        r
    }
}

/// Serves HTTP/1.1 on `listener` until `stop` turns true, then stops accepting, lets every
/// in-flight request finish, closes idle keep-alive connections, and returns.
///
/// Infer requests skip the router (and the gateway layer when CORS and access logs are off);
/// everything else goes through it.
pub async fn serve(listener: tokio::net::TcpListener, state: SharedState, mut stop: tokio::sync::watch::Receiver<bool>) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::convert::Infallible;
    use tower_service::Service;

    let router = router(state.clone());
    let fast = state.config.cors_origins.is_empty() && !state.config.access_log;
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        let mut router = router.clone();
        async move {
            let req = req.map(Body::new);
            if fast && req.method() == Method::POST {
                if let Some((model, version)) = infer_route(req.uri().path()) {
                    return Ok::<Response, Infallible>(infer_common(state, model, version, req).await);
                }
            }
            router.call(req).await
        }
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).keep_alive(true).pipeline_flush(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = http1.serve_connection(TokioIo::new(stream), svc.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// An error as Open Inference Protocol clients expect it.
pub fn error_response(e: &ServeError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], e.json_body()).into_response();
    if let Some(s) = e.retry_after() {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

fn json_response(v: Json) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn auth(state: &SharedState, headers: &HeaderMap, model: Option<&str>) -> Result<(), ServeError> {
    if !state.auth.enabled() {
        return Ok(());
    }
    let r = state.auth.check(headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()), model);
    match &r {
        Err(ServeError::RateLimited { .. }) => state.stats.rejected_rate_limit.fetch_add(1, Relaxed),
        Err(_) => state.stats.rejected_auth.fetch_add(1, Relaxed),
        Ok(()) => 0,
    };
    r
}

async fn not_found() -> Response {
    error_response(&ServeError::NotFound("not found: this server speaks the V2 inference protocol under /v2".into()))
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(s): State<SharedState>) -> StatusCode {
    if s.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub const EXTENSIONS: [&str; 6] =
    ["binary_tensor_data", "statistics", "model_configuration", "model_repository", "schedule_policy", "parameters"];

async fn server_metadata(State(s): State<SharedState>, headers: HeaderMap) -> Response {
    if let Err(e) = auth(&s, &headers, None) {
        return error_response(&e);
    }
    json_response(serde_json::json!({"name": "kiln", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS}))
}

fn metadata(s: &SharedState, headers: &HeaderMap, model: &str, version: Option<&str>) -> Response {
    let r = auth(s, headers, Some(model)).and_then(|_| {
        let lv = s.repo.resolve(model, version)?;
        let entry = s.repo.entry(model).ok_or_else(|| ServeError::NotFound(format!("unknown model '{model}'")))?;
        Ok(metadata_json(&entry, &lv))
    });
    match r {
        Ok(v) => json_response(v),
        Err(e) => error_response(&e),
    }
}

async fn model_metadata(State(s): State<SharedState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    metadata(&s, &headers, &model, None)
}

async fn model_metadata_v(State(s): State<SharedState>, headers: HeaderMap, Path((model, version)): Path<(String, String)>) -> Response {
    metadata(&s, &headers, &model, Some(&version))
}

fn readiness(s: &SharedState, headers: &HeaderMap, model: &str, version: Option<&str>) -> Response {
    if let Err(e) = auth(s, headers, Some(model)) {
        return error_response(&e);
    }
    match s.repo.resolve(model, version) {
        Ok(_) if s.is_ready() => StatusCode::OK.into_response(),
        Ok(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(e) => error_response(&e),
    }
}

async fn model_ready(State(s): State<SharedState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    readiness(&s, &headers, &model, None)
}

async fn model_ready_v(State(s): State<SharedState>, headers: HeaderMap, Path((model, version)): Path<(String, String)>) -> Response {
    readiness(&s, &headers, &model, Some(&version))
}

fn configuration(s: &SharedState, headers: &HeaderMap, model: &str, version: Option<&str>) -> Response {
    let r = auth(s, headers, Some(model)).and_then(|_| {
        let lv = s.repo.resolve(model, version)?;
        let entry = s.repo.entry(model).ok_or_else(|| ServeError::NotFound(format!("unknown model '{model}'")))?;
        Ok(config_json(&entry, &lv))
    });
    match r {
        Ok(v) => json_response(v),
        Err(e) => error_response(&e),
    }
}

async fn model_config(State(s): State<SharedState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    configuration(&s, &headers, &model, None)
}

async fn model_config_v(State(s): State<SharedState>, headers: HeaderMap, Path((model, version)): Path<(String, String)>) -> Response {
    configuration(&s, &headers, &model, Some(&version))
}

/// Statistics of all models (`model: None`) or one model, optionally one version.
pub fn stats_json(s: &SharedState, model: Option<&str>, version: Option<&str>) -> Result<Json, ServeError> {
    let mut list = Vec::new();
    match model {
        None => {
            for e in s.repo.entries() {
                for (v, lv) in &e.versions {
                    list.push(lv.stats.to_json(&e.name, *v));
                }
            }
        }
        Some(m) => match version {
            Some(_) => {
                let lv = s.repo.resolve(m, version)?;
                list.push(lv.stats.to_json(m, lv.version));
            }
            None => {
                let e = s.repo.entry(m).ok_or_else(|| ServeError::NotFound(format!("Request for unknown model: '{m}' is not found")))?;
                for (v, lv) in &e.versions {
                    list.push(lv.stats.to_json(m, *v));
                }
            }
        },
    }
    Ok(serde_json::json!({ "model_stats": list }))
}

async fn all_stats(State(s): State<SharedState>, headers: HeaderMap) -> Response {
    match auth(&s, &headers, None).and_then(|_| stats_json(&s, None, None)) {
        Ok(v) => json_response(v),
        Err(e) => error_response(&e),
    }
}

async fn model_stats(State(s): State<SharedState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    match auth(&s, &headers, Some(&model)).and_then(|_| stats_json(&s, Some(&model), None)) {
        Ok(v) => json_response(v),
        Err(e) => error_response(&e),
    }
}

async fn model_stats_v(State(s): State<SharedState>, headers: HeaderMap, Path((model, version)): Path<(String, String)>) -> Response {
    match auth(&s, &headers, Some(&model)).and_then(|_| stats_json(&s, Some(&model), Some(&version))) {
        Ok(v) => json_response(v),
        Err(e) => error_response(&e),
    }
}

async fn metrics(State(s): State<SharedState>) -> Response {
    let mut out = String::from(crate::metrics::HELP);
    for e in s.repo.entries() {
        for (v, lv) in &e.versions {
            lv.stats.render(&mut out, &e.name, *v);
        }
    }
    use std::fmt::Write;
    let st = &s.stats;
    let _ = writeln!(out, "# TYPE kiln_http_requests_total counter\nkiln_http_requests_total {}", st.http_requests.load(Relaxed));
    let _ = writeln!(out, "# TYPE kiln_rejected_total counter");
    let _ = writeln!(out, "kiln_rejected_total{{reason=\"overload\"}} {}", st.rejected_overload.load(Relaxed));
    let _ = writeln!(out, "kiln_rejected_total{{reason=\"rate_limit\"}} {}", st.rejected_rate_limit.load(Relaxed));
    let _ = writeln!(out, "kiln_rejected_total{{reason=\"auth\"}} {}", st.rejected_auth.load(Relaxed));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn repo_index(State(s): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = auth(&s, &headers, None) {
        return error_response(&e);
    }
    let ready_only = serde_json::from_slice::<Json>(&body)
        .ok()
        .and_then(|v| v.get("ready").and_then(Json::as_bool))
        .unwrap_or(false);
    let s2 = s.clone();
    let r = tokio::task::spawn_blocking(move || s2.repo.index()).await;
    match r {
        Ok(Ok(list)) => {
            let items: Vec<Json> = list
                .into_iter()
                .filter(|(_, _, st, _)| !ready_only || *st == crate::repository::ModelState::Ready)
                .map(|(n, v, st, reason)| {
                    let mut o = serde_json::json!({"name": n, "state": st.as_str()});
                    if let Some(obj) = o.as_object_mut() {
                        if let Some(v) = v {
                            obj.insert("version".into(), Json::String(v.to_string()));
                        }
                        if !reason.is_empty() {
                            obj.insert("reason".into(), Json::String(reason));
                        }
                    }
                    o
                })
                .collect();
            json_response(Json::Array(items))
        }
        Ok(Err(e)) => error_response(&e),
        Err(_) => error_response(&ServeError::Internal("repository index failed".into())),
    }
}

async fn repo_load(State(s): State<SharedState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    if let Err(e) = auth(&s, &headers, Some(&model)) {
        return error_response(&e);
    }
    let s2 = s.clone();
    match tokio::task::spawn_blocking(move || s2.repo.load(&model)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(_) => error_response(&ServeError::Internal("model load failed".into())),
    }
}

async fn repo_unload(State(s): State<SharedState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    if let Err(e) = auth(&s, &headers, Some(&model)) {
        return error_response(&e);
    }
    match s.repo.unload(&model) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Json>>,
    #[serde(default)]
    data: Option<FlatData>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Json>>,
}

#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default)]
    id: Option<Json>,
    #[serde(default)]
    parameters: Option<Map<String, Json>>,
    inputs: Vec<JsonInput>,
    #[serde(default)]
    outputs: Option<Vec<JsonOutput>>,
}

async fn infer(State(s): State<SharedState>, Path(model): Path<String>, req: Request) -> Response {
    infer_common(s, model, None, req).await
}

async fn infer_v(State(s): State<SharedState>, Path((model, version)): Path<(String, String)>, req: Request) -> Response {
    infer_common(s, model, Some(version), req).await
}

/// The model and version of an infer path (`/v2/models/M/infer`, `/v2/models/M/versions/V/infer`),
/// for serving inference without the router. Paths needing percent-decoding go to the router.
pub fn infer_route(path: &str) -> Option<(String, Option<String>)> {
    let rest = path.strip_prefix("/v2/models/")?.strip_suffix("/infer")?;
    if rest.contains('%') {
        return None;
    }
    let mut parts = rest.split('/');
    let model = parts.next().filter(|m| !m.is_empty())?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some((model.to_string(), None)),
        (Some("versions"), Some(v), None) if !v.is_empty() => Some((model.to_string(), Some(v.to_string()))),
        _ => None,
    }
}

pub async fn infer_common(s: SharedState, model: String, version: Option<String>, req: Request) -> Response {
    s.stats.http_requests.fetch_add(1, Relaxed);
    match infer_inner(&s, model, version, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn infer_inner(s: &SharedState, model: String, version: Option<String>, req: Request) -> Result<Response, ServeError> {
    let (parts, body) = req.into_parts();
    auth(s, &parts.headers, Some(&model))?;
    let limit = s.config.max_body_bytes;
    let too_large = || ServeError::TooLarge(format!("request body is larger than the limit of {limit} bytes"));
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    let header_len = match parts.headers.get(HEADER_LEN) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ServeError::bad("Inference-Header-Content-Length must be a non-negative integer"))?,
        ),
        None => None,
    };
    let (json_bytes, binary) = match header_len {
        Some(n) if n <= body.len() => (body.slice(..n), body.slice(n..)),
        Some(n) => {
            return Err(ServeError::bad(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        None => (body.clone(), Bytes::new()),
    };
    let parsed: JsonRequest = serde_json::from_slice(&json_bytes)
        .map_err(|e| ServeError::bad(format!("failed to parse the request JSON: {e}")))?;
    let (core, binary_out, id) = decode_request(parsed, &binary, model, version)?;
    let resp = s.infer(core).await?;
    Ok(encode_response(resp, id, &binary_out))
}

fn param_bool(p: &Option<Map<String, Json>>, key: &str) -> Option<bool> {
    p.as_ref().and_then(|m| m.get(key)).and_then(Json::as_bool)
}

/// Which outputs go in the binary section: (default for unlisted outputs, per-output choices).
struct BinaryChoice {
    all: bool,
    per: HashMap<String, bool>,
}

impl BinaryChoice {
    fn get(&self, name: &str) -> bool {
        self.per.get(name).copied().unwrap_or(self.all)
    }
}

fn decode_request(
    r: JsonRequest,
    binary: &Bytes,
    model: String,
    version: Option<String>,
) -> Result<(CoreRequest, BinaryChoice, Option<Json>), ServeError> {
    let mut inputs = Vec::with_capacity(r.inputs.len());
    let mut offset = 0usize;
    for inp in r.inputs {
        let dtype = parse_v2(&inp.datatype).map_err(|e| ServeError::bad(format!("input '{}': {e}", inp.name)))?;
        let shape = parse_shape(&inp.name, &inp.shape)?;
        let bin_size = inp.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
        let t = match (bin_size, &inp.data) {
            (Some(sz), None) => {
                let sz = sz
                    .as_u64()
                    .ok_or_else(|| ServeError::bad(format!("input '{}': binary_data_size must be a non-negative integer", inp.name)))?
                    as usize;
                let end = offset.checked_add(sz).filter(|&e| e <= binary.len()).ok_or_else(|| {
                    ServeError::bad(format!(
                        "input '{}': binary_data_size {sz} at offset {offset} runs past the {} bytes of binary data",
                        inp.name,
                        binary.len()
                    ))
                })?;
                let t = tensor_from_raw(&inp.name, dtype, shape, &binary[offset..end])?;
                offset = end;
                t
            }
            (None, Some(data)) => tensor_from_json(&inp.name, dtype, shape, data)?,
            (Some(_), Some(_)) => {
                return Err(ServeError::bad(format!("input '{}' has both 'data' and binary_data_size", inp.name)))
            }
            (None, None) => return Err(ServeError::bad(format!("input '{}' has no 'data' and no binary_data_size", inp.name))),
        };
        inputs.push((inp.name, t));
    }
    if offset != binary.len() {
        return Err(ServeError::bad(format!(
            "the request carries {} bytes of binary data but its inputs use {offset}",
            binary.len()
        )));
    }
    let mut choice = BinaryChoice { all: param_bool(&r.parameters, "binary_data_output").unwrap_or(false), per: HashMap::new() };
    let outputs = match r.outputs {
        None => None,
        Some(list) if list.is_empty() => None,
        Some(list) => {
            let mut names = Vec::with_capacity(list.len());
            for o in list {
                if o.parameters.as_ref().map(|p| p.contains_key("classification")).unwrap_or(false) {
                    return Err(ServeError::bad(format!("output '{}': the classification extension is not supported", o.name)));
                }
                if let Some(b) = param_bool(&o.parameters, "binary_data") {
                    choice.per.insert(o.name.clone(), b);
                }
                names.push(o.name);
            }
            Some(names)
        }
    };
    Ok((CoreRequest { model, version, inputs, outputs }, choice, r.id))
}

fn encode_response(r: CoreResponse, id: Option<Json>, binary: &BinaryChoice) -> Response {
    use std::fmt::Write;
    let mut out = String::with_capacity(256);
    out.push_str("{\"model_name\":");
    write_json_str(&r.model_name, &mut out);
    out.push_str(",\"model_version\":");
    write_json_str(&r.model_version, &mut out);
    if let Some(id) = id {
        out.push_str(",\"id\":");
        out.push_str(&id.to_string());
    }
    out.push_str(",\"outputs\":[");
    let mut bin: Vec<u8> = Vec::new();
    for (i, (name, t)) in r.outputs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        write_json_str(name, &mut out);
        out.push_str(",\"datatype\":\"");
        out.push_str(v2_name(t.dtype()));
        out.push_str("\",\"shape\":[");
        for (k, d) in t.shape().iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(out, "{d}");
        }
        out.push(']');
        if binary.get(name) {
            let before = bin.len();
            tensor_to_raw(t, &mut bin);
            let _ = write!(out, ",\"parameters\":{{\"binary_data_size\":{}}}", bin.len() - before);
        } else {
            out.push_str(",\"data\":");
            write_json_data(t, &mut out);
        }
        out.push('}');
    }
    out.push_str("]}");
    if bin.is_empty() && !r.outputs.iter().any(|(n, _)| binary.get(n)) {
        return ([(header::CONTENT_TYPE, "application/json")], out).into_response();
    }
    let json_len = out.len();
    let mut body = out.into_bytes();
    body.extend_from_slice(&bin);
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(HEADER_LEN, HeaderValue::from(json_len));
    resp
}

/// CORS and JSON access logs.
async fn gateway_layer(State(s): State<SharedState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let allowed = origin.as_ref().and_then(|o| {
        let c = &s.config.cors_origins;
        if c.iter().any(|x| x == "*") {
            Some("*".to_string())
        } else if c.iter().any(|x| x == o) {
            Some(o.clone())
        } else {
            None
        }
    });
    let mut resp = if method == Method::OPTIONS && allowed.is_some() {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, inference-header-content-length"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(req).await
    };
    if let Some(a) = allowed {
        if let Ok(v) = HeaderValue::from_str(&a) {
            resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("inference-header-content-length, retry-after"),
            );
        }
    }
    if s.config.access_log {
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let line = serde_json::json!({
            "ts": ts,
            "method": method.as_str(),
            "path": path,
            "status": resp.status().as_u16(),
            "duration_ms": start.elapsed().as_secs_f64() * 1e3,
        });
        println!("{line}");
    }
    resp
}
