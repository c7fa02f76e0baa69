//! Tests of your handlers for node_word_count_compute. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

#[allow(unused_imports)]
use node_word_count_compute::generated::models::*;
use node_word_count_compute::generated::node::Node;
use node_word_count_compute::handlers::Handlers;

#[tokio::test]
async fn compute_accepts_the_example() {
    let input = serde_json::to_value(NodeInput {
        text: "example".to_owned(),
        min_length: 1,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.demo.word-count-requested.v1", "compute", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}
