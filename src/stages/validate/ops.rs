//! Node-level fields and operations.
//!
//! Operations come from the first of these that the contract has:
//! `io_operations`, top-level `operations` (each a list, or a map of name to
//! spec with a `W-OPERATIONS-MAP` warning), `handler_routing.handlers`,
//! `effect_operations.operations`. Duplicate names in an explicit operation
//! list are an error; handler_routing may route one operation from several
//! topics or backends, so repeated handler operations are merged.

use crate::contract::{Field, Ident, Operation, TopicName};

use super::identity::parse_model_ref;
use super::types::{fields_from_json_schema, fields_from_list, fields_from_map};
use super::{Ctx, Cursor};

/// Node-level inputs and outputs: `inputs`/`outputs`, then legacy
/// `input`/`output` field maps, then legacy JSON Schema
/// `input_state`/`output_state`, then the `fields` of an inline
/// `input_model`/`output_model`.
pub fn node_fields(ctx: &mut Ctx, root: &Cursor) -> (Vec<Field>, Vec<Field>) {
    let side = |ctx: &mut Ctx, map_keys: [&str; 2], schema_key: &str, model_key: &str| {
        if let Some(m) = root.get_any(&map_keys).filter(Cursor::is_map) {
            return fields_from_map(ctx, &m);
        }
        if let Some(s) = root.get(schema_key).filter(Cursor::is_map) {
            return fields_from_json_schema(ctx, &s);
        }
        // A model described inline: `input_model: {name, fields: {...}}`.
        if let Some(f) = root
            .get(model_key)
            .and_then(|m| m.get("fields"))
            .filter(Cursor::is_map)
        {
            return fields_from_map(ctx, &f);
        }
        Vec::<Field>::new()
    };
    let inputs = side(ctx, ["inputs", "input"], "input_state", "input_model");
    let outputs = side(ctx, ["outputs", "output"], "output_state", "output_model");
    (inputs, outputs)
}

pub fn operations(ctx: &mut Ctx, root: &Cursor) -> Vec<Operation> {
    for key in ["io_operations", "operations"] {
        if let Some(list) = root.get(key).filter(Cursor::is_seq) {
            return explicit(ctx, &list);
        }
        if let Some(map) = root.get(key).filter(Cursor::is_map) {
            return keyed(ctx, &map);
        }
    }
    if let Some(handlers) = root
        .get("handler_routing")
        .and_then(|h| h.get("handlers"))
        .filter(Cursor::is_seq)
    {
        let ops = from_handlers(ctx, &handlers);
        if !ops.is_empty() {
            return ops;
        }
    }
    if let Some(list) = root
        .get("effect_operations")
        .and_then(|e| e.get("operations"))
        .filter(Cursor::is_seq)
    {
        return explicit(ctx, &list);
    }
    Vec::new()
}

const OP_EXPECTED: &str =
    "an operation name (operation, name or operation_name), e.g. operation: branch_create";

fn explicit(ctx: &mut Ctx, list: &Cursor) -> Vec<Operation> {
    let mut out: Vec<Operation> = Vec::new();
    for item in list.items() {
        if let Some(name) = item.scalar() {
            if let Some(op) = bare(ctx, &item, &name) {
                push_unique(ctx, &mut out, op, &item);
            }
            continue;
        }
        let Some(name_c) = item.get_any(&[
            "operation",
            "name",
            "operation_name",
            "operation_type",
            "type",
        ]) else {
            ctx.error(
                "E-OPERATION",
                &item,
                "an operation without a name",
                OP_EXPECTED,
            );
            continue;
        };
        let name = name_c.scalar().unwrap_or_default();
        let Some(ident) = op_ident(ctx, &name_c, &name) else {
            continue;
        };
        let mut op = listed(ctx, ident, &item);
        read_spec(ctx, &mut op, &item);
        let topic = item
            .get("output_topic")
            .or_else(|| item.get("io_config").and_then(|io| io.get("topic")));
        if let Some(t) = topic {
            op.output_topic = topic_name(ctx, &t);
        }
        push_unique(ctx, &mut out, op, &item);
    }
    out
}

/// Operations as a map of name to spec (legacy omniintelligence contracts):
/// each key is the operation name, and `input`/`output` field maps stand for
/// `input_fields`/`output_fields`.
fn keyed(ctx: &mut Ctx, map: &Cursor) -> Vec<Operation> {
    ctx.warning(
        "W-OPERATIONS-MAP",
        map,
        "operations are given as a map of name to spec; each key is read as an operation name",
        "a list of {operation: name, description, input_fields, output_fields}",
    );
    let mut out: Vec<Operation> = Vec::new();
    for (key, spec) in map.entries() {
        let name = key.node.key_text().unwrap_or_default();
        let Some(mut op) = bare(ctx, &key, &name) else {
            continue;
        };
        op.description = spec.get("description").and_then(|d| d.scalar());
        op.input_fields = keyed_fields(ctx, &spec, "input_fields", "input");
        op.output_fields = keyed_fields(ctx, &spec, "output_fields", "output");
        read_spec(ctx, &mut op, &spec);
        op.event_type = spec.get("event_type").and_then(|e| e.scalar());
        if let Some(t) = spec.get("output_topic") {
            op.output_topic = topic_name(ctx, &t);
        }
        push_unique(ctx, &mut out, op, &key);
    }
    out
}

