//! Stage 4.5: event-bus wiring — FileSet -> FileSet.
//!
//! Stage 4 rendered what the node does; this stage connects it to the bus:
//! the runtime description (`spec.rs`), the dispatch from consumed messages
//! to the user's code (`node.rs`), the startup binary, `.env.template` with
//! every variable the node reads, the compose entry and Dockerfile, the
//! AsyncAPI document, the crate README, and the vendored runtime.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::GenError;
use crate::fileset::{FileSet, Owner};
use crate::rust::{GeneratedName, RustType};
use crate::stages::model::{FieldModel, NodeModel, TopicModel};
use crate::stages::render::{
    RenderOptions, Renderer, RuntimeSource, VENDORED_RUNTIME, WIRING_MODULES,
};

/// One variable of the runtime, for templates.
#[derive(Debug, Clone, Serialize)]
pub struct BusEnvVar {
    pub name: &'static str,
    pub default: &'static str,
    pub description: &'static str,
}

/// Every variable onex-runtime reads, with its default and meaning.
pub fn bus_env_vars() -> Vec<BusEnvVar> {
    crate::bus_env::BUS_ENV_VARS
        .iter()
        .map(|(name, default, description)| BusEnvVar {
            name,
            default,
            description,
        })
        .collect()
}

pub fn wire(
    mut files: FileSet,
    model: &NodeModel,
    opts: &RenderOptions,
) -> Result<FileSet, GenError> {
    let renderer = Renderer::new(model, opts)?;
    for module in WIRING_MODULES {
        renderer.emit_module(&mut files, module)?;
    }
    renderer.emit(&mut files, "src/main.rs", "main.rs.j2", Owner::Generated)?;
    renderer.emit(
        &mut files,
        ".env.template",
        "env.template.j2",
        Owner::Generated,
    )?;
    renderer.emit(
        &mut files,
        "compose.yaml",
        "compose.yaml.j2",
        Owner::Generated,
    )?;
    renderer.emit(&mut files, "Dockerfile", "Dockerfile.j2", Owner::Generated)?;
    renderer.emit(&mut files, "README.md", "README.md.j2", Owner::Generated)?;
    files.insert("asyncapi.yaml", Owner::Generated, asyncapi(model));

    renderer.emit(
        &mut files,
        "src/generated/mod.rs",
        "generated/mod.rs.j2",
        Owner::Generated,
    )?;

    if opts.runtime == RuntimeSource::Vendored {
        for (path, contents) in VENDORED_RUNTIME {
            files.insert(
                format!("vendor/onex-runtime/{path}"),
                Owner::Generated,
                *contents,
            );
        }
    }
    Ok(files)
}

