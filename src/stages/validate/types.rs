//! The field type language of contracts.
//!
//! Two spellings reach this module: Python-ish type text (`str`, `list[str]`,
//! `dict[str, Any]`, `Optional[UUID]`, `str | None`, `Literal['a', 'b']`,
//! `ModelGitResult`) and JSON-Schema-style field specs (`type: string`,
//! `format: uuid`, `type: array` + `items`, `enum: [...]`). Both become a
//! [`FieldType`].
//!
//! Real contracts also write types the way a person explains them; each of
//! these is read with a warning saying how:
//! - JSON Schema type lists, `type: [str, "null"]` -> `str | None`
//!   (`W-FIELD-TYPE-LIST`);
//! - prose, `"bool (default False) - Return only metadata"` -> `bool`, default
//!   `false`, the rest kept as the description; `"UUID or string"` ->
//!   `UUID | string` (`W-FIELD-TYPE-PROSE`).

use crate::contract::{ContractName, Field, FieldType, Ident};

use super::{Ctx, Cursor};

/// Parses Python-ish type text. Unknown names become [`ContractName::Model`].
pub fn parse_type(text: &str) -> Result<FieldType, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("an empty type".into());
    }
    // Top-level unions: `A | B | None`.
    let parts = split_top(t, '|')?;
    if parts.len() > 1 {
        let mut optional = false;
        let mut rest = Vec::new();
        for p in parts {
            let p = p.trim();
            if p == "None" || p == "null" || p == "NoneType" {
                optional = true;
            } else {
                rest.push(parse_type(p)?);
            }
        }
        let inner = match rest.len() {
            0 => FieldType::Json,
            1 => rest.remove(0),
            // A union of several types is carried as JSON.
            _ => FieldType::Json,
        };
        return Ok(if optional {
            FieldType::Optional(Box::new(inner))
        } else {
            inner
        });
    }
    if let Some(open) = t.find('[') {
        if !t.ends_with(']') {
            return Err(format!("{t:?} has unbalanced brackets"));
        }
        let head = t[..open].trim();
        let args = split_top(&t[open + 1..t.len() - 1], ',')?;
        let head_l = head.rsplit('.').next().unwrap_or(head).to_ascii_lowercase();
        return match head_l.as_str() {
            "optional" => Ok(FieldType::Optional(Box::new(one_arg(t, &args)?))),
            "list" | "sequence" | "set" | "frozenset" | "iterable" | "array" => {
                Ok(FieldType::List(Box::new(one_arg(t, &args)?)))
            }
            "tuple" => Ok(FieldType::List(Box::new(match args.as_slice() {
                [one] => parse_type(one)?,
                [one, dots] if dots.trim() == "..." => parse_type(one)?,
                _ => FieldType::Json,
            }))),
            "dict" | "mapping" | "map" => match args.as_slice() {
                [k, v] => {
                    let key = parse_type(k)?;
                    let value = parse_type(v)?;
                    if key == FieldType::String {
                        Ok(FieldType::Map(Box::new(value)))
                    } else {
                        Ok(FieldType::Json)
                    }
                }
                _ => Err(format!("{t:?}: dict takes a key and a value type")),
            },
            "literal" => {
                let mut values = Vec::new();
                for a in args {
                    let a = a.trim();
                    let v = a
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| a.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .unwrap_or(a);
                    values.push(v.to_owned());
                }
                Ok(FieldType::Named(ContractName::Enum(values)))
            }
            "union" => parse_type(&args.join(" | ")),
            _ => Err(format!(
                "{t:?}: unknown generic {head:?}; accepted are list[T], dict[str, T], Optional[T], Literal[...]"
            )),
        };
    }
    if t.contains(']') || t.contains(',') {
        return Err(format!("{t:?} has unbalanced brackets"));
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(format!("{t:?} is not a type name"));
    }
    let last = t.rsplit('.').next().unwrap_or(t);
    Ok(match last {
        "str" | "string" | "String" | "bytes" => FieldType::String,
        "int" | "integer" | "Integer" | "i64" | "u64" => FieldType::Integer,
        "float" | "number" | "double" | "Decimal" | "f64" => FieldType::Float,
        "bool" | "boolean" | "Boolean" => FieldType::Bool,
        "uuid" | "UUID" | "UUID4" | "Uuid" => FieldType::Uuid,
        "datetime" | "DateTime" | "date-time" | "timestamp" => FieldType::DateTime,
        "date" => FieldType::Date,
        "dict" | "Dict" | "Any" | "any" | "object" | "objec" | "json" | "JSON" | "Mapping"
        | "None" | "BaseModel" => FieldType::Json,
        "list" | "List" | "array" => FieldType::List(Box::new(FieldType::Json)),
        _ if last.is_empty() => return Err(format!("{t:?} is not a type name")),
        _ => FieldType::Named(ContractName::Model(last.to_owned())),
    })
}

