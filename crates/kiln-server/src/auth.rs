//! API keys (Bearer tokens stored as SHA-256 hashes) with per-key model allow-lists and
//! token-bucket rate limits.

use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::config::ApiKey;
use crate::error::ServeError;

struct Key {
    hash: [u8; 32],
    models: Vec<String>,
    rate: Option<(f64, f64)>,
    bucket: Mutex<(f64, Instant)>,
}

pub struct Auth {
    keys: Vec<Key>,
}

/// Lowercase hex SHA-256 of a key, the form `kiln.toml` stores.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Auth {
    pub fn new(keys: &[ApiKey]) -> Auth {
        Auth {
            keys: keys
                .iter()
                .filter_map(|k| {
                    let hash = parse_hex(&k.sha256)?;
                    let rate = k.rate_per_sec.filter(|r| *r > 0.0).map(|r| (r, k.burst.unwrap_or(r).max(1.0)));
                    Some(Key {
                        hash,
                        models: k.models.clone(),
                        rate,
                        bucket: Mutex::new((rate.map(|r| r.1).unwrap_or(0.0), Instant::now())),
                    })
                })
                .collect(),
        }
    }

    /// Checks that malformed hashes in the configuration are reported at start-up.
    pub fn validate(keys: &[ApiKey]) -> Result<(), String> {
        for (i, k) in keys.iter().enumerate() {
            if parse_hex(&k.sha256).is_none() {
                return Err(format!("api_keys[{i}].sha256 must be 64 hex digits (the SHA-256 of the key)"));
            }
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks an `Authorization` header value for a model (`None`: an endpoint not tied to a model).
    pub fn check(&self, authorization: Option<&str>, model: Option<&str>) -> Result<(), ServeError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ServeError::Unauthorized("missing API key: send 'Authorization: Bearer <key>'".into()))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let key = self
            .keys
            .iter()
            .find(|k| k.hash == digest)
            .ok_or_else(|| ServeError::Unauthorized("unknown API key".into()))?;
        if let Some(m) = model {
            if !key.models.is_empty() && !key.models.iter().any(|x| x == m) {
                return Err(ServeError::Forbidden(format!("this API key may not use model '{m}'")));
            }
        }
        if let Some((rate, burst)) = key.rate {
            let mut b = key.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let tokens = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
            if tokens < 1.0 {
                let wait = ((1.0 - tokens) / rate).ceil().max(1.0) as u64;
                *b = (tokens, now);
                return Err(ServeError::RateLimited {
                    message: format!("rate limit of {rate} requests/s for this API key exceeded"),
                    retry_after: wait,
                });
            }
            *b = (tokens - 1.0, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn keys_models_and_rate() {
        let cfg = vec![ApiKey { sha256: hash_key("s3cret"), models: vec!["iris".into()], rate_per_sec: Some(1.0), burst: Some(2.0) }];
        let a = Auth::new(&cfg);
        assert_eq!(a.check(None, Some("iris")).unwrap_err().http_status(), 401);
        assert_eq!(a.check(Some("Bearer nope"), Some("iris")).unwrap_err().http_status(), 401);
        assert_eq!(a.check(Some("Bearer s3cret"), Some("digits")).unwrap_err().http_status(), 403);
        assert!(a.check(Some("Bearer s3cret"), Some("iris")).is_ok());
        assert!(a.check(Some("Bearer s3cret"), Some("iris")).is_ok());
        assert_eq!(a.check(Some("Bearer s3cret"), Some("iris")).unwrap_err().http_status(), 429);
    }
}
