//! Watching small files that Kubernetes updates in place (ConfigMap and
//! Secret mounts swap a symlink, which defeats inotify on the file itself),
//! by polling: read, compare with the last content, parse on change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

/// How often watched files are re-read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Parses `path` now (an error here is returned, so bad startup input fails
/// fast) and then whenever its content changes. `parse` receives `None` when
/// the file does not exist. A later parse error is logged and the previous
/// value kept: a bad edit never takes working settings away.
pub fn watch_file<T, E>(
    path: &Path,
    parse: impl Fn(Option<&[u8]>) -> Result<T, E> + Send + 'static,
) -> Result<watch::Receiver<T>, E>
where
    T: Send + Sync + 'static,
    E: std::fmt::Display + From<String>,
{
    watch_files(&[path], move |contents| parse(contents[0].as_deref()))
}

/// Like [`watch_file`] for files that change together (a certificate and its
/// key): they are read as a set, and a set read half-way through an update
/// is simply re-read at the next poll, when its content differs again.
pub fn watch_files<T, E>(
    paths: &[&Path],
    parse: impl Fn(&[Option<Vec<u8>>]) -> Result<T, E> + Send + 'static,
) -> Result<watch::Receiver<T>, E>
where
    T: Send + Sync + 'static,
    E: std::fmt::Display + From<String>,
{
    let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
    // A file that exists but cannot be read (permissions, a directory) is
    // an error of its own, not a missing file.
    let mut last = Vec::with_capacity(paths.len());
    for path in &paths {
        last.push(read_if_exists(path).map_err(|e| E::from(format!("{}: {e}", path.display())))?);
    }
    let (tx, rx) = watch::channel(parse(&last)?);
    tokio::spawn(async move {
        let shown = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            if tx.is_closed() {
                return;
            }
            let mut now = Vec::with_capacity(paths.len());
            for path in &paths {
                match tokio::fs::read(path).await {
                    Ok(content) => now.push(Some(content)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => now.push(None),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read");
                        break;
                    }
                }
            }
            if now.len() < paths.len() || now == last {
                continue;
            }
            match parse(&now) {
                Ok(value) => {
                    tracing::info!(path = %shown, "reloaded");
                    tx.send_replace(value);
                }
                Err(e) => tracing::warn!(path = %shown, error = %e, "ignoring invalid update"),
            }
            last = now;
        }
    });
    Ok(rx)
}

/// The file's content, `None` if it does not exist.
fn read_if_exists(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(content) => Ok(Some(content)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path that exists but cannot be read is reported as such, with the
    /// path, not as a missing file.
    #[tokio::test]
    async fn an_unreadable_file_is_not_taken_for_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |content: Option<&[u8]>| match content {
            Some(_) => Ok(()),
            None => Err("does not exist".to_string()),
        };
        let err = watch_file(dir.path(), parse).unwrap_err();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(!err.contains("does not exist"), "{err}");
    }

    #[tokio::test]
    async fn follows_changes_and_keeps_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let parse = |b: Option<&[u8]>| -> Result<u32, String> {
            std::str::from_utf8(b.unwrap_or(b"0"))
                .unwrap()
                .trim()
                .parse()
                .map_err(|e| format!("{e}"))
        };
        let mut rx = watch_file(&path, parse).unwrap();
        assert_eq!(*rx.borrow(), 1);
        std::fs::write(&path, "2").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*rx.borrow_and_update(), 2);
        std::fs::write(&path, "not a number").unwrap();
        tokio::time::sleep(POLL_INTERVAL * 3).await;
        assert_eq!(*rx.borrow(), 2, "a bad update keeps the previous value");
        std::fs::remove_file(&path).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            *rx.borrow(),
            0,
            "a missing file is passed to the parser as None"
        );
    }
}
