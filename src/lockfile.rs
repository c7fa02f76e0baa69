//! The `Cargo.lock` every generated crate ships, and the three-way merge of
//! lock files on regeneration.
//!
//! A node depends on onex-runtime and a few crates the runtime depends on
//! too, so its dependency closure is fixed per generator version. That
//! closure is `templates/Cargo.lock`: cargo's own resolution of a generated
//! crate, pruned from the workspace's `Cargo.lock` (so a node builds against
//! exactly the versions this repository tests) and refreshed by
//! `scripts/update-golden.sh`. It cannot be cut from the workspace lock at
//! build time, because cargo prunes by features: the workspace enables
//! features (serde_json's `preserve_order`, for one) that pull in packages a
//! node does not use, and `cargo build --locked` refuses a lock with extra
//! packages. [`for_manifest`] adds the node's own package to that closure,
//! so the same contract and generator version always give the same bytes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The runtime's dependency closure as cargo resolves it for a node (every
/// package but the node's own).
pub const NODE_CLOSURE: &str = include_str!("../templates/Cargo.lock");

/// One `[[package]]` of a lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `None` for path packages (the node itself, a path runtime).
    pub source: Option<String>,
    pub checksum: Option<String>,
    /// `name`, or `name version` where the lock holds several versions.
    pub dependencies: Vec<String>,
}

impl Package {
    /// Path packages are known by name alone: their version is whatever
    /// their Cargo.toml says, so a version bump is a change, not a new package.
    fn key(&self) -> (String, String, String) {
        match &self.source {
            None => (self.name.clone(), String::new(), String::new()),
            Some(s) => (self.name.clone(), self.version.clone(), s.clone()),
        }
    }

    fn cmp_cargo(&self, other: &Self) -> Ordering {
        self.name
            .cmp(&other.name)
            .then_with(|| cmp_versions(&self.version, &other.version))
            .then_with(|| self.source.cmp(&other.source))
    }
}

/// A lock file: its header lines (comments, `version = N`) and packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockfile {
    pub header: Vec<String>,
    pub packages: Vec<Package>,
}

impl Lockfile {
    /// Parses the subset of the lock format cargo writes for registry and
    /// path packages. Anything else (git sources with `[[patch.unused]]`,
    /// `[metadata]`) is refused, so a merge never drops what it does not know.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut header = Vec::new();
        let mut packages: Vec<Package> = Vec::new();
        let mut current: Option<Package> = None;
        let mut in_deps = false;
        for (i, line) in text.lines().enumerate() {
            let at = || format!("line {}", i + 1);
            if in_deps {
                if line == "]" {
                    in_deps = false;
                } else {
                    let dep = line
                        .trim()
                        .strip_suffix(',')
                        .and_then(unquote)
                        .ok_or_else(|| format!("{}: a dependency entry: {line:?}", at()))?;
                    if let Some(p) = current.as_mut() {
                        p.dependencies.push(dep);
                    }
                }
                continue;
            }
            if line == "[[package]]" {
                packages.extend(current.take());
                current = Some(Package {
                    name: String::new(),
                    version: String::new(),
                    source: None,
                    checksum: None,
                    dependencies: Vec::new(),
                });
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let Some(p) = current.as_mut() else {
                header.push(line.to_owned());
                continue;
            };
            let (key, value) = line
                .split_once(" = ")
                .ok_or_else(|| format!("{}: not understood: {line:?}", at()))?;
            if key == "dependencies" && value == "[" {
                in_deps = true;
                continue;
            }
            let value = unquote(value).ok_or_else(|| format!("{}: a string: {line:?}", at()))?;
            match key {
                "name" => p.name = value,
                "version" => p.version = value,
                "source" => p.source = Some(value),
                "checksum" => p.checksum = Some(value),
                _ => return Err(format!("{}: unknown package field {key:?}", at())),
            }
        }
        packages.extend(current);
        if let Some(p) = packages
            .iter()
            .find(|p| p.name.is_empty() || p.version.is_empty())
        {
            return Err(format!("a package without a name or version: {p:?}"));
        }
        Ok(Self { header, packages })
    }

