//! Runtime policies: retry, circuit breaker, error types, health check,
//! idempotency, performance.

use crate::contract::{
    CircuitBreakerPolicy, ErrorType, HealthCheck, Idempotency, NodeKind, Performance, RetryPolicy,
};

use super::{Ctx, Cursor};

/// Retry and circuit breaker from `error_handling`, falling back to
/// `effect_operations.default_retry_policy` / `default_circuit_breaker` /
/// `circuit_breaker`. Per-operation policies are not honoured (a warning says
/// so), exactly as ONEX v1.0 documents for its own runtime.
pub fn resilience(ctx: &mut Ctx, root: &Cursor) -> (RetryPolicy, CircuitBreakerPolicy) {
    let eh = root.get("error_handling");
    let eo = root.get("effect_operations");
    let retry_c = eh
        .as_ref()
        .and_then(|e| e.get("retry_policy"))
        .or_else(|| eo.as_ref().and_then(|e| e.get("default_retry_policy")));
    let cb_c = eh
        .as_ref()
        .and_then(|e| e.get("circuit_breaker"))
        .or_else(|| {
            eo.as_ref()
                .and_then(|e| e.get_any(&["default_circuit_breaker", "circuit_breaker"]))
        });
    if let Some(eo) = &eo {
        if let Some(ops) = eo.get("operations") {
            for op in ops.items() {
                for key in ["retry_policy", "circuit_breaker"] {
                    if let Some(k) = op.key(key) {
                        ctx.warning(
                            "W-UNSUPPORTED",
                            &k,
                            format!("a per-operation {key} is not honoured; the node-level policy applies to every operation"),
                            format!("error_handling.{key} or effect_operations.default_{key}"),
                        );
                    }
                }
            }
        }
    }
    let retry = retry_c.map(|c| retry(ctx, &c)).unwrap_or_default();
    let cb = cb_c.map(|c| circuit_breaker(ctx, &c)).unwrap_or_default();
    (retry, cb)
}

