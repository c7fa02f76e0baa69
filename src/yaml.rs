//! A YAML tree in which every node carries its line and column.
//!
//! Built from yaml-rust2's event parser so that later stages can point at the
//! exact place in a contract. Guards against hostile input: a size limit, a
//! nesting limit, and a limit on how much aliases may expand (so a
//! "billion laughs" document is refused instead of filling memory). Only one
//! document is accepted.
//!
//! Duplicate keys are read as PyYAML (the ONEX platform's loader) reads them:
//! the last value wins, at the place of the first key, and a
//! [`YamlWarning`] names both lines.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use crate::diagnostic::Position;

/// Limits applied while loading a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most alias references (`*name`) accepted in one document.
    pub max_aliases: usize,
    /// Most nodes the document may hold once aliases are expanded.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 64,
            max_aliases: 1_000,
            max_nodes: 200_000,
        }
    }
}

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Position,
}

/// A YAML value. Mappings keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn new(value: Value, pos: Position) -> Self {
        Self { value, pos }
    }

    /// The value of `key` when this node is a mapping with that key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node of `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.key_text().as_deref() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The text of a scalar used as a mapping key (`1` and `"1"` both give `1`).
    pub fn key_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some("null".into()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name for the kind of value, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node as JSON (mapping keys become strings; NaN and infinities become null).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    let key = k.key_text().unwrap_or_else(|| k.to_json().to_string());
                    map.insert(key, v.to_json());
                }
                J::Object(map)
            }
        }
    }

    /// The node at a JSON pointer (`/a/0/b`), or the deepest node on the way
    /// there when the pointer leads outside the document.
    pub fn locate(&self, pointer: &str) -> &Node {
        let mut node = self;
        if pointer.is_empty() {
            return node;
        }
        for raw in pointer.trim_start_matches('/').split('/') {
            let seg = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.value {
                Value::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.key_text().as_deref() == Some(seg.as_str()))
                    .map(|(_, v)| v),
                Value::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    fn count(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::count).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.count() + v.count()).sum(),
            _ => 0,
        }
    }
}

/// Why a document could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlErrorKind {
    Syntax,
    InvalidUtf8,
    NonPrintable,
    Tab,
    TooLarge,
    TooDeep,
    Aliases,
    MultipleDocuments,
    Tag,
}

impl YamlErrorKind {
    /// The stable diagnostic code for this kind of failure.
    pub fn code(&self) -> &'static str {
        match self {
            YamlErrorKind::Syntax => "E-YAML-SYNTAX",
            YamlErrorKind::InvalidUtf8 => "E-YAML-UTF8",
            YamlErrorKind::NonPrintable => "E-YAML-CHAR",
            YamlErrorKind::Tab => "E-YAML-TAB",
            YamlErrorKind::TooLarge => "E-YAML-SIZE",
            YamlErrorKind::TooDeep => "E-YAML-DEPTH",
            YamlErrorKind::Aliases => "E-YAML-ALIAS",
            YamlErrorKind::MultipleDocuments => "E-YAML-DOCUMENTS",
            YamlErrorKind::Tag => "E-YAML-TAG",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos_line}:{pos_col}: {message}", pos_line = pos.line, pos_col = pos.col)]
pub struct YamlError {
    pub kind: YamlErrorKind,
    pub pos: Position,
    /// JSON pointer of the place, when known.
    pub pointer: String,
    pub message: String,
    pub expected: Option<String>,
}

impl YamlError {
    fn new(kind: YamlErrorKind, pos: Position, message: impl Into<String>) -> Self {
        Self {
            kind,
            pos,
            pointer: String::new(),
            message: message.into(),
            expected: None,
        }
    }

    fn expected(mut self, e: impl Into<String>) -> Self {
        self.expected = Some(e.into());
        self
    }
}

/// Something the loader had to interpret, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlWarning {
    pub code: &'static str,
    pub pos: Position,
    /// JSON pointer of the place.
    pub pointer: String,
    pub message: String,
    pub expected: String,
}

/// A loaded document and the warnings met on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub root: Node,
    pub warnings: Vec<YamlWarning>,
}

/// Loads one YAML document from bytes. An empty document is `Null` at 1:1.
pub fn load_bytes(bytes: &[u8], limits: Limits) -> Result<Node, YamlError> {
    load_bytes_with_warnings(bytes, limits).map(|l| l.root)
}

