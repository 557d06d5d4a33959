//! `make bench-ftp`: kubeftp-server against vsftpd on loopback, side by side
//! in one run with one client (the small FTP client in `ftp.rs`), reported
//! as ratios together with the machine's ceilings.

mod ftp;
mod mem;
mod servers;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rand::RngCore;
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use ftp::Ftp;
use servers::Server;

const MIB: u64 = 1024 * 1024;
/// Client buffer for single-stream transfers: the client must not be the
/// bottleneck.
const CLIENT_BUF: usize = 1024 * 1024;
/// Per-session client buffer when many sessions run at once.
const SESSION_BUF: usize = 256 * 1024;
/// Sessions being set up (login, PASV, connect) at once. Keeps both
/// servers' accept backlogs and vsftpd's PASV port picking out of the
/// numbers; the transfers themselves all run at the same time.
const SETUP_PARALLEL: usize = 32;
/// Concurrent sessions are spread over this many loopback source IPs
/// (127.0.0.2 ...), as real clients come from many addresses.
const SOURCE_IPS: usize = 100;

/// Fixes glibc's mmap threshold, so large freed blocks return to the OS.
const TUNABLE: (&str, &str) = ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072");

#[derive(Parser)]
#[command(about = "Benchmark kubeftp-server against vsftpd on loopback")]
struct Args {
    /// The kubeftp-server binary (a release build).
    #[arg(long, default_value = "target/release/kubeftp-server")]
    server_bin: PathBuf,
    /// Scratch directory for the test files and server roots.
    #[arg(long, default_value = "target/bench-ftp")]
    work: PathBuf,
    /// Runs per single-stream measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Size of the single-stream file, in MiB.
    #[arg(long, default_value_t = 1024)]
    big_mib: u64,
    /// Concurrent-session counts, each session moving one 10 MiB file.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    concurrent: Vec<usize>,
    /// Idle logged-in sessions for the memory-per-session figure.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Which parts to run (for quick partial runs while optimising).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceilings,idle,single,concurrent"
    )]
    phases: Vec<String>,
    /// Seconds of PASV+LIST round trips per server and run.
    #[arg(long, default_value_t = 2)]
    list_seconds: u64,
}

/// One row of the result table.
struct Row {
    what: String,
    ours: f64,
    theirs: f64,
    unit: &'static str,
    load: f32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    raise_fd_limit()?;
    let work = std::path::absolute(&args.work)?;
    fs::create_dir_all(&work)?;
    let big = prepare_data(&work, args.big_mib)?;
    let contents = fs::read(work.join("data/big.bin")).context("reading the big file")?;
    let mut rows = Vec::new();

    println!("# kubeftp-server vs vsftpd on loopback\n");
    println!("{}", machine()?);
    let k = (args.runs, args.big_mib);
    println!(
        "Single stream: {} MiB random file, median of {} runs each, the two servers alternating.",
        k.1, k.0
    );
    println!(
        "Concurrent sessions: spread over {SOURCE_IPS} loopback source IPs (127.0.0.2-{}) with at most \
         {SETUP_PARALLEL} sessions in setup at once, so neither server's PASV port range ({} ports each) \
         nor its accept backlog limits the test; once all sessions have read their first bytes, memory \
         (PSS of every server process) is sampled and the clock starts.\n",
        SOURCE_IPS + 1,
        servers::PASSIVE_PORTS
    );

    let run = |phase: &str| args.phases.iter().any(|p| p == phase);
    let (mut iperf, mut disk, mut ceiling_load) = (f64::NAN, f64::NAN, f32::NAN);
    if run("ceilings") {
        ceiling_load = loadavg();
        iperf = median(&mut (0..3).map(|_| iperf3()).collect::<Result<Vec<_>>>()?);
        disk = median(
            &mut (0..3)
                .map(|_| disk_write(&work, &contents))
                .collect::<Result<Vec<_>>>()?,
        );
        eprintln!(
            "ceilings: iperf3 {:.0} MiB/s, disk {:.0} MiB/s",
            iperf / MIB as f64,
            disk / MIB as f64
        );
    }