fn one_arg(t: &str, args: &[String]) -> Result<FieldType, String> {
    match args {
        [a] => parse_type(a),
        _ => Err(format!("{t:?} takes exactly one type argument")),
    }
}

/// Splits on `sep` outside brackets.
fn split_top(s: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
                continue;
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                cur.push(c);
                continue;
            }
            None => {}
        }
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("{s:?} has unbalanced brackets"));
                }
                cur.push(c);
            }
            c if c == sep && depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if depth != 0 || quote.is_some() {
        return Err(format!("{s:?} has unbalanced brackets or quotes"));
    }
    parts.push(cur);
    Ok(parts)
}

/// A type read from contract text, and what reading it left over.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadType {
    pub ty: FieldType,
    /// The type part of the text.
    pub type_text: String,
    /// Prose after the type, for the field's description.
    pub rest: Option<String>,
    /// A default named in the prose (`(default False)`).
    pub default: Option<serde_json::Value>,
}

/// Reads type text: strictly when it is a type, else as prose that starts
/// with one (see [`prose_type`]), with a `W-FIELD-TYPE-PROSE` warning at `at`.
pub fn read_type(ctx: &mut Ctx, at: &Cursor, text: &str) -> Result<ReadType, String> {
    let strict_error = match parse_type(text) {
        Ok(ty) => {
            return Ok(ReadType {
                ty,
                type_text: text.to_owned(),
                rest: None,
                default: None,
            })
        }
        Err(e) => e,
    };
    let Some(read) = prose_type(text) else {
        return Err(strict_error);
    };
    let mut said = format!("the type {:?} is read as {}", text.trim(), read.type_text);
    if let Some(d) = &read.default {
        said.push_str(&format!(" with default {d}"));
    }
    if read.rest.is_some() {
        said.push_str("; the rest is kept as the description");
    }
    ctx.warning("W-FIELD-TYPE-PROSE", at, said, TYPE_EXPECTED);
    Ok(read)
}

/// Type prose: `A or B` where every part is a type is the union `A | B`;
/// otherwise the longest leading text that is a type is the type, a
/// `(default X)` in the rest is its default and the rest is a description.
/// A bare leading word that is no known type and no `Model...`/`Enum...`
/// name is not taken for a type (`The input` is prose, not a model `The`).
pub fn prose_type(text: &str) -> Option<ReadType> {
    let t = text.trim();
    let parts: Vec<&str> = t.split(" or ").map(str::trim).collect();
    if parts.len() > 1 && parts.iter().all(|p| plausible_type(p).is_some()) {
        let union = parts.join(" | ");
        let ty = parse_type(&union).ok()?;
        return Some(ReadType {
            ty,
            type_text: union,
            rest: None,
            default: None,
        });
    }
    let boundaries = t
        .char_indices()
        .filter(|(_, c)| c.is_whitespace() || "(,;:-\u{2014}\u{2013}".contains(*c))
        .map(|(i, _)| i)
        .collect::<Vec<_>>();
    for &end in boundaries.iter().rev() {
        let head = t[..end].trim_end();
        let Some(ty) = plausible_type(head) else {
            continue;
        };
        let tail = t[end..].trim();
        let (default, rest) = take_default(tail);
        let rest = rest
            .trim_start_matches(|c: char| c.is_whitespace() || "-:,;\u{2014}\u{2013}".contains(c))
            .trim()
            .to_owned();
        return Some(ReadType {
            ty,
            type_text: head.to_owned(),
            rest: (!rest.is_empty()).then_some(rest),
            default,
        });
    }
    None
}