/// Like [`load_bytes`], keeping the warnings.
pub fn load_bytes_with_warnings(bytes: &[u8], limits: Limits) -> Result<Loaded, YamlError> {
    if bytes.len() > limits.max_bytes {
        return Err(YamlError::new(
            YamlErrorKind::TooLarge,
            Position::new(1, 1),
            format!(
                "the file is {} bytes; the limit is {} bytes",
                bytes.len(),
                limits.max_bytes
            ),
        )
        .expected(format!("a contract of at most {} bytes", limits.max_bytes)));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let pos = position_of_end(valid);
            return Err(YamlError::new(
                YamlErrorKind::InvalidUtf8,
                pos,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
            .expected("a UTF-8 encoded YAML file"));
        }
    };
    load_str_with_warnings(text, limits)
}

fn position_of_end(valid: &[u8]) -> Position {
    let text = String::from_utf8_lossy(valid);
    let line = text.matches('\n').count() + 1;
    let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position::new(line, col)
}

/// Loads one YAML document from text.
pub fn load_str(text: &str, limits: Limits) -> Result<Node, YamlError> {
    load_str_with_warnings(text, limits).map(|l| l.root)
}

/// Like [`load_str`], keeping the warnings.
pub fn load_str_with_warnings(text: &str, limits: Limits) -> Result<Loaded, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_printable(text)?;
    check_tabs(text)?;
    let mut builder = Builder::new(limits);
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        // An error raised by the builder itself stops the parser with a scan error
        // only when the builder has not recorded one first.
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
        return Err(scan_error(&e, limits));
    }
    if let Some(err) = builder.error.take() {
        return Err(err);
    }
    let root = builder
        .root
        .take()
        .unwrap_or_else(|| Node::new(Value::Null, Position::new(1, 1)));
    Ok(Loaded {
        root,
        warnings: builder.warnings,
    })
}

fn scan_error(e: &ScanError, limits: Limits) -> YamlError {
    let m = e.marker();
    let pos = Position::new(m.line().max(1), m.col() + 1);
    // The scanner has a nesting limit of its own, far below what would
    // exhaust the stack; it is the same refusal as ours.
    if e.info().contains("recursion limit") {
        return too_deep(pos, limits.max_depth);
    }
    YamlError::new(
        YamlErrorKind::Syntax,
        Position::new(m.line().max(1), m.col() + 1),
        format!("YAML syntax error: {}", e.info()),
    )
    .expected("well-formed YAML")
}

/// YAML allows only printable characters in a stream (YAML 1.2, 5.1; PyYAML
/// refuses the rest too). The scanner would stop at a NUL as if the file
/// ended there, reading a contract shorter than the one on disk, so every
/// other character is refused at its place; a control character is written
/// escaped in a double-quoted string.
fn check_printable(text: &str) -> Result<(), YamlError> {
    let printable = |c: char| {
        matches!(
            c,
            '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..
        )
    };
    for (i, line) in text.split('\n').enumerate() {
        if let Some((col, c)) = line.chars().enumerate().find(|(_, c)| !printable(*c)) {
            return Err(YamlError::new(
                YamlErrorKind::NonPrintable,
                Position::new(i + 1, col + 1),
                format!("the character U+{:04X} is not allowed in YAML", u32::from(c)),
            )
            .expected("printable characters (a control character only escaped in a double-quoted string, e.g. \"\\0\")"));
        }
    }
    Ok(())
}

/// Tabs may not indent YAML; say so at the exact place instead of a generic
/// scanner message.
fn check_tabs(text: &str) -> Result<(), YamlError> {
    let mut in_block_scalar: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let lead = &line[..indent];
        let rest = &line[indent..];
        if let Some(block_indent) = in_block_scalar {
            let spaces = line.len() - line.trim_start_matches(' ').len();
            if rest.is_empty() || spaces > block_indent {
                continue;
            }
            in_block_scalar = None;
        }
        if !rest.is_empty() && !rest.starts_with('#') {
            if let Some(col) = lead.find('\t') {
                return Err(YamlError::new(
                    YamlErrorKind::Tab,
                    Position::new(i + 1, col + 1),
                    "a tab character is used for indentation",
                )
                .expected("indentation with spaces"));
            }
        }
        let trimmed = rest.trim_end();
        let body = trimmed.split(" #").next().unwrap_or(trimmed).trim_end();
        if body.ends_with('|')
            || body.ends_with('>')
            || body.ends_with("|-")
            || body.ends_with(">-")
            || body.ends_with("|+")
            || body.ends_with(">+")
        {
            in_block_scalar = Some(line.len() - line.trim_start_matches(' ').len());
        }
    }
    Ok(())
}

