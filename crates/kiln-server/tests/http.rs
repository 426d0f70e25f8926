//! HTTP front-end tests: a real server on an ephemeral loopback port, a minimal HTTP/1.1 client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kiln_server::{Repository, ServerConfig};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {}", String::from_utf8_lossy(&self.body))).to_string()
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Resp {
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let _ = s.write_all(body).await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
            .collect();
        let mut body = buf[split + 4..].to_vec();
        if headers.get("transfer-encoding").map(|v| v == "chunked").unwrap_or(false) {
            body = dechunk(&body);
        }
        Resp { status, headers, body }
    })
    .await
    .expect("request timed out")
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(p) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..p]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + n]);
        b = &b[p + 4 + n..];
    }
}

async fn post_json(addr: SocketAddr, path: &str, v: &Json) -> Resp {
    call(addr, "POST", path, &[("Content-Type", "application/json".into())], v.to_string().as_bytes()).await
}

fn base_config() -> ServerConfig {
    ServerConfig { http_port: 0, grpc_port: None, ..ServerConfig::default() }
}

async fn builtin() -> kiln_server::RunningServer {
    kiln_server::start(base_config(), Repository::builtin().expect("builtin models")).await.expect("start")
}

fn demo_model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../models/demo/{name}/1/model.onnx"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-server-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn put(dir: &PathBuf, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

const IRIS_ROWS: [[f32; 4]; 2] = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]];

fn iris_request() -> Json {
    json!({"id": "r1", "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": IRIS_ROWS.concat()}]})
}

#[tokio::test]
async fn health_and_metadata() {
    let s = builtin().await;
    let a = s.http_addr;
    assert_eq!(call(a, "GET", "/v2/health/live", &[], b"").await.status, 200);
    assert_eq!(call(a, "GET", "/v2/health/ready", &[], b"").await.status, 200);
    let m = call(a, "GET", "/v2", &[], b"").await.json();
    assert_eq!(m["name"], "kiln");
    assert!(m["extensions"].as_array().unwrap().iter().any(|e| e == "binary_tensor_data"));
    for path in ["/v2/models/iris", "/v2/models/iris/versions/1"] {
        let r = call(a, "GET", path, &[], b"").await;
        assert_eq!(r.status, 200, "{path}");
        let m = r.json();
        assert_eq!(m["name"], "iris");
        assert_eq!(m["versions"], json!(["1"]));
        assert_eq!(m["inputs"], json!([{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]));
        assert_eq!(m["outputs"][0]["name"], "label");
        assert_eq!(m["outputs"][0]["datatype"], "INT64");
        assert_eq!(m["outputs"][1]["shape"], json!([-1, 3]));
    }
    assert_eq!(call(a, "GET", "/v2/models/iris/ready", &[], b"").await.status, 200);
    assert_eq!(call(a, "GET", "/v2/models/digits/versions/1/ready", &[], b"").await.status, 200);
    assert_eq!(call(a, "GET", "/v2/models/iris/versions/7/ready", &[], b"").await.status, 404);
    assert_eq!(call(a, "GET", "/v2/models/nope/ready", &[], b"").await.status, 404);
    let c = call(a, "GET", "/v2/models/iris/config", &[], b"").await.json();
    assert_eq!(c["input"][0]["data_type"], "TYPE_FP32");
    s.shutdown().await;
}

#[tokio::test]
async fn infer_flat_nested_and_output_selection() {
    let s = builtin().await;
    let a = s.http_addr;
    let r = post_json(a, "/v2/models/iris/infer", &iris_request()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["model_name"], "iris");
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["id"], "r1");
    let outs = v["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0]["name"], "label");
    assert_eq!(outs[0]["datatype"], "INT64");
    assert_eq!(outs[0]["shape"], json!([2]));
    // A setosa and a virginica from the training data.
    assert_eq!(outs[0]["data"], json!([0, 2]));
    let probs: Vec<f64> = outs[1]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 6);
    assert!((probs[0..3].iter().sum::<f64>() - 1.0).abs() < 1e-4);

    let nested = json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": IRIS_ROWS}]});
    let n = post_json(a, "/v2/models/iris/versions/1/infer", &nested).await.json();
    assert_eq!(n["outputs"], v["outputs"]);

    let sel = json!({"inputs": iris_request()["inputs"], "outputs": [{"name": "probabilities"}], "parameters": {"priority": 1}});
    let r = post_json(a, "/v2/models/iris/infer", &sel).await.json();
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(r["outputs"][0]["name"], "probabilities");
    assert_eq!(r["outputs"][0]["shape"], json!([2, 3]));
    s.shutdown().await;
}