    /// The lock file as cargo writes it: packages sorted by name, version
    /// and source, a blank line between entries.
    pub fn render(&self) -> String {
        let mut packages = self.packages.clone();
        packages.sort_by(Package::cmp_cargo);
        let mut out = String::new();
        for line in &self.header {
            out.push_str(line);
            out.push('\n');
        }
        for p in &packages {
            let _ = write!(
                out,
                "\n[[package]]\nname = \"{}\"\nversion = \"{}\"\n",
                p.name, p.version
            );
            if let Some(s) = &p.source {
                let _ = writeln!(out, "source = \"{s}\"");
            }
            if let Some(c) = &p.checksum {
                let _ = writeln!(out, "checksum = \"{c}\"");
            }
            if !p.dependencies.is_empty() {
                let mut deps = p.dependencies.clone();
                deps.sort();
                out.push_str("dependencies = [\n");
                for d in deps {
                    let _ = writeln!(out, " \"{d}\",");
                }
                out.push_str("]\n");
            }
        }
        out
    }
}

fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then(|| inner.to_owned())
}

/// Compares dotted versions numerically where both parts are numbers (so
/// 0.10 sorts after 0.9, as semver does), textually otherwise.
fn cmp_versions(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = a.split_once(['-', '+']).unwrap_or((a, ""));
    let (b_core, b_pre) = b.split_once(['-', '+']).unwrap_or((b, ""));
    let mut ai = a_core.split('.');
    let mut bi = b_core.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => break,
            (x, y) => {
                let (x, y) = (x.unwrap_or("0"), y.unwrap_or("0"));
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
    // A pre-release sorts before its release.
    match (a_pre.is_empty(), b_pre.is_empty()) {
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a_pre.cmp(b_pre),
    }
}

/// Whether `version` satisfies the caret requirement `req` (`"1"`, `"0.4"`,
/// `"2.0.3"`; a leading `^` or `=` is allowed), the form generated
/// manifests use.
fn caret_matches(req: &str, version: &str) -> bool {
    let req = req.trim().trim_start_matches(['^', '=']).trim();
    let want: Vec<u64> = req.split('.').filter_map(|p| p.parse().ok()).collect();
    let have: Vec<u64> = version
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    if want.is_empty() || have.len() < 3 {
        return false;
    }
    // The left-most non-zero part must match; parts after it only bound from below.
    let significant = want.iter().position(|&p| p != 0).unwrap_or(want.len() - 1);
    for (i, w) in want.iter().enumerate() {
        let h = have[i];
        if i <= significant {
            if h != *w {
                return false;
            }
        } else if h != *w {
            return h > *w;
        }
    }
    true
}

/// The `Cargo.lock` for a crate whose manifest is `cargo_toml`: the node
/// closure plus the crate's own package, depending on what its manifest
/// names.
pub fn for_manifest(cargo_toml: &str) -> Result<String, String> {
    let manifest: toml::Table = cargo_toml
        .parse()
        .map_err(|e| format!("the generated Cargo.toml does not parse: {e}"))?;
    let package = manifest
        .get("package")
        .and_then(|p| p.as_table())
        .ok_or_else(|| "the generated Cargo.toml has no [package]".to_owned())?;
    let field = |k: &str| {
        package
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("the generated Cargo.toml has no package.{k}"))
    };
    let (name, version) = (field("name")?, field("version")?);
    let mut lock =
        Lockfile::parse(NODE_CLOSURE).map_err(|e| format!("templates/Cargo.lock: {e}"))?;
    let mut dependencies = Vec::new();
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(deps) = manifest.get(table).and_then(|t| t.as_table()) else {
            continue;
        };
        for (key, spec) in deps {
            let (dep, req) = match spec {
                toml::Value::String(req) => (key.clone(), Some(req.as_str())),
                toml::Value::Table(t) => (
                    t.get("package")
                        .and_then(|p| p.as_str())
                        .unwrap_or(key)
                        .to_owned(),
                    t.get("version").and_then(|v| v.as_str()),
                ),
                _ => (key.clone(), None),
            };
            let candidates: Vec<&Package> =
                lock.packages.iter().filter(|p| p.name == dep).collect();
            // A dependency outside the closure (a template override adding
            // one) is left out: cargo adds it on the first build without
            // `--locked`, as after any manifest edit.
            let chosen = match (candidates.as_slice(), req) {
                ([], _) => continue,
                ([only], _) => *only,
                (many, Some(req)) => match many
                    .iter()
                    .filter(|p| caret_matches(req, &p.version))
                    .max_by(|a, b| cmp_versions(&a.version, &b.version))
                {
                    Some(p) => *p,
                    None => continue,
                },
                (_, None) => continue,
            };
            let entry = if candidates.len() > 1 {
                format!("{} {}", chosen.name, chosen.version)
            } else {
                chosen.name.clone()
            };
            if !dependencies.contains(&entry) {
                dependencies.push(entry);
            }
        }
    }
    if lock.packages.iter().any(|p| p.name == name) {
        return Err(format!(
            "the package name {name} is taken by a dependency of every node"
        ));
    }
    lock.packages.push(Package {
        name,
        version,
        source: None,
        checksum: None,
        dependencies,
    });
    Ok(lock.render())
}

