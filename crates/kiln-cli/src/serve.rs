//! `kiln serve`: the inference server (Open Inference Protocol over HTTP and gRPC).

use crate::{flag_value, CliError};

pub const USAGE: &str = "kiln serve [--model-repository DIR] [--http-port P] [--grpc-port Q] [--host ADDR] [--config kiln.toml]
             [--no-grpc] [--max-body-bytes N] [--cors-origin ORIGIN ...] [--access-log] [--poll-interval SECONDS]
             [--io-threads N]";

fn port(flag: &str, s: &str) -> Result<u16, CliError> {
    s.parse::<u16>().map_err(|_| CliError(format!("{flag} must be a port number (0-65535), got '{s}'")))
}

pub fn main(args: &[String]) -> Result<(), CliError> {
    let mut config_path: Option<String> = std::env::var("KILN_CONFIG").ok().filter(|s| !s.is_empty());
    let mut it = args.iter();
    let mut overrides: Vec<(String, String)> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => config_path = Some(flag_value(&mut it, a)?.clone()),
            "--model-repository" | "--http-port" | "--grpc-port" | "--host" | "--max-body-bytes" | "--cors-origin"
            | "--poll-interval" | "--io-threads" => overrides.push((a.clone(), flag_value(&mut it, a)?.clone())),
            "--no-grpc" | "--access-log" => overrides.push((a.clone(), String::new())),
            "--help" | "-h" => {
                println!("usage: {USAGE}");
                return Ok(());
            }
            other => return Err(CliError(format!("serve: unknown argument '{other}' (usage: {USAGE})"))),
        }
    }
    let mut config = match &config_path {
        Some(p) => kiln_server::ServerConfig::load(std::path::Path::new(p)).map_err(CliError)?,
        None => kiln_server::ServerConfig::default(),
    };
    if let Ok(dir) = std::env::var("KILN_MODEL_REPOSITORY") {
        if !dir.is_empty() {
            config.model_repository = Some(dir);
        }
    }
    for (flag, v) in overrides {
        match flag.as_str() {
            "--model-repository" => config.model_repository = Some(v),
            "--http-port" => config.http_port = port(&flag, &v)?,
            "--grpc-port" => config.grpc_port = Some(port(&flag, &v)?),
            "--no-grpc" => config.grpc_port = None,
            "--host" => config.host = v,
            "--max-body-bytes" => {
                config.max_body_bytes =
                    v.parse().map_err(|_| CliError(format!("--max-body-bytes must be a byte count, got '{v}'")))?
            }
            "--cors-origin" => config.cors_origins.push(v),
            "--access-log" => config.access_log = true,
            "--poll-interval" => {
                config.poll_interval_secs =
                    v.parse().map_err(|_| CliError(format!("--poll-interval must be whole seconds, got '{v}'")))?
            }
            "--io-threads" => {
                config.io_threads = v.parse().map_err(|_| CliError(format!("--io-threads must be a thread count, got '{v}'")))?
            }
            _ => {}
        }
    }
    kiln_server::serve_blocking(config).map_err(CliError)
}
