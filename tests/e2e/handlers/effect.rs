//! The e2e test's own code for node_echo_effect (copied over the generated
//! `src/handlers.rs`, the file a user owns): echoes the message with the
//! contract's ECHO_PREFIX, and fails retriably for the message `unavailable`
//! so the contract's retry policy and dead-lettering can be seen on the wire.

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
        if input.message == "unavailable" {
            return Err(HandlerError::Retriable(format!(
                "echo backend unavailable (attempt {})",
                ctx.attempt()
            )));
        }
        let prefix = ctx.env("ECHO_PREFIX").unwrap_or_default();
        let times = usize::try_from(input.repeat.unwrap_or(1).max(1)).unwrap_or(1);
        let message = vec![format!("{prefix}{}", input.message); times].join(" ");
        Ok(EchoOutput { message })
    }
}
