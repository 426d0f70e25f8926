//! `ServeError`: every way a request can fail, with its HTTP status and gRPC code.

use std::fmt;

/// A request failure; front-ends map it to a status code and an `{"error": "..."}` body.
#[derive(Clone, Debug, PartialEq)]
pub enum ServeError {
    /// Malformed request, wrong datatype/shape/element count, bad parameter (400).
    BadRequest(String),
    /// Unknown model or version (404).
    NotFound(String),
    /// Missing or unknown API key (401).
    Unauthorized(String),
    /// The API key may not use this model (403).
    Forbidden(String),
    /// Body over the configured limit (413).
    TooLarge(String),
    /// Per-key rate limit exceeded (429); retry after the given seconds.
    RateLimited { message: String, retry_after: u64 },
    /// Queue full, model not ready or unloading, timed out in queue (503).
    Unavailable { message: String, retry_after: u64 },
    /// The model failed while running (500).
    Internal(String),
}

impl ServeError {
    pub fn bad(m: impl Into<String>) -> ServeError {
        ServeError::BadRequest(m.into())
    }
    pub fn http_status(&self) -> u16 {
        match self {
            ServeError::BadRequest(_) => 400,
            ServeError::Unauthorized(_) => 401,
            ServeError::Forbidden(_) => 403,
            ServeError::NotFound(_) => 404,
            ServeError::TooLarge(_) => 413,
            ServeError::RateLimited { .. } => 429,
            ServeError::Internal(_) => 500,
            ServeError::Unavailable { .. } => 503,
        }
    }
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServeError::RateLimited { retry_after, .. } | ServeError::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            ServeError::BadRequest(m)
            | ServeError::NotFound(m)
            | ServeError::Unauthorized(m)
            | ServeError::Forbidden(m)
            | ServeError::TooLarge(m)
            | ServeError::Internal(m) => m,
            ServeError::RateLimited { message, .. } | ServeError::Unavailable { message, .. } => message,
        }
    }
    /// The body Open Inference Protocol clients expect.
    pub fn json_body(&self) -> String {
        serde_json::json!({ "error": self.message() }).to_string()
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ServeError {}

impl From<kiln_engine::Error> for ServeError {
    fn from(e: kiln_engine::Error) -> ServeError {
        match e {
            kiln_engine::Error::Input(m) => ServeError::BadRequest(m),
            other => ServeError::Internal(format!("model execution failed: {other}")),
        }
    }
}
