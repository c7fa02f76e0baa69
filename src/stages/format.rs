//! The one formatter pass: every generated `.rs` file goes through rustfmt.
//!
//! Templates lay code out roughly; rustfmt makes it exactly what `cargo fmt`
//! would, so generated crates pass `cargo fmt --check` as they are. All files
//! of all crates in one generation are formatted together, by one rustfmt
//! process per core (one start-up per core instead of one per file), with a
//! pinned configuration so that a `rustfmt.toml` around the output folder
//! cannot change the result.
//!
//! rustfmt is most of the cost of a generation, and its output is a function
//! of its version, its configuration and its input, so results are kept in a
//! content-addressed cache (`$ONEX_GEN_CACHE`, else `$XDG_CACHE_HOME/onex-gen`,
//! else `~/.cache/onex-gen`, under `rustfmt-v2/`). A cache that cannot be read or
//! written is simply not used; `ONEX_GEN_CACHE=off` turns it off.
//!
//! What comes out of the cache becomes generated code, so the cache cannot be
//! poisoned from outside: its folder is private (0700, owned by the user; a
//! folder that is a symlink or someone else's is not used, and one that was
//! not private has its entries dropped before it is made private), entries
//! are regular files read without following symlinks, and each entry carries
//! its key and the sha256 of its content, checked on every read (an entry
//! that does not match is ignored and rustfmt runs again).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::GenError;
use crate::fileset::FileSet;

/// Settings passed to rustfmt: the defaults `cargo fmt` uses in a crate
/// without a rustfmt.toml, written out so they cannot drift.
const RUSTFMT_CONFIG: &str =
    "edition = \"2021\"\nstyle_edition = \"2021\"\nnewline_style = \"Unix\"\n";

/// Formats the Rust files of every file set, running rustfmt only for
/// contents the cache has not seen.
pub fn format_filesets(sets: &mut [&mut FileSet]) -> Result<(), GenError> {
    format_with_cache(sets, cache_root())
}

/// [`format_filesets`] with the cache under `cache_root` (`None`: no cache).
fn format_with_cache(
    sets: &mut [&mut FileSet],
    cache_root: Option<PathBuf>,
) -> Result<(), GenError> {
    let rust_files: Vec<(usize, String)> = sets
        .iter()
        .enumerate()
        .flat_map(|(i, set)| {
            set.iter()
                .filter(|(p, _)| is_formatted(p))
                .map(move |(p, _)| (i, p.clone()))
        })
        .collect();
    if rust_files.is_empty() {
        return Ok(());
    }
    let cache = Cache::open(cache_root)?;
    let mut missing: Vec<(usize, String, String)> = Vec::new();
    for (i, rel) in rust_files {
        let contents = &sets[i].get(&rel).expect("listed above").contents;
        let key = cache.key(contents);
        match cache.get(&key) {
            Some(formatted) => replace(sets[i], &rel, formatted),
            None => missing.push((i, rel, key)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }

    let dir = tempfile::Builder::new()
        .prefix("onex-gen-fmt-")
        .tempdir()
        .map_err(|e| GenError::io(std::env::temp_dir(), e))?;
    let config = dir.path().join("rustfmt.toml");
    std::fs::write(&config, RUSTFMT_CONFIG).map_err(|e| GenError::io(&config, e))?;
    // rustfmt follows `mod` items, so every crate with a file to format is
    // laid out whole (cached files included) under its own folder.
    let mut laid_out = std::collections::BTreeSet::new();
    for (i, _, _) in &missing {
        if !laid_out.insert(*i) {
            continue;
        }
        for (rel, file) in sets[*i].iter().filter(|(p, _)| is_formatted(p)) {
            let path = dir.path().join(i.to_string()).join(rel);
            std::fs::create_dir_all(path.parent().expect("joined above"))
                .map_err(|e| GenError::io(dir.path(), e))?;
            std::fs::write(&path, &file.contents).map_err(|e| GenError::io(&path, e))?;
        }
    }
    let paths: Vec<PathBuf> = missing
        .iter()
        .map(|(i, rel, _)| dir.path().join(i.to_string()).join(rel))
        .collect();

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let per_process = paths.len().div_ceil(cores).max(16);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(per_process)
            .map(|chunk| scope.spawn(|| run_rustfmt(&config, chunk)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(GenError::Format("a rustfmt worker panicked".into())))
            })
            .collect::<Result<Vec<()>, GenError>>()
    })?;

    for ((i, rel, key), path) in missing.iter().zip(&paths) {
        let formatted = std::fs::read_to_string(path).map_err(|e| GenError::io(path, e))?;
        cache.put(key, &formatted);
        replace(sets[*i], rel, formatted);
    }
    Ok(())
}