fn plausible_type(text: &str) -> Option<FieldType> {
    let ty = parse_type(text).ok()?;
    match &ty {
        FieldType::Named(ContractName::Model(n))
            if !(n.starts_with("Model") || n.starts_with("Enum")) =>
        {
            None
        }
        _ => Some(ty),
    }
}

/// Takes `(default X)`, `(default: X)` or `(default=X)` out of prose.
fn take_default(text: &str) -> (Option<serde_json::Value>, String) {
    let lower = text.to_ascii_lowercase();
    let Some(start) = lower.find("(default") else {
        return (None, text.to_owned());
    };
    let Some(len) = text[start..].find(')') else {
        return (None, text.to_owned());
    };
    let inner = text[start + "(default".len()..start + len]
        .trim_start_matches([':', '=', ' '])
        .trim();
    let value = match inner {
        "True" | "true" => serde_json::Value::Bool(true),
        "False" | "false" => serde_json::Value::Bool(false),
        "None" | "null" => serde_json::Value::Null,
        _ => {
            if let Ok(i) = inner.parse::<i64>() {
                i.into()
            } else if let Ok(f) = inner.parse::<f64>() {
                serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
            } else {
                let unquoted = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                match unquoted {
                    Some(s) => s.into(),
                    None => return (None, text.to_owned()),
                }
            }
        }
    };
    let rest = format!("{} {}", &text[..start], &text[start + len + 1..]);
    (Some(value), rest.trim().to_owned())
}

/// A JSON Schema list of types, `[str, "null"]`, as type text `str | None`.
fn type_list_text(list: &Cursor) -> Option<String> {
    let names: Vec<String> = list.items().iter().filter_map(Cursor::scalar).collect();
    if names.is_empty() || names.len() != list.items().len() {
        return None;
    }
    let parts: Vec<&str> = names
        .iter()
        .map(|n| match n.as_str() {
            "null" | "None" | "none" => "None",
            "string" => "str",
            "integer" => "int",
            "number" => "float",
            "boolean" => "bool",
            "array" => "list",
            "object" => "dict",
            other => other,
        })
        .collect();
    Some(parts.join(" | "))
}

/// Joins a description with the prose left over from reading a type.
fn describe(description: Option<String>, rest: Option<String>) -> Option<String> {
    match (description, rest) {
        (Some(d), Some(r)) => Some(format!("{d} ({r})")),
        (d, r) => d.or(r),
    }
}

/// `type` values that mean a JSON Schema spec rather than type text.
const JSON_SCHEMA_TYPES: &[&str] = &[
    "string", "integer", "number", "boolean", "array", "object", "objec", "null", "enum",
];

const TYPE_EXPECTED: &str = "a type such as str, int, float, bool, uuid, datetime, date, dict, list[T], dict[str, T], Optional[T], T | None, Literal['a', 'b'] or a model name";

/// The type of a JSON-Schema-style field spec (`type`, `format`, `items`,
/// `enum`/`values`, `properties`). Reports `type: objec` (a typo real legacy
/// contracts carry) as a warning.
pub fn schema_type(ctx: &mut Ctx, spec: &Cursor) -> (FieldType, String) {
    let enum_values = spec.get("enum").or_else(|| spec.get("values")).map(|c| {
        c.items()
            .iter()
            .filter_map(|v| v.scalar())
            .collect::<Vec<_>>()
    });
    let ty_text = spec.get("type").and_then(|c| c.scalar());
    let Some(ty_text) = ty_text else {
        if let Some(values) = enum_values {
            return (FieldType::Named(ContractName::Enum(values)), "enum".into());
        }
        if spec.get("properties").is_some() {
            return (FieldType::Json, "object".into());
        }
        return (FieldType::Json, "any".into());
    };
    let format = spec.get("format").and_then(|c| c.scalar());
    let ty = match ty_text.as_str() {
        "string" | "str" => {
            if let Some(values) = enum_values {
                FieldType::Named(ContractName::Enum(values))
            } else {
                match format.as_deref() {
                    Some("uuid") => FieldType::Uuid,
                    Some("date-time") | Some("datetime") => FieldType::DateTime,
                    Some("date") => FieldType::Date,
                    _ => FieldType::String,
                }
            }
        }
        "enum" => FieldType::Named(ContractName::Enum(enum_values.unwrap_or_default())),
        "integer" | "int" => FieldType::Integer,
        "number" | "float" => FieldType::Float,
        "boolean" | "bool" => FieldType::Bool,
        "null" => FieldType::Json,
        "array" | "list" => {
            let item = match spec.get("items") {
                Some(items) if items.is_map() => schema_type(ctx, &items).0,
                Some(items) => match items.scalar() {
                    Some(t) => parse_type(&t).unwrap_or(FieldType::Json),
                    None => FieldType::Json,
                },
                None => FieldType::Json,
            };
            FieldType::List(Box::new(item))
        }
        "object" | "dict" => match spec.get("additionalProperties") {
            Some(ap) if ap.is_map() => FieldType::Map(Box::new(schema_type(ctx, &ap).0)),
            _ => FieldType::Json,
        },
        "objec" => {
            if let Some(t) = spec.get("type") {
                ctx.warning(
                    "W-TYPE-TYPO",
                    &t,
                    "type \"objec\" is read as \"object\"",
                    "type: object",
                );
            }
            FieldType::Json
        }
        other => match parse_type(other) {
            Ok(t) => t,
            Err(e) => {
                if let Some(t) = spec.get("type") {
                    ctx.error("E-FIELD-TYPE", &t, e, TYPE_EXPECTED);
                }
                FieldType::Json
            }
        },
    };
    (ty, ty_text)
}

