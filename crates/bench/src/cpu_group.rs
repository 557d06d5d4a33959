//! The CPU time of a server's whole process tree, from a cgroup of its own.
//!
//! With many sessions at once the servers share every CPU with the client,
//! so the busy time of one CPU (the single-stream figure) says nothing about
//! either of them. A cgroup adds up the CPU time of every task it holds, to
//! the nanosecond, including vsftpd's session processes that have exited.
//! The kernel charges the softirq work of loopback TCP to the task it ran
//! in, so each side of a connection pays for part of the other's packets,
//! for both servers alike.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// A cgroup made for one server; removed on drop.
pub struct CpuGroup {
    dir: PathBuf,
    version: Version,
}

#[derive(Clone, Copy)]
enum Version {
    /// cgroup v2: `usage_usec` in `cpu.stat`, present in every cgroup.
    V2,
    /// cgroup v1's cpuacct controller: `cpuacct.usage`, in nanoseconds.
    V1,
}

impl CpuGroup {
    /// Makes a cgroup for the server `name` (in the v2 hierarchy where
    /// there is one, else under v1's cpuacct) and moves `pid` into it, with
    /// all its threads; its later children start in it. The cgroup's name
    /// carries this process's pid, so runs at the same time (a benchmark
    /// and `make test`) each have their own.
    pub fn new(name: &str, pid: u32) -> Result<CpuGroup> {
        let (root, version) = hierarchy().context("no cgroup v2 hierarchy nor v1 cpuacct")?;
        remove_abandoned(&root);
        let dir = root.join(format!("{PREFIX}{name}-{}", std::process::id()));
        if dir.exists() {
            // Left by an earlier run with the same pid; empty, as its
            // servers are gone.
            fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let group = CpuGroup { dir, version };
        fs::write(group.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", group.dir.display()))?;
        Ok(group)
    }

    /// CPU time used by every task that has been in the group so far.
    pub fn usage(&self) -> Result<Duration> {
        let read = |file: &str| {
            let path = self.dir.join(file);
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        match self.version {
            Version::V2 => {
                let stat = read("cpu.stat")?;
                let usec = parse_v2_usage(&stat).context("cpu.stat without usage_usec")?;
                Ok(Duration::from_micros(usec))
            }
            Version::V1 => Ok(Duration::from_nanos(
                read("cpuacct.usage")?
                    .trim()
                    .parse()
                    .context("cpuacct.usage")?,
            )),
        }
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // The server's processes were killed just before; a cgroup can be
        // removed once the last of them has exited.
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: cgroup {} left behind", self.dir.display());
    }
}

/// Start of the name of every cgroup made here.
const PREFIX: &str = "kubeftp-bench-";

/// Removes the cgroups of runs that were killed before they could remove
/// their own: those whose name ends in the pid of a process that is gone.
/// A cgroup that still holds processes cannot be removed and stays.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .filter(|name| name.starts_with(PREFIX))
            .and_then(|name| name.rsplit('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            fs::remove_dir(entry.path()).ok();
        }
    }
}

/// Where new cgroups go: the v2 hierarchy, mounted on its own or beside
/// v1 (systemd's hybrid layout), else v1's cpuacct.
fn hierarchy() -> Option<(PathBuf, Version)> {
    let cgroups = Path::new("/sys/fs/cgroup");
    [cgroups.to_path_buf(), cgroups.join("unified")]
        .into_iter()
        .find(|dir| dir.join("cgroup.controllers").exists())
        .map(|dir| (dir, Version::V2))
        .or_else(|| {
            let v1 = cgroups.join("cpuacct");
            v1.join("cpuacct.usage")
                .exists()
                .then_some((v1, Version::V1))
        })
}

/// `usage_usec` from a v2 `cpu.stat`.
fn parse_v2_usage(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_from_a_v2_cpu_stat() {
        let stat = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n";
        assert_eq!(parse_v2_usage(stat), Some(1_234_567));
        assert_eq!(parse_v2_usage("user_usec 5\n"), None);
    }

    /// Only the groups of runs that are gone are removed; a name made
    /// elsewhere is left alone.
    #[test]
    fn removes_only_the_groups_of_runs_that_are_gone() {
        let root = tempfile::tempdir().unwrap();
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        exited.wait().unwrap();
        let names = [
            format!("{PREFIX}kubeftp-{}", exited.id()),
            format!("{PREFIX}kubeftp-{}", std::process::id()),
            format!("other-{}", exited.id()),
        ];
        for name in &names {
            fs::create_dir(root.path().join(name)).unwrap();
        }
        remove_abandoned(root.path());
        let left = |name: &String| root.path().join(name).exists();
        assert_eq!(names.each_ref().map(left), [false, true, true]);
    }

    /// A real cgroup, where this machine lets us make one (root): a child
    /// that spins for a while shows up in the group's usage, also after it
    /// has exited.
    #[test]
    fn counts_the_cpu_time_of_an_exited_child() {
        let Some(_) = hierarchy() else { return };
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "read go; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let group = match CpuGroup::new("test", child.id()) {
            Ok(group) => group,
            Err(e) => {
                child.kill().ok();
                child.wait().ok();
                eprintln!("skipped, no cgroup: {e:#}");
                return;
            }
        };
        let before = group.usage().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(child.wait().unwrap().success());
        let spent = group.usage().unwrap() - before;
        assert!(spent > Duration::from_millis(20), "only {spent:?} counted");
    }
}