fn replace(set: &mut FileSet, rel: &str, contents: String) {
    let owner = set.get(rel).expect("listed above").owner;
    set.insert(rel, owner, contents);
}

/// Vendored runtime sources are already formatted and are copied verbatim.
fn is_formatted(path: &str) -> bool {
    path.ends_with(".rs") && !path.starts_with("vendor/")
}

fn rustfmt_program() -> std::ffi::OsString {
    std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into())
}

fn run_rustfmt(config: &Path, files: &[PathBuf]) -> Result<(), GenError> {
    let rustfmt = rustfmt_program();
    let output = Command::new(&rustfmt)
        .arg("--edition")
        .arg("2021")
        .arg("--config-path")
        .arg(config)
        .args(files)
        .output()
        .map_err(|e| not_runnable(&rustfmt, e))?;
    if !output.status.success() {
        return Err(GenError::Format(format!(
            "rustfmt rejected generated code (a template defect):\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

fn not_runnable(rustfmt: &std::ffi::OsStr, e: std::io::Error) -> GenError {
    GenError::Format(format!(
        "could not run {}: {e} (install it with `rustup component add rustfmt`, or set RUSTFMT)",
        Path::new(rustfmt).display()
    ))
}

/// `rustfmt --version`, once per process: part of every cache key, so a
/// toolchain change never serves formatting from another rustfmt.
pub fn rustfmt_version() -> Result<&'static str, GenError> {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    let version = VERSION.get_or_init(|| {
        let rustfmt = rustfmt_program();
        let out = Command::new(&rustfmt)
            .arg("--version")
            .output()
            .map_err(|e| not_runnable(&rustfmt, e).to_string())?;
        if !out.status.success() {
            return Err(format!(
                "`rustfmt --version` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    version.as_deref().map_err(|e| GenError::Format(e.clone()))
}

/// Formatted outputs keyed by sha256(rustfmt version, configuration, input).
struct Cache {
    dir: Option<PathBuf>,
    salt: String,
}

/// The cache's folder under the cache root. Entries of the unchecked
/// format that earlier versions wrote under `rustfmt/` are never read.
const CACHE_FOLDER: &str = "rustfmt-v2";

/// First line of every cache entry; then the key, the sha256 of the
/// content, and the content.
const ENTRY_HEADER: &str = "onex-gen rustfmt cache entry v1";

impl Cache {
    fn open(root: Option<PathBuf>) -> Result<Self, GenError> {
        let salt = format!("{}\0{RUSTFMT_CONFIG}\0", rustfmt_version()?);
        let dir = root
            .map(|d| d.join(CACHE_FOLDER))
            .filter(|d| private_dir(d));
        Ok(Self { dir, salt })
    }

    fn key(&self, contents: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        h.update(contents.as_bytes());
        hex::encode(h.finalize())
    }

    /// The entry for `key`, if it is intact.
    fn get(&self, key: &str) -> Option<String> {
        let text = read_no_follow(&self.dir.as_ref()?.join(key))?;
        let rest = text.strip_prefix(ENTRY_HEADER)?.strip_prefix('\n')?;
        let (stored_key, rest) = rest.split_once('\n')?;
        let (digest, content) = rest.split_once('\n')?;
        (stored_key == key && digest == hex::encode(Sha256::digest(content.as_bytes())))
            .then(|| content.to_owned())
    }

    /// Best effort: written to a temporary name (0600) then renamed, so a
    /// reader never sees half an entry.
    fn put(&self, key: &str, formatted: &str) {
        let Some(dir) = &self.dir else { return };
        let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
            return;
        };
        let digest = hex::encode(Sha256::digest(formatted.as_bytes()));
        let entry = format!("{ENTRY_HEADER}\n{key}\n{digest}\n{formatted}");
        if std::io::Write::write_all(&mut tmp, entry.as_bytes()).is_ok() {
            let _ = tmp.persist(dir.join(key));
        }
    }
}

/// Makes `dir` a private folder of this user (0700) and says whether it can
/// be used: not a symlink, owned by this user. A folder of this user that
/// was readable or writable by others loses its entries first.
#[cfg(unix)]
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return false;
    }
    if meta.mode() & 0o077 != 0 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).is_err() {
            return false;
        }
    }
    true
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).is_ok()
}

/// The text of a regular file, never through a symlink.
fn read_no_follow(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text)
}

