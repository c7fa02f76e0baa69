//! Tests of your handlers for node_echo_effect. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

#[allow(unused_imports)]
use node_echo_effect::generated::models::*;
use node_echo_effect::generated::node::Node;
use node_echo_effect::handlers::Handlers;

#[tokio::test]
async fn echo_accepts_the_example() {
    let input = serde_json::to_value(EchoInput {
        message: "example".to_owned(),
        repeat: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.demo.echo-requested.v1", "echo", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}
