//! The generator and the runtime agree on an ONEX contract's default error
//! handling: a generated `spec.rs` sets only what differs from the
//! generator's defaults on top of the runtime's `NodeSpec::for_contract`,
//! so a difference here would silently change every node that relies on
//! them. This crate is the one that sees both.

use onex_gen::contract::{CircuitBreakerPolicy, RetryPolicy};
use onex_runtime::{CircuitBreakerSettings, NodeKind, NodeSpec, RetrySettings};

#[test]
fn the_runtime_starts_from_the_contract_defaults_the_generator_omits() {
    let retry = RetryPolicy::default();
    let breaker = CircuitBreakerPolicy::default();
    let spec = NodeSpec::for_contract("node_x", NodeKind::Effect, "1.0.0");
    assert_eq!(
        spec.retry,
        RetrySettings {
            max_retries: retry.max_retries,
            initial_delay_ms: retry.initial_delay_ms,
            max_delay_ms: retry.max_delay_ms,
            multiplier: retry.multiplier,
            jitter: retry.jitter,
        }
    );
    assert!(breaker.enabled);
    assert_eq!(
        spec.circuit_breaker,
        Some(CircuitBreakerSettings {
            failure_threshold: breaker.failure_threshold,
            reset_timeout_ms: breaker.reset_timeout_ms,
            half_open_max_requests: breaker.half_open_max_requests,
        })
    );
    assert_eq!(spec.retry, RetrySettings::CONTRACT_DEFAULT);
}