/// The node's AsyncAPI 3.0 document: a channel per topic, an operation for
/// what it receives and sends, messages in the ONEX envelope with the
/// generated models as payload schemas.
pub fn asyncapi(model: &NodeModel) -> String {
    let version = model.contract.node_version.to_string();
    let mut schemas = Map::new();

    schemas.insert("OnexEnvelope".into(), envelope_schema());
    for s in &model.structs {
        schemas.insert(s.name.clone(), struct_schema(&s.fields));
    }
    for e in &model.enums {
        schemas.insert(
            e.name.clone(),
            json!({ "type": "string", "enum": e.variants.iter().map(|v| v.wire.clone()).collect::<Vec<_>>() }),
        );
    }

    let input_payload = payload_ref(model.operations.first().map(|o| &o.input_type));
    let output_payload = payload_ref(model.operations.first().map(|o| &o.output_type));
    let single = model.operations.len() == 1;

    let mut api = Channels::default();
    for (i, t) in model.topics.subscribe.iter().enumerate() {
        let payload = if single {
            input_payload.clone()
        } else {
            json!({ "description": "One of the node's operation inputs, chosen by event_type." })
        };
        let summary = format!("Consumes {}", t.name);
        api.add(
            &format!("receive{}", suffix(i)),
            "receive",
            t,
            "Received",
            payload,
            &summary,
        );
    }
    for (i, t) in model.topics.publish.iter().enumerate() {
        let payload = if single && Some(&t.name) == model.topics.result.as_ref() {
            output_payload.clone()
        } else {
            json!({ "description": format!("{} event", t.role) })
        };
        let summary = format!("Publishes {} ({} events)", t.name, t.role);
        api.add(
            &format!("send{}", suffix(i)),
            "send",
            t,
            "Sent",
            payload,
            &summary,
        );
    }
    let introspection = TopicModel {
        name: "onex.evt.platform.node-introspection.v1".into(),
        event_type: Some("node-introspection".into()),
        description: Some("Node introspection: on start, shutdown, heartbeat and request.".into()),
        role: "introspection",
        channel_id: "onex_evt_platform_node_introspection_v1".into(),
    };
    if !api.channels.contains_key(&introspection.channel_id) {
        let payload = json!({ "type": "object", "description": "The node's identity, kind, topics and capabilities." });
        api.add(
            "sendIntrospection",
            "send",
            &introspection,
            "Sent",
            payload,
            "Publishes the node's introspection events",
        );
    }
    let Channels {
        channels,
        operations,
        messages,
    } = api;

    let doc = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": model.lib,
            "version": version,
            "description": model.description,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": { "host": "localhost:9092", "protocol": "kafka", "description": "KAFKA_BOOTSTRAP_SERVERS" },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "messageTraits": { "OnexHeaders": { "headers": headers_schema() } },
        },
    });
    let mut out = format!(
        "# @generated by onex-gen {} from {}: do not edit.\n",
        crate::GENERATOR_VERSION,
        contract_file(model)
    );
    out.push_str(&to_yaml(&doc));
    out
}

/// The channels, operations and messages of an AsyncAPI document.
#[derive(Default)]
struct Channels {
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
}

impl Channels {
    /// An operation on `topic`; the topic's channel and message are created
    /// the first time it is seen (a topic both consumed and published has one
    /// channel and two operations).
    fn add(
        &mut self,
        id: &str,
        action: &str,
        topic: &TopicModel,
        message_suffix: &str,
        payload: Value,
        summary: &str,
    ) {
        let message = match self.channels.get(&topic.channel_id) {
            Some(existing) => existing["messages"]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
                .unwrap_or_default(),
            None => {
                let message = format!("{}{message_suffix}", pascal_id(&topic.channel_id));
                self.messages.insert(
                    message.clone(),
                    message_object(&topic.name, topic.event_type.as_deref(), payload),
                );
                self.channels.insert(
                    topic.channel_id.clone(),
                    channel(&topic.name, topic.description.as_deref(), &message),
                );
                message
            }
        };
        self.operations.insert(
            id.to_owned(),
            json!({
                "action": action,
                "channel": { "$ref": format!("#/channels/{}", topic.channel_id) },
                "summary": summary,
                "messages": [{ "$ref": format!("#/channels/{}/messages/{message}", topic.channel_id) }],
            }),
        );
    }
}

/// `""`, `"2"`, `"3"` ...: operation ids for the first, second, third topic.
fn suffix(i: usize) -> String {
    if i == 0 {
        String::new()
    } else {
        (i + 1).to_string()
    }
}

fn contract_file(model: &NodeModel) -> String {
    model
        .contract
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "contract".into())
}

fn pascal_id(id: &str) -> String {
    crate::contract::to_pascal_case(id)
}

fn channel(address: &str, description: Option<&str>, message: &str) -> Value {
    let mut c = json!({
        "address": address,
        "messages": { message: { "$ref": format!("#/components/messages/{message}") } },
    });
    if let Some(d) = description {
        c["description"] = Value::String(crate::rust::doc_text(d));
    }
    c
}

fn message_object(topic: &str, event_type: Option<&str>, payload: Value) -> Value {
    let mut envelope = envelope_schema();
    envelope["properties"]["payload"] = payload;
    json!({
        "name": event_type.unwrap_or(topic),
        "contentType": "application/json",
        "traits": [{ "$ref": "#/components/messageTraits/OnexHeaders" }],
        "payload": envelope,
    })
}

