//! Stage 4: render — NodeModel -> FileSet.
//!
//! Templates are minijinja, embedded in the binary (see `build.rs`), with
//! strict undefined behaviour so a misspelt variable is an error rather than
//! an empty string. A folder given with `--templates` overrides embedded
//! templates by name. Stage 4 renders the node's domain code: its models, the
//! hooks the user implements, the state machine or workflow, the user's
//! handler file and the crate's tests. Bus wiring is stage 4.5.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::GenError;
use crate::fileset::{FileSet, Owner};
use crate::stages::model::NodeModel;

/// Templates embedded at build time: `(name, source)`, sorted by name.
const TEMPLATES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The onex-runtime crate's manifest and sources: `(path, contents)`, sorted.
pub const VENDORED_RUNTIME: &[(&str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/vendored_runtime.rs"));

/// How a generated crate reaches onex-runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum RuntimeSource {
    /// A copy of onex-runtime is written into the crate under `vendor/onex-runtime/`,
    /// so the crate builds on its own wherever it is.
    #[default]
    Vendored,
    /// A path dependency, relative to the crate root (e.g. `../../onex-runtime`).
    Path(String),
}

impl RuntimeSource {
    /// The dependency's path as written in the generated Cargo.toml.
    pub fn dependency_path(&self) -> &str {
        match self {
            RuntimeSource::Vendored => "vendor/onex-runtime",
            RuntimeSource::Path(p) => p,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub runtime: RuntimeSource,
    /// A folder whose templates override the embedded ones by name.
    pub template_dir: Option<PathBuf>,
}

/// The generated modules stage 4.5 renders (the bus wiring).
pub const WIRING_MODULES: &[&str] = &["node", "spec"];

/// Renders stage 4's files.
pub fn render(model: &NodeModel, opts: &RenderOptions) -> Result<FileSet, GenError> {
    let renderer = Renderer::new(model, opts)?;
    let mut files = FileSet::new();
    renderer.emit(&mut files, "Cargo.toml", "Cargo.toml.j2", Owner::Generated)?;
    renderer.emit(&mut files, ".gitignore", "gitignore.j2", Owner::Generated)?;
    renderer.emit(
        &mut files,
        ".dockerignore",
        "dockerignore.j2",
        Owner::Generated,
    )?;
    renderer.emit(&mut files, "src/lib.rs", "lib.rs.j2", Owner::Generated)?;
    // The node's domain modules; `node` and `spec` are stage 4.5's.
    for module in model.modules.iter().filter(|m| !WIRING_MODULES.contains(m)) {
        renderer.emit_module(&mut files, module)?;
    }
    let handlers = format!("handlers/{}.rs.j2", model.kind.as_str());
    renderer.emit(&mut files, "src/handlers.rs", &handlers, Owner::User)?;
    renderer.emit(
        &mut files,
        "tests/node.rs",
        "tests/node.rs.j2",
        Owner::Generated,
    )?;
    renderer.emit(
        &mut files,
        "tests/handlers.rs",
        "tests/handlers.rs.j2",
        Owner::User,
    )?;
    Ok(files)
}

/// A template environment bound to one model.
pub(crate) struct Renderer<'a> {
    env: EnvRef<'a>,
    ctx: Value,
}

enum EnvRef<'a> {
    Shared(&'static Environment<'static>),
    Owned(Box<Environment<'a>>),
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(model: &NodeModel, opts: &RenderOptions) -> Result<Self, GenError> {
        let env = match &opts.template_dir {
            None => EnvRef::Shared(embedded_environment()),
            Some(dir) => EnvRef::Owned(Box::new(environment_with_overrides(dir)?)),
        };
        let contract_file = model
            .contract
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "contract".to_owned());
        let ctx = minijinja::context! {
            m => Value::from(Serde(model)),
            generator_version => crate::GENERATOR_VERSION,
            // A file name may hold anything; it is only ever shown in comments.
            contract_file => Value::from_safe_string(crate::rust::doc_text(&contract_file)),
            runtime_path => opts.runtime.dependency_path(),
            vendored => opts.runtime == RuntimeSource::Vendored,
            bus_env => Value::from(Serde(crate::stages::wiring::bus_env_vars())),
        };
        Ok(Self { env, ctx })
    }

    fn env(&self) -> &Environment<'a> {
        match &self.env {
            EnvRef::Shared(e) => e,
            EnvRef::Owned(e) => e,
        }
    }

    pub(crate) fn render(&self, template: &str) -> Result<String, GenError> {
        let tmpl = self
            .env()
            .get_template(template)
            .map_err(|source| GenError::Template {
                name: template.to_owned(),
                source,
            })?;
        tmpl.render(&self.ctx).map_err(|source| GenError::Template {
            name: template.to_owned(),
            source,
        })
    }

    pub(crate) fn emit(
        &self,
        files: &mut FileSet,
        path: &str,
        template: &str,
        owner: Owner,
    ) -> Result<(), GenError> {
        files.insert(path, owner, self.render(template)?);
        Ok(())
    }

    /// `src/generated/<module>.rs` from `generated/<module>.rs.j2`.
    pub(crate) fn emit_module(&self, files: &mut FileSet, module: &str) -> Result<(), GenError> {
        self.emit(
            files,
            &format!("src/generated/{module}.rs"),
            &format!("generated/{module}.rs.j2"),
            Owner::Generated,
        )
    }
}

