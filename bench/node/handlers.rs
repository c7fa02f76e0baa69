//! The handler `bench/run.sh node` builds the generated minimal_effect node
//! with: it echoes the message, as the hand-written baseline does. (The
//! starting handler onex-gen writes returns an empty result and logs every
//! call at info level.)

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
        _ctx: &HandlerContext,
        input: EchoInput,
    ) -> Result<EchoOutput, HandlerError> {
        Ok(EchoOutput {
            message: input.message,
        })
    }
}