    // Idle sessions first, on fresh servers.
    if run("idle") {
        let (ours, theirs) = start_both(&args, &work).await?;
        let load = loadavg();
        let a = idle_pss(&ours, args.idle).await?;
        let b = idle_pss(&theirs, args.idle).await?;
        rows.push(Row {
            what: format!("{} idle logged-in sessions: PSS per session", args.idle),
            ours: a / 1024.0,
            theirs: b / 1024.0,
            unit: "KiB",
            load,
        });
        // glibc's dynamic mmap threshold keeps freed 19 MiB argon2 buffers
        // in its arenas; with a fixed threshold they go back to the OS.
        drop(ours);
        let ours = servers::kubeftp(
            &args.server_bin,
            &work,
            21210,
            40000,
            &[(TUNABLE.0, TUNABLE.1)],
        )
        .await?;
        let load = loadavg();
        let a = idle_pss(&ours, args.idle).await?;
        rows.push(Row {
            what: format!(
                "{} idle logged-in sessions: PSS per session, kubeftp with {}={}",
                args.idle, TUNABLE.0, TUNABLE.1
            ),
            ours: a / 1024.0,
            theirs: b / 1024.0,
            unit: "KiB",
            load,
        });
    }

    // Single stream, PASV+LIST.
    let (mut retr_ours, mut stor_ours) = (f64::NAN, f64::NAN);
    // Before the single-stream phase: its PASV+LIST round trips leave
    // vsftpd's passive ports in TIME_WAIT (it binds one per PASV), which
    // would fail its concurrent runs for a minute.
    for &n in args.concurrent.iter().filter(|_| run("concurrent")) {
        let (ours, theirs) = start_both(&args, &work).await?;
        let load = loadavg();
        let (ta, ma) = concurrent(&ours, n).await?;
        // A server that cannot serve them all is reported, not fatal.
        let (tb, mb) = concurrent(&theirs, n).await.unwrap_or_else(|e| {
            println!("{} failed {n} concurrent sessions: {e:#}", theirs.name);
            (f64::NAN, f64::NAN)
        });
        rows.push(Row {
            what: format!("{n} sessions × RETR 10 MiB: aggregate throughput"),
            ours: ta / MIB as f64,
            theirs: tb / MIB as f64,
            unit: "MiB/s",
            load,
        });
        rows.push(Row {
            what: format!("{n} sessions × RETR 10 MiB: PSS of all server processes"),
            ours: ma / MIB as f64,
            theirs: mb / MIB as f64,
            unit: "MiB",
            load,
        });
    }

    if run("single") {
        let (ours, theirs) = start_both(&args, &work).await?;
        let load = loadavg();
        let (mut a, mut b) = (vec![], vec![]);
        let mut ftp_a = Ftp::login(ours.addr, localhost(), ours.user, ours.pass).await?;
        let mut ftp_b = Ftp::login(theirs.addr, localhost(), theirs.user, theirs.pass).await?;
        let mut buf = vec![0u8; CLIENT_BUF];
        retr(&mut ftp_a, &ours, big, &mut buf).await?; // page cache warm-up
        for _ in 0..args.runs {
            a.push(retr(&mut ftp_a, &ours, big, &mut buf).await?);
            b.push(retr(&mut ftp_b, &theirs, big, &mut buf).await?);
        }
        rows.push(Row {
            what: format!("RETR {} MiB, single stream", args.big_mib),
            ours: median(&mut a) / MIB as f64,
            theirs: median(&mut b) / MIB as f64,
            unit: "MiB/s",
            load,
        });
        retr_ours = rows.last().unwrap().ours;
        let load = loadavg();
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..args.runs {
            a.push(stor(&mut ftp_a, &ours, &contents).await?);
            b.push(stor(&mut ftp_b, &theirs, &contents).await?);
        }
        rows.push(Row {
            what: format!(
                "STOR {} MiB, single stream (kubeftp fsyncs before 226, vsftpd does not)",
                args.big_mib
            ),
            ours: median(&mut a) / MIB as f64,
            theirs: median(&mut b) / MIB as f64,
            unit: "MiB/s",
            load,
        });
        stor_ours = rows.last().unwrap().ours;
        let load = loadavg();
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..3 {
            a.push(list_rate(&mut ftp_a, &ours, args.list_seconds).await?);
            b.push(list_rate(&mut ftp_b, &theirs, args.list_seconds).await?);
        }
        rows.push(Row {
            what: "PASV+LIST round trips, one client".into(),
            ours: median(&mut a),
            theirs: median(&mut b),
            unit: "/s",
            load,
        });
        ftp_a.quit().await.ok();
        ftp_b.quit().await.ok();
    }

    // Many sessions at once, each downloading the 10 MiB file.
    println!("{}", table(&rows));
    println!("Ceilings (load {ceiling_load:.2}):");
    println!(
        "- loopback TCP, iperf3 single stream (median of 3 × 3 s): {:.0} MiB/s; kubeftp RETR reaches {:.0}% of it",
        iperf / MIB as f64,
        100.0 * retr_ours / (iperf / MIB as f64)
    );
    println!(
        "- sequential write of {} MiB then fsync, same filesystem (median of 3): {:.0} MiB/s; kubeftp STOR reaches {:.0}% of it",
        args.big_mib,
        disk / MIB as f64,
        100.0 * stor_ours / (disk / MIB as f64)
    );
    Ok(())
}