fn cache_root() -> Option<PathBuf> {
    match std::env::var_os("ONEX_GEN_CACHE") {
        Some(v) if v == "off" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("onex-gen")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileset::Owner;

    #[test]
    fn code_comes_out_as_cargo_fmt_would_write_it_with_or_without_the_cache() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Some(dir.path().to_path_buf());
        let mut set = FileSet::new();
        set.insert("src/lib.rs", Owner::Generated, "pub fn f( )->u8{1}\n");
        set.insert("vendor/x/src/lib.rs", Owner::Generated, "pub fn g( ){}\n");
        let mut again = set.clone();
        format_with_cache(&mut [&mut set], root.clone()).expect("formats");
        assert_eq!(
            set.get("src/lib.rs").unwrap().contents,
            "pub fn f() -> u8 {\n    1\n}\n"
        );
        assert_eq!(
            set.get("vendor/x/src/lib.rs").unwrap().contents,
            "pub fn g( ){}\n"
        );
        let cached = std::fs::read_dir(dir.path().join(CACHE_FOLDER))
            .expect("cache")
            .count();
        assert_eq!(cached, 1, "one formatted file is cached");
        format_with_cache(&mut [&mut again], root).expect("formats from the cache");
        assert_eq!(again, set);
    }

    #[cfg(unix)]
    #[test]
    fn the_cache_is_private_and_a_poisoned_entry_is_never_used() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Some(dir.path().to_path_buf());
        let cache_dir = dir.path().join(CACHE_FOLDER);
        let input = "pub fn f( )->u8{1}\n";
        let expected = "pub fn f() -> u8 {\n    1\n}\n";
        let format = |root: Option<PathBuf>| {
            let mut set = FileSet::new();
            set.insert("src/lib.rs", Owner::Generated, input);
            format_with_cache(&mut [&mut set], root).expect("formats");
            set.get("src/lib.rs").unwrap().contents.clone()
        };
        assert_eq!(format(root.clone()), expected);
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        let entry = std::fs::read_dir(&cache_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let key = entry.file_name().unwrap().to_string_lossy().into_owned();
        let evil = "pub fn f() -> u8 {\n    std::process::exit(1)\n}\n";

        // Content replaced, digest left as it was; then a digest that matches
        // the new content but a key of another entry; then no header at all.
        let intact = std::fs::read_to_string(&entry).unwrap();
        let tampered = [
            intact.replace(expected, evil),
            format!(
                "{ENTRY_HEADER}\n{}\n{}\n{evil}",
                "0".repeat(64),
                hex::encode(Sha256::digest(evil.as_bytes()))
            ),
            evil.to_owned(),
        ];
        for poison in tampered {
            std::fs::write(&entry, &poison).unwrap();
            assert_eq!(format(root.clone()), expected, "served {poison:?}");
        }
        // A symlink in place of an entry is not followed.
        let outside = dir.path().join("outside.rs");
        let forged = format!(
            "{ENTRY_HEADER}\n{key}\n{}\n{evil}",
            hex::encode(Sha256::digest(evil.as_bytes()))
        );
        std::fs::write(&outside, &forged).unwrap();
        std::fs::remove_file(&entry).unwrap();
        std::os::unix::fs::symlink(&outside, &entry).unwrap();
        assert_eq!(format(root.clone()), expected);

        // A folder others could write to loses its entries and becomes private.
        std::fs::remove_file(&entry).unwrap();
        std::fs::write(&entry, &forged).unwrap();
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(format(root.clone()), expected);
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");

        // A cache folder that is a symlink is not used at all.
        let elsewhere = tempfile::tempdir().expect("temp dir");
        let linked = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(elsewhere.path(), linked.path().join(CACHE_FOLDER)).unwrap();
        assert_eq!(format(Some(linked.path().to_path_buf())), expected);
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
