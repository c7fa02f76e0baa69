//! The field type language of contracts.
//!
//! Two spellings reach this module: Python-ish type text (`str`, `list[str]`,
//! `dict[str, Any]`, `Optional[UUID]`, `str | None`, `Literal['a', 'b']`,
//! `ModelGitResult`) and JSON-Schema-style field specs (`type: string`,
//! `format: uuid`, `type: array` + `items`, `enum: [...]`). Both become a
//! [`FieldType`].

use crate::contract::{Field, FieldType, Ident};

use super::{Ctx, Cursor};

/// Parses Python-ish type text. Unknown names become [`FieldType::Named`].
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
                Ok(FieldType::Enum(values))
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
        _ => FieldType::Named(last.to_owned()),
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
            return (FieldType::Enum(values), "enum".into());
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
                FieldType::Enum(values)
            } else {
                match format.as_deref() {
                    Some("uuid") => FieldType::Uuid,
                    Some("date-time") | Some("datetime") => FieldType::DateTime,
                    Some("date") => FieldType::Date,
                    _ => FieldType::String,
                }
            }
        }
        "enum" => FieldType::Enum(enum_values.unwrap_or_default()),
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
    let ty = match parse_type(text) {
        Ok(t) => t,
        Err(e) => {
            ctx.error("E-FIELD-TYPE", at, e, TYPE_EXPECTED);
            return None;
        }
    };
    let optional = matches!(ty, FieldType::Optional(_));
    Some(Field {
        name: ident,
        ty,
        required: required.unwrap_or(!optional && default.is_none()),
        description,
        default,
        type_text: text.to_owned(),
    })
}

/// A map of field name -> spec (`inputs`/`outputs`, legacy `input`/`output`).
/// A spec is a mapping (`{type, description, required, default}` or JSON
/// Schema style) or a bare type text.
pub fn fields_from_map(ctx: &mut Ctx, map: &Cursor) -> Vec<Field> {
    let mut out = Vec::new();
    for (key, spec) in map.entries() {
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
    let description = spec.get("description").and_then(|c| c.scalar());
    let default = spec.get("default").map(|c| c.node.to_json());
    let declared_required = spec.get("required").and_then(|c| c.bool());
    let ty_node = spec.get("type");
    let python_style = ty_node
        .as_ref()
        .and_then(|t| t.scalar())
        .is_some_and(|t| !JSON_SCHEMA_TYPES.contains(&t.as_str()));
    let (ty, type_text) = if python_style {
        let text = ty_node
            .as_ref()
            .and_then(|t| t.scalar())
            .unwrap_or_default();
        match parse_type(&text) {
            Ok(t) => (t, text),
            Err(e) => {
                if let Some(t) = &ty_node {
                    ctx.error("E-FIELD-TYPE", t, e, TYPE_EXPECTED);
                }
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
    }
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
        assert_eq!(parse_type("str"), Ok(FieldType::String));
        assert_eq!(parse_type("UUID"), Ok(FieldType::Uuid));
        assert_eq!(
            parse_type("list[str]"),
            Ok(FieldType::List(b(FieldType::String)))
        );
        assert_eq!(
            parse_type("List[int]"),
            Ok(FieldType::List(b(FieldType::Integer)))
        );
        assert_eq!(
            parse_type("dict[str, str]"),
            Ok(FieldType::Map(b(FieldType::String)))
        );
        assert_eq!(
            parse_type("dict[str, Any]"),
            Ok(FieldType::Map(b(FieldType::Json)))
        );
        assert_eq!(parse_type("dict"), Ok(FieldType::Json));
        assert_eq!(
            parse_type("str | None"),
            Ok(FieldType::Optional(b(FieldType::String)))
        );
        assert_eq!(
            parse_type("Optional[datetime]"),
            Ok(FieldType::Optional(b(FieldType::DateTime)))
        );
        assert_eq!(
            parse_type("Literal['open', 'closed']"),
            Ok(FieldType::Enum(vec!["open".into(), "closed".into()]))
        );
        assert_eq!(
            parse_type("list[ModelComparisonRow]"),
            Ok(FieldType::List(b(FieldType::Named(
                "ModelComparisonRow".into()
            ))))
        );
        assert_eq!(
            parse_type("omniclaude.models.SkillResultStatus"),
            Ok(FieldType::Named("SkillResultStatus".into()))
        );
        assert_eq!(
            parse_type("list[dict[str, int]] | None"),
            Ok(FieldType::Optional(b(FieldType::List(b(FieldType::Map(
                b(FieldType::Integer)
            ))))))
        );
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