fn retry(ctx: &mut Ctx, c: &Cursor) -> RetryPolicy {
    let mut p = RetryPolicy::default();
    if let Some(n) = c.get("max_retries").and_then(|v| v.u64()) {
        p.max_retries = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = c
        .get_any(&["initial_delay_ms", "base_delay_ms", "backoff_ms"])
        .and_then(|v| v.u64())
    {
        p.initial_delay_ms = n;
    }
    if let Some(n) = c.get("max_delay_ms").and_then(|v| v.u64()) {
        p.max_delay_ms = n;
    }
    if let Some(m) = c
        .get_any(&["exponential_base", "multiplier", "backoff_multiplier"])
        .and_then(|v| v.f64())
    {
        p.multiplier = m;
    }
    if let Some(j) = c.get_any(&["jitter_factor", "jitter"]) {
        match (j.f64(), j.bool()) {
            (Some(f), _) => p.jitter = f.clamp(0.0, 1.0),
            (None, Some(false)) => p.jitter = 0.0,
            _ => {}
        }
    }
    if let Some(s) = c.get("backoff_strategy") {
        match s.scalar().as_deref() {
            Some("exponential") | None => {}
            Some("fixed") | Some("constant") => p.multiplier = 1.0,
            Some(other) => {
                ctx.warning(
                    "W-UNSUPPORTED",
                    &s,
                    format!(
                        "backoff_strategy {other:?} is not supported; exponential backoff is used"
                    ),
                    "exponential or fixed",
                );
            }
        }
    }
    if p.max_delay_ms < p.initial_delay_ms {
        p.max_delay_ms = p.initial_delay_ms;
    }
    if let Some(list) = c.get("retry_on") {
        p.retry_on = list.strings();
    }
    if c.get("enabled").and_then(|e| e.bool()) == Some(false) {
        p.max_retries = 0;
    }
    p
}

fn circuit_breaker(ctx: &mut Ctx, c: &Cursor) -> CircuitBreakerPolicy {
    let mut p = CircuitBreakerPolicy::default();
    let mut src = c.clone();
    if c.get("failure_threshold").is_none() {
        if let Some(first) = c.get("backends").and_then(|b| b.items().into_iter().next()) {
            src = first;
        }
    }
    if let Some(b) = c.key("per_backend") {
        if c.get("per_backend").and_then(|v| v.bool()) == Some(true) {
            ctx.warning(
                "W-UNSUPPORTED",
                &b,
                "per-backend circuit breakers are not supported; one breaker guards the node",
                "a single circuit_breaker",
            );
        }
    }
    p.enabled = c.get("enabled").and_then(|v| v.bool()).unwrap_or(true);
    if let Some(n) = src.get("failure_threshold").and_then(|v| v.u64()) {
        p.failure_threshold = u32::try_from(n).unwrap_or(u32::MAX).max(1);
    }
    if let Some(n) = src
        .get_any(&["reset_timeout_ms", "timeout_ms", "recovery_timeout_ms"])
        .and_then(|v| v.u64())
    {
        p.reset_timeout_ms = n;
    } else if let Some(s) = src
        .get_any(&["reset_timeout_seconds", "recovery_timeout_seconds"])
        .and_then(|v| v.u64())
    {
        p.reset_timeout_ms = s.saturating_mul(1000);
    }
    if let Some(n) = src
        .get_any(&[
            "half_open_max_requests",
            "half_open_requests",
            "half_open_max_calls",
        ])
        .and_then(|v| v.u64())
    {
        p.half_open_max_requests = u32::try_from(n).unwrap_or(u32::MAX).max(1);
    }
    p
}

/// `error_handling.error_types` as a list of `{name, description,
/// recoverable}` (or names) or a map name -> `{description, recoverable}`.
pub fn error_types(_ctx: &mut Ctx, root: &Cursor) -> Vec<ErrorType> {
    let Some(et) = root
        .get("error_handling")
        .and_then(|e| e.get("error_types"))
    else {
        return Vec::new();
    };
    let mut out: Vec<ErrorType> = Vec::new();
    let mut add = |name: String, spec: Option<&Cursor>| {
        if name.is_empty() || out.iter().any(|e| e.name == name) {
            return;
        }
        out.push(ErrorType {
            name,
            description: spec
                .and_then(|s| s.get("description"))
                .and_then(|d| d.scalar()),
            recoverable: spec
                .and_then(|s| s.get("recoverable"))
                .and_then(|r| r.bool()),
        });
    };
    if et.is_seq() {
        for item in et.items() {
            if let Some(n) = item.scalar() {
                add(n, None);
            } else if let Some(n) = item.get("name").and_then(|n| n.scalar()) {
                add(n, Some(&item));
            }
        }
    } else {
        for (k, v) in et.entries() {
            add(k.node.key_text().unwrap_or_default(), Some(&v));
        }
    }
    out
}

/// `health_check`: endpoint, interval (seconds or ms), timeout (ms or
/// seconds), named checks. No section: the defaults.
pub fn health_check(_ctx: &mut Ctx, root: &Cursor) -> HealthCheck {
    let mut h = HealthCheck::default();
    let Some(c) = root.get("health_check") else {
        return h;
    };
    h.enabled = c.get("enabled").and_then(|v| v.bool()).unwrap_or(true);
    if let Some(e) = c.get("endpoint").and_then(|v| v.scalar()) {
        h.endpoint = if e.starts_with('/') {
            e
        } else {
            format!("/{e}")
        };
    }
    if let Some(s) = c.get("interval_seconds").and_then(|v| v.u64()) {
        h.interval_seconds = s.max(1);
    } else if let Some(ms) = c.get("interval_ms").and_then(|v| v.u64()) {
        h.interval_seconds = ms.div_ceil(1000).max(1);
    }
    if let Some(ms) = c.get("timeout_ms").and_then(|v| v.u64()) {
        h.timeout_ms = Some(ms);
    } else if let Some(s) = c.get("timeout_seconds").and_then(|v| v.u64()) {
        h.timeout_ms = Some(s.saturating_mul(1000));
    }
    if let Some(checks) = c.get("checks") {
        for item in checks.items() {
            let name = item
                .scalar()
                .or_else(|| item.get("name").and_then(|n| n.scalar()));
            if let Some(n) = name {
                if !h.checks.contains(&n) {
                    h.checks.push(n);
                }
            }
        }
    }
    h
}

/// `idempotency`:
/// - `enabled: false` or no section: none;
/// - `strategy: event_id_tracking` (or none) with `hash_fields`: the event id
///   the message carries, else the hash of those fields ("skip duplicate
///   events based on event_id or derived hash", `fallback_to_event_id`);
/// - `derivation: deterministic_hash` with `hash_fields` under another
///   strategy: hash of those fields;
/// - `strategy: event_id_tracking`: the envelope event id;
/// - other strategies with `hash_fields` (e.g. `debounce_window`): hash of
///   those fields, with a warning;
/// - `correlation_id_tracking` (with `key_field`): hash of the key field, with
///   a warning; anything else: event id, with a warning.
pub fn idempotency(ctx: &mut Ctx, root: &Cursor) -> Option<Idempotency> {
    let c = root.get("idempotency")?;
    if c.get("enabled").and_then(|v| v.bool()) == Some(false) {
        return None;
    }
    let strategy = c
        .get("strategy")
        .and_then(|s| s.scalar())
        .unwrap_or_default();
    let hash_fields: Vec<String> = c
        .get("hash_fields")
        .map(|h| h.strings())
        .unwrap_or_default();
    let derivation = c
        .get("derivation")
        .and_then(|s| s.scalar())
        .unwrap_or_default();
    let at = c.get("strategy").unwrap_or(c.clone());
    let by_event_id = matches!(strategy.as_str(), "event_id_tracking" | "event_id" | "");
    if by_event_id && !hash_fields.is_empty() {
        return Some(Idempotency::EventIdElseFields {
            fields: hash_fields,
        });
    }
    if derivation == "deterministic_hash" && !hash_fields.is_empty() {
        return Some(Idempotency::HashFields {
            fields: hash_fields,
        });
    }
    match strategy.as_str() {
        "event_id_tracking" | "event_id" | "" => return Some(Idempotency::EventId),
        "hash_fields" | "content_hash" if !hash_fields.is_empty() => {
            return Some(Idempotency::HashFields {
                fields: hash_fields,
            })
        }
        _ => {}
    }
    if !hash_fields.is_empty() {
        ctx.warning(
            "W-UNSUPPORTED",
            &at,
            format!("idempotency strategy {strategy:?} is approximated by skipping messages whose hash_fields were seen in the last 7 days"),
            "strategy: event_id_tracking, or hash_fields",
        );
        return Some(Idempotency::HashFields {
            fields: hash_fields,
        });
    }
    if let Some(key) = c.get("key_field").and_then(|k| k.scalar()) {
        ctx.warning(
            "W-UNSUPPORTED",
            &at,
            format!("idempotency strategy {strategy:?} is approximated by skipping messages whose {key:?} was seen in the last 7 days"),
            "strategy: event_id_tracking, or hash_fields",
        );
        return Some(Idempotency::HashFields { fields: vec![key] });
    }
    ctx.warning(
        "W-UNSUPPORTED",
        &at,
        format!("idempotency strategy {strategy:?} is approximated by event id tracking"),
        "strategy: event_id_tracking, or hash_fields",
    );
    Some(Idempotency::EventId)
}

/// The handler timeout: `performance.max_response_time_ms`,
/// `single_operation_max_ms` or `max_latency_ms`, else `descriptor.timeout_ms`,
/// else `handler_routing.max_timeout_seconds`.
pub fn performance(root: &Cursor) -> Performance {
    let from_perf = root.get("performance").and_then(|p| {
        p.get_any(&[
            "max_response_time_ms",
            "single_operation_max_ms",
            "max_latency_ms",
        ])
        .and_then(|v| v.u64())
    });
    let from_descriptor = root
        .get("descriptor")
        .and_then(|d| d.get("timeout_ms"))
        .and_then(|v| v.u64());
    let from_routing = root
        .get("handler_routing")
        .and_then(|h| h.get("max_timeout_seconds"))
        .and_then(|v| v.u64())
        .map(|s| s.saturating_mul(1000));
    Performance {
        timeout_ms: from_perf.or(from_descriptor).or(from_routing),
    }
}

/// The platform's window length when `windowing` gives none
/// (omnibase_core's `ModelWindowingStrategy.window_size_ms`).
const DEFAULT_WINDOW_MS: u64 = 60_000;

/// The aggregation window of a reducer, from the platform's aggregation
/// subcontract: `aggregation.windowing` with `windowing_enabled: true`,
/// `window_type: tumbling` and `window_size_ms` (default 60000). Other
/// window types are read as tumbling with a warning; so is a window on a
/// node that is not a reducer, which is ignored.
pub fn aggregation_window(ctx: &mut Ctx, root: &Cursor, kind: NodeKind) -> Option<u64> {
    let aggregation = root.get("aggregation")?;
    let windowing = aggregation.get("windowing")?;
    let enabled = windowing.get("windowing_enabled").and_then(|v| v.bool());
    if enabled != Some(true) {
        if windowing.get("window_size_ms").is_some() {
            ctx.warning(
                "W-UNSUPPORTED",
                &windowing,
                "windowing is off unless windowing_enabled is true (as on the platform); the reducer publishes once per input",
                "windowing_enabled: true",
            );
        }
        return None;
    }
    if kind != NodeKind::Reducer {
        let at = root.key("aggregation").unwrap_or(aggregation);
        ctx.warning(
            "W-UNSUPPORTED",
            &at,
            format!("only reducers aggregate; the window of this {kind} node is ignored"),
            "aggregation on a reducer",
        );
        return None;
    }
    if let Some(t) = windowing.get("window_type") {
        if t.scalar().as_deref() != Some("tumbling") {
            ctx.warning(
                "W-UNSUPPORTED",
                &t,
                "only tumbling windows are supported; the window is tumbling",
                "window_type: tumbling",
            );
        }
    }
    match windowing.get("window_size_ms") {
        None => Some(DEFAULT_WINDOW_MS),
        // Anything else was reported by the schema check.
        Some(size) => size.u64().filter(|ms| *ms > 0),
    }
}
