//! Rust source text: the one place where contract data becomes Rust.
//!
//! Contract text reaches generated Rust only through [`rust_str`] (a string
//! literal) and [`doc_lines`] / [`doc_text`] (comment text); the templates
//! get them as the `rust_str`, `doc_lines` and `doc` filters, and the
//! crate's other files get [`toml_str`] and [`yaml_str`]. Types and
//! expressions are data ([`RustType`], [`Expr`]) until [`Code`] renders
//! them here. Everything rendered is a [`Code`] value, which reaches a
//! template marked safe: the renderer refuses to write any other text into a
//! `.rs` file unless it is a plain name or number (see
//! `stages::render`), so a template cannot put contract text into code by
//! mistake.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};
use unicode_general_category::{get_general_category, GeneralCategory};

use crate::types::Type;

/// Rust source text produced here; it reaches templates as a safe string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Code(String);

impl Code {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Code made of the generator's own text (numbers, fixed names), never
    /// of contract text.
    pub(crate) fn plain(code: String) -> Self {
        Code(code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        minijinja::Value::from_safe_string(self.0.clone()).serialize(serializer)
    }
}

/// A Rust string literal holding `s` exactly.
///
/// Quotes, backslashes and every control character are escaped, and so are
/// the Unicode format characters (the bidirectional controls, which rustc
/// refuses in literals, the byte-order mark, zero-width spaces and joiners)
/// and whitespace other than the ASCII space, all of which would be
/// invisible; the rest of Unicode is kept as it is. The output depends on
/// nothing but `s`.
pub fn rust_str(s: &str) -> String {
    quoted(s, |c| match c {
        '\0' => Some("\\0".to_owned()),
        c if needs_escape(c) || (c.is_whitespace() && !c.is_ascii()) => {
            Some(format!("\\u{{{:x}}}", c as u32))
        }
        _ => None,
    })
}

/// `s` in double quotes, with `"`, `\`, line breaks and tabs escaped as
/// Rust, TOML and YAML all write them, and any other character `other`
/// returns an escape for.
fn quoted(s: &str, other: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => match other(c) {
                Some(escape) => out.push_str(&escape),
                None => out.push(c),
            },
        }
    }
    out.push('"');
    out
}

/// [`rust_str`] for long text: one literal broken into lines of at most
/// [`LITERAL_WIDTH`] characters after a first line that is only the opening
/// quote, each ending in `\` (Rust reads the break
/// and the next line's leading whitespace as nothing), so that a long
/// description stays within the line limit and within rustfmt's reach. A
/// line breaks after a run of spaces, and inside a word only when the word
/// is longer than a line, never inside an escape. A line that starts with a
/// space writes it as `\x20`, which the break does not skip; [`rust_str`]
/// escapes every other whitespace character.
pub fn rust_str_lines(s: &str) -> String {
    let quoted = rust_str(s);
    let inner = &quoted[1..quoted.len() - 1];
    if inner.chars().count() <= LITERAL_WIDTH {
        return quoted;
    }
    // The escaped text as atoms: an escape sequence is one, so no break
    // falls inside it.
    let mut atoms: Vec<String> = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        let mut atom = c.to_string();
        if c == '\\' {
            let next = chars.next().expect("an escape has a second character");
            atom.push(next);
            if next == 'u' {
                for c in chars.by_ref() {
                    atom.push(c);
                    if c == '}' {
                        break;
                    }
                }
            }
        }
        atoms.push(atom);
    }
    // Words: atoms up to and including the spaces after them. A line may
    // start at any word, and inside a word at any atom that is not
    // whitespace.
    let mut words: Vec<Vec<String>> = Vec::new();
    for atom in atoms {
        let starts_word = words
            .last()
            .and_then(|w| w.last())
            .is_none_or(|prev| prev == " " && atom != " ");
        if starts_word {
            words.push(Vec::new());
        }
        words.last_mut().expect("a word was started").push(atom);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut width = 0;
    for word in words {
        let word_width: usize = word.iter().map(|a| a.chars().count()).sum();
        if width > 0 && width + word_width > LITERAL_WIDTH {
            lines.push(std::mem::take(&mut line));
            width = 0;
        }
        for atom in word {
            let atom_width = atom.chars().count();
            if width > 0 && width + atom_width > LITERAL_WIDTH {
                lines.push(std::mem::take(&mut line));
                width = 0;
            }
            line.push_str(&atom);
            width += atom_width;
        }
    }
    lines.push(line);
    // Rust skips the spaces after a break, so a line that starts with one
    // writes it as an escape.
    let lines: Vec<String> = lines
        .into_iter()
        .map(|l| match l.strip_prefix(' ') {
            Some(rest) => format!("\\x20{rest}"),
            None => l,
        })
        .collect();
    // The literal starts on a line of its own, so however far to the right
    // it begins, no line holds more than the indentation and LITERAL_WIDTH.
    format!(
        "\"\\\n{CONTINUATION}{}\"",
        lines.join(&format!("\\\n{CONTINUATION}"))
    )
}

