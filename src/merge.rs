//! Three-way merge of the files a user may edit (stage 6 and `check`).
//!
//! onex-gen keeps the text it generated last (the base, in `.onex-gen/base/`)
//! and merges, per file, the user's edits (base -> disk) with the
//! generator's changes (base -> new), as Copier does with git but without
//! it: line-based diff3 from the `diffy` crate for text, package-based for
//! `Cargo.lock` ([`crate::lockfile::merge`]).

/// How the two sides of a merge are named in conflict markers.
pub const OURS_LABEL: &str = "yours (on disk)";
pub const BASE_LABEL: &str = "base (what onex-gen generated last)";
pub const THEIRS_LABEL: &str = "onex-gen (generated now)";

/// The outcome of merging one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// Both sides' changes, without conflict.
    Clean(String),
    /// Both sides changed the same lines: the file with git-style conflict
    /// markers (diff3 style: yours, the base, onex-gen's) around each conflict.
    Conflict(String),
}

/// Merges `ours` (on disk) and `theirs` (generated now) from their common
/// `base` (generated last time). `path` picks the merge: lock files merge
/// package by package, everything else line by line.
pub fn merge(path: &str, base: &str, ours: &str, theirs: &str) -> Merged {
    if path == "Cargo.lock" || path.ends_with("/Cargo.lock") {
        if let Ok(text) = crate::lockfile::merge(base, ours, theirs) {
            return Merged::Clean(text);
        }
    }
    let mut opts = diffy::MergeOptions::new();
    opts.set_conflict_style(diffy::ConflictStyle::Diff3)
        .set_incomplete_hunk_style(diffy::IncompleteHunkStyle::Git);
    match opts.merge(base, ours, theirs) {
        Ok(text) => Merged::Clean(text),
        Err(text) => Merged::Conflict(relabel(&text)),
    }
}

/// diffy names the sides `ours`, `original` and `theirs`; say whose they are.
fn relabel(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let label = match body {
            "<<<<<<< ours" => Some(("<<<<<<< ", OURS_LABEL)),
            "||||||| original" => Some(("||||||| ", BASE_LABEL)),
            ">>>>>>> theirs" => Some((">>>>>>> ", THEIRS_LABEL)),
            _ => None,
        };
        match label {
            Some((marker, name)) => {
                out.push_str(marker);
                out.push_str(name);
            }
            None => out.push_str(body),
        }
        out.push_str(end);
    }
    out
}

/// The conflicting regions of a conflicted merge, each with `context` lines
/// around it and its first line number, for an error message.
pub fn conflict_excerpts(conflicted: &str, context: usize) -> Vec<(usize, String)> {
    let lines: Vec<&str> = conflicted.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with("<<<<<<< ") {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && !lines[i].starts_with(">>>>>>> ") {
            i += 1;
        }
        let from = start.saturating_sub(context);
        let to = (i + 1 + context).min(lines.len());
        out.push((from + 1, lines[from..to].join("\n")));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[dependencies]\nserde = \"1\"\ntokio = \"1\"\n\n[workspace]\n";

    #[test]
    fn edits_on_different_lines_merge() {
        let ours = BASE.replace("tokio = \"1\"\n", "tokio = \"1\"\nreqwest = \"0.12\"\n");
        let theirs = BASE.replace(
            "serde = \"1\"",
            "serde = { version = \"1\", features = [\"derive\"] }",
        );
        let Merged::Clean(m) = merge("Cargo.toml", BASE, &ours, &theirs) else {
            panic!("a clean merge")
        };
        assert!(m.contains("reqwest = \"0.12\""), "{m}");
        assert!(m.contains("features = [\"derive\"]"), "{m}");
    }

    #[test]
    fn the_same_change_on_both_sides_is_no_conflict() {
        let both = BASE.replace("tokio = \"1\"", "tokio = \"1.40\"");
        assert_eq!(
            merge("Cargo.toml", BASE, &both, &both),
            Merged::Clean(both.clone())
        );
    }

    #[test]
    fn a_conflict_shows_both_sides_and_the_base_with_their_names() {
        let ours = BASE.replace("tokio = \"1\"", "tokio = \"1.38\"");
        let theirs = BASE.replace("tokio = \"1\"", "tokio = \"1.40\"");
        let Merged::Conflict(text) = merge("Cargo.toml", BASE, &ours, &theirs) else {
            panic!("a conflict")
        };
        assert!(
            text.contains(&format!(
                "<<<<<<< {OURS_LABEL}\ntokio = \"1.38\"\n||||||| {BASE_LABEL}\ntokio = \"1\"\n=======\ntokio = \"1.40\"\n>>>>>>> {THEIRS_LABEL}\n"
            )),
            "{text}"
        );
        let excerpts = conflict_excerpts(&text, 1);
        assert_eq!(excerpts.len(), 1);
        assert_eq!(excerpts[0].0, 2, "{excerpts:?}");
        assert!(excerpts[0].1.starts_with("serde = \"1\"\n<<<<<<< "));
    }
}