/// Makes an identifier for a field or reports why it cannot.
pub fn field_ident(ctx: &mut Ctx, at: &Cursor, name: &str) -> Option<Ident> {
    match Ident::new(name) {
        Ok(i) => Some(i),
        Err(e) => {
            ctx.error(
                "E-IDENT",
                at,
                format!("field name {e}"),
                "a name with letters or digits, e.g. correlation_id",
            );
            None
        }
    }
}

/// A field from a Python-ish type text.
pub fn field_from_text(
    ctx: &mut Ctx,
    at: &Cursor,
    name: &str,
    text: &str,
    required: Option<bool>,
    description: Option<String>,
    default: Option<serde_json::Value>,
) -> Option<Field> {
    let ident = field_ident(ctx, at, name)?;
    let read = match read_type(ctx, at, text) {
        Ok(r) => r,
        Err(e) => {
            ctx.error("E-FIELD-TYPE", at, e, TYPE_EXPECTED);
            return None;
        }
    };
    let optional = matches!(read.ty, FieldType::Optional(_));
    let default = default.or(read.default);
    Some(Field {
        name: ident,
        ty: read.ty,
        required: required.unwrap_or(!optional && default.is_none()),
        description: describe(description, read.rest),
        default,
        type_text: read.type_text,
    })
}

/// A map of field name -> spec (`inputs`/`outputs`, legacy `input`/`output`).
/// A spec is a mapping (`{type, description, required, default}` or JSON
/// Schema style) or a bare type text.
///
/// A map that is itself a JSON Schema object (`type: object`, `properties`)
/// gives the fields of its properties. A `description` key whose value is not
/// a type describes the section and is no field (`W-SECTION-DESCRIPTION`): an
/// `input:` holding only a description has no fields.
pub fn fields_from_map(ctx: &mut Ctx, map: &Cursor) -> Vec<Field> {
    if is_json_schema_object(map) {
        return fields_from_json_schema(ctx, map);
    }
    let mut out = Vec::new();
    for (key, spec) in map.entries() {
        if key_name(&key) == "description" && spec.scalar().is_some_and(|t| parse_type(&t).is_err())
        {
            ctx.warning(
                "W-SECTION-DESCRIPTION",
                &key,
                "this description describes the section; it is not a field",
                "fields as name: type, e.g. repo: str",
            );
            continue;
        }
        if let Some(text) = spec.scalar() {
            if let Some(f) = field_from_text(ctx, &key, &key_name(&key), &text, None, None, None) {
                out.push(f);
            }
            continue;
        }
        if let Some(f) = field_from_spec(ctx, &key, &key_name(&key), &spec, None) {
            out.push(f);
        }
    }
    check_duplicate_fields(ctx, map, &out);
    out
}

/// Keys a JSON Schema object may carry besides its properties.
const JSON_SCHEMA_OBJECT_KEYS: &[&str] = &[
    "type",
    "description",
    "title",
    "properties",
    "required",
    "optional",
    "additionalProperties",
    "$schema",
    "object_type",
];