enum Frame {
    Seq {
        pos: Position,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Position,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, (Node, usize)>,
    aliases: usize,
    nodes: usize,
    documents: usize,
    error: Option<YamlError>,
    warnings: Vec<YamlWarning>,
}

impl Builder {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            aliases: 0,
            nodes: 0,
            documents: 0,
            error: None,
            warnings: Vec::new(),
        }
    }

    fn fail(&mut self, err: YamlError) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    fn pointer(&self) -> String {
        let mut p = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => {
                    p.push('/');
                    p.push_str(&items.len().to_string());
                }
                Frame::Map { pending_key, .. } => {
                    if let Some(k) = pending_key {
                        p.push('/');
                        let t = k.key_text().unwrap_or_default();
                        p.push_str(&t.replace('~', "~0").replace('/', "~1"));
                    }
                }
            }
        }
        p
    }

    fn push_node(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    let text = key.key_text();
                    let first = text.as_deref().and_then(|t| {
                        entries
                            .iter()
                            .position(|(k, _)| k.key_text().as_deref() == Some(t))
                    });
                    match (first, text) {
                        (Some(i), Some(text)) => {
                            let first_line = entries[i].0.pos.line;
                            let pos = key.pos;
                            // PyYAML keeps the last value, where the first key was.
                            entries[i] = (key, node);
                            let mut pointer = self.pointer();
                            pointer.push('/');
                            pointer.push_str(&text.replace('~', "~0").replace('/', "~1"));
                            self.warnings.push(YamlWarning {
                                code: "W-DUPLICATE-KEY",
                                pos,
                                pointer,
                                message: format!(
                                    "duplicate key {text:?}: first at line {first_line}, again at line {}; the value at line {} is used, as PyYAML does",
                                    pos.line, pos.line
                                ),
                                expected: "each key at most once per mapping".into(),
                            });
                        }
                        _ => entries.push((key, node)),
                    }
                }
            },
        }
    }

    /// Whether a sequence or mapping may start at `pos`: its tag is one
    /// the contract may use, and the node count and depth stay in bounds.
    /// Otherwise the failure is recorded.
    /// Checks a new node's tag and counts the node; false, with the error
    /// recorded, when either refuses it.
    fn admit(&mut self, tag: Option<&yaml_rust2::parser::Tag>, pos: Position) -> bool {
        if let Err(mut e) = check_tag(tag, pos) {
            e.pointer = self.pointer();
            self.fail(e);
            return false;
        }
        self.count(1, pos)
    }

    /// Opens a sequence or mapping at `pos`: pushes its `frame` unless its
    /// tag, the node count or the depth limit refuses it.
    fn open_collection(
        &mut self,
        tag: Option<&yaml_rust2::parser::Tag>,
        pos: Position,
        frame: Frame,
    ) {
        if !self.admit(tag, pos) {
            return;
        }
        if self.stack.len() >= self.limits.max_depth {
            return self.fail(too_deep(pos, self.limits.max_depth));
        }
        self.stack.push(frame);
    }

    fn count(&mut self, n: usize, pos: Position) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            self.fail(
                YamlError::new(
                    YamlErrorKind::Aliases,
                    pos,
                    format!(
                        "the document expands to more than {} nodes",
                        self.limits.max_nodes
                    ),
                )
                .expected("a contract without runaway alias expansion"),
            );
            return false;
        }
        true
    }
}

fn too_deep(pos: Position, max_depth: usize) -> YamlError {
    YamlError::new(
        YamlErrorKind::TooDeep,
        pos,
        format!("nesting deeper than {max_depth} levels"),
    )
    .expected(format!("at most {max_depth} levels of nesting"))
}

/// The tags of the YAML core schema; a contract is plain data, so any other
/// tag (`!!python/object`, `!include`, `!custom`) is refused, not ignored.
const CORE_TAGS: [&str; 7] = ["str", "int", "float", "bool", "null", "map", "seq"];

fn check_tag(tag: Option<&yaml_rust2::parser::Tag>, pos: Position) -> Result<(), YamlError> {
    let Some(tag) = tag else { return Ok(()) };
    let core = matches!(tag.handle.as_str(), "!!" | "tag:yaml.org,2002:")
        && CORE_TAGS.contains(&tag.suffix.as_str());
    if core {
        return Ok(());
    }
    let shown = if tag.handle == "tag:yaml.org,2002:" {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    };
    Err(YamlError::new(
        YamlErrorKind::Tag,
        pos,
        format!("the YAML tag {shown} is not accepted: a contract is plain data"),
    )
    .expected("no tag, or one of the core schema tags !!str, !!int, !!float, !!bool, !!null, !!map, !!seq"))
}