async fn start_both(args: &Args, work: &Path) -> Result<(Server, Server)> {
    let ours = servers::kubeftp(&args.server_bin, work, 21210, 40000, &[]).await?;
    let theirs = servers::vsftpd(work, 21211, 40000 + servers::PASSIVE_PORTS).await?;
    Ok((ours, theirs))
}

fn localhost() -> IpAddr {
    Ipv4Addr::LOCALHOST.into()
}

/// The source address of concurrent session `i`.
fn source_ip(i: usize) -> IpAddr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCE_IPS) as u8).into()
}

/// One RETR of the big file; bytes per second.
async fn retr(ftp: &mut Ftp, server: &Server, size: u64, buf: &mut [u8]) -> Result<f64> {
    let started = Instant::now();
    let n = ftp.retr(&server.path("big.bin"), buf).await?;
    let secs = started.elapsed().as_secs_f64();
    if n != size {
        bail!("{}: RETR moved {n} bytes, expected {size}", server.name);
    }
    Ok(n as f64 / secs)
}

/// One STOR of the big file (until the 226); bytes per second. The upload
/// is removed and the page cache written back before the next one.
async fn stor(ftp: &mut Ftp, server: &Server, contents: &[u8]) -> Result<f64> {
    let started = Instant::now();
    ftp.stor(&server.path("up/stor.bin"), contents, CLIENT_BUF)
        .await
        .with_context(|| format!("{}: STOR", server.name))?;
    let secs = started.elapsed().as_secs_f64();
    let stored = server.disk_dir.join("up/stor.bin");
    let len = fs::metadata(&stored)?.len();
    if len != contents.len() as u64 {
        bail!(
            "{}: stored {len} bytes, sent {}",
            server.name,
            contents.len()
        );
    }
    fs::remove_file(&stored)?;
    sync();
    Ok(contents.len() as f64 / secs)
}

/// PASV+LIST round trips per second for `seconds`.
async fn list_rate(ftp: &mut Ftp, server: &Server, seconds: u64) -> Result<f64> {
    let mut buf = vec![0u8; 64 * 1024];
    let dir = server.path("list");
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let n = ftp.list(&dir, &mut buf).await?;
        if n == 0 {
            bail!("{}: empty listing", server.name);
        }
        count += 1;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Opens `n` logged-in sessions and returns the server's PSS growth per
/// session, in bytes.
async fn idle_pss(server: &Server, n: usize) -> Result<f64> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.pss()?;
    let setup = Arc::new(Semaphore::new(SETUP_PARALLEL));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (setup, addr, user, pass) = (setup.clone(), server.addr, server.user, server.pass);
        tasks.spawn(async move {
            let _permit = setup.acquire().await?;
            Ftp::login(addr, source_ip(i), user, pass).await
        });
    }
    let mut sessions = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        sessions.push(r?.with_context(|| format!("{}: idle login", server.name))?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.pss()?;
    eprintln!(
        "{}: {n} idle sessions: PSS {:.1} -> {:.1} MiB",
        server.name,
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    for s in sessions {
        s.quit().await.ok();
    }
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}

/// `n` sessions each download the 10 MiB file at the same time. Returns the
/// aggregate throughput (bytes/s, counted from when all are flowing) and the
/// server's PSS at that moment (bytes).
async fn concurrent(server: &Server, n: usize) -> Result<(f64, f64)> {
    let size = 10 * MIB;
    let setup = Arc::new(Semaphore::new(SETUP_PARALLEL));
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (go, go_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (setup, ready, failed, mut go_rx) =
            (setup.clone(), ready.clone(), failed.clone(), go_rx.clone());
        let (addr, user, pass, path) = (
            server.addr,
            server.user,
            server.pass,
            server.path("10m.bin"),
        );
        tasks.spawn(async move {
            let run = async {
                let permit = setup.acquire().await?;
                let mut ftp = Ftp::login(addr, source_ip(i), user, pass).await?;
                let mut data = ftp.begin_retr(&path).await?;
                let mut buf = vec![0u8; SESSION_BUF];
                let first = data.read(&mut buf).await? as u64;
                drop(permit);
                ready.fetch_add(1, Ordering::SeqCst);
                go_rx.wait_for(|go| *go).await?;
                let rest = ftp::drain(&mut data, &mut buf).await?;
                drop(data); // as in Ftp::retr
                ftp.end_transfer().await?;
                if first + rest != size {
                    bail!("moved {} bytes, expected {size}", first + rest);
                }
                ftp.quit().await.ok();
                Ok(rest)
            };
            let r = run.await;
            if r.is_err() {
                failed.fetch_add(1, Ordering::SeqCst);
            }
            r
        });
    }
    while ready.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pss = server.pss()?;
    let started = Instant::now();
    go.send(true)?;
    let mut bytes = 0;
    while let Some(r) = tasks.join_next().await {
        bytes += r?.with_context(|| format!("{}: {n} concurrent sessions", server.name))?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {n} sessions: {:.0} MiB/s, PSS {:.1} MiB",
        server.name,
        bytes as f64 / secs / MIB as f64,
        pss as f64 / MIB as f64
    );
    Ok((bytes as f64 / secs, pss as f64))
}

/// Loopback TCP throughput, one stream; bytes per second.
fn iperf3() -> Result<f64> {
    let port = "5299";
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", port])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting iperf3 (apt-get install iperf3)")?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", port, "-t", "3", "-J"])
        .output()
        .context("running iperf3")?;
    server.wait().ok();
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    let bits = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 output without end.sum_received")?;
    Ok(bits / 8.0)
}