fn is_json_schema_object(map: &Cursor) -> bool {
    let entries = map.entries();
    let object_type = map
        .get("type")
        .and_then(|t| t.scalar())
        .is_some_and(|t| matches!(t.as_str(), "object" | "objec" | "dict"));
    (object_type || map.get("properties").is_some_and(|p| p.is_map()))
        && entries
            .iter()
            .all(|(k, _)| JSON_SCHEMA_OBJECT_KEYS.contains(&key_name(k).as_str()))
}

fn key_name(c: &Cursor) -> String {
    c.node.key_text().unwrap_or_default()
}

/// One field from a mapping spec. `required_list` is the enclosing JSON
/// Schema `required` array when there is one.
pub fn field_from_spec(
    ctx: &mut Ctx,
    at: &Cursor,
    name: &str,
    spec: &Cursor,
    required_list: Option<&[String]>,
) -> Option<Field> {
    let ident = field_ident(ctx, at, name)?;
    let mut description = spec.get("description").and_then(|c| c.scalar());
    let mut default = spec.get("default").map(|c| c.node.to_json());
    let declared_required = spec.get("required").and_then(|c| c.bool());
    let ty_node = spec.get("type");
    let listed = ty_node.as_ref().filter(|t| t.is_seq()).map(|t| {
        let text = type_list_text(t);
        (t.clone(), text)
    });
    let python_style = ty_node
        .as_ref()
        .and_then(|t| t.scalar())
        .is_some_and(|t| !JSON_SCHEMA_TYPES.contains(&t.as_str()));
    let (ty, type_text) = if let Some((t, text)) = listed {
        let read = text.as_deref().map(|x| (x, parse_type(x)));
        match read {
            Some((x, Ok(ty))) => {
                ctx.warning(
                    "W-FIELD-TYPE-LIST",
                    &t,
                    format!("the type list {} is read as {x}", t.node),
                    TYPE_EXPECTED,
                );
                (ty, x.to_owned())
            }
            Some((_, Err(e))) => {
                ctx.error("E-FIELD-TYPE", &t, e, TYPE_EXPECTED);
                return None;
            }
            None => {
                ctx.error(
                    "E-FIELD-TYPE",
                    &t,
                    format!(
                        "the type list {} holds something other than type names",
                        t.node
                    ),
                    TYPE_EXPECTED,
                );
                return None;
            }
        }
    } else if python_style {
        let t = ty_node.as_ref()?;
        let text = t.scalar().unwrap_or_default();
        match read_type(ctx, t, &text) {
            Ok(read) => {
                description = describe(description, read.rest);
                default = default.or(read.default);
                (read.ty, read.type_text)
            }
            Err(e) => {
                ctx.error("E-FIELD-TYPE", t, e, TYPE_EXPECTED);
                return None;
            }
        }
    } else {
        schema_type(ctx, spec)
    };
    let required = match (required_list, declared_required) {
        (_, Some(r)) => r,
        (Some(list), None) => list.iter().any(|r| r == name),
        (None, None) => !matches!(ty, FieldType::Optional(_)) && default.is_none(),
    };
    Some(Field {
        name: ident,
        ty,
        required,
        description,
        default,
        type_text,
    })
}