fn pos_of(mark: Marker) -> Position {
    Position::new(mark.line().max(1), mark.col() + 1)
}

/// The YAML 1.1 booleans that PyYAML resolves and the YAML 1.2 core schema
/// leaves as strings.
fn yaml11_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn scalar_value(text: String, style: TScalarStyle, tag: Option<&yaml_rust2::parser::Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:" {
            match tag.suffix.as_str() {
                "str" => return Value::Str(text),
                "int" => {
                    if let Ok(i) = text.trim().parse() {
                        return Value::Int(i);
                    }
                }
                "float" => {
                    if let Ok(f) = text.trim().parse() {
                        return Value::Float(f);
                    }
                }
                "bool" => match text.trim() {
                    "true" | "True" | "TRUE" => return Value::Bool(true),
                    "false" | "False" | "FALSE" => return Value::Bool(false),
                    _ => {}
                },
                "null" => return Value::Null,
                _ => {}
            }
        }
    }
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    match yaml_rust2::Yaml::from_str(&text) {
        yaml_rust2::Yaml::Integer(i) => Value::Int(i),
        yaml_rust2::Yaml::Real(r) => match yaml_rust2::Yaml::Real(r.clone()).as_f64() {
            Some(f) => Value::Float(f),
            None => Value::Str(r),
        },
        yaml_rust2::Yaml::Boolean(b) => Value::Bool(b),
        yaml_rust2::Yaml::Null => Value::Null,
        _ => Value::Str(text),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = pos_of(mark);
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        YamlError::new(
                            YamlErrorKind::MultipleDocuments,
                            pos,
                            "a second YAML document starts here",
                        )
                        .expected("exactly one YAML document per contract file"),
                    );
                }
            }
            Event::Alias(id) => {
                self.aliases += 1;
                if self.aliases > self.limits.max_aliases {
                    self.fail(
                        YamlError::new(
                            YamlErrorKind::Aliases,
                            pos,
                            format!("more than {} aliases", self.limits.max_aliases),
                        )
                        .expected("a contract with fewer aliases"),
                    );
                    return;
                }
                match self.anchors.get(&id).cloned() {
                    Some((mut node, size)) => {
                        if !self.count(size, pos) {
                            return;
                        }
                        node.pos = pos;
                        self.push_node(node, 0, size);
                    }
                    None => self.fail(
                        YamlError::new(YamlErrorKind::Syntax, pos, "alias to an unknown anchor")
                            .expected("an alias that refers to an earlier anchor"),
                    ),
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if !self.admit(tag.as_ref(), pos) {
                    return;
                }
                let yaml11_bool = (style == TScalarStyle::Plain && tag.is_none())
                    .then(|| yaml11_bool(&text))
                    .flatten();
                let value = match yaml11_bool {
                    Some(b) => {
                        self.warnings.push(YamlWarning {
                            code: "W-YAML11-BOOL",
                            pos,
                            pointer: self.pointer(),
                            message: format!(
                                "{text} is read as {b}, as PyYAML (YAML 1.1) reads it"
                            ),
                            expected: format!("{b}, or \"{text}\" quoted for the text"),
                        });
                        Value::Bool(b)
                    }
                    None => scalar_value(text, style, tag.as_ref()),
                };
                self.push_node(Node::new(value, pos), anchor, 1);
            }
            Event::SequenceStart(anchor, tag) => {
                let frame = Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                };
                self.open_collection(tag.as_ref(), pos, frame);
            }
            Event::MappingStart(anchor, tag) => {
                let frame = Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                };
                self.open_collection(tag.as_ref(), pos, frame);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => {
                        (Node::new(Value::Seq(items), pos), anchor)
                    }
                    Some(Frame::Map {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => (Node::new(Value::Map(entries), pos), anchor),
                    None => return,
                };
                let size = if anchor > 0 { node.count() } else { 0 };
                self.push_node(node, anchor, size);
            }
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(s: &str) -> Result<Node, YamlError> {
        load_str(s, Limits::default())
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let n = load("---\na: 1\nb:\n  - x\n  - {c: true}\n").unwrap();
        assert_eq!(n.get("a").unwrap().pos, Position::new(2, 4));
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        let b = n.get("b").unwrap();
        assert_eq!(b.as_seq().unwrap()[0].pos, Position::new(4, 5));
        assert_eq!(n.locate("/b/1/c").pos, Position::new(5, 9));
        assert_eq!(n.locate("/b/1/c").value, Value::Bool(true));
        let (k, _) = n.entry("b").unwrap();
        assert_eq!(k.pos, Position::new(3, 1));
    }

    #[test]
    fn scalars_resolve_like_pyyaml() {
        let n = load("a: 1.5\nb: '1'\nc: ~\nd: no\ne: 0x10\nf: !!str 7\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Float(1.5));
        assert_eq!(n.get("b").unwrap().value, Value::Str("1".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Null);
        assert_eq!(n.get("d").unwrap().value, Value::Bool(false));
        assert_eq!(n.get("e").unwrap().value, Value::Int(16));
        assert_eq!(n.get("f").unwrap().value, Value::Str("7".into()));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_name_both_lines() {
        let l = load_str_with_warnings("a: 1\nb:\n  c: 1\n  d: 0\n  c: 2\n", Limits::default())
            .unwrap();
        let b = l.root.get("b").unwrap().as_map().unwrap();
        let keys: Vec<_> = b.iter().map(|(k, _)| k.key_text().unwrap()).collect();
        assert_eq!(keys, ["c", "d"], "the first key keeps its place");
        assert_eq!(l.root.locate("/b/c").value, Value::Int(2));
        assert_eq!(l.root.locate("/b/c").pos, Position::new(5, 6));
        let [w] = l.warnings.as_slice() else {
            panic!("{:?}", l.warnings)
        };
        assert_eq!(w.code, "W-DUPLICATE-KEY");
        assert_eq!(w.pos, Position::new(5, 3));
        assert_eq!(w.pointer, "/b/c");
        assert!(
            w.message.contains("first at line 3, again at line 5"),
            "{}",
            w.message
        );
    }

    #[test]
    fn limits_are_enforced() {
        let deep = "a: ".to_owned() + &"[".repeat(100) + &"]".repeat(100);
        assert_eq!(load(&deep).unwrap_err().kind, YamlErrorKind::TooDeep);
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        assert_eq!(load(laughs).unwrap_err().kind, YamlErrorKind::Aliases);
        let big = vec![b' '; 2 * 1024 * 1024];
        assert_eq!(
            load_bytes(&big, Limits::default()).unwrap_err().kind,
            YamlErrorKind::TooLarge
        );
        let two = load("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(two.kind, YamlErrorKind::MultipleDocuments);
        assert_eq!(two.pos.line, 2);
    }

    #[test]
    fn aliases_expand_within_limits() {
        let n = load("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(n.locate("/b/k").value, Value::Str("v".into()));
    }

    #[test]
    fn bad_input_is_located() {
        let e = load("a: 1\n\tb: 2\n").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::Tab);
        assert_eq!(e.pos, Position::new(2, 1));
        let e = load("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::Syntax);
        assert!(e.pos.line >= 1);
        let e = load_bytes(b"a: 1\nb: \xff\n", Limits::default()).unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::InvalidUtf8);
        assert_eq!(e.pos, Position::new(2, 4));
    }

    #[test]
    fn non_printable_characters_are_refused_where_they_are() {
        // The scanner alone would end the document at the NUL and drop `b`.
        let e = load("a: \"x\"\0\0\nb: 2\n").unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::NonPrintable);
        assert_eq!(e.pos, Position::new(1, 7));
        assert!(e.message.contains("U+0000"), "{}", e.message);
        for bad in [
            "a: \u{7}\n",
            "a: 1\nb: \"\u{1b}[0m\"\n",
            "a: \u{fffe}\n",
            "a: x\u{7f}\n",
        ] {
            assert_eq!(
                load(bad).unwrap_err().kind,
                YamlErrorKind::NonPrintable,
                "{bad:?}"
            );
        }
        // Escaped in a double-quoted string, tabs, CR LF, NEL and any other
        // printable character are fine.
        let n = load("a: \"\\0\\e\"\r\nb: |\n  \tx\u{85}\nc: \u{e9}\u{1f600}\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Str("\0\u{1b}".into()));
        assert_eq!(
            n.get("c").unwrap().value,
            Value::Str("\u{e9}\u{1f600}".into())
        );
    }

    #[test]
    fn block_scalars_may_contain_tabs() {
        let n = load("a: |\n  x\n  \ty\nb: 1\n").unwrap();
        assert_eq!(n.get("b").unwrap().value, Value::Int(1));
    }

    #[test]
    fn empty_document_is_null() {
        assert!(load("").unwrap().is_null());
        assert!(load("---\n# only a comment\n").unwrap().is_null());
    }
}
