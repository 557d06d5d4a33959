//! CPU placement for the single-stream measurements.
//!
//! On a small machine the scheduler moves the client and the server between
//! the CPUs from one run to the next, and a 1 GiB transfer's speed swings
//! by a third with it. With the client on one CPU and the server on
//! another, each server meets the same conditions in every round: one CPU
//! of its own for its single session (vsftpd's session processes and
//! kubeftp's runtime threads alike), the client on the other.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Where the client and the servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub client: usize,
    pub server: usize,
}

impl Placement {
    /// The first two CPUs this process may use; `None` with fewer than two.
    pub fn split() -> Option<Placement> {
        let allowed = allowed_cpus(std::process::id() as libc::pid_t).ok()?;
        Self::from_allowed(&allowed)
    }

    fn from_allowed(allowed: &[usize]) -> Option<Placement> {
        match allowed {
            [client, server, ..] => Some(Placement {
                client: *client,
                server: *server,
            }),
            _ => None,
        }
    }
}

/// Makes `command`'s process (and everything it starts) run on `cpu` only,
/// if given.
pub fn pin_command(command: &mut Command, cpu: Option<usize>) -> &mut Command {
    let Some(cpu) = cpu else {
        return command;
    };
    // SAFETY: the hook runs between fork and exec and only makes the
    // sched_setaffinity system call, which is async-signal-safe.
    unsafe { command.pre_exec(move || set_affinity(0, &[cpu])) }
}

/// Keeps every thread of this process on `cpu` until dropped, then puts
/// them back on the CPUs they had.
pub struct PinnedProcess {
    before: Vec<usize>,
}

impl PinnedProcess {
    pub fn to(cpu: usize) -> io::Result<PinnedProcess> {
        let before = allowed_cpus(0)?;
        for_each_thread(|tid| set_affinity(tid, &[cpu]))?;
        Ok(PinnedProcess { before })
    }
}

impl Drop for PinnedProcess {
    fn drop(&mut self) {
        let before = self.before.clone();
        if let Err(e) = for_each_thread(|tid| set_affinity(tid, &before)) {
            eprintln!("could not restore the CPU affinity: {e}");
        }
    }
}

/// Keeps the calling thread on `cpu`.
pub fn pin_this_thread(cpu: usize) -> io::Result<()> {
    set_affinity(0, &[cpu])
}

/// Idle (idle + iowait) and total time of one CPU, or of all together
/// (`None`), in clock ticks since boot, from /proc/stat.
pub fn times(cpu: Option<usize>) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = match cpu {
        Some(c) => format!("cpu{c}"),
        None => "cpu".into(),
    };
    stat.lines().find_map(|line| parse_times(line, &name))
}

/// Clock ticks per second, the unit of [`times`].
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf with a valid name.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    }
}

fn parse_times(line: &str, name: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != name {
        return None;
    }
    let ticks: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((idle, ticks.iter().sum()))
}

/// Calls `f` for every thread of this process; a thread that ended
/// meanwhile (ESRCH) is skipped.
fn for_each_thread(mut f: impl FnMut(libc::pid_t) -> io::Result<()>) -> io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")? {
        let tid = entry?.file_name().to_string_lossy().parse::<libc::pid_t>();
        if let Ok(tid) = tid {
            match f(tid) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                result => result?,
            }
        }
    }
    Ok(())
}

/// The CPUs thread `tid` may run on (0: the calling thread).
fn allowed_cpus(tid: libc::pid_t) -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size is that of `set`.
    if unsafe { libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set within its size.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

fn set_affinity(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes within the set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the size is that of `set`.
    if unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_count_idle_and_iowait_of_the_named_cpu() {
        let stat = "cpu  10 1 5 80 4 0 0 0 0 0\ncpu0 1 2 3 4 5 0 0 0 0 0";
        let find = |name| stat.lines().find_map(|l| parse_times(l, name));
        assert_eq!(find("cpu"), Some((84, 100)));
        assert_eq!(find("cpu0"), Some((9, 15)));
        assert_eq!(find("cpu1"), None);
        assert!(times(Some(0)).is_some() && times(None).is_some());
    }

    #[test]
    fn placement_takes_the_first_two_allowed_cpus() {
        assert_eq!(Placement::from_allowed(&[0]), None);
        assert_eq!(
            Placement::from_allowed(&[2, 5, 7]),
            Some(Placement {
                client: 2,
                server: 5
            })
        );
    }

    /// A pinned command really runs on its CPU, and pinning this process
    /// is undone when the guard goes.
    #[test]
    fn pinning_takes_effect_and_is_undone() {
        let allowed = allowed_cpus(0).unwrap();
        let cpu = *allowed.last().unwrap();
        let out = pin_command(
            Command::new("grep").args(["Cpus_allowed_list", "/proc/self/status"]),
            Some(cpu),
        )
        .output()
        .unwrap();
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(cpu.to_string().as_str()),
            "{line}"
        );

        // Other tests' threads come and go meanwhile: check this thread and
        // the main one.
        let main_thread = std::process::id() as libc::pid_t;
        let pinned = PinnedProcess::to(cpu).unwrap();
        assert_eq!(allowed_cpus(0).unwrap(), vec![cpu]);
        assert_eq!(allowed_cpus(main_thread).unwrap(), vec![cpu]);
        drop(pinned);
        assert_eq!(allowed_cpus(main_thread).unwrap(), allowed);
        assert_eq!(allowed_cpus(0).unwrap(), allowed);
    }
}
