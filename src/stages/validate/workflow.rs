//! Workflow graphs: `workflow_coordination.workflow_definition` with an
//! `execution_graph` of nodes (`depends_on`) and `edges`, or a plain
//! `workflow_steps` list. Steps come out in a topological order, ties broken
//! by contract order; a cycle is an error that names it.

use crate::contract::{Ident, Workflow, WorkflowStep};

use super::{Ctx, Cursor};

const STEP_EXPECTED: &str = "the node_id of a step declared in execution_graph.nodes";

pub fn workflow(ctx: &mut Ctx, root: &Cursor) -> Option<Workflow> {
    if let Some(wc) = root.get("workflow_coordination") {
        let def = wc.get("workflow_definition").unwrap_or(wc.clone());
        return from_definition(ctx, &wc, &def);
    }
    let steps = root.get("workflow_steps")?;
    let raw = raw_steps(
        ctx,
        steps.items(),
        &["step", "step_id", "id", "name", "node_id"],
        ["a workflow step without an id", "step: <id>"],
    );
    let steps = order(ctx, &steps, raw)?;
    Some(Workflow {
        name: "workflow".into(),
        steps,
        max_retries: None,
        timeout_ms: None,
        origin: root
            .get("workflow_steps")
            .map(|c| c.origin())
            .unwrap_or_default(),
    })
}

struct RawStep<'a> {
    at: Cursor<'a>,
    id_text: String,
    item: Cursor<'a>,
    deps: Vec<Cursor<'a>>,
}

/// The steps of `items` that name their id under one of `id_keys`; an item
/// without one is an `E-WORKFLOW-STEP` error (`[message, expected]`).
fn raw_steps<'a>(
    ctx: &mut Ctx,
    items: Vec<Cursor<'a>>,
    id_keys: &[&str],
    [message, expected]: [&str; 2],
) -> Vec<RawStep<'a>> {
    let mut raw = Vec::new();
    for item in items {
        let Some(id_c) = item.get_any(id_keys) else {
            ctx.error("E-WORKFLOW-STEP", &item, message, expected);
            continue;
        };
        raw.push(RawStep {
            at: id_c.clone(),
            id_text: id_c.scalar().unwrap_or_default(),
            deps: deps_of(&item),
            item,
        });
    }
    raw
}

/// `key` of a step's `step_config`.
fn step_config<'a>(item: &Cursor<'a>, key: &str) -> Option<Cursor<'a>> {
    item.get("step_config").and_then(|c| c.get(key))
}

fn deps_of<'a>(item: &Cursor<'a>) -> Vec<Cursor<'a>> {
    match item.get_any(&["depends_on", "dependencies"]) {
        Some(d) if d.is_seq() => d.items(),
        Some(d) if d.scalar().is_some() => vec![d],
        _ => Vec::new(),
    }
}

fn from_definition(ctx: &mut Ctx, wc: &Cursor, def: &Cursor) -> Option<Workflow> {
    let graph = def.get("execution_graph");
    let name = def
        .get("workflow_metadata")
        .and_then(|m| m.get("workflow_name"))
        .and_then(|n| n.scalar())
        .unwrap_or_else(|| "workflow".into());
    let rules = def
        .get("coordination_rules")
        .or_else(|| wc.get("coordination_rules"));
    let max_retries = rules
        .as_ref()
        .and_then(|r| r.get("max_retries"))
        .and_then(|v| v.u64())
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let timeout_ms = rules
        .as_ref()
        .and_then(|r| r.get("timeout_ms"))
        .and_then(|v| v.u64());
    let Some(graph) = graph else {
        ctx.warning(
            "W-UNSUPPORTED",
            def,
            "a workflow without an execution_graph has no steps to run",
            "execution_graph: {nodes: [...], edges: [...]}",
        );
        return Some(Workflow {
            name,
            steps: Vec::new(),
            max_retries,
            timeout_ms,
            origin: wc.origin(),
        });
    };
    let mut raw = raw_steps(
        ctx,
        graph.get("nodes").map(|n| n.items()).unwrap_or_default(),
        &["node_id", "step_id", "id", "step", "name"],
        ["an execution_graph node without a node_id", "node_id: <id>"],
    );
    for edge in graph.get("edges").map(|e| e.items()).unwrap_or_default() {
        let from = edge.get_any(&["from_node", "from", "source"]);
        let to = edge.get_any(&["to_node", "to", "target"]);
        let (Some(from), Some(to)) = (from, to) else {
            ctx.error(
                "E-WORKFLOW-STEP",
                &edge,
                "an edge needs from_node and to_node",
                "{from_node: <id>, to_node: <id>}",
            );
            continue;
        };
        let to_text = to.scalar().unwrap_or_default();
        match raw.iter_mut().find(|s| s.id_text == to_text) {
            Some(step) => {
                let from_text = from.scalar().unwrap_or_default();
                if !step
                    .deps
                    .iter()
                    .any(|d| d.scalar().as_deref() == Some(from_text.as_str()))
                {
                    step.deps.push(from);
                }
            }
            None => ctx.error(
                "E-WORKFLOW-STEP",
                &to,
                format!("edge to undeclared step {to_text:?}"),
                STEP_EXPECTED,
            ),
        }
    }
    let steps = order(ctx, &graph, raw)?;
    Some(Workflow {
        name,
        steps,
        max_retries,
        timeout_ms,
        origin: wc.origin(),
    })
}

