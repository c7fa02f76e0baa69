//! Tests of your handlers for merge_sweep_compute. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

use merge_sweep_compute::generated::node::Node;
use merge_sweep_compute::handlers::Handlers;

#[tokio::test]
async fn compute_accepts_the_example() {
    let input =
        serde_json::to_value(serde_json::Value::Null).expect("the example input serialises");
    let event = inbound("onex.cmd.omnimarket.merge-sweep-start.v1", "compute", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}
