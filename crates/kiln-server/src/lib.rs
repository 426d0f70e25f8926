//! kiln-server: the inference server behind `kiln serve`.
//!
//! Protocol front-ends (`http`: KServe V2 REST with Triton's extensions; `grpc`:
//! `inference.GRPCInferenceService`) are thin adapters over one `ServerState::infer` call (`core`).
//! `repository` loads models in Triton's layout (or the built-in demo models), `scheduler` gives
//! each model version a bounded queue and dedicated compute threads with optional dynamic
//! batching (cheap requests run inline on the I/O thread), `auth` checks API keys and rate
//! limits, `metrics` keeps Prometheus series.

pub mod auth;
pub mod config;
pub mod core;
pub mod datatype;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod repository;
pub mod scheduler;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

pub use crate::config::{ModelConfig, ServerConfig};
pub use crate::core::{ServerState, SharedState};
pub use crate::error::ServeError;
pub use crate::repository::Repository;

/// A running server: its bound addresses and a way to stop it gracefully.
pub struct RunningServer {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub state: SharedState,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and returns when both front-ends are done.
    pub async fn shutdown(self) {
        self.state.shutting_down.store(true, Relaxed);
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Opens the repository named in the configuration, or the built-in demo models.
pub fn open_repository(config: &ServerConfig) -> Result<Repository, String> {
    match &config.model_repository {
        Some(dir) => Repository::open(Path::new(dir)),
        None => Repository::builtin(),
    }
}

/// Binds the listeners (port 0: an ephemeral port) and starts serving on the current tokio runtime.
pub async fn start(config: ServerConfig, repo: Repository) -> Result<RunningServer, String> {
    auth::Auth::validate(&config.api_keys)?;
    let host = config.host.clone();
    let http = tokio::net::TcpListener::bind((host.as_str(), config.http_port))
        .await
        .map_err(|e| format!("cannot listen for HTTP on {host}:{}: {e}", config.http_port))?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let grpc = match config.grpc_port {
        Some(p) => {
            let l = std::net::TcpListener::bind((host.as_str(), p)).map_err(|e| format!("cannot listen for gRPC on {host}:{p}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let grpc_addr = match &grpc {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let poll = config.poll_interval_secs;
    let state = ServerState::new(repo, config);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();

    tasks.push(tokio::spawn(http::serve(http, state.clone(), stop_rx.clone())));
    if let Some(l) = grpc {
        let mut rx = stop_rx.clone();
        let svc = grpc::service(state.clone());
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream_from(l);
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    if poll > 0 {
        let st = state.clone();
        let rx = stop_rx.clone();
        std::thread::Builder::new()
            .name("kiln-repo-poll".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(poll));
                if *rx.borrow() {
                    return;
                }
                st.repo.poll();
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(RunningServer { http_addr, grpc_addr, state, stop, tasks })
}

fn tokio_stream_from(
    l: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    tokio_stream::wrappers::TcpListenerStream::new(l)
}

/// How long a shutdown waits for in-flight requests (and stalled clients) before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the server until Ctrl-C or SIGTERM, then shuts down gracefully. Prints the addresses.
pub fn serve_blocking(config: ServerConfig) -> Result<(), String> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.io_threads > 0 {
        rt.worker_threads(config.io_threads);
    }
    let rt = rt
        .enable_all()
        .thread_name("kiln-io")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let repo = open_repository(&config)?;
    rt.block_on(async move {
        let names: Vec<String> = repo
            .entries()
            .iter()
            .map(|e| format!("{} [{}]", e.name, e.versions.keys().map(|v| v.to_string()).collect::<Vec<_>>().join(",")))
            .collect();
        for e in repo.entries() {
            if !e.reason.is_empty() {
                eprintln!("kiln serve: model '{}': {}", e.name, e.reason);
            }
        }
        let server = start(config, repo).await?;
        println!("kiln serve: models {}", names.join(", "));
        println!("kiln serve: HTTP on http://{}", server.http_addr);
        if let Some(g) = server.grpc_addr {
            println!("kiln serve: gRPC on {g}");
        }
        shutdown_signal().await;
        eprintln!("kiln serve: shutting down (finishing in-flight requests)");
        if tokio::time::timeout(SHUTDOWN_GRACE, server.shutdown()).await.is_err() {
            eprintln!("kiln serve: requests still open after {} s; exiting anyway", SHUTDOWN_GRACE.as_secs());
        }
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