/// The indentation of a broken literal's lines (Rust skips it): deep
/// enough to read as part of a field or argument.
const CONTINUATION: &str = "            ";

/// Longest line of text in a literal [`rust_str_lines`] breaks.
pub const LITERAL_WIDTH: usize = 68;

/// A TOML basic string holding `s` exactly (for the generated Cargo.toml).
pub fn toml_str(s: &str) -> String {
    quoted(s, |c| {
        c.is_control().then(|| format!("\\u{:04X}", c as u32))
    })
}

/// A YAML double-quoted scalar holding `s` exactly (for compose.yaml and
/// asyncapi.yaml): what YAML does not allow printed (control characters,
/// DEL, C1, the byte-order mark) is escaped.
pub fn yaml_str(s: &str) -> String {
    quoted(s, |c| {
        (c.is_control() || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}'))
            .then(|| format!("\\u{:04X}", c as u32))
    })
}

/// Control characters and Unicode format characters (general category Cf:
/// the byte-order mark, zero-width spaces and joiners, soft hyphens, the
/// bidirectional controls rustc denies in literals and comments with
/// `text_direction_codepoint_in_*`, ...). None of them shows where it
/// stands, and rustfmt gives them no width, so kept as they are they would
/// hide text from a reader and lines from the column limit.
fn needs_escape(c: char) -> bool {
    c.is_control() || get_general_category(c) == GeneralCategory::Format
}

