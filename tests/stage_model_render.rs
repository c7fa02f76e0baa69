//! Runs the fixture cases of stages 3 (model), 4 (render) and 4.5 (event-bus
//! wiring), each stage on its own:
//!
//! - `stages/3-model/ok/<case>.yaml` -> `<case>.expected.json`: the NodeModel
//!   (without the contract it embeds, which stage 2's fixtures show).
//! - `stages/4-render/ok/<case>.yaml` -> `<case>.expected.txt`: every file
//!   stage 4 renders, with its owner, before the formatter pass.
//! - `stages/4.5-wiring/ok/<case>.yaml` -> `<case>.expected.txt`: the files
//!   stage 4.5 adds (the vendored runtime as one line).
//! - `stages/4-render/err/<case>/` and `stages/4.5-wiring/err/<case>/`: a
//!   `contract.yaml` and a `templates/` override folder -> `expected.txt`,
//!   the error.
//!
//! `UPDATE_EXPECT=1 cargo test --test stage_model_render` rewrites the
//! expectations.

mod common;

use std::path::{Path, PathBuf};

use onex_gen::fileset::FileSet;
use onex_gen::stages::model::{build, NodeModel};
use onex_gen::stages::render::{render, RenderOptions, RuntimeSource};
use onex_gen::stages::validate::load;
use onex_gen::stages::wiring::wire;

use common::stage_cases;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The model of a case, with the contract path as the repository sees it.
fn model_of(contract: &Path) -> NodeModel {
    let validated =
        load(contract).unwrap_or_else(|d| panic!("{} does not validate:\n{d}", contract.display()));
    let mut c = validated.contract;
    c.path = contract
        .strip_prefix(root())
        .unwrap_or(contract)
        .to_path_buf();
    build(&c)
}

fn options(templates: Option<PathBuf>) -> RenderOptions {
    RenderOptions {
        runtime: RuntimeSource::Vendored,
        template_dir: templates,
    }
}

fn dump(files: &FileSet, skip: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut vendored = false;
    for (path, file) in files.iter() {
        if path.starts_with("vendor/onex-runtime/") {
            if !vendored {
                out.push_str(
                    "=== vendor/onex-runtime/** (Generated, a copy of the onex-runtime sources)\n",
                );
                vendored = true;
            }
            continue;
        }
        if skip(path) {
            continue;
        }
        out.push_str(&format!("=== {path} ({:?})\n", file.owner));
        out.push_str(&file.contents);
        if !file.contents.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Compares with (or, under UPDATE_EXPECT=1, rewrites) an expectation file.
fn expect(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_EXPECT=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        panic!("{} differs:\n{diff}", path.display());
    }
}

#[test]
fn stage_3_model_cases() {
    for case in stage_cases("stages/3-model/ok") {
        let model = model_of(&case);
        let mut json = serde_json::to_value(&model).expect("a model serialises");
        json.as_object_mut().expect("an object").remove("contract");
        let text = serde_json::to_string_pretty(&json).expect("serialises") + "\n";
        expect(&case.with_extension("expected.json"), &text);
    }
}

#[test]
fn stage_4_render_cases() {
    for case in stage_cases("stages/4-render/ok") {
        let files = render(&model_of(&case), &options(None))
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        expect(
            &case.with_extension("expected.txt"),
            &dump(&files, |_| false),
        );
    }
}

#[test]
fn stage_4_5_wiring_cases() {
    for case in stage_cases("stages/4.5-wiring/ok") {
        let model = model_of(&case);
        let before = render(&model, &options(None)).expect("stage 4 renders");
        let after = wire(before.clone(), &model, &options(None)).expect("stage 4.5 wires");
        let added = dump(&after, |path| before.get(path).is_some());
        expect(&case.with_extension("expected.txt"), &added);
    }
}

fn error_case(
    case: &Path,
    run: impl Fn(&NodeModel, &RenderOptions) -> Result<FileSet, onex_gen::error::GenError>,
) {
    let model = model_of(&case.join("contract.yaml"));
    let templates = case.join("templates");
    let error = match run(&model, &options(Some(templates))) {
        Ok(_) => panic!("{}: expected an error", case.display()),
        Err(e) => e.to_string(),
    };
    expect(&case.join("expected.txt"), &(error + "\n"));
}

#[test]
fn stage_4_render_error_cases() {
    for case in stage_cases("stages/4-render/err") {
        error_case(&case, render);
    }
}

#[test]
fn stage_4_5_wiring_error_cases() {
    for case in stage_cases("stages/4.5-wiring/err") {
        error_case(&case, |model, opts| {
            wire(render(model, &options(None))?, model, opts)
        });
    }
}

/// A contract with operations but no input topic gets a derived command
/// topic, consumed, named in the spec, the README and the AsyncAPI document.
#[test]
fn operations_without_an_input_topic_get_a_command_topic() {
    let m = model_of(&root().join("contracts/node_git_effect.yaml"));
    let topic = "onex.cmd.git.node-git-effect.v1";
    assert_eq!(m.topics.command.as_deref(), Some(topic));
    assert_eq!(m.topics.subscribe.len(), 1);
    assert_eq!(m.topics.subscribe[0].name, topic);
    let golden = root().join("golden/node_git_effect");
    let read = |p: &str| std::fs::read_to_string(golden.join(p)).unwrap();
    assert!(read("src/generated/spec.rs").contains(&format!("command_topic: Some(\"{topic}\"")));
    assert!(read("README.md").contains("ONEX_COMMAND_TOPIC"));
    assert!(read("asyncapi.yaml").contains(topic));
    // A contract that declares its input topic keeps it.
    let m = model_of(&root().join("contracts/minimal_effect.yaml"));
    assert_eq!(m.topics.command, None);
}

/// One place decides a crate's modules (the model's `modules`): every
/// `generated::<module>` any file of any case refers to is in `mod.rs` and
/// has its file, and every listed module has its file.
#[test]
fn files_refer_only_to_generated_modules() {
    let mut contracts = Vec::new();
    for dir in [
        "stages/3-model/ok",
        "stages/4-render/ok",
        "stages/4.5-wiring/ok",
        "contracts",
    ] {
        contracts.extend(stage_cases(dir).into_iter().filter(|p| p.is_file()));
    }
    for contract in contracts {
        let model = model_of(&contract);
        let files = wire(
            render(&model, &options(None)).unwrap(),
            &model,
            &options(None),
        )
        .unwrap();
        let listed = &files.get("src/generated/mod.rs").unwrap().contents;
        for module in &model.modules {
            assert!(
                listed.contains(&format!("pub mod {module};")),
                "{module} in mod.rs"
            );
            assert!(
                files.get(&format!("src/generated/{module}.rs")).is_some(),
                "{module}.rs"
            );
        }
        for (path, file) in files.iter().filter(|(p, _)| p.ends_with(".rs")) {
            for (i, _) in file.contents.match_indices("generated::") {
                let module: String = file.contents[i + "generated::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    module.is_empty() || model.modules.contains(&module.as_str()),
                    "{}: {path} refers to generated::{module}, which is not generated",
                    contract.display()
                );
            }
        }
    }
}
