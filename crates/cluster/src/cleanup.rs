//! Removing everything a cluster left on the host, whether it stopped in
//! order or was killed: pod processes and containerd shims (which outlive
//! containerd by design), mounts, pod network namespaces, cgroups, the
//! node's namespace and the state directory. Safe to run when nothing is
//! left.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::command::run;
use crate::layout::*;
use crate::{network, node};

pub fn everything(dirs: &Dirs) -> Result<()> {
    kill_pods_and_shims(dirs);
    unmount_below(&[&dirs.state, &dirs.run])?;
    remove_unused_pod_namespaces();
    remove_cgroups()?;
    network::delete()?;
    for dir in [&dirs.state, &dirs.run] {
        match fs::remove_dir_all(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("removing {}", dir.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Kills every process in the pods' cgroups and every containerd shim of
/// our containerd, until none is left (or 10 s have passed).
fn kill_pods_and_shims(dirs: &Dirs) {
    let socket = dirs.containerd_socket().display().to_string();
    let started = Instant::now();
    loop {
        let mut pids = pods_processes();
        pids.extend(processes_whose_command_mentions(&socket));
        if pids.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return;
        }
        for pid in pids {
            // SAFETY: a plain system call.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pods_processes() -> Vec<i32> {
    let Ok(hierarchies) = node::cgroup_hierarchies() else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for hierarchy in hierarchies {
        for cgroup in cgroups_below(&hierarchy.join(CGROUP_ROOT)) {
            let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|line| line.parse::<i32>().ok()));
        }
    }
    pids.sort();
    pids.dedup();
    pids
}

fn processes_whose_command_mentions(needle: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let command = fs::read(entry.path().join("cmdline")).ok()?;
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            command.contains(needle).then_some(pid)
        })
        .collect()
}

/// A cgroup directory and all below it, deepest first.
fn cgroups_below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return found;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(cgroups_below(&entry.path()));
        }
    }
    found.push(root.to_owned());
    found
}

/// Unmounts every mount point below the given directories, deepest first
/// (secret volumes, container root filesystems, shm).
fn unmount_below(dirs: &[&Path]) -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|point| dirs.iter().any(|dir| point.starts_with(dir)))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    points.dedup();
    for point in points {
        // Detach: a mount still busy goes once its last user does.
        let _ = run("umount", ["-l".as_ref(), point.as_os_str()]);
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(field: &str) -> PathBuf {
    let mut bytes = Vec::with_capacity(field.len());
    let raw = field.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\'
            && i + 3 < raw.len()
            && let Ok(value) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            bytes.push(value);
            i += 4;
            continue;
        }
        bytes.push(raw[i]);
        i += 1;
    }
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// containerd binds each pod's network namespace at /run/netns/cni-*. With
/// the pods' processes gone, those no process uses any more are ours.
fn remove_unused_pod_namespaces() {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("cni-") {
            continue;
        }
        let pids = run("ip", ["netns", "pids", &name]).unwrap_or_else(|_| "busy".into());
        if pids.trim().is_empty() {
            let _ = run("umount", ["-l".as_ref(), entry.path().as_os_str()]);
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes the pods' cgroups, deepest first, in every hierarchy.
fn remove_cgroups() -> Result<()> {
    for hierarchy in node::cgroup_hierarchies()? {
        for cgroup in cgroups_below(&hierarchy.join(CGROUP_ROOT)) {
            let _ = fs::remove_dir(&cgroup);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(
            unescape_mount_path("/var/lib/a\\040b/c"),
            PathBuf::from("/var/lib/a b/c")
        );
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn lists_cgroups_deepest_first() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("a/b")).unwrap();
        let found = cgroups_below(root.path());
        assert_eq!(
            found,
            vec![
                root.path().join("a/b"),
                root.path().join("a"),
                root.path().to_owned()
            ]
        );
    }

    #[test]
    fn finds_processes_by_command_line() {
        let marker = format!("kubeftp-cleanup-test-{}", std::process::id());
        // `read` is a builtin: the shell forks no child, whose command line
        // would show the marker too until it exec'd.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line; :", &marker])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Until it has exec'd, the child shows our command line.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = processes_whose_command_mentions(&marker);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id() as i32]);
    }
}
