//! `alcf-host plugin new`: a plugin project that builds anywhere, from files compiled into the
//! binary. Each project carries its own copy of the SDK and of the WIT, so it needs neither this
//! repository nor a package registry for the SDK: a user on an Aurora login node gets a project
//! that builds with the tools there.
//!
//! The templates are the shipped example plugins themselves (`plugins/random`, `plugins/random_py`),
//! so the template is always code that CI builds and runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One file compiled into the binary: its path inside the tree it was taken from, and its text.
pub(crate) struct Embedded {
    pub path: &'static str,
    pub text: &'static str,
}

macro_rules! embed {
    ($root:literal; $($path:literal),* $(,)?) => {
        &[$(Embedded { path: $path, text: include_str!(concat!($root, $path)) }),*]
    };
}

/// The ABI every project is built against.
pub(crate) const WIT: &str = include_str!("../../../../wit/hpo.wit");

/// The Rust SDK's sources (`plugins/sdk`), except `src/testfns.rs`: that module links the host's
/// test functions, which only exist in this repository.
const RUST_SDK: &[Embedded] = embed!("../../../../plugins/sdk/";
    "src/agent.rs", "src/history.rs", "src/json.rs", "src/lib.rs", "src/llm/mod.rs", "src/llm/proposals.rs",
    "src/logging.rs", "src/native.rs", "src/normal.rs", "src/pruning.rs", "src/qmc.rs", "src/rng.rs",
    "src/space.rs",
    "src/types.rs",
);

/// The Python SDK's package (`plugins/sdk-python/alcf_strategy`).
pub(crate) const PYTHON_SDK: &[Embedded] = embed!("../../../../plugins/sdk-python/";
    "alcf_strategy/__init__.py", "alcf_strategy/_display.py", "alcf_strategy/errors.py",
    "alcf_strategy/export.py", "alcf_strategy/history.py", "alcf_strategy/llm.py",
    "alcf_strategy/log.py", "alcf_strategy/native.py", "alcf_strategy/options.py",
    "alcf_strategy/rng.py", "alcf_strategy/space.py", "alcf_strategy/storage.py",
    "alcf_strategy/strategy.py", "alcf_strategy/types.py",
);

const RUST_TEMPLATE: &str = include_str!("../../../../plugins/random/src/lib.rs");
const PYTHON_TEMPLATE: &str = include_str!("../../../../plugins/random_py/app.py");
const PYTHON_TEMPLATE_TEST: &str = include_str!("../../../../plugins/random_py/test_app.py");
/// The name the Python template declares, replaced by the new plugin's name.
const PYTHON_TEMPLATE_NAME: &str = "name = \"random_py\"";

/// The language of a plugin project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Python,
    Rust,
}

/// What `plugin new` was asked for.
pub struct NewOptions {
    pub name: String,
    pub lang: Lang,
    /// The directory that will hold the project directory `NAME` (default: the current one).
    pub dir: Option<PathBuf>,
    pub force: bool,
}

/// A plugin name: it names the project directory, the crate or module and the `.wasm` file.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64;
    if !ok {
        bail!(
            "plugin name `{name}` is not valid: use lower-case letters, digits and `_`, starting with a letter \
             (e.g. `my_strategy`); it names the directory, the module and the .wasm file"
        );
    }
    Ok(())
}

/// The files of a new project, as (path inside the project, text).
fn project_files(name: &str, lang: Lang) -> Vec<(String, String)> {
    let mut files = vec![(".gitignore".to_string(), "/target\n/.venv\n/.alcf-build\n*.wasm\n".to_string())];
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), rust_manifest(name)));
            files.push(("src/lib.rs".into(), RUST_TEMPLATE.to_string()));
            files.push(("README.md".into(), readme(name, lang)));
            files.push(("vendor/alcf-plugin-sdk/Cargo.toml".into(), rust_sdk_manifest()));
            files.push(("vendor/alcf-plugin-sdk/wit/hpo.wit".into(), WIT.to_string()));
            for f in RUST_SDK {
                files.push((format!("vendor/alcf-plugin-sdk/{}", f.path), f.text.to_string()));
            }
        }
        Lang::Python => {
            files.push(("app.py".into(), PYTHON_TEMPLATE.replace(PYTHON_TEMPLATE_NAME, &format!("name = \"{name}\""))));
            files.push(("test_app.py".into(), PYTHON_TEMPLATE_TEST.to_string()));
            files.push(("README.md".into(), readme(name, lang)));
            files.push(("wit/hpo.wit".into(), WIT.to_string()));
            for f in PYTHON_SDK {
                files.push((f.path.to_string(), f.text.to_string()));
            }
        }
    }
    files
}

fn rust_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# cdylib: the .wasm component; rlib: native tests (`cargo test`) and benchmarks.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The guest SDK, vendored with its WIT by `alcf-host plugin new` (alcf:hpo@{abi}).
alcf-plugin-sdk = {{ path = "vendor/alcf-plugin-sdk" }}

[profile.release]
# Symbol names stay (for wasm backtraces); line tables of std would triple the size.
strip = "debuginfo"

# A project of its own, even when created inside another Cargo workspace.
[workspace]
"#,
        abi = alcf_host::plugin::ABI_VERSION
    )
}

