//! Tests of your handlers for ab_inference_effect. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

use ab_inference_effect::generated::node::Node;
use ab_inference_effect::handlers::Handlers;

#[tokio::test]
async fn execute_accepts_the_example() {
    let input =
        serde_json::to_value(serde_json::Value::Null).expect("the example input serialises");
    let event = inbound(
        "onex.cmd.omnimarket.ab-inference-requested.v1",
        "execute",
        input,
    );
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}
