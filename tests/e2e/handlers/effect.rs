//! The e2e test's own code for node_echo_effect (copied over the generated
//! `src/handlers.rs`, the file a user owns): echoes the message with the
//! contract's ECHO_PREFIX, and fails retriably for the message `unavailable`
//! so the contract's retry policy and dead-lettering can be seen on the wire;
//! the message `slow` takes 3 s, long enough to be in flight at SIGTERM.
//! Every call logs the input's correlation id and idempotency key, as the
//! system an effect calls would record the key, so the test can see from
//! outside which inputs were handled again and with which key.

use onex_runtime::{HandlerContext, HandlerError};

use crate::generated::models::{EchoInput, EchoOutput};
use crate::generated::operations::Operations;

#[derive(Debug, Default)]
pub struct Handlers;

impl Handlers {
    pub fn new() -> Self {
        Self
    }
}

impl Operations for Handlers {
    async fn echo(
        &self,
        ctx: &HandlerContext,
        input: EchoInput,
    ) -> Result<EchoOutput, HandlerError> {
        tracing::info!(
            correlation_id = %ctx.correlation_id(),
            idempotency_key = %ctx.idempotency_key(),
            attempt = ctx.attempt(),
            "echo called"
        );
        if input.message == "unavailable" {
            return Err(HandlerError::Retriable(format!(
                "echo backend unavailable (attempt {})",
                ctx.attempt()
            )));
        }
        if input.message == "slow" {
            // Still running when the test sends SIGTERM: shutdown must let it finish.
            tracing::info!(correlation_id = %ctx.correlation_id(), "slow echo started");
            tokio::task::spawn_blocking(|| std::thread::sleep(std::time::Duration::from_secs(3)))
                .await
                .map_err(|e| HandlerError::Fatal(e.to_string()))?;
        }
        let prefix = ctx.env("ECHO_PREFIX").unwrap_or_default();
        let times = usize::try_from(input.repeat.unwrap_or(1).max(1)).unwrap_or(1);
        let message = vec![format!("{prefix}{}", input.message); times].join(" ");
        Ok(EchoOutput { message })
    }
}