/// Free text as one line of comment text: whitespace runs (line breaks
/// included) become one space, control and bidirectional characters are
/// shown escaped (`\u{202e}`), so the text can neither end the comment nor
/// hide what follows.
pub fn doc_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if needs_escape(c) {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// Width of a wrapped doc line, without the `/// ` and indentation (at most
/// eight columns in generated code) and the escape a Markdown block start
/// gets, so lines stay within 100.
const DOC_WIDTH: usize = 87;

/// Free text folded into doc-comment lines of at most `DOC_WIDTH`
/// characters ([`doc_text`], then wrapped). The text stays one Markdown
/// paragraph: a line that would start a list, quote, heading, code fence or
/// table gets its first character escaped, so contract text cannot turn into
/// a code block (a doc test) or trip clippy's Markdown lints. A word longer
/// than a line is split.
pub fn doc_lines(s: &str) -> Vec<String> {
    let text = doc_text(s);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > DOC_WIDTH {
            let rest = word.split_off(DOC_WIDTH);
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.into_iter().collect());
            word = rest;
        }
        let word: String = word.into_iter().collect();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > DOC_WIDTH {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.into_iter().map(|l| escape_block_start(&l)).collect()
}

/// [`doc_lines`] as [`Code`], for the model's doc comments.
pub fn doc_code(s: &str) -> Vec<Code> {
    doc_lines(s).into_iter().map(Code).collect()
}

/// Escapes the first character of a line that Markdown would read as the
/// start of a block other than a paragraph.
fn escape_block_start(line: &str) -> String {
    let first_word = line.split(' ').next().unwrap_or("");
    let ordered = first_word
        .trim_end_matches(['.', ')'])
        .chars()
        .all(|c| c.is_ascii_digit())
        && first_word.ends_with(['.', ')'])
        && first_word.len() > 1;
    let starts_block = matches!(first_word, "-" | "*" | "+")
        || first_word.starts_with(['#', '>', '|', '=', '<'])
        || first_word.starts_with("```")
        || first_word.starts_with("~~~")
        || first_word.starts_with("---")
        || first_word.starts_with("***")
        || first_word.starts_with("___")
        || ordered;
    if !starts_block {
        return line.to_owned();
    }
    if ordered {
        let digits = first_word.trim_end_matches(['.', ')']).len();
        return format!("{}\\{}", &line[..digits], &line[digits..]);
    }
    format!("\\{line}")
}

/// A float as a Rust `f64` literal (`2.0`, not `2`).
pub fn f64_literal(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// A Rust type the generated code uses for a contract field: the field
/// [`Type`] language over the types generated for the crate.
pub type RustType = Type<GeneratedName>;

/// A struct or enum generated for this crate, by its Rust name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeneratedName {
    Struct(String),
    Enum(String),
}

impl GeneratedName {
    /// The type's Rust name.
    pub fn as_str(&self) -> &str {
        match self {
            GeneratedName::Struct(name) | GeneratedName::Enum(name) => name,
        }
    }
}

impl RustType {
    /// The type as Rust source.
    pub fn code(&self) -> Code {
        Code(self.to_string())
    }

    /// The JSON Schema of the type's serde form; `schema_of` gives the
    /// schema of a generated struct or enum by name. An `Option` has its
    /// inner type's schema: serde leaves a `None` out, so the field is simply
    /// not required.
    pub fn json_schema(&self, schema_of: &dyn Fn(&str) -> serde_json::Value) -> serde_json::Value {
        use serde_json::json;
        match self {
            RustType::String => json!({ "type": "string" }),
            RustType::Integer => json!({ "type": "integer" }),
            RustType::Float => json!({ "type": "number" }),
            RustType::Bool => json!({ "type": "boolean" }),
            RustType::Uuid => json!({ "type": "string", "format": "uuid" }),
            RustType::DateTime => json!({ "type": "string", "format": "date-time" }),
            RustType::Date => json!({ "type": "string", "format": "date" }),
            RustType::Json => json!({}),
            RustType::List(inner) => {
                json!({ "type": "array", "items": inner.json_schema(schema_of) })
            }
            RustType::Map(inner) => {
                json!({ "type": "object", "additionalProperties": inner.json_schema(schema_of) })
            }
            RustType::Optional(inner) => inner.json_schema(schema_of),
            RustType::Named(name) => schema_of(name.as_str()),
        }
    }

    /// A value of the type, for examples in generated tests and handlers.
    pub fn example(&self) -> Expr {
        match self {
            RustType::String => Expr::Str("example".to_owned()),
            RustType::Integer => Expr::Int(1),
            RustType::Float => Expr::Float(1.0),
            RustType::Bool => Expr::Bool(true),
            RustType::Uuid => Expr::Path("uuid::Uuid::nil()"),
            RustType::DateTime => Expr::Path("chrono::DateTime::UNIX_EPOCH"),
            RustType::Date => Expr::Path("chrono::NaiveDate::default()"),
            RustType::Json => Expr::Path("serde_json::Value::Null"),
            RustType::List(_) => Expr::Vec(Vec::new()),
            RustType::Map(_) => Expr::Path("std::collections::BTreeMap::new()"),
            RustType::Optional(_) => Expr::Path("None"),
            RustType::Named(name) => Expr::DefaultOf(name.as_str().to_owned()),
        }
    }

    /// The contract default `value` as a value of the type, when the type
    /// allows a literal.
    pub fn literal(&self, value: &serde_json::Value) -> Option<Expr> {
        use serde_json::Value;
        match (self, value) {
            (RustType::String, Value::String(s)) => Some(Expr::Str(s.clone())),
            (RustType::Integer, Value::Number(n)) => n.as_i64().map(Expr::Int),
            (RustType::Float, Value::Number(n)) => n.as_f64().map(Expr::Float),
            (RustType::Bool, Value::Bool(b)) => Some(Expr::Bool(*b)),
            (RustType::List(inner), Value::Array(items)) => items
                .iter()
                .map(|i| inner.literal(i))
                .collect::<Option<Vec<_>>>()
                .map(Expr::Vec),
            _ => None,
        }
    }
}

impl fmt::Display for RustType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RustType::String => f.write_str("String"),
            RustType::Integer => f.write_str("i64"),
            RustType::Float => f.write_str("f64"),
            RustType::Bool => f.write_str("bool"),
            RustType::Uuid => f.write_str("uuid::Uuid"),
            RustType::DateTime => f.write_str("chrono::DateTime<chrono::Utc>"),
            RustType::Date => f.write_str("chrono::NaiveDate"),
            RustType::Json => f.write_str("serde_json::Value"),
            RustType::List(inner) => write!(f, "Vec<{inner}>"),
            RustType::Map(inner) => write!(f, "std::collections::BTreeMap<String, {inner}>"),
            RustType::Optional(inner) => write!(f, "Option<{inner}>"),
            RustType::Named(name) => f.write_str(name.as_str()),
        }
    }
}