#[tokio::test]
async fn binary_tensor_extension() {
    let s = builtin().await;
    let a = s.http_addr;
    let header = json!({
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": false}}, {"name": "probabilities", "parameters": {"binary_data": true}}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for x in IRIS_ROWS.concat() {
        body.extend_from_slice(&x.to_le_bytes());
    }
    let r = call(
        a,
        "POST",
        "/v2/models/iris/infer",
        &[("Inference-Header-Content-Length", header.len().to_string()), ("Content-Type", "application/octet-stream".into())],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let n: usize = r.headers["inference-header-content-length"].parse().unwrap();
    let v: Json = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(v["outputs"][0]["data"], json!([0, 2]));
    assert_eq!(v["outputs"][1]["parameters"]["binary_data_size"], 24);
    let bin = &r.body[n..];
    assert_eq!(bin.len(), 24);
    let p: Vec<f32> = bin.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert!((p[3] + p[4] + p[5] - 1.0).abs() < 1e-4 && p[5] > 0.5);

    // binary_data_output for every output.
    let req = json!({"inputs": iris_request()["inputs"], "parameters": {"binary_data_output": true}});
    let r = post_json(a, "/v2/models/iris/infer", &req).await;
    let n: usize = r.headers["inference-header-content-length"].parse().unwrap();
    assert_eq!(r.body.len() - n, 16 + 24);
    s.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_clear_4xx() {
    let s = builtin().await;
    let a = s.http_addr;
    let inp = |name: &str, shape: Json, dt: &str, data: Json| json!({"inputs": [{"name": name, "shape": shape, "datatype": dt, "data": data}]});
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v2/models/iris/infer", b"{\"inputs\": [".to_vec(), 400, "failed to parse the request JSON"),
        ("/v2/models/iris/infer", b"not json".to_vec(), 400, "failed to parse"),
        ("/v2/models/iris/infer", inp("X", json!([1, 4]), "FP64", json!([1, 2, 3, 4])).to_string().into_bytes(), 400, "expects FP32"),
        ("/v2/models/iris/infer", inp("X", json!([1, 5]), "FP32", json!([1, 2, 3, 4, 5])).to_string().into_bytes(), 400, "expects [-1, 4]"),
        ("/v2/models/iris/infer", inp("X", json!([1, 4]), "FP32", json!([1, 2, 3])).to_string().into_bytes(), 400, "has 4 elements but 'data' has 3"),
        ("/v2/models/iris/infer", inp("X", json!([1, 4]), "FP32", json!([1, 2, "x", 4])).to_string().into_bytes(), 400, "element 2"),
        ("/v2/models/iris/infer", inp("X", json!([1, 4]), "FLOAT", json!([1, 2, 3, 4])).to_string().into_bytes(), 400, "unknown datatype"),
        ("/v2/models/iris/infer", inp("Y", json!([1, 4]), "FP32", json!([1, 2, 3, 4])).to_string().into_bytes(), 400, "unexpected inference input 'Y'"),
        ("/v2/models/iris/infer", inp("X", json!([-1, 4]), "FP32", json!([1, 2, 3, 4])).to_string().into_bytes(), 400, "negative"),
        ("/v2/models/iris/infer", json!({"inputs": iris_request()["inputs"], "outputs": [{"name": "nope"}]}).to_string().into_bytes(), 400, "unexpected inference output 'nope'"),
        ("/v2/models/nope/infer", iris_request().to_string().into_bytes(), 404, "unknown model"),
        ("/v2/models/iris/versions/9/infer", iris_request().to_string().into_bytes(), 404, "version 9"),
        ("/v2/models/iris/versions/abc/infer", iris_request().to_string().into_bytes(), 404, "version 'abc'"),
    ];
    for (path, body, status, msg) in cases {
        let r = call(a, "POST", path, &[], &body).await;
        assert_eq!(r.status, status, "{path} {}", String::from_utf8_lossy(&body));
        let e = r.error();
        assert!(e.contains(msg), "expected '{msg}' in '{e}'");
    }
    // Non-UTF-8 BYTES in the binary extension.
    let header = json!({"inputs": [{"name": "X", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}).to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&[2, 0, 0, 0, 0xff, 0xfe]);
    let r = call(a, "POST", "/v2/models/iris/infer", &[("Inference-Header-Content-Length", header.len().to_string())], &body).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("not valid UTF-8"), "{}", r.error());
    // Binary section shorter than announced.
    let header = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}).to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&[0; 8]);
    let r = call(a, "POST", "/v2/models/iris/infer", &[("Inference-Header-Content-Length", header.len().to_string())], &body).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("runs past"), "{}", r.error());
    // Unknown route.
    assert_eq!(call(a, "GET", "/v1/models", &[], b"").await.status, 404);
    // The server is still fine.
    assert_eq!(post_json(a, "/v2/models/iris/infer", &iris_request()).await.status, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let cfg = ServerConfig { max_body_bytes: 1000, ..base_config() };
    let s = kiln_server::start(cfg, Repository::builtin().unwrap()).await.unwrap();
    let data: Vec<f32> = vec![0.5; 400];
    let req = json!({"inputs": [{"name": "X", "shape": [100, 4], "datatype": "FP32", "data": data}]});
    let r = post_json(s.http_addr, "/v2/models/iris/infer", &req).await;
    assert_eq!(r.status, 413);
    assert!(r.error().contains("larger than the limit of 1000 bytes"));
    assert_eq!(post_json(s.http_addr, "/v2/models/iris/infer", &iris_request()).await.status, 200);
    s.shutdown().await;
}