/// An operation named `name` with the description, `input_fields`,
/// `output_fields` and event_type that `item` lists.
fn listed(ctx: &mut Ctx, name: Ident, item: &Cursor) -> Operation {
    Operation {
        description: item.get("description").and_then(|d| d.scalar()),
        input_fields: listed_fields(ctx, item, "input_fields"),
        output_fields: listed_fields(ctx, item, "output_fields"),
        event_type: item.get("event_type").and_then(|e| e.scalar()),
        ..unspecified(name, item)
    }
}

/// The models, idempotence and timeout an operation's `spec` declares.
fn read_spec(ctx: &mut Ctx, op: &mut Operation, spec: &Cursor) {
    op.input_model = spec
        .get("input_model")
        .and_then(|m| parse_model_ref(ctx, &m));
    op.output_model = spec
        .get("output_model")
        .and_then(|m| parse_model_ref(ctx, &m));
    op.idempotent = spec.get("idempotent").and_then(|b| b.bool());
    op.timeout_ms = timeout_ms(spec);
}

/// `list_key` as a field list, else `map_key` as a field map.
fn keyed_fields(ctx: &mut Ctx, spec: &Cursor, list_key: &str, map_key: &str) -> Vec<Field> {
    if let Some(list) = spec.get(list_key) {
        return fields_from_list(ctx, &list);
    }
    spec.get(map_key)
        .filter(Cursor::is_map)
        .map(|m| fields_from_map(ctx, &m))
        .unwrap_or_default()
}

fn bare(ctx: &mut Ctx, at: &Cursor, name: &str) -> Option<Operation> {
    Some(unspecified(op_ident(ctx, at, name)?, at))
}

/// An operation with only a name and an origin.
fn unspecified(name: Ident, at: &Cursor) -> Operation {
    Operation {
        name,
        description: None,
        input_fields: Vec::new(),
        output_fields: Vec::new(),
        input_model: None,
        output_model: None,
        idempotent: None,
        timeout_ms: None,
        output_topic: None,
        event_type: None,
        origin: at.origin(),
    }
}

fn push_unique(ctx: &mut Ctx, out: &mut Vec<Operation>, op: Operation, at: &Cursor) {
    if let Some(prev) = out.iter().find(|p| p.name.rust == op.name.rust) {
        ctx.error(
            "E-DUPLICATE-OPERATION",
            at,
            format!(
                "operations {:?} and {:?} both become `{}` (first at {})",
                prev.name.original, op.name.original, op.name.rust, prev.origin.pointer
            ),
            "operation names that stay distinct in snake_case",
        );
        return;
    }
    out.push(op);
}

fn from_handlers(ctx: &mut Ctx, handlers: &Cursor) -> Vec<Operation> {
    let mut out: Vec<Operation> = Vec::new();
    for item in handlers.items() {
        let name = item
            .get_any(&["operation", "routing_key", "event_type"])
            .and_then(|c| c.scalar().map(|s| (c, s)))
            .or_else(|| {
                let em = item.get("event_model")?;
                let n = em.get("name")?.scalar()?;
                Some((em, n))
            })
            .or_else(|| {
                let h = item.get("handler")?;
                let n = h.get_any(&["name", "function"])?.scalar()?;
                Some((h, n))
            })
            .or_else(|| {
                let h = item.get("handler_key")?;
                let n = h.scalar()?;
                Some((h, n))
            });
        let Some((at, name)) = name else {
            ctx.warning(
                "W-UNSUPPORTED",
                &item,
                "a handler_routing handler with no operation, routing_key, event_type, event_model or handler name is ignored",
                OP_EXPECTED,
            );
            continue;
        };
        let Some(ident) = op_ident(ctx, &at, &name) else {
            continue;
        };
        if out.iter().any(|p| p.name.rust == ident.rust) {
            continue;
        }
        let mut op = listed(ctx, ident, &item);
        op.input_model = item
            .get("event_model")
            .and_then(|m| parse_model_ref(ctx, &m));
        out.push(op);
    }
    out
}

/// The fields listed under `key` (`- name: type` items), if any.
fn listed_fields(ctx: &mut Ctx, item: &Cursor, key: &str) -> Vec<Field> {
    item.get(key)
        .map(|f| fields_from_list(ctx, &f))
        .unwrap_or_default()
}

fn op_ident(ctx: &mut Ctx, at: &Cursor, name: &str) -> Option<Ident> {
    match Ident::new(name) {
        Ok(i) => Some(i),
        Err(e) => {
            ctx.error("E-IDENT", at, format!("operation name {e}"), OP_EXPECTED);
            None
        }
    }
}

fn timeout_ms(item: &Cursor) -> Option<u64> {
    if let Some(ms) = item.get("timeout_ms").and_then(|c| c.u64()) {
        return Some(ms);
    }
    if let Some(s) = item.get("timeout_seconds").and_then(|c| c.u64()) {
        return Some(s.saturating_mul(1000));
    }
    item.get("io_config")
        .and_then(|io| io.get("timeout_ms"))
        .and_then(|c| c.u64())
}

/// A topic name, or an `E-TOPIC-NAME` error.
pub fn topic_name(ctx: &mut Ctx, c: &Cursor) -> Option<TopicName> {
    let text = c.scalar()?;
    match TopicName::parse(text.trim()) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.error(
                "E-TOPIC-NAME",
                c,
                e,
                "a Kafka topic name: 1-249 characters of a-z, A-Z, 0-9, '.', '_' or '-', e.g. onex.evt.omniclaude.git-result.v1",
            );
            None
        }
    }
}
