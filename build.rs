//! Embeds the onex-runtime sources so that `onex-gen new` can vendor them into
//! generated crates, and lists the templates so they are embedded too.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let runtime = root.join("onex-runtime");
    let mut runtime_files = vec![runtime.join("Cargo.toml")];
    collect(&runtime.join("src"), &mut runtime_files);
    write_table(&out.join("vendored_runtime.rs"), &runtime, &runtime_files);

    let templates = root.join("templates");
    let mut template_files = Vec::new();
    collect(&templates, &mut template_files);
    write_table(&out.join("templates.rs"), &templates, &template_files);

    println!("cargo:rerun-if-changed=onex-runtime/Cargo.toml");
    println!("cargo:rerun-if-changed=onex-runtime/src");
    println!("cargo:rerun-if-changed=templates");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Writes `&[(relative path, include_str!(absolute path))]`, sorted by path.
fn write_table(dest: &Path, base: &Path, files: &[PathBuf]) {
    let mut rows: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let rel = f
                .strip_prefix(base)
                .expect("collected under base")
                .to_string_lossy()
                .replace('\\', "/");
            (rel, f.display().to_string())
        })
        .collect();
    rows.sort();
    let mut code = String::from("&[\n");
    for (rel, abs) in rows {
        code.push_str(&format!("    ({rel:?}, include_str!({abs:?})),\n"));
    }
    code.push_str("]\n");
    fs::write(dest, code).expect("OUT_DIR is writable");
}
