//! Upload temporaries left by a server that stopped mid-upload (killed,
//! out of memory, the node gone). A running server removes its own when an
//! upload fails; these it never saw fail. They are hidden from clients,
//! who therefore cannot delete them, so the server sweeps them away: at
//! start, and once more when any upload that was running at the start has
//! gone quiet for longer than the data timeout (which aborts it).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::storage::UPLOAD_PREFIX;

/// Sweeps `root` now and again after `stale`: removes upload temporaries
/// not written to for longer than `stale`.
pub async fn sweep(root: PathBuf, stale: Duration) {
    for wait in [Duration::ZERO, stale] {
        tokio::time::sleep(wait).await;
        let root = root.clone();
        match tokio::task::spawn_blocking(move || remove_stale(&root, stale)).await {
            Ok(0) | Err(_) => {}
            Ok(removed) => {
                tracing::info!(removed, "removed uploads left unfinished by an earlier run")
            }
        }
    }
}

/// Removes the upload temporaries under `root` last written more than
/// `stale` ago; returns how many. Links are not followed.
fn remove_stale(root: &Path, stale: Duration) -> usize {
    let now = SystemTime::now();
    let is_stale = |modified: SystemTime| now.duration_since(modified).is_ok_and(|age| age > stale);
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let leftover = kind.is_file()
                && entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(UPLOAD_PREFIX)
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(is_stale);
            if leftover && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only stale temporaries go, at any depth; fresh ones (an upload
    /// running now), other files, and what links lead to stay.
    #[test]
    fn removes_only_stale_upload_temporaries() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let day_ago = SystemTime::now() - Duration::from_secs(86_400);
        let make = |path: &Path, old: bool| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = std::fs::File::create(path).unwrap();
            if old {
                file.set_modified(day_ago).unwrap();
            }
        };
        let stale = root.path().join(format!("a/b/{UPLOAD_PREFIX}1"));
        let fresh = root.path().join(format!("a/{UPLOAD_PREFIX}2"));
        let kept = root.path().join("a/old-but-mine");
        let beyond = outside.path().join(format!("{UPLOAD_PREFIX}3"));
        make(&stale, true);
        make(&fresh, false);
        make(&kept, true);
        make(&beyond, true);
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();

        assert_eq!(remove_stale(root.path(), Duration::from_secs(3600)), 1);
        assert!(!stale.exists());
        assert!(fresh.exists() && kept.exists() && beyond.exists());
    }
}