fn rust_sdk_manifest() -> String {
    format!(
        r#"[package]
name = "alcf-plugin-sdk"
description = "Guest SDK for alcf-host strategy plugins (vendored by `alcf-host plugin new`)"
version = "{version}"
edition = "2024"
license = "MIT OR Apache-2.0"

[dependencies]
wit-bindgen = "0.63"

[lints.rust]
# The repository's SDK has a `testfns` feature that links the host's test functions; this copy
# does not carry that module.
unexpected_cfgs = {{ level = "warn", check-cfg = ['cfg(feature, values("testfns"))'] }}
"#,
        version = env!("CARGO_PKG_VERSION")
    )
}

fn readme(name: &str, lang: Lang) -> String {
    let (test, edit) = match lang {
        Lang::Rust => ("cargo test", "src/lib.rs"),
        Lang::Python => ("python3 -m unittest -v", "app.py"),
    };
    let sdk = match lang {
        Lang::Rust => "vendor/alcf-plugin-sdk (the Rust SDK and its WIT)",
        Lang::Python => "alcf_strategy/ (the Python SDK) and wit/hpo.wit",
    };
    format!(
        "# {name}\n\nAn alcf-host strategy plugin ({lang:?}), made by `alcf-host plugin new`. It starts as uniform\n\
         random search; change `{edit}`.\n\n```sh\n{test}                                   # native tests, no WebAssembly\n\
         alcf-host plugin build .                  # -> {name}.wasm (checked: it loads in this host)\n\
         alcf-host run --strategy {name}.wasm --objective bench:branin --trials 50\n```\n\n\
         The project carries {sdk}, so it builds without the alcf-host repository.\n\
         The guide: docs/plugin-guide.md in the alcf-host repository.\n"
    )
}

/// `alcf-host plugin new NAME --lang python|rust`: writes the project, says what to run next.
pub fn new_project(opts: NewOptions) -> anyhow::Result<PathBuf> {
    check_name(&opts.name)?;
    let parent = opts.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = parent.join(&opts.name);
    if root.exists() && !opts.force && std::fs::read_dir(&root).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!(
            "{} exists and is not empty: pick another name or --dir, or pass --force to overwrite its files",
            root.display()
        );
    }
    let files = project_files(&opts.name, opts.lang);
    for (path, text) in &files {
        write_file(&root.join(path), text)?;
    }
    crate::out!("wrote {} ({} files, {:?} plugin `{}`)", root.display(), files.len(), opts.lang, opts.name);
    let test = match opts.lang {
        Lang::Rust => "cargo test",
        Lang::Python => "python3 -m unittest -v",
    };
    crate::out!("next: cd {} && {test} && alcf-host plugin build .", root.display());
    Ok(root)
}

pub(crate) fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes the embedded Python SDK under `dir` (for building a project that does not carry one).
pub(crate) fn write_python_sdk(dir: &Path) -> anyhow::Result<()> {
    for f in PYTHON_SDK {
        write_file(&dir.join(f.path), f.text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    /// Every file of `dir` (recursively, relative to `root`) with the given extension.
    fn listing(root: &Path, dir: &str, ext: &str) -> Vec<String> {
        fn walk(root: &Path, d: &Path, ext: &str, out: &mut Vec<String>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    if p.file_name().unwrap() != "__pycache__" {
                        walk(root, &p, ext, out);
                    }
                } else if p.extension().is_some_and(|x| x == ext) {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(root, &root.join(dir), ext, &mut out);
        out.sort();
        out
    }

    #[test]
    fn the_embedded_sdks_are_whole() {
        let rust_root = repo().join("plugins/sdk");
        let mut want = listing(&rust_root, "src", "rs");
        want.retain(|p| p != "src/testfns.rs");
        let mut have: Vec<_> = RUST_SDK.iter().map(|f| f.path.to_string()).collect();
        have.sort();
        assert_eq!(have, want, "a file of plugins/sdk/src is missing from RUST_SDK (or one is gone)");

        let py_root = repo().join("plugins/sdk-python");
        let want = listing(&py_root, "alcf_strategy", "py");
        let mut have: Vec<_> = PYTHON_SDK.iter().map(|f| f.path.to_string()).collect();
        have.sort();
        assert_eq!(have, want, "a file of plugins/sdk-python/alcf_strategy is missing from PYTHON_SDK");
    }

    #[test]
    fn every_copy_of_the_wit_is_the_same() {
        // The Rust SDK's copy; the Python projects get WIT itself, written by `plugin new`.
        let copy = "plugins/sdk/wit/hpo.wit";
        let text = std::fs::read_to_string(repo().join(copy)).unwrap();
        assert!(text == WIT, "{copy} differs from wit/hpo.wit: copy wit/hpo.wit over it");
    }

    #[test]
    fn templates_are_renamed() {
        let files = project_files("my_search", Lang::Python);
        let app = &files.iter().find(|(p, _)| p == "app.py").unwrap().1;
        assert!(app.contains("name = \"my_search\""), "the Python template's name was not replaced");
        let files = project_files("my_search", Lang::Rust);
        let cargo = &files.iter().find(|(p, _)| p == "Cargo.toml").unwrap().1;
        assert!(cargo.contains("name = \"my_search\"") && cargo.contains("[workspace]"));
        assert!(files.iter().any(|(p, _)| p == "vendor/alcf-plugin-sdk/wit/hpo.wit"));
        // The Rust template names itself after its package, so no text needs replacing.
        assert!(RUST_TEMPLATE.contains("env!(\"CARGO_PKG_NAME\")"));
    }

    #[test]
    fn names_are_checked() {
        for ok in ["a", "my_search", "cma2"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "My", "2x", "a-b", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