fn digits_binary_request(rows: usize) -> (Vec<u8>, usize) {
    let header = json!({
        "inputs": [{"name": "X", "shape": [rows, 64], "datatype": "FP32", "parameters": {"binary_data_size": rows * 256}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for i in 0..rows * 64 {
        body.extend_from_slice(&((i % 17) as f32).to_le_bytes());
    }
    (body, header.len())
}

#[tokio::test]
async fn flood_beyond_the_queue_gets_503_with_retry_after() {
    let dir = temp_dir("flood");
    put(&dir, "digits/1/model.onnx", &std::fs::read(demo_model("digits")).unwrap());
    put(&dir, "digits/config.toml", b"instances = 1\nqueue_size = 1\n");
    let s = kiln_server::start(base_config(), Repository::open(&dir).unwrap()).await.unwrap();
    let a = s.http_addr;
    let (body, hlen) = digits_binary_request(4000);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            call(a, "POST", "/v2/models/digits/infer", &[("Inference-Header-Content-Length", hlen.to_string())], &body).await
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
                assert!(r.error().contains("overloaded"));
            }
            other => panic!("unexpected status {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok} busy {busy}");
    let m = String::from_utf8(call(a, "GET", "/metrics", &[], b"").await.body).unwrap();
    assert!(m.contains("kiln_queue_depth{model=\"digits\",version=\"1\"} 0"), "{m}");
    assert!(m.contains("kiln_rejected_total{reason=\"overload\"}"));
    s.shutdown().await;
}

#[tokio::test]
async fn dynamic_batching_gives_the_same_answers() {
    let dir = temp_dir("batch");
    put(&dir, "iris/1/model.onnx", &std::fs::read(demo_model("iris")).unwrap());
    put(&dir, "iris/config.toml", b"instances = 1\nmax_batch_size = 16\n[dynamic_batching]\nmax_queue_delay_us = 20000\n");
    let s = kiln_server::start(base_config(), Repository::open(&dir).unwrap()).await.unwrap();
    let a = s.http_addr;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let row = IRIS_ROWS[i % 2];
        tasks.push(tokio::spawn(async move {
            let req = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": row}]});
            (i, post_json(a, "/v2/models/iris/infer", &req).await)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["outputs"][0]["shape"], json!([1]));
        assert_eq!(v["outputs"][0]["data"], json!([if i % 2 == 0 { 0 } else { 2 }]));
    }
    let st = call(a, "GET", "/v2/models/iris/stats", &[], b"").await.json();
    let ms = &st["model_stats"][0];
    assert_eq!(ms["inference_count"], 12);
    assert!(ms["execution_count"].as_u64().unwrap() < 12, "no batching happened: {ms}");
    s.shutdown().await;
}

#[tokio::test]
async fn repository_versions_reload_and_extension() {
    let dir = temp_dir("repo");
    let iris = std::fs::read(demo_model("iris")).unwrap();
    put(&dir, "iris/1/model.onnx", &iris);
    put(&dir, "iris/2/model.onnx", &iris);
    put(&dir, "iris/3/model.onnx", &iris);
    put(&dir, "iris/config.toml", b"[version_policy]\nlatest = 2\n");
    put(&dir, "bare.onnx", &iris);
    put(&dir, "broken/1/model.onnx", b"this is not an onnx model");
    let s = kiln_server::start(base_config(), Repository::open(&dir).unwrap()).await.unwrap();
    let a = s.http_addr;
    let m = call(a, "GET", "/v2/models/iris", &[], b"").await.json();
    assert_eq!(m["versions"], json!(["2", "3"]));
    assert_eq!(call(a, "GET", "/v2/models/iris/versions/1/ready", &[], b"").await.status, 404);
    assert_eq!(post_json(a, "/v2/models/iris/versions/2/infer", &iris_request()).await.status, 200);
    assert_eq!(post_json(a, "/v2/models/bare/infer", &iris_request()).await.status, 200);
    let r = post_json(a, "/v2/models/broken/infer", &iris_request()).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains("not a valid ONNX model"), "{}", r.error());

    let idx = call(a, "POST", "/v2/repository/index", &[], b"{}").await.json();
    let broken = idx.as_array().unwrap().iter().find(|m| m["name"] == "broken").unwrap().clone();
    assert_eq!(broken["state"], "UNAVAILABLE");

    // A bad file replacing a serving version does not take that version down.
    put(&dir, "iris/3/model.onnx", b"garbage");
    let r = call(a, "POST", "/v2/repository/models/iris/load", &[], b"").await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("version 3"), "{}", r.error());
    assert_eq!(post_json(a, "/v2/models/iris/versions/3/infer", &iris_request()).await.status, 200);

    assert_eq!(call(a, "POST", "/v2/repository/models/bare/unload", &[], b"").await.status, 200);
    assert_eq!(post_json(a, "/v2/models/bare/infer", &iris_request()).await.status, 503);
    assert_eq!(call(a, "POST", "/v2/repository/models/bare/load", &[], b"").await.status, 200);
    assert_eq!(post_json(a, "/v2/models/bare/infer", &iris_request()).await.status, 200);
    assert_eq!(call(a, "POST", "/v2/repository/models/ghost/load", &[], b"").await.status, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn api_keys_rate_limits_cors_and_metrics() {
    let cfg = ServerConfig {
        api_keys: vec![kiln_server::config::ApiKey {
            sha256: kiln_server::auth::hash_key("k1"),
            models: vec!["iris".into()],
            rate_per_sec: Some(0.5),
            burst: Some(1.0),
        }],
        cors_origins: vec!["http://app.example".into()],
        ..base_config()
    };
    let s = kiln_server::start(cfg, Repository::builtin().unwrap()).await.unwrap();
    let a = s.http_addr;
    let body = iris_request().to_string();
    let key = ("Authorization", "Bearer k1".to_string());
    assert_eq!(call(a, "POST", "/v2/models/iris/infer", &[], body.as_bytes()).await.status, 401);
    assert_eq!(call(a, "POST", "/v2/models/iris/infer", &[("Authorization", "Bearer nope".into())], body.as_bytes()).await.status, 401);
    assert_eq!(call(a, "POST", "/v2/models/digits/infer", &[key.clone()], body.as_bytes()).await.status, 403);
    assert_eq!(call(a, "POST", "/v2/models/iris/infer", &[key.clone()], body.as_bytes()).await.status, 200);
    let r = call(a, "POST", "/v2/models/iris/infer", &[key.clone()], body.as_bytes()).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(call(a, "GET", "/v2/health/live", &[], b"").await.status, 200);

    let pre = call(a, "OPTIONS", "/v2/models/iris/infer", &[("Origin", "http://app.example".into())], b"").await;
    assert_eq!(pre.status, 204);
    assert_eq!(pre.headers["access-control-allow-origin"], "http://app.example");
    let other = call(a, "GET", "/v2/health/live", &[("Origin", "http://evil.example".into())], b"").await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));

    let m = String::from_utf8(call(a, "GET", "/metrics", &[], b"").await.body).unwrap();
    assert!(m.contains("kiln_inference_requests_success_total{model=\"iris\",version=\"1\"} 1"), "{m}");
    assert!(m.contains("kiln_compute_duration_seconds_count{model=\"iris\",version=\"1\"} 1"));
    assert!(m.contains("kiln_rejected_total{reason=\"rate_limit\"} 1"));
    s.shutdown().await;
}

async fn digits_server(tag: &str, config: &str) -> (kiln_server::RunningServer, PathBuf) {
    let dir = temp_dir(tag);
    put(&dir, "digits/1/model.onnx", &std::fs::read(demo_model("digits")).unwrap());
    put(&dir, "digits/config.toml", config.as_bytes());
    let s = kiln_server::start(base_config(), Repository::open(&dir).unwrap()).await.unwrap();
    (s, dir)
}

async fn digits_stats(a: SocketAddr) -> Json {
    call(a, "GET", "/v2/models/digits/stats", &[], b"").await.json()["model_stats"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnects_mid_request() {
    let (s, _dir) = digits_server("disconnect", "instances = 1\ninline_max_us = 0\n").await;
    let a = s.http_addr;
    // A body cut short: the client promises more bytes than it sends, then goes away.
    {
        let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
        let head = "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"inputs\": [";
        c.write_all(head.as_bytes()).await.unwrap();
    }
    // A complete request whose client leaves while it waits behind a slow one: never computed.
    let (slow, hlen) = digits_binary_request(60_000);
    let hdr = [("Inference-Header-Content-Length", hlen.to_string())];
    let slow_task = tokio::spawn(async move { call(a, "POST", "/v2/models/digits/infer", &hdr, &slow).await });
    for _ in 0..200 {
        if digits_stats(a).await["inference_stats"]["queue"]["count"].as_u64() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (body, hlen) = digits_binary_request(2);
    {
        let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
        let head = format!(
            "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nInference-Header-Content-Length: {hlen}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(&body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = slow_task.await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The server is up and the abandoned request was dropped without running.
    let (body, hlen) = digits_binary_request(2);
    let r = call(a, "POST", "/v2/models/digits/infer", &[("Inference-Header-Content-Length", hlen.to_string())], &body).await;
    assert_eq!(r.status, 200);
    let st = digits_stats(a).await;
    assert_eq!(st["execution_count"], 2, "{st}");
    assert_eq!(st["inference_stats"]["success"]["count"], 2, "{st}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let (s, _dir) = digits_server("shutdown", "instances = 1\ninline_max_us = 0\n").await;
    let a = s.http_addr;
    let mut tasks = Vec::new();
    for rows in [40_000, 2] {
        let (body, hlen) = digits_binary_request(rows);
        tasks.push(tokio::spawn(async move {
            call(a, "POST", "/v2/models/digits/infer", &[("Inference-Header-Content-Length", hlen.to_string())], &body).await
        }));
    }
    for _ in 0..200 {
        if digits_stats(a).await["inference_stats"]["queue"]["count"].as_u64() >= Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let state = s.state.clone();
    s.shutdown().await;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let n: usize = r.headers["inference-header-content-length"].parse().unwrap();
        let head: Json = serde_json::from_slice(&r.body[..n]).unwrap();
        let rows = head["outputs"][0]["shape"][0].as_u64().unwrap();
        assert_eq!(r.body.len() - n, rows as usize * 8);
    }
    assert!(!state.is_ready());
    assert!(tokio::net::TcpStream::connect(a).await.is_err(), "still accepting after shutdown");
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_floods_keep_memory_bounded() {
    if !std::path::Path::new("/proc/self/status").exists() {
        return;
    }
    let (s, _dir) = digits_server("memory", "instances = 1\nqueue_size = 2\n").await;
    let a = s.http_addr;
    let (body, hlen) = digits_binary_request(4000);
    let mut after = Vec::new();
    for _round in 0..4 {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                call(a, "POST", "/v2/models/digits/infer", &[("Inference-Header-Content-Length", hlen.to_string())], &body).await.status
            }));
        }
        for t in tasks {
            let st = t.await.unwrap();
            assert!(st == 200 || st == 503, "{st}");
        }
        after.push(rss_kib());
    }
    // Later floods reuse what the first one allocated: no growth beyond allocator noise.
    assert!(after[3] < after[0] + 48 * 1024, "RSS grew from {} KiB to {} KiB", after[0], after[3]);
    assert_eq!(post_json(a, "/v2/models/iris/infer", &iris_request()).await.status, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_per_key() {
    let key = |k: &str, rate: Option<f64>| kiln_server::config::ApiKey {
        sha256: kiln_server::auth::hash_key(k),
        models: vec![],
        rate_per_sec: rate,
        burst: Some(2.0),
    };
    let cfg = ServerConfig { api_keys: vec![key("slow", Some(0.1)), key("fast", None)], ..base_config() };
    let s = kiln_server::start(cfg, Repository::builtin().unwrap()).await.unwrap();
    let a = s.http_addr;
    let body = iris_request().to_string();
    let with = |k: &str| [("Authorization", format!("Bearer {k}"))];
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(a, "POST", "/v2/models/iris/infer", &with("slow"), body.as_bytes()).await.status);
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
    let r = call(a, "POST", "/v2/models/iris/infer", &with("slow"), body.as_bytes()).await;
    assert_eq!(r.status, 429);
    let wait: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    // The other key has its own (unlimited) budget.
    for _ in 0..10 {
        assert_eq!(call(a, "POST", "/v2/models/iris/infer", &with("fast"), body.as_bytes()).await.status, 200);
    }
    s.shutdown().await;
}

#[tokio::test]
async fn cheap_requests_run_inline_and_give_the_same_answers() {
    let s = builtin().await;
    let a = s.http_addr;
    for i in 0..40 {
        let row = IRIS_ROWS[i % 2];
        let req = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": row}]});
        let r = post_json(a, "/v2/models/iris/infer", &req).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["outputs"][0]["data"], json!([if i % 2 == 0 { 0 } else { 2 }]));
    }
    let st = call(a, "GET", "/v2/models/iris/stats", &[], b"").await.json();
    let is = &st["model_stats"][0]["inference_stats"];
    assert_eq!(is["success"]["count"], 40);
    assert!(is["queue"]["count"].as_u64().unwrap() < 40, "every request was queued: {is}");
    // Percent-encoded and versioned paths go through the router and still work.
    assert_eq!(post_json(a, "/v2/models/ir%69s/infer", &iris_request()).await.status, 200);
    assert_eq!(post_json(a, "/v2/models/iris/versions/1/infer", &iris_request()).await.status, 200);
    assert_eq!(post_json(a, "/v2/models//infer", &iris_request()).await.status, 404);
    s.shutdown().await;
}
