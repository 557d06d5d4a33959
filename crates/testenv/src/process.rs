//! Child processes that cannot outlive us.
//!
//! Each child runs in its own process group (so one signal reaches anything
//! it forks) with a parent-death signal: if the test process is killed
//! outright, the kernel kills the child too. Dropping a [`Process`] kills
//! its group and reaps it.
//!
//! The parent-death signal fires when the *thread* that forked the child
//! exits, and test threads come and go, so every child is spawned from one
//! spawner thread that lives as long as the process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};

use crate::error::{Error, IoContext, Result};

pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    reaped: bool,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr going to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        Self::spawn_in(name, program, args, log, None)
    }

    /// Like [`Process::spawn`], inside the network namespace bound at
    /// `netns` (e.g. `/run/netns/NAME`, as `ip netns add` makes) when given.
    pub fn spawn_in(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        netns: Option<&Path>,
    ) -> Result<Self> {
        let netns_file = netns
            .map(|path| File::open(path).context(|| format!("opening {}", path.display())))
            .transpose()?;
        let netns_fd = netns_file.as_ref().map(|file| file.as_raw_fd());
        let log_file = File::create(log).context(|| format!("creating {}", log.display()))?;
        let stderr = log_file
            .try_clone()
            .context(|| format!("duplicating {}", log.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                if let Some(fd) = netns_fd
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_from_spawner_thread(command)
            .context(|| format!("starting {name} ({})", program.display()))?;
        drop(netns_file); // the child holds the namespace now
        Ok(Process {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.reaped = true;
                Err(Error::Exited {
                    name: self.name.clone(),
                    status,
                    log: self.log.clone(),
                    tail: log_tail(&self.log),
                })
            }
            Err(source) => Err(Error::Io {
                context: format!("checking on {}", self.name),
                source,
            }),
        }
    }

    /// Kills the whole process group and reaps the child. Idempotent.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: plain system call; the negative pid names the group.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawn_from_spawner_thread(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, receiver) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the testenv spawner thread");
        Mutex::new(jobs)
    });
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    result
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    const MAX_BYTES: u64 = 4096;
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn drop_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        // The shell forks a grandchild; both must go.
        let args = ["-c".to_string(), "sleep 600 & echo $!; wait".to_string()];
        let process = Process::spawn("sh", Path::new("/bin/sh"), &args, &log).unwrap();
        let pid = process.pid();
        let grandchild = loop {
            if let Ok(text) = std::fs::read_to_string(&log)
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                break pid;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(alive(pid) && alive(grandchild));
        drop(process);
        assert!(!alive(pid));
        // The grandchild is reaped by init, which may take a moment.
        for _ in 0..200 {
            if !alive(grandchild) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("grandchild {grandchild} survived");
    }

    #[test]
    fn reports_early_exit_with_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("false.log");
        let args = ["-c".to_string(), "echo boom; exit 3".to_string()];
        let mut process = Process::spawn("failing", Path::new("/bin/sh"), &args, &log).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let message = process.check_running().unwrap_err().to_string();
        assert!(message.contains("failing exited"), "{message}");
        assert!(message.contains("boom"), "{message}");
    }

    #[test]
    fn spawns_from_a_long_lived_thread() {
        // A child spawned from a short-lived thread must survive that thread.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut process = std::thread::spawn(move || {
            Process::spawn("sleep", Path::new("/bin/sleep"), &["600".into()], &log).unwrap()
        })
        .join()
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        process.check_running().unwrap();
    }
}