fn configure(env: &mut Environment<'_>) {
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    // Rust templates escape "as Rust": what the filters and the model's Rust
    // rendering give (and what macros compose from it) is safe; any other
    // text is refused unless it is a plain name or number.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".rs.j2") {
            AutoEscape::Custom(RUST_ESCAPE.into())
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if state.auto_escape() == &AutoEscape::Custom(RUST_ESCAPE.into()) {
            refuse_raw_text(state.name(), value)?;
            return write!(out, "{value}").map_err(minijinja::Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    // Contract text reaches Rust only through these (crate::rust).
    env.add_filter("rust_str", |s: String| {
        Value::from_safe_string(crate::rust::rust_str(&s))
    });
    env.add_filter("rust_str_lines", |s: String| {
        Value::from_safe_string(crate::rust::rust_str_lines(&s))
    });
    env.add_filter("doc", |s: String| {
        Value::from_safe_string(crate::rust::doc_text(&s))
    });
    env.add_filter("doc_lines", |s: String| {
        crate::rust::doc_lines(&s)
            .into_iter()
            .map(Value::from_safe_string)
            .collect::<Vec<_>>()
    });
    env.add_filter("toml_str", |s: String| {
        Value::from_safe_string(crate::rust::toml_str(&s))
    });
    env.add_filter("yaml_str", |s: String| {
        Value::from_safe_string(crate::rust::yaml_str(&s))
    });
    env.add_filter("kebab", |s: String| s.replace('_', "-"));
}

/// The auto-escape mode of `.rs` templates.
const RUST_ESCAPE: &str = "rust";

/// Refuses to write text into a Rust file that did not come through the
/// escaping filters or the model's Rust rendering (`crate::rust`), unless it
/// is a plain name or number: a template that forgot a filter fails on the
/// first contract whose text would have become code, with the template's
/// name, instead of emitting that code.
fn refuse_raw_text(template: &str, value: &Value) -> Result<(), minijinja::Error> {
    if value.is_safe() {
        return Ok(());
    }
    let Some(text) = value.as_str() else {
        return Ok(());
    };
    if crate::rust::is_plain_token_text(text) {
        return Ok(());
    }
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!(
            "{template} writes {text:?} into Rust code unescaped; \
             pass it through rust_str, doc or doc_lines"
        ),
    ))
}

fn embedded_environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        configure(&mut env);
        for (name, source) in TEMPLATES {
            // Embedded templates are tested; a syntax error here is a build defect.
            env.add_template(name, source)
                .expect("embedded templates parse");
        }
        env
    })
}

fn environment_with_overrides(dir: &Path) -> Result<Environment<'static>, GenError> {
    let mut env = Environment::new();
    configure(&mut env);
    for (name, source) in TEMPLATES {
        let custom = dir.join(name);
        let text = if custom.is_file() {
            read_template(&custom)?
        } else {
            (*source).to_owned()
        };
        env.add_template_owned(name.to_string(), text)
            .map_err(|source| GenError::Template {
                name: name.to_string(),
                source,
            })?;
    }
    Ok(env)
}

/// The largest override template read (the embedded ones are a few KiB).
const MAX_TEMPLATE_BYTES: u64 = 1 << 20;

/// An override template's text, read no further than [`MAX_TEMPLATE_BYTES`].
fn read_template(path: &Path) -> Result<String, GenError> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TEMPLATE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| GenError::io(path, e))?;
    if text.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(GenError::io(
            path,
            std::io::Error::other(format!(
                "is larger than {MAX_TEMPLATE_BYTES} bytes (expected a template of a few KiB)"
            )),
        ));
    }
    Ok(text)
}

/// A digest of every embedded template and vendored runtime file, recorded in
/// the manifest so `check` can tell a generator change from a contract change.
pub fn template_set_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut h = Sha256::new();
        for (name, source) in TEMPLATES.iter().chain(VENDORED_RUNTIME) {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(source.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    })
    .clone()
}
