//! `kubeftp-bench`: the benchmarks of issue 8.
//!
//! - `kubeftp-bench ftp` (`make bench-ftp`): kubeftp-server against vsftpd
//!   on loopback.
//! - `kubeftp-bench operator` (`make bench-operator`): the operator with
//!   500 FtpServers on a real control plane.
//!
//! Each prints a Markdown table for the README. Benchmarks judge their
//! targets in their output, never in `make test`.

mod bench_ftp;
mod bench_operator;
mod cpu_group;
mod cpus;
mod fresh_memory;
mod ftp;
mod mem;
mod servers;

use std::fmt::Write as _;
use std::fs;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

pub const MIB: u64 = 1024 * 1024;

#[derive(Parser)]
#[command(about = "kubeftp's benchmarks (issue 8)")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// kubeftp-server against vsftpd on loopback (root; 11-20 minutes).
    Ftp(bench_ftp::Args),
    /// The operator with many FtpServers on a real control plane.
    Operator(bench_operator::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Bench::Ftp(args) => runtime.block_on(bench_ftp::run(args)),
        Bench::Operator(args) => runtime.block_on(bench_operator::run(args)),
    }
}

/// One row of a side-by-side result table.
pub struct Row {
    what: String,
    ours: f64,
    theirs: f64,
    unit: &'static str,
    load: f32,
    /// Ratios measured pairwise (round by round), shown instead of the
    /// ratio of the two figures.
    paired: Option<Spread>,
}

impl Row {
    pub fn new(what: String, (ours, theirs): (f64, f64), unit: &'static str, load: f32) -> Row {
        Row {
            what,
            ours,
            theirs,
            unit,
            load,
            paired: None,
        }
    }

    /// The ratio column shows the median of `ratios` and their range.
    pub fn with_paired_ratios(mut self, ratios: Spread) -> Row {
        self.paired = Some(ratios);
        self
    }
}

/// Median, lowest and highest of a set of figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Of the values that are not NaN; NaN throughout for none.
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let median = median(&mut sorted);
        Spread {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// A Markdown table of `rows`: both figures, their ratio and the load.
pub fn table(rows: &[Row], (ours, theirs): (&str, &str)) -> String {
    let mut s = format!(
        "| measurement | {ours} | {theirs} | {ours}/{theirs} | load |\n|---|---:|---:|---:|---:|\n"
    );
    for r in rows {
        let fmt = |v: f64| {
            if v.is_nan() {
                "n/a".to_string()
            } else {
                format!("{} {}", number(v), r.unit)
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} |",
            r.what,
            fmt(r.ours),
            fmt(r.theirs),
            match (r.paired, r.ours / r.theirs) {
                (_, ratio) if ratio.is_nan() => "-".to_string(),
                (Some(p), _) => format!("{:.2} ({:.2}–{:.2})", p.median, p.min, p.max),
                (None, ratio) => format!("{ratio:.2}"),
            },
            r.load
        );
    }
    s
}

/// A figure with as many decimals as it needs: 1234, 12.3, 0.123; counts
/// as integers.
pub fn number(v: f64) -> String {
    let v = v + 0.0; // no "-0" for an empty sum
    if v == v.trunc() || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A target judged on a measured ratio.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Met(f64),
    Missed(f64),
    NotMeasured,
}

impl Verdict {
    pub fn at_least(value: f64, min: f64) -> Verdict {
        Self::judge(value, value >= min)
    }

    pub fn at_most(value: f64, max: f64) -> Verdict {
        Self::judge(value, value <= max)
    }

    fn judge(value: f64, ok: bool) -> Verdict {
        // No "-0.00" for a difference of equal counters.
        match value + 0.0 {
            v if v.is_nan() || v.is_infinite() => Verdict::NotMeasured,
            v if ok => Verdict::Met(v),
            v => Verdict::Missed(v),
        }
    }

    /// "`what`: met (1.05×)", "`what`: NOT met (0.93×)", "`what`: not measured".
    pub fn line(&self, what: &str, unit: &str) -> String {
        match self {
            Verdict::Met(v) => format!("{what}: met ({v:.2}{unit})"),
            Verdict::Missed(v) => format!("{what}: NOT met ({v:.2}{unit})"),
            Verdict::NotMeasured => format!("{what}: not measured"),
        }
    }
}

/// The machine, for the README.
pub fn machine() -> Result<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo")?;
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()?.get();
    let meminfo = fs::read_to_string("/proc/meminfo")?;
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")?;
    // "-dirty" when the tree differs from the commit.
    let rev = command_output("git", &["describe", "--always", "--dirty", "--abbrev=7"]);
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut s = String::new();
    writeln!(
        s,
        "Machine: {cpu}, {cores} CPUs, {:.0} GiB RAM, Linux {}; kubeftp at {rev}; {date}.",
        mem_kb as f64 / (1024.0 * 1024.0),
        kernel.trim()
    )?;
    write!(s, "Load average at start: {:.2}.", loadavg())?;
    Ok(s)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The 1-minute load average.
pub fn loadavg() -> f32 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f32::NAN)
}

/// The median of the values that are not NaN (a round not measured);
/// NaN when none is.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let values: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// 1000 sessions need ~2000 client sockets; the servers inherit the limit.
pub fn raise_fd_limit() -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        // A round not measured is left out, not sorted in.
        assert_eq!(median(&mut [f64::NAN, 3.0, 1.0]), 2.0);
        assert!(median(&mut [f64::NAN]).is_nan());
        let spread = Spread::of(&[1.2, f64::NAN, 0.9]);
        assert_eq!((spread.min, spread.max), (0.9, 1.2));
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn verdicts() {
        assert_eq!(Verdict::at_least(1.2, 1.0), Verdict::Met(1.2));
        assert_eq!(Verdict::at_least(0.9, 1.0), Verdict::Missed(0.9));
        assert_eq!(Verdict::at_most(0.05, 0.1), Verdict::Met(0.05));
        assert_eq!(Verdict::at_least(f64::NAN, 1.0), Verdict::NotMeasured);
        assert_eq!(Verdict::at_least(1.0 / 0.0, 1.0), Verdict::NotMeasured);
        assert_eq!(Verdict::Missed(0.5).line("x", "×"), "x: NOT met (0.50×)");
        assert_eq!(
            Verdict::at_most(-0.0, 0.0).line("none", " writes"),
            "none: met (0.00 writes)"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(40.0), "40");
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(0.1234), "0.123");
    }

    #[test]
    fn spreads() {
        let s = Spread::of(&[1.1, 0.9, 1.0, 1.3]);
        assert_eq!((s.median, s.min, s.max), (1.05, 0.9, 1.3));
        assert!(Spread::of(&[]).median.is_nan());
    }

    #[test]
    fn paired_ratios_replace_the_ratio_of_figures() {
        let paired = Spread::of(&[0.9, 1.1, 1.04]);
        let rows = [Row::new("a".into(), (3.0, 2.0), "MiB/s", 0.5).with_paired_ratios(paired)];
        let t = table(&rows, ("kubeftp", "vsftpd"));
        assert!(
            t.contains("| a | 3 MiB/s | 2 MiB/s | 1.04 (0.90–1.10) | 0.50 |"),
            "{t}"
        );
    }

    #[test]
    fn table_marks_what_is_missing() {
        let rows = [Row::new("a".into(), (2.0, f64::NAN), "MiB/s", 0.5)];
        let t = table(&rows, ("kubeftp", "vsftpd"));
        assert!(t.contains("| a | 2 MiB/s | n/a | - | 0.50 |"), "{t}");
    }
}