impl Serialize for RustType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.code().serialize(serializer)
    }
}

/// A Rust expression the generated code uses: kept as data until rendered.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An owned string: `"text".to_owned()`.
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `vec![...]`, or `Vec::new()` when empty.
    Vec(Vec<Expr>),
    /// A fixed expression of the generator's own (never contract text).
    Path(&'static str),
    /// `Name::default()`.
    DefaultOf(String),
    /// `Enum::Variant`.
    Variant(String, String),
    /// `Name { field: value, ... }`.
    Struct(String, Vec<(String, Expr)>),
    /// `serde_json::json!(...)` of a JSON value.
    Json(serde_json::Value),
    /// `Some(...)`.
    Some(Box<Expr>),
    /// A call of one of the generator's own functions: `path(args)`.
    Call(&'static str, Vec<Expr>),
}

impl Expr {
    pub fn code(&self) -> Code {
        Code(self.to_string())
    }

    /// The generated types the expression names (`Enum::Variant`,
    /// `Name { .. }`, `Name::default()`), nested ones included: what code
    /// that writes it must import.
    pub fn type_names(&self, out: &mut Vec<String>) {
        match self {
            Expr::DefaultOf(name) | Expr::Variant(name, _) => out.push(name.clone()),
            Expr::Struct(name, fields) => {
                out.push(name.clone());
                for (_, e) in fields {
                    e.type_names(out);
                }
            }
            Expr::Vec(items) | Expr::Call(_, items) => {
                for e in items {
                    e.type_names(out);
                }
            }
            Expr::Some(e) => e.type_names(out),
            Expr::Str(_)
            | Expr::Int(_)
            | Expr::Float(_)
            | Expr::Bool(_)
            | Expr::Path(_)
            | Expr::Json(_) => {}
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Str(s) => write!(f, "{}.to_owned()", rust_str_lines(s)),
            Expr::Int(i) => write!(f, "{i}"),
            Expr::Float(v) => f.write_str(&f64_literal(*v)),
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Vec(items) if items.is_empty() => f.write_str("Vec::new()"),
            Expr::Vec(items) => write!(f, "vec![{}]", join(items)),
            Expr::Path(p) => f.write_str(p),
            Expr::DefaultOf(name) => write!(f, "{name}::default()"),
            Expr::Variant(ty, variant) => write!(f, "{ty}::{variant}"),
            Expr::Struct(name, fields) if fields.is_empty() => write!(f, "{name} {{}}"),
            Expr::Struct(name, fields) => {
                let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                write!(f, "{name} {{ {} }}", fields.join(", "))
            }
            Expr::Json(v) => write!(f, "serde_json::json!({})", json_code(v)),
            Expr::Some(inner) => write!(f, "Some({inner})"),
            Expr::Call(path, args) => write!(f, "{path}({})", join(args)),
        }
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.code().serialize(serializer)
    }
}

fn join(items: &[Expr]) -> String {
    items
        .iter()
        .map(Expr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON value as the argument of `serde_json::json!`: strings through
/// [`rust_str`], keys too.
fn json_code(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => rust_str(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(json_code).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            let fields: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}: {}", rust_str(k), json_code(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        other => other.to_string(),
    }
}

/// How serde reads and writes one field: `#[serde(...)]` as data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SerdeField {
    /// The wire name, when it differs from the Rust identifier.
    pub rename: Option<String>,
    pub default: SerdeDefault,
    /// `skip_serializing_if = "Option::is_none"`.
    pub skip_none: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum SerdeDefault {
    /// The field is required on the wire.
    #[default]
    Required,
    /// `default`: the type's `Default` when absent.
    TypeDefault,
    /// `default = "fn_name"`: the contract's default.
    Function(String),
}

impl SerdeField {
    /// The field's `#[serde(...)]` attribute, or nothing when serde's
    /// defaults are right.
    pub fn attribute(&self) -> Code {
        let mut parts = Vec::new();
        if let Some(rename) = &self.rename {
            parts.push(format!("rename = {}", rust_str(rename)));
        }
        match &self.default {
            SerdeDefault::Required => {}
            SerdeDefault::TypeDefault => parts.push("default".to_owned()),
            SerdeDefault::Function(name) => parts.push(format!("default = {}", rust_str(name))),
        }
        if self.skip_none {
            parts.push("skip_serializing_if = \"Option::is_none\"".to_owned());
        }
        if parts.is_empty() {
            Code::default()
        } else {
            Code(format!("#[serde({})]", parts.join(", ")))
        }
    }
}

impl Serialize for SerdeField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.attribute().serialize(serializer)
    }
}

