//! A generation request as it arrives on the bus, decoded and checked before
//! anything is generated, and the idempotency key it is remembered by.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The file name every request contract is parsed under: diagnostics name
/// it, and it never comes from the request.
pub const REQUEST_CONTRACT_PATH: &str = "<request>/contract.yaml";

/// Largest contract text accepted by default (bytes).
pub const DEFAULT_MAX_CONTRACT_BYTES: usize = 256 * 1024;

/// How the generated crate reaches onex-runtime, as a request may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeOption {
    /// A copy of the runtime inside the crate (builds anywhere).
    #[default]
    Vendored,
    /// A path dependency on the runtime folder the service was started with
    /// (`--runtime-path`); the request cannot name a path itself.
    Path,
}

/// The request options, in canonical form (every field present, fixed order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RequestOptions {
    pub runtime: RuntimeOption,
}

impl RequestOptions {
    /// The canonical JSON text used in the idempotency key.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads `options` from a request payload: absent or `null` means the
    /// defaults; unknown keys and wrong types are refused, so a request can
    /// never slip in an output path or a template folder.
    pub fn from_json(v: Option<&Value>) -> Result<Self, String> {
        let map = match v {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(format!(
                    "options must be an object, not {}",
                    type_name(other)
                ))
            }
        };
        let mut out = Self::default();
        for (k, v) in map {
            match k.as_str() {
                "runtime" => {
                    out.runtime = serde_json::from_value(v.clone()).map_err(|_| {
                        let v = excerpt(&v.to_string());
                        format!("options.runtime must be \"vendored\" or \"path\", not {v}")
                    })?
                }
                other => {
                    return Err(format!(
                        "unknown option `{}`; accepted options: runtime",
                        excerpt(other)
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// A request that passed the envelope-level checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRequest {
    pub contract: String,
    pub options: RequestOptions,
}

/// Why a request was refused before generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("contract is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
}

impl RequestError {
    /// The failed event's `error_type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) => "malformed_request",
            RequestError::TooLarge { .. } => "too_large",
        }
    }
}

/// At most the first 64 characters of `text`, so that what a refusal
/// quotes from a request stays short however long the request.
fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
        None => text.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl GenerationRequest {
    /// Decodes a request payload: `{"contract": "<YAML text>", "options": {...}}`.
    pub fn from_payload(payload: &Value, max_contract_bytes: usize) -> Result<Self, RequestError> {
        let map = payload.as_object().ok_or_else(|| {
            RequestError::Malformed(format!(
                "payload must be an object with a `contract` string, not {}",
                type_name(payload)
            ))
        })?;
        let contract = match map.get("contract") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(RequestError::Malformed(format!(
                    "`contract` must be the contract's YAML text (a string), not {}",
                    type_name(other)
                )))
            }
            None => {
                return Err(RequestError::Malformed(
                    "payload has no `contract` (the contract's YAML text)".into(),
                ))
            }
        };
        if contract.len() > max_contract_bytes {
            return Err(RequestError::TooLarge {
                size: contract.len(),
                limit: max_contract_bytes,
            });
        }
        if let Some(k) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "contract" | "options"))
        {
            return Err(RequestError::Malformed(format!(
                "unknown payload field `{}`; accepted: contract, options",
                excerpt(k)
            )));
        }
        let options =
            RequestOptions::from_json(map.get("options")).map_err(RequestError::Malformed)?;
        Ok(GenerationRequest { contract, options })
    }

    /// The payload that asks for this request.
    pub fn to_payload(&self) -> Value {
        let mut m = Map::new();
        m.insert("contract".into(), Value::String(self.contract.clone()));
        m.insert(
            "options".into(),
            serde_json::to_value(self.options).unwrap_or_else(|_| json!({})),
        );
        Value::Object(m)
    }

    /// sha256 over the contract bytes, the canonical options and the
    /// generator's fingerprint ([`super::GeneratorSettings::fingerprint`]:
    /// version, template set, formatter, runtime folder): equal keys give
    /// equal output, and a generator or template change never replays an
    /// answer it did not give.
    pub fn idempotency_key(&self, generator: &str) -> String {
        let mut h = Sha256::new();
        h.update(hex::encode(Sha256::digest(self.contract.as_bytes())));
        h.update([0]);
        h.update(self.options.canonical());
        h.update([0]);
        h.update(generator);
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses() {
        let ok = GenerationRequest::from_payload(&json!({"contract": "name: x"}), 100).unwrap();
        assert_eq!(ok.options, RequestOptions::default());
        let ok2 = GenerationRequest::from_payload(
            &json!({"contract": "name: x", "options": {"runtime": "path"}}),
            100,
        )
        .unwrap();
        assert_eq!(ok2.options.runtime, RuntimeOption::Path);
        assert_ne!(ok.idempotency_key("g"), ok2.idempotency_key("g"));

        let err = |p: Value| GenerationRequest::from_payload(&p, 10).unwrap_err();
        assert_eq!(err(json!([1])).error_type(), "malformed_request");
        assert!(err(json!({})).to_string().contains("no `contract`"));
        assert!(err(json!({"contract": 3})).to_string().contains("a number"));
        assert_eq!(
            err(json!({"contract": "x".repeat(11)})),
            RequestError::TooLarge {
                size: 11,
                limit: 10
            }
        );
        assert!(
            err(json!({"contract": "a", "options": {"out_dir": "../x"}}))
                .to_string()
                .contains("unknown option `out_dir`")
        );
        assert!(err(json!({"contract": "a", "path": "/etc"}))
            .to_string()
            .contains("unknown payload field `path`"));
        assert!(
            err(json!({"contract": "a", "options": {"runtime": "/abs"}}))
                .to_string()
                .contains("options.runtime")
        );
    }

    #[test]
    fn key_depends_on_contract_bytes_options_and_generator() {
        let a = GenerationRequest {
            contract: "name: a\n".into(),
            options: RequestOptions::default(),
        };
        let same = GenerationRequest::from_payload(&a.to_payload(), 1000).unwrap();
        assert_eq!(a.idempotency_key("g"), same.idempotency_key("g"));
        let b = GenerationRequest {
            contract: "name: a \n".into(),
            ..a.clone()
        };
        assert_ne!(a.idempotency_key("g"), b.idempotency_key("g"));
        assert_ne!(a.idempotency_key("g"), a.idempotency_key("h"));
        assert_eq!(a.idempotency_key("g").len(), 64);
    }
}
