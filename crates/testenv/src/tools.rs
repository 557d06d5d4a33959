//! Where the pinned control-plane binaries live.
//!
//! `make tools` (e2e/tools/build.sh) builds them into a cache directory keyed
//! by the versions in e2e/tools/VERSIONS; this module computes the same path
//! from the same file, so the two cannot drift apart.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// e2e/tools/VERSIONS, the single source of truth for tool versions.
const VERSIONS: &str = include_str!("../../../e2e/tools/VERSIONS");

/// Overrides the directory holding the binaries.
pub const TOOLS_DIR_ENV: &str = "KUBEFTP_TOOLS_DIR";

/// The pinned version of `name` (e.g. `KUBERNETES_VERSION`) from VERSIONS.
pub fn version(name: &str) -> Option<&'static str> {
    VERSIONS
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
}

/// The cache key of this set of versions, as build.sh spells it.
pub fn version_key() -> String {
    let get = |name| version(name).unwrap_or("unknown");
    format!(
        "k8s-{}_etcd-{}_helm-{}",
        get("KUBERNETES_VERSION"),
        get("ETCD_VERSION"),
        get("HELM_VERSION")
    )
}

/// The binary directory for the given environment values, mirroring
/// build.sh: `$KUBEFTP_TOOLS_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/kubeftp/tools/<key>/bin`. Empty values
/// count as unset, as with bash's `${VAR:-default}`.
pub fn tools_dir_from(
    tools_dir: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let set = |value: Option<OsString>| value.filter(|v| !v.is_empty());
    if let Some(dir) = set(tools_dir) {
        return dir.into();
    }
    let cache = match set(xdg_cache_home) {
        Some(cache) => PathBuf::from(cache),
        None => PathBuf::from(set(home).unwrap_or_else(|| "/".into())).join(".cache"),
    };
    cache.join("kubeftp/tools").join(version_key()).join("bin")
}

/// The binary directory for this process's environment.
pub fn tools_dir() -> PathBuf {
    tools_dir_from(
        std::env::var_os(TOOLS_DIR_ENV),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The path of binary `name` in `dir`, or an error that says to run `make tools`.
pub fn binary_in(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::ToolMissing {
            binary: name.to_owned(),
            dir: dir.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_pinned() {
        assert!(version("KUBERNETES_VERSION").unwrap().starts_with("v1.34."));
        assert!(version("ETCD_VERSION").unwrap().starts_with("v3.5."));
        assert!(version("HELM_VERSION").unwrap().starts_with("v3."));
        assert_eq!(version("NO_SUCH_TOOL"), None);
    }

    #[test]
    fn override_wins_and_empty_counts_as_unset() {
        let dir = tools_dir_from(Some("/x".into()), Some("/c".into()), Some("/h".into()));
        assert_eq!(dir, PathBuf::from("/x"));
        let dir = tools_dir_from(Some("".into()), Some("".into()), Some("/h".into()));
        assert_eq!(
            dir,
            Path::new("/h/.cache/kubeftp/tools")
                .join(version_key())
                .join("bin")
        );
    }

    /// The Makefile's build.sh and this crate must agree on the directory.
    #[test]
    fn agrees_with_build_script() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/tools/build.sh");
        for (tools, xdg) in [(None, None), (None, Some("/xdg")), (Some("/t/bin"), None)] {
            let mut cmd = std::process::Command::new("bash");
            cmd.arg(&script)
                .arg("--print")
                .env_clear()
                .env("HOME", "/home/someone");
            cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
            if let Some(t) = tools {
                cmd.env(TOOLS_DIR_ENV, t);
            }
            if let Some(x) = xdg {
                cmd.env("XDG_CACHE_HOME", x);
            }
            let out = cmd.output().expect("run build.sh --print");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed = String::from_utf8(out.stdout).unwrap();
            let expected = tools_dir_from(
                tools.map(Into::into),
                xdg.map(Into::into),
                Some("/home/someone".into()),
            );
            assert_eq!(PathBuf::from(printed.trim()), expected);
        }
    }

    #[test]
    fn missing_binary_names_make_tools() {
        let err = binary_in(Path::new("/nonexistent"), "etcd").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`make tools`"), "{message}");
        assert!(message.contains("etcd"), "{message}");
    }
}
