//! Virtual paths: what the client sees. A session's paths are rooted at the
//! user's home; `..` can never climb above that root. This is only the
//! client-facing view: confinement on disk is enforced by cap-std (see
//! `storage`), which also refuses symlinks that lead outside.

use std::fmt;
use std::path::PathBuf;

/// An absolute, normalised virtual path: a list of plain components.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VPath {
    parts: Vec<String>,
}

impl VPath {
    pub fn root() -> Self {
        VPath::default()
    }

    /// Resolves a client-supplied path against the current directory.
    /// Absolute paths start at the user's root; `.` and `..` are applied
    /// lexically and `..` stops at the root.
    pub fn resolve(&self, input: &str) -> VPath {
        let mut parts = if input.starts_with('/') {
            Vec::new()
        } else {
            self.parts.clone()
        };
        for part in input.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name.to_string()),
            }
        }
        VPath { parts }
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn parent(&self) -> VPath {
        let mut parts = self.parts.clone();
        parts.pop();
        VPath { parts }
    }

    /// Whether any component of the path contains `c`.
    pub fn contains(&self, c: char) -> bool {
        self.parts.iter().any(|part| part.contains(c))
    }

    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    pub fn join(&self, name: &str) -> VPath {
        self.resolve(name)
    }

    /// The path relative to the user's home directory, for cap-std
    /// (`.` for the root).
    pub fn relative(&self) -> PathBuf {
        if self.parts.is_empty() {
            PathBuf::from(".")
        } else {
            self.parts.iter().collect()
        }
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for p in &self.parts {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_never_climbs_above_root() {
        let cwd = VPath::root().resolve("a/b");
        assert_eq!(
            cwd.resolve("../../../../etc/passwd").to_string(),
            "/etc/passwd"
        );
        assert_eq!(cwd.resolve("/x/./y//z/..").to_string(), "/x/y");
        assert_eq!(cwd.resolve("..").to_string(), "/a");
        assert_eq!(VPath::root().resolve("..").relative(), PathBuf::from("."));
    }

    #[test]
    fn names_are_kept_verbatim() {
        // No decoding: "%2e%2e" is a file name, not "..".
        let p = VPath::root().resolve("%2e%2e/..\\x");
        assert_eq!(p.relative(), PathBuf::from("%2e%2e/..\\x"));
    }
}