/// Three-way merge of lock files, package by package: what the user's
/// cargo added or changed (new dependencies, `cargo update`) is kept, what
/// the generator changed comes in. A package both sides changed differently
/// merges its dependency list as a set and otherwise takes the user's
/// version. The result may list a package no longer needed, or lack one:
/// the next `cargo build` (without `--locked`) tidies it, as it does after
/// any manifest edit. `Err` only when a side is not a lock file.
pub fn merge(base: &str, ours: &str, theirs: &str) -> Result<String, String> {
    let base = Lockfile::parse(base).map_err(|e| format!("the base Cargo.lock: {e}"))?;
    let ours = Lockfile::parse(ours).map_err(|e| format!("your Cargo.lock: {e}"))?;
    let theirs = Lockfile::parse(theirs).map_err(|e| format!("the new Cargo.lock: {e}"))?;
    let index = |l: &Lockfile| -> BTreeMap<(String, String, String), Package> {
        l.packages.iter().map(|p| (p.key(), p.clone())).collect()
    };
    let (b, o, t) = (index(&base), index(&ours), index(&theirs));
    let keys: BTreeSet<_> = o.keys().chain(t.keys()).cloned().collect();
    let mut packages = Vec::new();
    for k in keys {
        let merged = match (b.get(&k), o.get(&k), t.get(&k)) {
            (_, Some(x), Some(y)) if x == y => Some(x.clone()),
            (Some(base), Some(x), Some(y)) if x == base => Some(y.clone()),
            (Some(base), Some(x), Some(y)) if y == base => Some(x.clone()),
            (base, Some(x), Some(y)) => Some(merge_package(base, x, y)),
            // Removed on one side and untouched on the other: removed.
            (Some(base), Some(x), None) if x == base => None,
            (Some(base), None, Some(y)) if y == base => None,
            (_, Some(x), None) => Some(x.clone()),
            (_, None, Some(y)) => Some(y.clone()),
            (_, None, None) => None,
        };
        packages.extend(merged);
    }
    let header = if ours.header == base.header {
        theirs.header
    } else {
        ours.header
    };
    Ok(Lockfile { header, packages }.render())
}

