//! Running this program in the background, tracked by a pid file: the
//! `up`/`down` pattern of the command-line tools. `up` starts the program
//! again detached and waits for a file that means "ready"; `down` stops it.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

/// The files of one background process.
#[derive(Debug, Clone)]
pub struct Background {
    /// Holds the pid of the process while it runs.
    pub pid_file: PathBuf,
    /// Appears once the process is ready.
    pub ready_file: PathBuf,
    /// Its standard output and error.
    pub log: PathBuf,
}

impl Background {
    /// The pid in the pid file, if that process still runs.
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    /// Whether a process runs and is ready.
    pub fn is_up(&self) -> bool {
        self.running_pid().is_some() && self.ready_file.exists()
    }

    /// Starts this executable with `args`, detached from our terminal, and
    /// waits up to `timeout` for the ready file. If the process exits
    /// first, or is not ready in time, the error carries its log.
    pub fn start(&self, args: &[OsString], timeout: Duration) -> Result<()> {
        if let Some(parent) = self.log.parent() {
            fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        let _ = fs::remove_file(&self.ready_file);
        let log = File::create(&self.log).context(|| format!("creating {}", self.log.display()))?;
        let stderr = log
            .try_clone()
            .context(|| format!("duplicating {}", self.log.display()))?;
        let program = std::env::current_exe().context(|| "finding this program".into())?;
        let mut command = Command::new(&program);
        // SAFETY: one async-signal-safe system call.
        unsafe {
            command.pre_exec(|| {
                // Inherit no descriptor but stdio: a lock held by the shell
                // that ran `up` (flock) must not live on in the process.
                const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
                Ok(())
            });
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Its own process group: a Ctrl-C in the shell that started it
            // must not reach it.
            .process_group(0)
            .spawn()
            .context(|| format!("starting {}", program.display()))?;
        let started = Instant::now();
        while !self.ready_file.exists() {
            let exited = child
                .try_wait()
                .context(|| "checking on the background process".into())?;
            if let Some(status) = exited {
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                return Err(Error::Background(format!("it exited ({status}):\n{log}")));
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let log = self.log.display();
                return Err(Error::Background(format!(
                    "not ready in {timeout:?}; see {log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Stops the running process: SIGTERM, then SIGKILL after `timeout`.
    /// Returns its pid, or None if none ran.
    pub fn stop(&self, timeout: Duration) -> Option<i32> {
        let pid = self.running_pid()?;
        // SAFETY: plain system calls on the pid the pid file names.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while self.running_pid().is_some() {
            if started.elapsed() > timeout {
                // Its children die with it (parent-death signal).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(pid)
    }

    /// Records the calling process as the one running.
    pub fn record_self(&self) -> Result<()> {
        fs::write(&self.pid_file, std::process::id().to_string())
            .context(|| format!("writing {}", self.pid_file.display()))
    }
}