fn payload_ref(ty: Option<&RustType>) -> Value {
    match ty {
        Some(RustType::Named(GeneratedName::Struct(name))) => schema_ref(name),
        _ => json!({ "description": "Any JSON value." }),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn envelope_schema() -> Value {
    json!({
        "type": "object",
        "required": ["event_id", "event_type", "correlation_id", "timestamp", "payload"],
        "properties": {
            "event_id": { "type": "string", "format": "uuid" },
            "event_type": { "type": "string" },
            "correlation_id": { "type": "string", "format": "uuid" },
            "causation_id": { "type": ["string", "null"], "format": "uuid" },
            "timestamp": { "type": "string", "format": "date-time" },
            "version": { "type": "string" },
            "source": {
                "type": "object",
                "properties": {
                    "service": { "type": "string" },
                    "instance_id": { "type": "string" },
                    "node_id": { "type": "string" },
                },
            },
            "metadata": { "type": "object" },
            "payload": {},
        },
    })
}

fn headers_schema() -> Value {
    let string = || json!({ "type": "string" });
    let mut props = Map::new();
    for name in [
        "content_type",
        "correlation_id",
        "message_id",
        "timestamp",
        "source",
        "event_type",
        "schema_version",
        "trace_id",
        "span_id",
        "parent_span_id",
        "operation_name",
        "routing_key",
        "partition_key",
    ] {
        props.insert(name.into(), string());
    }
    props.insert(
        "priority".into(),
        json!({ "type": "string", "enum": ["low", "normal", "high", "critical"] }),
    );
    for name in ["retry_count", "max_retries", "ttl_seconds"] {
        props.insert(
            name.into(),
            json!({ "type": "string", "description": "decimal integer" }),
        );
    }
    json!({ "type": "object", "properties": props })
}

fn struct_schema(fields: &[FieldModel]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields {
        let mut schema = f.ty.json_schema(&schema_ref);
        if !f.description.is_empty() {
            schema["description"] = Value::String(f.description.clone());
        }
        if f.required() {
            required.push(Value::String(f.wire.clone()));
        }
        props.insert(f.wire.clone(), schema);
    }
    let mut s = json!({ "type": "object", "properties": props });
    if !required.is_empty() {
        s["required"] = Value::Array(required);
    }
    s
}

/// A small, deterministic YAML emitter for JSON values: block style, every
/// string double-quoted (JSON escapes are valid YAML), keys plain where safe.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    emit(value, 0, &mut out);
    out
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&pad);
                out.push_str(&yaml_key(k));
                out.push(':');
                emit_child(v, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for v in items {
                out.push_str(&pad);
                out.push('-');
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        // First key on the dash line, the rest aligned under it.
                        let mut nested = String::new();
                        emit(v, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                    _ => emit_child(v, indent, out),
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn emit_child(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit(v, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => crate::rust::yaml_str(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn yaml_key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !k.starts_with(['-', '.'])
        && !matches!(
            k,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
        );
    if plain {
        k.to_owned()
    } else {
        crate::rust::yaml_str(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_emitter_round_trips_through_a_yaml_parser() {
        let v = json!({
            "a": { "b": [1, "two", { "c": null, "d": [] }], "$ref": "#/x" },
            "e": "line\nbreak \"quoted\"",
            "on": true,
        });
        let text = to_yaml(&v);
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("valid YAML");
        let doc = &docs[0];
        assert_eq!(doc["a"]["b"][1].as_str(), Some("two"));
        assert!(doc["a"]["b"][2]["c"].is_null());
        assert_eq!(doc["a"]["$ref"].as_str(), Some("#/x"));
        assert_eq!(doc["e"].as_str(), Some("line\nbreak \"quoted\""));
        assert_eq!(doc["on"].as_bool(), Some(true));
    }
}
