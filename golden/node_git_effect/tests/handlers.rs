//! Tests of your handlers for node_git_effect. onex-gen created this file once
//! and never overwrites it: change these tests as your handlers grow. (The
//! contract's own guarantees are checked in `tests/node.rs`, generated.)
//!
//! The starting tests call the node the way the runtime does, without a bus,
//! and check that the starting handlers accept the examples.

use onex_runtime::testing::{context, inbound};
use onex_runtime::NodeHandler;

#[allow(unused_imports)]
use node_git_effect::generated::models::*;
use node_git_effect::generated::node::Node;
use node_git_effect::handlers::Handlers;

#[tokio::test]
async fn branch_create_accepts_the_example() {
    let input = serde_json::to_value(BranchCreateInput {
        branch_name: "example".to_owned(),
        base_ref: "example".to_owned(),
        working_directory: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "branch_create", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn commit_accepts_the_example() {
    let input = serde_json::to_value(CommitInput {
        message: "example".to_owned(),
        working_directory: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "commit", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn push_accepts_the_example() {
    let input = serde_json::to_value(PushInput {
        branch_name: "example".to_owned(),
        force: true,
        working_directory: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "push", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn pr_create_accepts_the_example() {
    let input = serde_json::to_value(PrCreateInput {
        title: "example".to_owned(),
        body: "example".to_owned(),
        ticket_id: "example".to_owned(),
        base_branch: "example".to_owned(),
        working_directory: None,
        repo: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "pr_create", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn pr_update_accepts_the_example() {
    let input = serde_json::to_value(PrUpdateInput {
        pr_number: 1,
        title: None,
        body: None,
        working_directory: None,
        repo: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "pr_update", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn pr_close_accepts_the_example() {
    let input = serde_json::to_value(PrCloseInput {
        pr_number: 1,
        working_directory: None,
        repo: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "pr_close", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn pr_merge_accepts_the_example() {
    let input = serde_json::to_value(PrMergeInput {
        pr_number: 1,
        merge_method: None,
        use_merge_queue: true,
        working_directory: None,
        repo: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "pr_merge", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn pr_list_accepts_the_example() {
    let input = serde_json::to_value(PrListInput {
        json_fields: Vec::new(),
        list_filters: None,
        working_directory: None,
        repo: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "pr_list", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn pr_view_accepts_the_example() {
    let input = serde_json::to_value(PrViewInput {
        pr_number: 1,
        json_fields: Vec::new(),
        working_directory: None,
        repo: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "pr_view", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn tag_create_accepts_the_example() {
    let input = serde_json::to_value(TagCreateInput {
        tag_name: "example".to_owned(),
        tag_message: None,
        working_directory: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "tag_create", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}

#[tokio::test]
async fn label_add_accepts_the_example() {
    let input = serde_json::to_value(LabelAddInput {
        pr_number: 1,
        labels: Vec::new(),
        working_directory: None,
        repo: None,
        correlation_id: None,
    })
    .expect("the example input serialises");
    let event = inbound("onex.cmd.git.node-git-effect.v1", "label_add", input);
    let events = Node::new(Handlers::new())
        .handle(&context(), &event)
        .await
        .expect("the handler succeeds");
    assert!(events.len() <= 1, "{events:?}");
}