/// Fields of a JSON Schema object (`properties` + `required`), as in legacy
/// `input_state` / `output_state`.
pub fn fields_from_json_schema(ctx: &mut Ctx, schema: &Cursor) -> Vec<Field> {
    if let Some(t) = schema.get("type") {
        if t.scalar().as_deref() == Some("objec") {
            ctx.warning(
                "W-TYPE-TYPO",
                &t,
                "type \"objec\" is read as \"object\"",
                "type: object",
            );
        }
    }
    let required: Vec<String> = schema
        .get("required")
        .map(|r| r.items().iter().filter_map(|c| c.scalar()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(props) = schema.get("properties") {
        for (key, spec) in props.entries() {
            if let Some(f) = field_from_spec(ctx, &key, &key_name(&key), &spec, Some(&required)) {
                out.push(f);
            }
        }
        check_duplicate_fields(ctx, &props, &out);
        return out;
    }
    // No properties: `required` and `optional` name fields of unknown type.
    for (list_key, is_required) in [("required", true), ("optional", false)] {
        let Some(list) = schema.get(list_key) else {
            continue;
        };
        for item in list.items() {
            let Some(name) = item.scalar() else {
                continue;
            };
            let Some(ident) = field_ident(ctx, &item, &name) else {
                continue;
            };
            ctx.warning(
                "W-FIELD-UNTYPED",
                &item,
                format!("field {name:?} is named without a type; it is carried as JSON"),
                "properties: {name: {type: ...}}",
            );
            out.push(Field {
                name: ident,
                ty: FieldType::Json,
                required: is_required,
                description: None,
                default: None,
                type_text: String::new(),
            });
        }
    }
    check_duplicate_fields(ctx, schema, &out);
    out
}

/// `input_fields` / `output_fields` of an operation: bare names (type
/// unknown: JSON, not required) or one-key maps `{name: type}`.
pub fn fields_from_list(ctx: &mut Ctx, list: &Cursor) -> Vec<Field> {
    let mut out = Vec::new();
    for item in list.items() {
        if let Some(name) = item.scalar() {
            if let Some(ident) = field_ident(ctx, &item, &name) {
                out.push(Field {
                    name: ident,
                    ty: FieldType::Json,
                    required: false,
                    description: None,
                    default: None,
                    type_text: String::new(),
                });
            }
        } else if item.is_map() {
            let entries = item.entries();
            // `{name: x, type: y, description: z}` form.
            if let Some(name) = item.get("name").and_then(|c| c.scalar()) {
                if let Some(f) = field_from_spec(ctx, &item, &name, &item, None) {
                    out.push(f);
                }
                continue;
            }
            for (key, ty) in entries {
                let name = key_name(&key);
                if let Some(text) = ty.scalar() {
                    if let Some(f) = field_from_text(ctx, &key, &name, &text, None, None, None) {
                        out.push(f);
                    }
                } else if ty.is_map() {
                    if let Some(f) = field_from_spec(ctx, &key, &name, &ty, None) {
                        out.push(f);
                    }
                } else {
                    ctx.error(
                        "E-FIELD-TYPE",
                        &ty,
                        format!("field {name:?} has {} as its type", ty.node.kind_name()),
                        TYPE_EXPECTED,
                    );
                }
            }
        }
    }
    check_duplicate_fields(ctx, list, &out);
    out
}

/// Two fields whose names snake-case to the same identifier cannot live in
/// one struct.
pub fn check_duplicate_fields(ctx: &mut Ctx, at: &Cursor, fields: &[Field]) {
    for (i, f) in fields.iter().enumerate() {
        if let Some(prev) = fields[..i].iter().find(|p| p.name.rust == f.name.rust) {
            ctx.error(
                "E-DUPLICATE-FIELD",
                at,
                format!(
                    "fields {:?} and {:?} both become the Rust field `{}`",
                    prev.name.original, f.name.original, f.name.rust
                ),
                "field names that stay distinct in snake_case",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(t: FieldType) -> Box<FieldType> {
        Box::new(t)
    }

    #[test]
    fn python_type_text() {
        use FieldType as T;
        let model = |name: &str| T::Named(ContractName::Model(name.into()));
        let cases = [
            ("str", T::String),
            ("UUID", T::Uuid),
            ("list[str]", T::List(b(T::String))),
            ("List[int]", T::List(b(T::Integer))),
            ("dict[str, str]", T::Map(b(T::String))),
            ("dict[str, Any]", T::Map(b(T::Json))),
            ("dict", T::Json),
            ("str | None", T::Optional(b(T::String))),
            ("Optional[datetime]", T::Optional(b(T::DateTime))),
            (
                "Literal['open', 'closed']",
                T::Named(ContractName::Enum(vec!["open".into(), "closed".into()])),
            ),
            (
                "list[ModelComparisonRow]",
                T::List(b(model("ModelComparisonRow"))),
            ),
            (
                "omniclaude.models.SkillResultStatus",
                model("SkillResultStatus"),
            ),
            (
                "list[dict[str, int]] | None",
                T::Optional(b(T::List(b(T::Map(b(T::Integer)))))),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_type(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_type_text_is_refused() {
        assert!(parse_type("list[str").is_err());
        assert!(parse_type("").is_err());
        assert!(parse_type("str]").is_err());
        assert!(parse_type("two words").is_err());
        assert!(parse_type("Frob[int]").is_err());
    }
}