/// Checks ids and references and returns the steps in topological order.
fn order(ctx: &mut Ctx, at: &Cursor, raw: Vec<RawStep>) -> Option<Vec<WorkflowStep>> {
    let mut ok = true;
    let mut steps: Vec<WorkflowStep> = Vec::new();
    for r in &raw {
        let id = match Ident::new(&r.id_text) {
            Ok(i) => i,
            Err(e) => {
                ctx.error(
                    "E-IDENT",
                    &r.at,
                    format!("step id {e}"),
                    "a step id with letters or digits",
                );
                ok = false;
                continue;
            }
        };
        if steps.iter().any(|s| s.id.rust == id.rust) {
            ctx.error(
                "E-WORKFLOW-STEP",
                &r.at,
                format!("step {:?} is declared twice", r.id_text),
                "unique step ids",
            );
            ok = false;
            continue;
        }
        let mut depends_on = Vec::new();
        for d in &r.deps {
            let text = d.scalar().unwrap_or_default();
            match raw.iter().find(|o| o.id_text == text) {
                Some(_) => {
                    if let Ok(di) = Ident::new(&text) {
                        if !depends_on.contains(&di) {
                            depends_on.push(di);
                        }
                    }
                }
                None => {
                    ctx.error(
                        "E-WORKFLOW-STEP",
                        d,
                        format!("step {:?} depends on undeclared step {text:?}", r.id_text),
                        STEP_EXPECTED,
                    );
                    ok = false;
                }
            }
        }
        steps.push(WorkflowStep {
            id,
            description: r.item.get("description").and_then(|d| d.scalar()),
            step_type: r
                .item
                .get_any(&["node_type", "step_type", "node"])
                .and_then(|t| t.scalar()),
            depends_on,
            effect_node: step_config(&r.item, "effect_node").and_then(|c| c.scalar()),
            operation: step_config(&r.item, "operation").and_then(|c| c.scalar()),
            timeout_ms: step_config(&r.item, "timeout_ms").and_then(|c| c.u64()),
            origin: r.at.origin(),
        });
    }
    if !ok {
        return None;
    }
    // Kahn's algorithm, always taking the earliest ready step.
    let mut placed: Vec<bool> = vec![false; steps.len()];
    let mut ordered: Vec<WorkflowStep> = Vec::with_capacity(steps.len());
    while ordered.len() < steps.len() {
        let ready = (0..steps.len()).find(|&i| {
            !placed[i]
                && steps[i].depends_on.iter().all(|d| {
                    steps
                        .iter()
                        .position(|s| &s.id == d)
                        .is_some_and(|j| placed[j])
                })
        });
        match ready {
            Some(i) => {
                placed[i] = true;
                ordered.push(steps[i].clone());
            }
            None => {
                let cycle = find_cycle(&steps, &placed);
                let first = cycle
                    .first()
                    .and_then(|&i| {
                        raw.iter()
                            .find(|r| Ident::new(&r.id_text).ok().as_ref() == Some(&steps[i].id))
                    })
                    .map(|r| r.at.clone())
                    .unwrap_or(at.clone());
                let mut names: Vec<String> = cycle
                    .iter()
                    .map(|&i| steps[i].id.original.clone())
                    .collect();
                if let Some(f) = names.first().cloned() {
                    names.push(f);
                }
                ctx.error(
                    "E-WORKFLOW-CYCLE",
                    &first,
                    format!(
                        "the workflow has a dependency cycle: {}",
                        names.join(" -> ")
                    ),
                    "an acyclic execution graph (depends_on and edges must not loop)",
                );
                return None;
            }
        }
    }
    Some(ordered)
}

/// A cycle among the unplaced steps, following depends_on, as indices in
/// dependency order.
fn find_cycle(steps: &[WorkflowStep], placed: &[bool]) -> Vec<usize> {
    let dep_idx = |i: usize| -> Vec<usize> {
        steps[i]
            .depends_on
            .iter()
            .filter_map(|d| steps.iter().position(|s| &s.id == d))
            .filter(|&j| !placed[j])
            .collect()
    };
    let Some(start) = (0..steps.len()).find(|&i| !placed[i]) else {
        return Vec::new();
    };
    // Walk dependencies until a step repeats; every unplaced step has an
    // unplaced dependency, so the walk must loop.
    let mut path: Vec<usize> = vec![start];
    let mut cur = start;
    for _ in 0..=steps.len() {
        let Some(&next) = dep_idx(cur).first() else {
            break;
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            // Present it in execution direction: dependency first.
            cycle.reverse();
            return cycle;
        }
        path.push(next);
        cur = next;
    }
    path
}