/// Whether text may be written into Rust code as it is: a name, a number or
/// a path of them (what identifiers, package names and counts look like).
/// Anything else must come through [`rust_str`], the doc filters or a
/// [`Code`] value.
pub fn is_plain_token_text(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | ',' | ' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_what_would_end_or_hide_them() {
        assert_eq!(rust_str("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(rust_str("x\ny\r\t\0"), r#""x\ny\r\t\0""#);
        assert_eq!(rust_str("\u{7}\u{202e}é"), "\"\\u{7}\\u{202e}é\"");
        // Invisible format characters: byte-order mark, zero-width space
        // and joiner, soft hyphen, a tag character.
        assert_eq!(
            rust_str("a\u{feff}b\u{200b}\u{200d}\u{ad}\u{e0041}"),
            "\"a\\u{feff}b\\u{200b}\\u{200d}\\u{ad}\\u{e0041}\""
        );
        assert_eq!(rust_str("\"#"), r##""\"#""##);
    }

    #[test]
    fn string_literals_parse_back_to_the_text() {
        for text in [
            "plain",
            "\"#}{*/\n\r\t\0\u{1b}\u{202e}\u{2028}é✓",
            "\\u{41}",
        ] {
            let lit: syn::LitStr = syn::parse_str(&rust_str(text)).unwrap();
            assert_eq!(lit.value(), text);
        }
    }

    #[test]
    fn long_literals_break_into_lines_that_read_back_as_the_text() {
        let words = "word ".repeat(40) + &"x".repeat(150) + " \"quoted\" \u{202e}\n end";
        let spaces = " lead".to_owned() + &"two  spaces ".repeat(10) + &" ".repeat(90) + "end ";
        let unicode_space = "\u{2028}word ".repeat(30) + &"\u{a0}".repeat(80);
        for text in [
            "short",
            words.as_str(),
            &"\u{7}".repeat(100),
            &spaces,
            &unicode_space,
        ] {
            let code = rust_str_lines(text);
            let lit: syn::LitStr = syn::parse_str(&code).unwrap();
            assert_eq!(lit.value(), text, "{code}");
            assert!(
                code.lines()
                    .all(|l| l.chars().count() <= LITERAL_WIDTH + CONTINUATION.len() + 4),
                "{code}"
            );
            assert!(
                code.lines().count() == 1 || code.starts_with("\"\\\n"),
                "{code}"
            );
            assert!(
                code.lines()
                    .skip(1)
                    .all(|l| !l.trim_start_matches(' ').starts_with(char::is_whitespace)),
                "a line starts with whitespace Rust would keep or warn about: {code:?}"
            );
        }
        assert_eq!(rust_str_lines("short"), "\"short\"");
    }

    #[test]
    fn toml_and_yaml_strings_parse_back_to_the_text() {
        let text = "a\"b\\c\nd\r\t\u{0}\u{7f}\u{85}\u{9f}\u{feff}\u{202e}é✓";
        let doc: toml::Table = toml::from_str(&format!("k = {}", toml_str(text))).unwrap();
        assert_eq!(doc["k"].as_str(), Some(text));
        let yaml =
            yaml_rust2::YamlLoader::load_from_str(&format!("k: {}", yaml_str(text))).unwrap();
        assert_eq!(yaml[0]["k"].as_str(), Some(text));
    }

    #[test]
    fn doc_lines_wrap_collapse_and_escape_block_starts() {
        assert_eq!(doc_lines("  a\n - b  "), vec!["a - b".to_owned()]);
        let long = "word ".repeat(40);
        let lines = doc_lines(&long);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= DOC_WIDTH));
        assert_eq!(doc_lines("- item"), vec!["\\- item".to_owned()]);
        assert_eq!(doc_lines("```rust"), vec!["\\```rust".to_owned()]);
        assert_eq!(doc_lines("12. twelve"), vec!["12\\. twelve".to_owned()]);
        assert_eq!(doc_lines("# title"), vec!["\\# title".to_owned()]);
        assert_eq!(doc_lines("a\u{202e}b\rc"), vec!["a\\u{202e}b c".to_owned()]);
        assert_eq!(
            doc_lines("a\u{feff}b\u{200b}c"),
            vec!["a\\u{feff}b\\u{200b}c".to_owned()]
        );
        let word = "x".repeat(DOC_WIDTH * 2 + 3);
        assert_eq!(doc_lines(&word).len(), 3);
    }

    #[test]
    fn float_literals_are_rust_floats() {
        assert_eq!(f64_literal(2.0), "2.0");
        assert_eq!(f64_literal(0.1), "0.1");
    }

    #[test]
    fn types_and_expressions_render_as_rust() {
        let t = RustType::Optional(Box::new(RustType::List(Box::new(RustType::String))));
        assert_eq!(t.to_string(), "Option<Vec<String>>");
        let lit = RustType::List(Box::new(RustType::String)).literal(&serde_json::json!(["all"]));
        assert_eq!(lit.unwrap().to_string(), "vec![\"all\".to_owned()]");
        assert_eq!(
            RustType::Bool
                .literal(&serde_json::json!(false))
                .unwrap()
                .to_string(),
            "false"
        );
        assert_eq!(RustType::Json.literal(&serde_json::json!({})), None);
        let json = Expr::Json(serde_json::json!({ "op\"": "x\n", "n": 1 }));
        assert_eq!(
            json.to_string(),
            "serde_json::json!({ \"n\": 1, \"op\\\"\": \"x\\n\" })"
        );
    }

    #[test]
    fn serde_attributes_are_rendered_in_one_place() {
        let f = SerdeField {
            rename: Some("a\"b".into()),
            default: SerdeDefault::Function("default_x".into()),
            skip_none: true,
        };
        assert_eq!(
            f.attribute().as_str(),
            "#[serde(rename = \"a\\\"b\", default = \"default_x\", skip_serializing_if = \"Option::is_none\")]"
        );
        assert_eq!(SerdeField::default().attribute().as_str(), "");
    }
}