fn merge_package(base: Option<&Package>, ours: &Package, theirs: &Package) -> Package {
    let mut p = ours.clone();
    if let Some(b) = base {
        if ours.version == b.version {
            p.version = theirs.version.clone();
        }
        if ours.checksum == b.checksum {
            p.checksum = theirs.checksum.clone();
        }
    }
    let base_deps: BTreeSet<&String> = base
        .map(|b| b.dependencies.iter().collect())
        .unwrap_or_default();
    let ours_deps: BTreeSet<&String> = ours.dependencies.iter().collect();
    let theirs_deps: BTreeSet<&String> = theirs.dependencies.iter().collect();
    let deps: BTreeSet<String> = ours_deps
        .union(&theirs_deps)
        .filter(|d| {
            let removed_by_us = base_deps.contains(*d) && !ours_deps.contains(*d);
            let removed_by_them = base_deps.contains(*d) && !theirs_deps.contains(*d);
            !(removed_by_us || removed_by_them)
        })
        .map(|d| (*d).clone())
        .collect();
    p.dependencies = deps.into_iter().collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 4

[[package]]
name = \"a\"
version = \"1.0.0\"
source = \"registry+https://github.com/rust-lang/crates.io-index\"
checksum = \"aa\"
dependencies = [
 \"b 0.9.0\",
]

[[package]]
name = \"b\"
version = \"0.9.0\"
source = \"registry+https://github.com/rust-lang/crates.io-index\"
checksum = \"b9\"

[[package]]
name = \"b\"
version = \"0.10.0\"
source = \"registry+https://github.com/rust-lang/crates.io-index\"
checksum = \"b10\"

[[package]]
name = \"node\"
version = \"1.0.0\"
dependencies = [
 \"a\",
 \"b 0.10.0\",
]
";

    #[test]
    fn parse_and_render_round_trip_in_cargo_order() {
        let l = Lockfile::parse(LOCK).unwrap();
        assert_eq!(l.packages.len(), 4);
        assert_eq!(l.render(), LOCK);
        // 0.9 sorts before 0.10, as cargo sorts versions.
        let mut shuffled = l.clone();
        shuffled.packages.reverse();
        assert_eq!(shuffled.render(), LOCK);
    }

    #[test]
    fn unknown_sections_are_refused() {
        assert!(Lockfile::parse(
            "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1\"\nfoo = \"x\"\n"
        )
        .is_err());
        assert!(Lockfile::parse("[[package]]\nname = \"a\"\n").is_err());
    }

    #[test]
    fn caret_requirements() {
        assert!(caret_matches("1", "1.4.0"));
        assert!(!caret_matches("1", "2.0.0"));
        assert!(caret_matches("0.4", "0.4.41"));
        assert!(!caret_matches("0.4", "0.5.0"));
        assert!(caret_matches("2.0.3", "2.1.0"));
        assert!(!caret_matches("2.0.3", "2.0.2"));
        assert!(caret_matches("^0.10", "0.10.1"));
        assert!(!caret_matches("0.10", "0.9.0"));
    }

    #[test]
    fn the_node_package_joins_the_closure_in_order() {
        let manifest = "[package]\nname = \"node_x\"\nversion = \"2.1.0\"\n\n[dependencies]\nserde = \"1\"\ntokio = { version = \"1\", features = [\"macros\"] }\n";
        let lock = for_manifest(manifest).unwrap();
        let parsed = Lockfile::parse(&lock).unwrap();
        let node = parsed.packages.iter().find(|p| p.name == "node_x").unwrap();
        assert_eq!(node.version, "2.1.0");
        assert_eq!(node.source, None);
        assert!(node.dependencies.iter().any(|d| d == "serde"));
        assert!(node.dependencies.iter().any(|d| d == "tokio"));
        assert_eq!(parsed.render(), lock, "rendered in cargo's order");
        assert_eq!(lock, for_manifest(manifest).unwrap(), "deterministic");
        let outside = for_manifest(
            "[package]\nname = \"n\"\nversion = \"1.0.0\"\n[dependencies]\nno-such-crate = \"1\"\n",
        )
        .unwrap();
        assert!(!outside.contains("no-such-crate"), "{outside}");
        assert!(for_manifest("[package]\nname = \"n\"\n").is_err());
    }

    #[test]
    fn merging_keeps_user_packages_and_takes_generator_bumps() {
        let base = LOCK;
        // The user added a dependency `c` to their node.
        let ours = LOCK.replace(
            " \"b 0.10.0\",\n]\n",
            " \"b 0.10.0\",\n \"c\",\n]\n\n[[package]]\nname = \"c\"\nversion = \"3.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"cc\"\n",
        );
        // The generator bumped `a` and the node's version.
        let theirs = LOCK
            .replace(
                "name = \"a\"\nversion = \"1.0.0\"",
                "name = \"a\"\nversion = \"1.1.0\"",
            )
            .replace("checksum = \"aa\"", "checksum = \"ab\"")
            .replace(
                "name = \"node\"\nversion = \"1.0.0\"",
                "name = \"node\"\nversion = \"1.1.0\"",
            );
        let merged = merge(base, &ours, &theirs).unwrap();
        let l = Lockfile::parse(&merged).unwrap();
        let get = |n: &str| l.packages.iter().find(|p| p.name == n).unwrap();
        assert_eq!(get("a").version, "1.1.0");
        assert_eq!(get("a").checksum.as_deref(), Some("ab"));
        assert_eq!(get("c").version, "3.0.0");
        assert_eq!(get("node").version, "1.1.0");
        assert!(get("node").dependencies.contains(&"c".to_owned()));
        assert!(!l
            .packages
            .iter()
            .any(|p| p.name == "a" && p.version == "1.0.0"));
        // Unchanged on one side: the other side wins whole.
        assert_eq!(merge(base, base, &theirs).unwrap(), theirs);
        assert_eq!(
            merge(base, &ours, base).unwrap(),
            Lockfile::parse(&ours).unwrap().render()
        );
    }
}