/// Sequential write of `contents` then fsync, as a STOR ceiling; bytes/s.
fn disk_write(work: &Path, contents: &[u8]) -> Result<f64> {
    let path = work.join("disk-ceiling.bin");
    let started = Instant::now();
    let mut f = fs::File::create(&path)?;
    for piece in contents.chunks(CLIENT_BUF) {
        f.write_all(piece)?;
    }
    f.sync_all()?;
    let secs = started.elapsed().as_secs_f64();
    drop(f);
    fs::remove_file(&path)?;
    sync();
    Ok(contents.len() as f64 / secs)
}

/// The test files, made once: big.bin (random), 10m.bin, and a directory
/// of 20 small files to list. Returns the big file's size.
fn prepare_data(work: &Path, big_mib: u64) -> Result<u64> {
    let data = work.join("data");
    fs::create_dir_all(data.join("list"))?;
    let mut rng = rand::rng();
    let mut chunk = vec![0u8; MIB as usize];
    for (name, mib) in [("big.bin", big_mib), ("10m.bin", 10)] {
        let path = data.join(name);
        if fs::metadata(&path).map(|m| m.len()).ok() == Some(mib * MIB) {
            continue;
        }
        eprintln!("writing {} ({mib} MiB of random data)", path.display());
        let mut f = std::io::BufWriter::new(fs::File::create(&path)?);
        for _ in 0..mib {
            rng.fill_bytes(&mut chunk);
            f.write_all(&chunk)?;
        }
        f.flush()?;
    }
    for i in 0..20 {
        fs::write(data.join(format!("list/file-{i:02}.txt")), vec![b'x'; 1000])?;
    }
    for entry in fs::read_dir(&data)? {
        fs::set_permissions(
            entry?.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .ok();
    }
    sync();
    Ok(big_mib * MIB)
}

/// The machine, for the README.
fn machine() -> Result<String> {
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
    let vsftpd = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "vsftpd"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut s = String::new();
    writeln!(
        s,
        "Machine: {cpu}, {cores} CPUs, {:.0} GiB RAM, Linux {}; vsftpd {vsftpd} (Debian); kubeftp at {rev}.",
        mem_kb as f64 / (1024.0 * 1024.0),
        kernel.trim()
    )?;
    write!(s, "Load average at start: {:.2}.", loadavg())?;
    Ok(s)
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| measurement | kubeftp | vsftpd | kubeftp/vsftpd | load |\n|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let fmt = |v: f64| {
            if v.is_nan() {
                "failed".to_string()
            } else if v >= 100.0 {
                format!("{v:.0} {}", r.unit)
            } else {
                format!("{v:.1} {}", r.unit)
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} |",
            r.what,
            fmt(r.ours),
            fmt(r.theirs),
            match r.ours / r.theirs {
                ratio if ratio.is_nan() => "-".to_string(),
                ratio => format!("{ratio:.2}"),
            },
            r.load
        );
    }
    s
}

/// The 1-minute load average.
fn loadavg() -> f32 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f32::NAN)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
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

fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// 1000 sessions need ~2000 client sockets; the servers inherit the limit.
fn raise_fd_limit() -> Result<()> {
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
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn sources_stay_on_loopback() {
        assert_eq!(source_ip(0), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(source_ip(SOURCE_IPS), IpAddr::from([127, 0, 0, 2]));
        assert!(source_ip(SOURCE_IPS - 1).is_loopback());
    }
}
