//! `make bench-ftp`: kubeftp-server against vsftpd on loopback, side by side
//! in one run with one client (the small FTP client in `ftp.rs`), reported
//! as ratios together with the machine's ceilings and the targets.

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kubeftp_server::disk_writer::{AlignedBuf, DIRECT_ALIGN};
use kubeftp_server::transfer;
use rand::RngCore;
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::cpus::{self, PinnedProcess, Placement};
use crate::fresh_memory;
use crate::ftp::{self, Ftp};
use crate::servers::{self, Server};
use crate::{MIB, Row, Spread, Verdict, loadavg, machine, median, sync, table};

/// Client buffer for single-stream transfers: the client must not be the
/// bottleneck.
const CLIENT_BUF: usize = 1024 * 1024;
/// Per-session client buffer when many sessions run at once.
const SESSION_BUF: usize = 256 * 1024;
/// Sessions being set up (login, PASV, connect) at once. Keeps both
/// servers' accept backlogs out of the numbers; the transfers themselves
/// all run at the same time.
const SETUP_PARALLEL: usize = 32;
/// Concurrent sessions are spread over this many loopback source IPs
/// (127.0.0.2 ...), as real clients come from many addresses.
const SOURCE_IPS: usize = 100;
/// The file each concurrent session moves.
const SESSION_FILE_MIB: u64 = 10;

#[derive(clap::Args)]
pub struct Args {
    /// The kubeftp-server binary (a release build).
    #[arg(long, default_value = "target/release/kubeftp-server")]
    server_bin: PathBuf,
    /// Scratch directory for the test files and server roots.
    #[arg(long, default_value = "target/bench-ftp")]
    work: PathBuf,
    /// Rounds of each single-stream measurement (medians are reported);
    /// one round's ratio can be off by a third on a shared virtual machine.
    #[arg(long, default_value_t = 11)]
    runs: usize,
    /// Size of the single-stream file, in MiB.
    #[arg(long, default_value_t = 1024)]
    big_mib: u64,
    /// Concurrent-session counts, each session moving one 10 MiB file.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    concurrent: Vec<usize>,
    /// Rounds of each concurrent-session measurement (medians are reported);
    /// one round's ratio can be off by a quarter either way here.
    #[arg(long, default_value_t = 5)]
    concurrent_rounds: usize,
    /// Idle logged-in sessions for the memory-per-session figure.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Which parts to run (for quick partial runs while optimising);
    /// `ceilings` (iperf3 and the disk) are measured within `single`, the
    /// disk's also within `concurrent`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceilings,idle,concurrent,single"
    )]
    phases: Vec<String>,
    /// Seconds of PASV+LIST round trips per server and run.
    #[arg(long, default_value_t = 2)]
    list_seconds: u64,
    /// Run kubeftp alone (for profiling it); vsftpd's columns read n/a.
    #[arg(long)]
    kubeftp_only: bool,
    /// Let the scheduler place the client and the servers in the
    /// single-stream phase (by default the client runs on one CPU and the
    /// server on another).
    #[arg(long)]
    no_pin: bool,
}

/// (kubeftp, vsftpd).
type Pair = (f64, f64);

/// What the targets are judged on; NaN where not measured.
struct Figures {
    iperf: f64,
    /// The RETR file sent over loopback with sendfile(2), no FTP.
    sendfile: f64,
    disk: f64,
    /// Bytes/s (medians).
    retr: Pair,
    stor: Pair,
    /// kubeftp/vsftpd, round by round.
    retr_ratio: Spread,
    stor_ratio: Spread,
    /// Bytes per session.
    idle: Pair,
    concurrent: Vec<ConcurrentFigures>,
}

/// What the targets of one concurrent-session count are judged on.
struct ConcurrentFigures {
    sessions: usize,
    /// kubeftp/vsftpd, round by round.
    retr_ratio: Spread,
    stor_ratio: Spread,
    /// Bytes/s (medians).
    stor: Pair,
    /// The disk's durable rate for this many files at once: the median of
    /// each round's faster way.
    disk: f64,
    /// The medians of each way: O_DIRECT, and through the page cache.
    disk_ways: Pair,
}

pub async fn run(args: Args) -> Result<()> {
    crate::raise_fd_limit()?;
    let work = std::path::absolute(&args.work)?;
    fs::create_dir_all(&work)?;
    let big = prepare_data(&work, args.big_mib)?;
    // Aligned once, so the O_DIRECT disk ceiling writes it as it is.
    let contents = read_aligned(&work.join("data/big.bin")).context("reading the big file")?;
    let contents = contents.as_slice();
    let session_file = Arc::new(fs::read(work.join("data/10m.bin"))?);
    // The same, aligned, for the concurrent disk ceiling.
    let session_aligned = read_aligned(&work.join("data/10m.bin"))?;
    let password = servers::password();
    let mut rows = Vec::new();
    let nan2 = (f64::NAN, f64::NAN);
    let mut figures = Figures {
        iperf: f64::NAN,
        sendfile: f64::NAN,
        disk: f64::NAN,
        retr: nan2,
        stor: nan2,
        retr_ratio: Spread::of(&[]),
        stor_ratio: Spread::of(&[]),
        idle: nan2,
        concurrent: Vec::new(),
    };

    println!("# kubeftp-server vs vsftpd on loopback\n");
    println!("{}", machine()?);
    println!("vsftpd {} (Debian).\n", vsftpd_version());
    println!("{}\n", congestion_control_note(&congestion_control()));
    println!("{}\n", fresh_memory::note());
    println!("{}\n", servers::LOGINS);
    let placement = (!args.no_pin).then(Placement::split).flatten();
    println!(
        "Single stream: {} MiB random file, {} rounds, the two servers alternating \
         (each goes first in every other round); the figures are medians, the ratio is the \
         median of the rounds' ratios (lowest–highest in brackets); {}. \
         STOR is timed until the 226 (kubeftp fsyncs the file before it, vsftpd does not); \
         \"until durable\" adds, for vsftpd, an fsync of the file right after its 226. \
         \"server CPU per GiB\": busy time of the server's CPU per GiB moved, until the 226 \
         (lower is better; it counts the kernel's work on that CPU, such as loopback TCP, \
         and not vsftpd's later page-cache writeback; measured only with pinning).\n",
        args.big_mib,
        args.runs,
        match placement {
            Some(p) => format!(
                "the client runs on CPU {}, each server on CPU {} (iperf3 likewise)",
                p.client, p.server
            ),
            None => "the scheduler places client and servers".into(),
        }
    );
    println!(
        "Concurrent sessions: spread over {SOURCE_IPS} loopback source IPs (127.0.0.2-{}), \
         at most {SETUP_PARALLEL} sessions in setup at once, passive ranges of {} ports each. \
         Each session logs in once, then (1) starts a RETR of the {SESSION_FILE_MIB} MiB file \
         and reads its first bytes: with every transfer open, the PSS of all server processes \
         is sampled; (2) opens a data connection (PASV, connect) and waits: when all have, the \
         clock starts and every session sends RETR; it stops at the last 226; (3) the same for \
         a STOR of {SESSION_FILE_MIB} MiB to its own file; \"until durable\" adds, for vsftpd, \
         a syncfs of the upload directory's filesystem after the last 226. \"server CPU per \
         GiB\": CPU time of all the server's processes (a cgroup of its own, so vsftpd's \
         exited session processes count too) from the start of the clock to the last 226, \
         per GiB moved; it includes the loopback TCP work the kernel does in the server's \
         processes, not the page-cache writeback after vsftpd's 226. {} rounds per \
         session count on the same two servers, taking turns to go first; medians and the \
         median of the rounds' ratios, as above.\n",
        SOURCE_IPS + 1,
        servers::PASSIVE_PORTS,
        args.concurrent_rounds
    );

    let run = |phase: &str| args.phases.iter().any(|p| p == phase);
    // Idle sessions first, on fresh servers.
    if run("idle") {
        let (ours, theirs) = start_both(&args, &work, &password, None).await?;
        let load = loadavg();
        let a = idle_pss(&ours, args.idle).await?;
        let b = match &theirs {
            Some(theirs) => idle_pss(theirs, args.idle).await?,
            None => f64::NAN,
        };
        figures.idle = (a, b);
        rows.push(Row::new(
            format!("{} idle logged-in sessions: PSS per session", args.idle),
            (a / 1024.0, b / 1024.0),
            "KiB",
            load,
        ));
    }

    // Concurrent sessions before the single-stream phase: its PASV+LIST
    // round trips leave vsftpd's passive ports in TIME_WAIT (it binds one
    // per PASV), which could fail its concurrent runs for a minute.
    for &n in args.concurrent.iter().filter(|_| run("concurrent")) {
        let (ours, theirs) = start_both(&args, &work, &password, None).await?;
        let load = loadavg();
        let mut disk_ways = vec![];
        let (a, b) = concurrent_rounds(
            args.concurrent_rounds,
            n,
            &ours,
            theirs.as_ref(),
            &session_file,
            || {
                if run("ceilings") {
                    disk_ways.push(disk_write_parallel(&work, n, session_aligned.as_slice())?);
                }
                Ok(())
            },
        )
        .await?;
        let what = |s: &str| format!("{n} sessions × {s} {SESSION_FILE_MIB} MiB");
        let (retr, retr_ratios) = compare(&a, &b, |c| c.retr);
        rows.push(rate_row(
            what("RETR") + ": aggregate throughput",
            retr,
            retr_ratios,
            load,
        ));
        let (cpu, cpu_ratios) = compare(&a, &b, |c| c.retr_cpu_per_gib);
        rows.push(cpu_per_gib_row(&what("RETR"), cpu, cpu_ratios, load));
        let ((pss_a, pss_b), pss_ratios) = compare(&a, &b, |c| c.pss);
        let mib = MIB as f64;
        rows.push(
            Row::new(
                what("RETR") + ": PSS of all server processes",
                (pss_a / mib, pss_b / mib),
                "MiB",
                load,
            )
            .with_paired_ratios(pss_ratios),
        );
        let (stor, stor_ratios) = compare(&a, &b, |c| c.stor);
        rows.push(rate_row(
            what("STOR") + ": aggregate throughput",
            stor,
            stor_ratios,
            load,
        ));
        let (cpu, cpu_ratios) = compare(&a, &b, |c| c.stor_cpu_per_gib);
        rows.push(cpu_per_gib_row(&what("STOR"), cpu, cpu_ratios, load));
        let (durable, durable_ratios) = compare(&a, &b, |c| c.stor_durable);
        rows.push(rate_row(
            what("STOR") + ": aggregate throughput until durable",
            durable,
            durable_ratios,
            load,
        ));
        // Each round's two ways (O_DIRECT, page cache); the ceiling is the faster.
        let median_of = |figure: fn(&Pair) -> f64| {
            median(&mut disk_ways.iter().map(figure).collect::<Vec<_>>())
        };
        figures.concurrent.push(ConcurrentFigures {
            sessions: n,
            retr_ratio: retr_ratios,
            stor_ratio: stor_ratios,
            stor,
            disk: median_of(|ways| ways.0.max(ways.1)),
            disk_ways: (median_of(|ways| ways.0), median_of(|ways| ways.1)),
        });
    }

    // Single stream, then PASV+LIST on the same sessions.
    if run("single") {
        let (ours, theirs) = start_both(&args, &work, &password, placement).await?;
        let server_cpu = placement.map(|p| p.server);
        let _client_cpu = placement.map(|p| PinnedProcess::to(p.client)).transpose()?;
        let load = loadavg();
        let mut ftp_a = Ftp::login(ours.addr, localhost(), ours.user, &ours.pass).await?;
        let mut ftp_b = match &theirs {
            Some(t) => Some(Ftp::login(t.addr, localhost(), t.user, &t.pass).await?),
            None => None,
        };
        let mut buf = vec![0u8; CLIENT_BUF];
        retr(&mut ftp_a, &ours, big, &mut buf, None).await?; // page cache warm-up
        // Loopback's speed drifts with everything else on the machine, so
        // its ceiling is measured between the downloads, as the disk's is
        // between the uploads.
        let mut tcp = vec![];
        let mut tcp_sendfile = vec![];
        let big_file = work.join("data/big.bin");
        let (a, b) = rounds(
            args.runs,
            (&mut ftp_a, &ours),
            ftp_b.as_mut().zip(theirs.as_ref()),
            async |ftp, server| retr(ftp, server, big, &mut buf, server_cpu).await,
            || {
                if run("ceilings") {
                    tcp.push(iperf3(placement)?);
                    tcp_sendfile.push(sendfile_loopback(placement, &big_file)?);
                }
                Ok(())
            },
        )
        .await?;
        let what = format!("RETR {} MiB, single stream", args.big_mib);
        (figures.retr, figures.retr_ratio) = compare(&a, &b, |t| t.rate);
        figures.iperf = median(&mut tcp);
        figures.sendfile = median(&mut tcp_sendfile);
        rows.push(rate_row(
            what.clone(),
            figures.retr,
            figures.retr_ratio,
            load,
        ));
        rows.push(cpu_row(&what, &a, &b, load));
        // The disk's speed drifts too (a virtual disk shares its host).
        let load = loadavg();
        let mut disk = vec![];
        let (a, b) = rounds(
            args.runs,
            (&mut ftp_a, &ours),
            ftp_b.as_mut().zip(theirs.as_ref()),
            async |ftp, server| stor(ftp, server, contents, server_cpu).await,
            || {
                if run("ceilings") {
                    disk.push(disk_write(&work, contents)?);
                }
                Ok(())
            },
        )
        .await?;
        let what = format!("STOR {} MiB, single stream", args.big_mib);
        (figures.stor, figures.stor_ratio) = compare(&a, &b, |t| t.rate);
        figures.disk = median(&mut disk);
        rows.push(rate_row(
            what.clone(),
            figures.stor,
            figures.stor_ratio,
            load,
        ));
        let (durable, durable_ratio) = compare(&a, &b, |t| t.durable_rate);
        rows.push(rate_row(
            format!("{what}, until durable"),
            durable,
            durable_ratio,
            load,
        ));
        rows.push(cpu_row(&what, &a, &b, load));
        let load = loadavg();
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..3 {
            a.push(list_rate(&mut ftp_a, &ours, args.list_seconds).await?);
            if let (Some(ftp), Some(t)) = (&mut ftp_b, &theirs) {
                b.push(list_rate(ftp, t, args.list_seconds).await?);
            }
        }
        rows.push(Row::new(
            "PASV+LIST round trips, one client".into(),
            (median(&mut a), median(&mut b)),
            "/s",
            load,
        ));
        ftp_a.quit().await.ok();
        if let Some(ftp) = ftp_b {
            ftp.quit().await.ok();
        }
    }

    println!("{}", table(&rows, ("kubeftp", "vsftpd")));
    println!(
        "load: the 1-minute load average as the row's phase began; it counts the benchmark's own \
         earlier phases (and threads waiting for the disk), so read it for other activity only \
         when it is well above what came before.\n"
    );
    println!("Ceilings, measured between the runs:");
    println!(
        "- loopback TCP, iperf3 single stream (median of {} × 3 s, between the RETR runs): {}; kubeftp RETR reaches {}",
        args.runs,
        mib_per_s(figures.iperf),
        percent(figures.retr.0, figures.iperf)
    );
    println!(
        "- loopback TCP moving the RETR file itself, sent by kubeftp's own send path (sendfile(2) in {} KiB calls on a non-blocking socket) and read in blocking {} KiB reads as the client reads it, no FTP (median of {}, between the RETR runs): {}; kubeftp RETR reaches {}. \
         iperf3 writes one 128 KiB buffer again and again, so what its receiver copies was written moments before; a download's page-cache pages come from memory",
        transfer::SENDFILE_CHUNK / 1024,
        CLIENT_BUF / 1024,
        args.runs,
        mib_per_s(figures.sendfile),
        percent(figures.retr.0, figures.sendfile)
    );
    println!(
        "- durable sequential write of {} MiB on the same filesystem, the faster of O_DIRECT and buffered with writeback every 8 MiB, then fsync (median of {}, between the STOR runs): {}; kubeftp STOR reaches {}",
        args.big_mib,
        args.runs,
        mib_per_s(figures.disk),
        percent(figures.stor.0, figures.disk)
    );
    for c in &figures.concurrent {
        println!("- {}", concurrent_ceiling(c, args.concurrent_rounds));
    }
    println!("\nTargets (issue 8):");
    for line in targets(&figures) {
        println!("- {line}");
    }
    Ok(())
}

/// The ceiling line for `c`'s session count, with each way's median: a
/// page-cache figure above the O_DIRECT one says that the disk's ceiling
/// counts on pages the page cache took quickly, which on a virtual machine
/// handing freed memory back to its host changes from round to round.
fn concurrent_ceiling(c: &ConcurrentFigures, rounds: usize) -> String {
    format!(
        "durable write of {n} {SESSION_FILE_MIB} MiB files at once on the same filesystem, \
         one thread per file writing as above (median of {rounds}, between the {n}-session \
         runs): {}; kubeftp's {n}-session STOR reaches {}. Each way's median: O_DIRECT {}, \
         through the page cache {}",
        mib_per_s(c.disk),
        percent(c.stor.0, c.disk),
        mib_per_s(c.disk_ways.0),
        mib_per_s(c.disk_ways.1),
        n = c.sessions,
    )
}

/// The targets, judged on the figures: RETR at least vsftpd's
/// (single stream and at every concurrency) and at least 85% of iperf3;
/// STOR at least vsftpd's, kubeftp fsyncing before its 226; idle memory per
/// session at most a tenth of vsftpd's.
fn targets(f: &Figures) -> Vec<String> {
    let ratio = |(ours, theirs): Pair| ours / theirs;
    let mut lines = vec![
        Verdict::at_least(f.retr_ratio.median, 1.0).line("RETR single stream ≥ vsftpd", "×"),
        Verdict::at_least(ratio((f.retr.0, f.iperf)), 0.85)
            .line("RETR single stream ≥ 85% of iperf3", "× iperf3"),
        Verdict::at_least(f.stor_ratio.median, 1.0).line(
            "STOR single stream ≥ vsftpd (kubeftp fsyncs before 226)",
            "×",
        ) + &beyond_the_disk(f.stor.1, f.disk),
    ];
    for c in &f.concurrent {
        let n = c.sessions;
        lines.push(
            Verdict::at_least(c.retr_ratio.median, 1.0)
                .line(&format!("RETR {n} sessions ≥ vsftpd"), "×"),
        );
        lines.push(
            Verdict::at_least(c.stor_ratio.median, 1.0)
                .line(&format!("STOR {n} sessions ≥ vsftpd"), "×")
                + &beyond_the_disk(c.stor.1, c.disk),
        );
    }
    lines.push(
        Verdict::at_most(ratio(f.idle), 0.1).line("idle session PSS ≤ 1/10 of vsftpd's", "×"),
    );
    lines
}

/// A note for a STOR target when vsftpd's figure (bytes/s, timed until
/// its 226, its upload still in the page cache) is above the disk's
/// durable rate for the same writes: no server that fsyncs each upload
/// before its 226 can reach it there.
fn beyond_the_disk(theirs: f64, disk: f64) -> String {
    if theirs > disk {
        format!(
            "; vsftpd's figure is {:.2}× the disk's durable ceiling ({}), out of reach \
             of any server that fsyncs before 226",
            theirs / disk,
            mib_per_s(disk)
        )
    } else {
        String::new()
    }
}

fn mib_per_s(bytes_per_s: f64) -> String {
    if bytes_per_s.is_nan() {
        "not measured".into()
    } else {
        format!("{:.0} MiB/s", bytes_per_s / MIB as f64)
    }
}

fn percent(part: f64, whole: f64) -> String {
    if (part / whole).is_nan() {
        "- (not measured)".into()
    } else {
        format!("{:.0}% of it", 100.0 * part / whole)
    }
}

/// Medians of one figure of both servers' rounds, and its ratio round by
/// round.
fn compare<T>(ours: &[T], theirs: &[T], figure: fn(&T) -> f64) -> (Pair, Spread) {
    let mut a: Vec<f64> = ours.iter().map(figure).collect();
    let mut b: Vec<f64> = theirs.iter().map(figure).collect();
    let ratios = paired_ratios(&a, &b);
    ((median(&mut a), median(&mut b)), ratios)
}

/// A throughput row from bytes/s medians.
fn rate_row(what: String, (ours, theirs): Pair, ratios: Spread, load: f32) -> Row {
    let mib = MIB as f64;
    Row::new(what, (ours / mib, theirs / mib), "MiB/s", load).with_paired_ratios(ratios)
}

/// The server-CPU row for a single-stream transfer (lower is better).
fn cpu_row(what: &str, ours: &[Transfer], theirs: &[Transfer], load: f32) -> Row {
    let (medians, ratios) = compare(ours, theirs, |t| t.cpu_per_gib);
    cpu_per_gib_row(what, medians, ratios, load)
}

/// A server-CPU row from medians of seconds per GiB (lower is better).
fn cpu_per_gib_row(what: &str, medians: Pair, ratios: Spread, load: f32) -> Row {
    Row::new(format!("{what}: server CPU per GiB"), medians, "s", load).with_paired_ratios(ratios)
}

/// kubeftp/vsftpd for each round: `ours[i] / theirs[i]`.
fn paired_ratios(ours: &[f64], theirs: &[f64]) -> Spread {
    let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
    Spread::of(&ratios)
}

/// kubeftp, and vsftpd unless `--kubeftp-only`; on the placement's server
/// CPU if given.
async fn start_both(
    args: &Args,
    work: &Path,
    password: &str,
    placement: Option<Placement>,
) -> Result<(Server, Option<Server>)> {
    let cpu = placement.map(|p| p.server);
    // The previous phase's servers and sessions are still being torn down
    // (1000 vsftpd processes take a while); neither server should pay for it.
    wait_for_idle_cpu().await;
    let ours = servers::kubeftp(
        &args.server_bin,
        work,
        21210,
        servers::passive_range(servers::KUBEFTP_PASSIVE),
        password,
        cpu,
    )
    .await?;
    if args.kubeftp_only {
        return Ok((ours, None));
    }
    let theirs = servers::vsftpd(
        work,
        21211,
        servers::passive_range(servers::VSFTPD_PASSIVE),
        password,
        cpu,
    )
    .await?;
    Ok((ours, Some(theirs)))
}

/// Waits (at most 30 s) until the CPUs were at least 90% idle for a
/// second.
async fn wait_for_idle_cpu() {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let before = cpus::times(None);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let (Some((idle0, total0)), Some((idle1, total1))) = (before, cpus::times(None))
            && (idle1 - idle0) as f64 >= 0.9 * (total1 - total0) as f64
        {
            return;
        }
    }
    eprintln!("the machine stayed busy for 30 s; measuring anyway");
}

fn localhost() -> IpAddr {
    Ipv4Addr::LOCALHOST.into()
}

/// The source address of concurrent session `i`.
fn source_ip(i: usize) -> IpAddr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCE_IPS) as u8).into()
}

/// A client session on a server.
type Side<'a> = (&'a mut Ftp, &'a Server);

/// `n` rounds of a single-stream measurement on both servers, with
/// `between` (a ceiling's measurement) after each; returns each server's
/// figures in round order. Who goes first alternates by round, so neither
/// always follows the other's teardown.
async fn rounds<T>(
    n: usize,
    ours: Side<'_>,
    mut theirs: Option<Side<'_>>,
    mut measure: impl AsyncFnMut(&mut Ftp, &Server) -> Result<T>,
    mut between: impl FnMut() -> Result<()>,
) -> Result<(Vec<T>, Vec<T>)> {
    let (mut a, mut b) = (vec![], vec![]);
    for round in 0..n {
        let sides = [
            Some((&mut *ours.0, ours.1, &mut a)),
            theirs
                .as_mut()
                .map(|(ftp, server)| (&mut **ftp, *server, &mut b)),
        ];
        for (ftp, server, figures) in in_turn(round, sides).into_iter().flatten() {
            figures.push(measure(ftp, server).await?);
        }
        between()?;
    }
    Ok((a, b))
}

/// Both servers' sides in the order they go in `round`: kubeftp first in
/// even rounds, vsftpd in odd ones.
fn in_turn<T>(round: usize, mut sides: [T; 2]) -> [T; 2] {
    if round % 2 == 1 {
        sides.reverse();
    }
    sides
}

/// What one single-stream transfer measured.
struct Transfer {
    /// Bytes per second until the 226.
    rate: f64,
    /// Bytes per second until the file is on disk (uploads).
    durable_rate: f64,
    /// Busy seconds of the server's CPU per GiB moved, until the 226; NaN
    /// when the server is not on a CPU of its own.
    cpu_per_gib: f64,
}

/// Busy time of the CPU a server runs on, over one transfer.
struct CpuMeter {
    cpu: Option<usize>,
    before: Option<(u64, u64)>,
}

impl CpuMeter {
    fn start(cpu: Option<usize>) -> CpuMeter {
        CpuMeter {
            cpu,
            before: cpu.and_then(|c| cpus::times(Some(c))),
        }
    }

    /// Busy seconds per GiB for `bytes` moved since the start.
    fn per_gib(&self, bytes: u64) -> f64 {
        let after = self.cpu.and_then(|c| cpus::times(Some(c)));
        match (self.before, after) {
            (Some((idle0, total0)), Some((idle1, total1))) => {
                let busy = (total1 - total0).saturating_sub(idle1 - idle0);
                busy as f64 / cpus::ticks_per_second() / (bytes as f64 / (1024 * MIB) as f64)
            }
            _ => f64::NAN,
        }
    }
}

/// One RETR of the big file.
async fn retr(
    ftp: &mut Ftp,
    server: &Server,
    size: u64,
    buf: &mut [u8],
    cpu: Option<usize>,
) -> Result<Transfer> {
    let meter = CpuMeter::start(cpu);
    let started = Instant::now();
    let n = ftp.retr_blocking(&server.path("big.bin"), buf).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu_per_gib = meter.per_gib(n);
    if n != size {
        bail!("{}: RETR moved {n} bytes, expected {size}", server.name);
    }
    Ok(Transfer {
        rate: n as f64 / secs,
        durable_rate: f64::NAN,
        cpu_per_gib,
    })
}

/// One STOR of the big file. Until durable: for a server that does not
/// fsync before its 226 (vsftpd), an fsync of the file right after it. The
/// upload is removed and the page cache written back before the next one.
async fn stor(
    ftp: &mut Ftp,
    server: &Server,
    contents: &[u8],
    cpu: Option<usize>,
) -> Result<Transfer> {
    let meter = CpuMeter::start(cpu);
    let started = Instant::now();
    ftp.stor_blocking(&server.path("up/stor.bin"), contents, CLIENT_BUF)
        .await
        .with_context(|| format!("{}: STOR", server.name))?;
    let secs = started.elapsed().as_secs_f64();
    let cpu_per_gib = meter.per_gib(contents.len() as u64);
    let stored = server.disk_dir.join("up/stor.bin");
    if !server.fsyncs_uploads {
        fs::File::open(&stored)?.sync_all()?;
    }
    let durable_secs = started.elapsed().as_secs_f64();
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
    let rate = |secs: f64| contents.len() as f64 / secs;
    Ok(Transfer {
        rate: rate(secs),
        durable_rate: rate(durable_secs),
        cpu_per_gib,
    })
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
        let (setup, addr, user, pass) =
            (setup.clone(), server.addr, server.user, server.pass.clone());
        tasks.spawn(async move {
            let _permit = setup.acquire().await?;
            Ftp::login(addr, source_ip(i), user, &pass).await
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

/// What `n` sessions at once measured.
struct Concurrent {
    /// Aggregate RETR throughput, bytes/s.
    retr: f64,
    /// Aggregate STOR throughput, bytes/s.
    stor: f64,
    /// The same until every upload is on disk: for a server that does not
    /// fsync before its 226 (vsftpd), a syncfs after the last one.
    stor_durable: f64,
    /// PSS of the server's processes while every session had a RETR open.
    pss: f64,
    /// CPU seconds of all the server's processes per GiB moved, from the
    /// start of the clock to the last 226 (NaN without a cgroup).
    retr_cpu_per_gib: f64,
    stor_cpu_per_gib: f64,
}

impl Concurrent {
    fn failed() -> Concurrent {
        Concurrent {
            retr: f64::NAN,
            stor: f64::NAN,
            stor_durable: f64::NAN,
            pss: f64::NAN,
            retr_cpu_per_gib: f64::NAN,
            stor_cpu_per_gib: f64::NAN,
        }
    }
}

/// Steps the concurrent sessions go through together: each session
/// arrives at a step and waits until the benchmark releases it, which it
/// does once every session has arrived (or fails as soon as one failed).
struct Steps {
    n: usize,
    arrived: [AtomicUsize; Steps::COUNT],
    released: watch::Sender<usize>,
    failure: Mutex<Option<String>>,
}

impl Steps {
    /// Every RETR is open and has moved its first bytes (memory sample).
    const FLOWING: usize = 0;
    /// Every session has a data connection for its RETR, not yet sent.
    const BEFORE_RETR: usize = 1;
    /// Every RETR has ended.
    const RETR_DONE: usize = 2;
    /// Every session has a data connection for its STOR, not yet sent.
    const BEFORE_STOR: usize = 3;
    /// Every STOR has ended; no session has quit yet.
    const STOR_DONE: usize = 4;
    const COUNT: usize = 5;

    fn new(n: usize) -> Arc<Steps> {
        Arc::new(Steps {
            n,
            arrived: Default::default(),
            released: watch::Sender::new(0),
            failure: Mutex::new(None),
        })
    }

    /// A session has reached `step`; returns when the benchmark releases it.
    async fn arrive(&self, step: usize) -> Result<()> {
        self.arrived[step].fetch_add(1, Ordering::SeqCst);
        self.released
            .subscribe()
            .wait_for(|&released| released > step)
            .await?;
        Ok(())
    }

    fn fail(&self, error: &anyhow::Error) {
        self.failure
            .lock()
            .unwrap()
            .get_or_insert_with(|| format!("{error:#}"));
    }

    /// Waits until every session has arrived at `step`.
    async fn all_at(&self, step: usize) -> Result<()> {
        loop {
            if let Some(failure) = self.failure.lock().unwrap().clone() {
                bail!("a session failed: {failure}");
            }
            if self.arrived[step].load(Ordering::SeqCst) == self.n {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn release(&self, step: usize) {
        self.released.send_replace(step + 1);
    }
}

/// `rounds` runs of [`concurrent`] on each server, taking turns to go
/// first as in [`rounds`], with `between` after each; returns each server's
/// figures in round order. A round vsftpd cannot serve is reported, not
/// fatal, and counts as not measured, as do all of vsftpd's with
/// `--kubeftp-only`.
async fn concurrent_rounds(
    rounds: usize,
    n: usize,
    ours: &Server,
    theirs: Option<&Server>,
    contents: &Arc<Vec<u8>>,
    mut between: impl FnMut() -> Result<()>,
) -> Result<(Vec<Concurrent>, Vec<Concurrent>)> {
    let (mut a, mut b) = (vec![], vec![]);
    for round in 0..rounds {
        let sides = [Some((ours, &mut a)), theirs.map(|t| (t, &mut b))];
        for (server, figures) in in_turn(round, sides).into_iter().flatten() {
            // The other server's sessions are still being torn down.
            wait_for_idle_cpu().await;
            figures.push(match concurrent(server, n, contents).await {
                Ok(figures) => figures,
                Err(e) if !std::ptr::eq(server, ours) => {
                    println!("{} failed {n} concurrent sessions: {e:#}\n", server.name);
                    Concurrent::failed()
                }
                Err(e) => return Err(e),
            });
        }
        between()?;
    }
    b.resize_with(rounds, Concurrent::failed);
    Ok((a, b))
}

/// `n` sessions move the 10 MiB file at the same time, down then up.
///
/// The clock of each direction starts at a barrier before the transfer
/// commands: every session has its data connection open but has not sent
/// RETR (or STOR), so no server has sent a byte yet; it stops at the last
/// 226. Starting the clock once data flows instead would leave out what the
/// servers pushed into the loopback socket buffers (several MiB per
/// connection, a large part of a 10 MiB file) while the other sessions were
/// still being set up, and inflate the figure. The memory sample is taken
/// in a separate, untimed pass with every transfer open.
async fn concurrent(server: &Server, n: usize, contents: &Arc<Vec<u8>>) -> Result<Concurrent> {
    let size = contents.len() as u64;
    let setup = Arc::new(Semaphore::new(SETUP_PARALLEL));
    let steps = Steps::new(n);
    let epoch = Instant::now();
    // When the last RETR and the last STOR ended, in ns since `epoch`.
    let ended = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (setup, steps, ended, contents) = (
            setup.clone(),
            steps.clone(),
            ended.clone(),
            contents.clone(),
        );
        let (addr, user, pass) = (server.addr, server.user, server.pass.clone());
        let (file, upload) = (
            server.path("10m.bin"),
            server.path(&format!("up/c-{i}.bin")),
        );
        tasks.spawn(async move {
            let run = async {
                let mut buf = vec![0u8; SESSION_BUF];
                let finished = |which: usize| {
                    let at = epoch.elapsed().as_nanos() as u64;
                    ended[which].fetch_max(at, Ordering::SeqCst);
                };

                // 1. Memory: every transfer open at once.
                let permit = setup.acquire().await?;
                let mut ftp = Ftp::login(addr, source_ip(i), user, &pass).await?;
                let mut data = ftp.begin_retr(&file).await?;
                let first = data.read(&mut buf).await? as u64;
                drop(permit);
                steps.arrive(Steps::FLOWING).await?;
                let rest = ftp::drain(&mut data, &mut buf).await?;
                drop(data); // as in Ftp::retr_blocking
                ftp.end_transfer().await?;
                if first + rest != size {
                    bail!("moved {} bytes, expected {size}", first + rest);
                }

                // 2. RETR, timed.
                let permit = setup.acquire().await?;
                let mut data = ftp.open_data().await?;
                drop(permit);
                steps.arrive(Steps::BEFORE_RETR).await?;
                ftp.send_retr(&file).await?;
                let n = ftp::drain(&mut data, &mut buf).await?;
                drop(data);
                ftp.end_transfer().await?;
                finished(0);
                if n != size {
                    bail!("RETR moved {n} bytes, expected {size}");
                }
                steps.arrive(Steps::RETR_DONE).await?;

                // 3. STOR, timed.
                let permit = setup.acquire().await?;
                let data = ftp.open_data().await?;
                drop(permit);
                steps.arrive(Steps::BEFORE_STOR).await?;
                ftp.send_stor(&upload).await?;
                ftp.finish_stor(data, &contents, SESSION_BUF).await?;
                finished(1);
                steps.arrive(Steps::STOR_DONE).await?;
                ftp.quit().await.ok();
                anyhow::Ok(())
            };
            let r = run.await;
            if let Err(e) = &r {
                steps.fail(e);
            }
            r
        });
    }
    let context = || format!("{}: {n} concurrent sessions", server.name);

    steps.all_at(Steps::FLOWING).await.with_context(context)?;
    let pss = server.pss()? as f64;
    steps.release(Steps::FLOWING);

    steps
        .all_at(Steps::BEFORE_RETR)
        .await
        .with_context(context)?;
    eprintln!("{}: {n} sessions: RETR starts", server.name);
    let retr_start = epoch.elapsed().as_nanos() as u64;
    let retr_cpu = server.cpu_seconds();
    steps.release(Steps::BEFORE_RETR);
    steps.all_at(Steps::RETR_DONE).await.with_context(context)?;
    let retr_cpu = server.cpu_seconds() - retr_cpu;
    let retr_secs = (ended[0].load(Ordering::SeqCst) - retr_start) as f64 / 1e9;
    steps.release(Steps::RETR_DONE);

    steps
        .all_at(Steps::BEFORE_STOR)
        .await
        .with_context(context)?;
    eprintln!("{}: {n} sessions: STOR starts", server.name);
    let stor_start = epoch.elapsed().as_nanos() as u64;
    let stor_cpu = server.cpu_seconds();
    steps.release(Steps::BEFORE_STOR);
    steps.all_at(Steps::STOR_DONE).await.with_context(context)?;
    let stor_cpu = server.cpu_seconds() - stor_cpu;
    steps.release(Steps::STOR_DONE);
    while let Some(r) = tasks.join_next().await {
        r?.with_context(context)?;
    }
    let stor_secs = (ended[1].load(Ordering::SeqCst) - stor_start) as f64 / 1e9;
    let durable_secs = if server.fsyncs_uploads {
        stor_secs
    } else {
        syncfs(&server.disk_dir.join("up"))?;
        (epoch.elapsed().as_nanos() as u64 - stor_start) as f64 / 1e9
    };

    // Every upload complete, then gone before the next run.
    for i in 0..n {
        let path = server.disk_dir.join(format!("up/c-{i}.bin"));
        let len = fs::metadata(&path)?.len();
        if len != size {
            bail!("{}: upload {i} stored {len} bytes of {size}", server.name);
        }
        fs::remove_file(&path)?;
    }
    sync();

    let bytes = (n as u64 * size) as f64;
    let gib = bytes / (1024 * MIB) as f64;
    let result = Concurrent {
        retr: bytes / retr_secs,
        stor: bytes / stor_secs,
        stor_durable: bytes / durable_secs,
        pss,
        retr_cpu_per_gib: retr_cpu / gib,
        stor_cpu_per_gib: stor_cpu / gib,
    };
    eprintln!(
        "{}: {n} sessions: RETR {:.0} MiB/s ({:.3} CPU s/GiB), STOR {:.0} MiB/s ({:.3} CPU s/GiB), \
         PSS {:.1} MiB",
        server.name,
        result.retr / MIB as f64,
        result.retr_cpu_per_gib,
        result.stor / MIB as f64,
        result.stor_cpu_per_gib,
        pss / MIB as f64
    );
    Ok(result)
}

/// Writes back everything dirty on `dir`'s filesystem and waits for it.
fn syncfs(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(dir)?;
    // SAFETY: syncfs on an open descriptor.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        bail!(
            "syncfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Loopback TCP throughput, one stream; bytes per second. Placed like the
/// FTP downloads: the sender (iperf3's client) where the FTP server runs,
/// the receiver where the FTP client does.
fn iperf3(placement: Option<Placement>) -> Result<f64> {
    let port = "5299";
    let mut server = cpus::pin_command(&mut Command::new("iperf3"), placement.map(|p| p.client))
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", port])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting iperf3 (apt-get install iperf3)")?;
    std::thread::sleep(Duration::from_millis(300));
    let out = cpus::pin_command(&mut Command::new("iperf3"), placement.map(|p| p.server))
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

/// Loopback TCP moving `file` once, the RETR path without FTP: sent by
/// kubeftp's own `send_file`, as it sends a download (sendfile(2) on a
/// non-blocking socket, waiting for room on a tokio runtime), from a thread
/// on the servers' CPU; read with blocking [`CLIENT_BUF`] reads, as the
/// benchmark's client reads a single stream, on this thread (on the
/// client's CPU while the single streams run). Bytes per second.
fn sendfile_loopback(placement: Option<Placement>, file: &Path) -> Result<f64> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let file = fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = file.metadata()?.len();
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<u64> {
        if let Some(p) = placement {
            cpus::pin_this_thread(p.server)?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let socket = tokio::net::TcpStream::connect(addr).await?;
            let file = tokio::fs::File::from_std(file);
            let idle_limit = Duration::from_secs(60);
            transfer::send_file(file, socket, Default::default(), idle_limit).await
        })
    });
    let (mut connection, _) = listener.accept()?;
    let received = ftp::drain_blocking(&mut connection, &mut vec![0u8; CLIENT_BUF])?;
    let secs = started.elapsed().as_secs_f64();
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sendfile thread panicked"))?
        .context("sending the file with kubeftp's send_file")?;
    if sent != size {
        bail!("kubeftp's send_file sent {sent} bytes, expected {size}");
    }
    if received != size {
        bail!("loopback sendfile moved {received} bytes, expected {size}");
    }
    Ok(received as f64 / secs)
}

/// The disk's durable sequential write rate, a STOR ceiling: `contents`
/// written then fsynced, the faster of two ways (bytes/s): O_DIRECT in
/// 1 MiB writes (as kubeftp writes uploads where it can), and through the
/// page cache with writeback started every 8 MiB (its fallback).
fn disk_write(work: &Path, contents: &[u8]) -> Result<f64> {
    let path = work.join("disk-ceiling.bin");
    let direct = disk_write_direct(&path, contents)?;
    fs::remove_file(&path)?;
    sync();
    let buffered = disk_write_buffered(&path, contents)?;
    fs::remove_file(&path)?;
    sync();
    Ok(contents.len() as f64 / direct.min(buffered))
}

/// Seconds to write `contents` (starting at an aligned address: see
/// [`read_aligned`]) to `path` with O_DIRECT, then fsync.
fn disk_write_direct(path: &Path, contents: &[u8]) -> Result<f64> {
    use std::os::unix::fs::OpenOptionsExt;
    let whole = contents.len() - contents.len() % DIRECT_ALIGN;
    let started = Instant::now();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .context("O_DIRECT on the bench directory's filesystem")?;
    for piece in contents[..whole].chunks(CLIENT_BUF) {
        f.write_all(piece)?;
    }
    drop(f);
    let mut f = fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(&contents[whole..])?;
    f.sync_all()?;
    Ok(started.elapsed().as_secs_f64())
}

/// The whole file in a buffer that starts at a [`DIRECT_ALIGN`]ed address,
/// of huge pages where the kernel gives them, as kubeftp's upload buffers
/// are: the O_DIRECT ceilings then write physically contiguous pieces.
fn read_aligned(path: &Path) -> Result<AlignedBuf> {
    use std::io::Read as _;
    let mut file = fs::File::open(path)?;
    let mut buf = AlignedBuf::new(file.metadata()?.len() as usize)?;
    file.read_exact(buf.as_mut_slice())?;
    Ok(buf)
}

/// Seconds to write `contents` to `path` through the page cache, starting
/// writeback every 8 MiB, then fsync.
fn disk_write_buffered(path: &Path, contents: &[u8]) -> Result<f64> {
    use std::os::fd::AsRawFd;
    const WRITEBACK_EVERY: usize = 8 * MIB as usize;
    let started = Instant::now();
    let mut f = fs::File::create(path)?;
    let mut flushed = 0;
    for (i, piece) in contents.chunks(CLIENT_BUF).enumerate() {
        f.write_all(piece)?;
        let written = (i * CLIENT_BUF + piece.len()) as i64;
        if written - flushed >= WRITEBACK_EVERY as i64 {
            // SAFETY: sync_file_range on an open fd; advisory only.
            unsafe {
                libc::sync_file_range(
                    f.as_raw_fd(),
                    flushed,
                    written - flushed,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            flushed = written;
        }
    }
    f.sync_all()?;
    Ok(started.elapsed().as_secs_f64())
}

/// The disk's durable write rate for `n` files of `contents` (starting at
/// an aligned address: see [`read_aligned`]) written at once, the STOR
/// ceiling of `n` concurrent sessions: one thread per file, each writing as
/// the single-stream ceiling does, by [`disk_write_direct`] and by
/// [`disk_write_buffered`]. Bytes per second each way, timed from the
/// moment every thread is ready to the last fsync.
fn disk_write_parallel(work: &Path, n: usize, contents: &[u8]) -> Result<Pair> {
    let dir = work.join("disk-ceiling");
    let rate = |write: fn(&Path, &[u8]) -> Result<f64>| -> Result<f64> {
        fs::create_dir_all(&dir)?;
        let seconds = parallel_writes(&dir, n, contents, write)?;
        fs::remove_dir_all(&dir)?;
        sync();
        Ok((n * contents.len()) as f64 / seconds)
    };
    Ok((rate(disk_write_direct)?, rate(disk_write_buffered)?))
}

/// Seconds for `n` threads to `write` a file of `contents` each in `dir`.
fn parallel_writes(
    dir: &Path,
    n: usize,
    contents: &[u8],
    write: fn(&Path, &[u8]) -> Result<f64>,
) -> Result<f64> {
    let ready = std::sync::Barrier::new(n + 1);
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..n)
            .map(|i| {
                let (path, ready) = (dir.join(format!("{i}.bin")), &ready);
                scope.spawn(move || {
                    ready.wait();
                    write(&path, contents)
                })
            })
            .collect();
        ready.wait();
        let started = Instant::now();
        for writer in writers {
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("a disk writer thread panicked"))??;
        }
        Ok(started.elapsed().as_secs_f64())
    })
}

/// The test files, made once: big.bin (random), 10m.bin, and a directory
/// of 20 small files to list. Returns the big file's size.
fn prepare_data(work: &Path, big_mib: u64) -> Result<u64> {
    let data = work.join("data");
    fs::create_dir_all(data.join("list"))?;
    let mut rng = rand::rng();
    let mut chunk = vec![0u8; MIB as usize];
    for (name, mib) in [("big.bin", big_mib), ("10m.bin", SESSION_FILE_MIB)] {
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

/// The kernel's default TCP congestion control, which every connection of
/// the run (servers, client, iperf3) uses.
fn congestion_control() -> String {
    fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Names the congestion control; for BBR, adds what it does to loopback
/// figures (loopback has no fq qdisc, so the kernel paces with timers).
fn congestion_control_note(name: &str) -> String {
    let mut note = format!("TCP congestion control: {name}.");
    if name == "bbr" {
        note.push_str(
            " BBR paces each connection, on loopback with the kernel's timers; on a \
             2-CPU virtual machine that made a 1 GiB RETR 2-4x slower than with CUBIC. \
             It weighs on iperf3 and both servers alike.",
        );
    }
    note
}

fn vsftpd_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "vsftpd"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sendfile ceiling moves the whole file, over more than one call
    /// and a last short one, and fails on a file it cannot open.
    #[test]
    fn the_sendfile_ceiling_moves_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, vec![5u8; 2 * MIB as usize + 3]).unwrap();
        let rate = sendfile_loopback(None, &path).unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
        assert!(sendfile_loopback(None, &dir.path().join("missing")).is_err());
    }

    /// The kubeftp-server binary of this build (`make test` builds it with
    /// the workspace's tests): beside the directory of this test binary.
    fn server_bin() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("kubeftp-server");
        assert!(
            bin.exists(),
            "{} is missing: build it first (cargo build -p kubeftp-server)",
            bin.display()
        );
        bin
    }

    /// Passive ports for the round below that nothing listens on now, in
    /// the gap between the benchmark's own ranges (up to
    /// [`servers::VSFTPD_PASSIVE`]'s end) and the kernel's ephemeral ports,
    /// so the test can run beside a benchmark or another copy of itself.
    fn free_passive_range() -> std::ops::RangeInclusive<u16> {
        const PORTS: u16 = 16;
        let gap = servers::VSFTPD_PASSIVE + servers::PASSIVE_PORTS..32768;
        let start = gap.start + (std::process::id() % 64) as u16 * PORTS;
        let mut firsts = (start..gap.end - PORTS)
            .chain(gap.start..start)
            .step_by(PORTS as usize);
        let first = firsts
            .find(|&first| {
                // Held together, so the whole range is free at one moment.
                let held: Result<Vec<_>, _> = (first..first + PORTS)
                    .map(|port| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)))
                    .collect();
                held.is_ok()
            })
            .expect("no 16 free ports below 32768");
        first..=first + PORTS - 1
    }

    /// A file of 3 MiB and a bit, in a pattern that shows misplaced bytes.
    fn test_file() -> Vec<u8> {
        (0..3 * MIB as usize + 1234)
            .map(|i| (i % 251) as u8)
            .collect()
    }

    /// A kubeftp-server of this build on a free port, serving `contents`
    /// as `name` (and an empty `list` directory) from a fresh work
    /// directory, which lives as long as the returned guard.
    async fn start_kubeftp(name: &str, contents: &[u8]) -> (tempfile::TempDir, Server) {
        let work = tempfile::tempdir().unwrap();
        fs::create_dir_all(work.path().join("data/list")).unwrap();
        fs::write(work.path().join("data").join(name), contents).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = servers::kubeftp(
            &server_bin(),
            work.path(),
            port,
            free_passive_range(),
            &servers::password(),
            None,
        )
        .await
        .unwrap();
        (work, server)
    }

    /// Taken by each test that starts a kubeftp-server: the servers of one
    /// test process share a cgroup name, and their passive ranges may be
    /// the same.
    static ONE_SERVER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// One concurrent round against a real kubeftp-server: every session
    /// moves the whole file both ways through the round's barriers, the
    /// uploads arrive whole (checked and removed by the round), and every
    /// figure is measured. CPU figures need a cgroup (root).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_concurrent_round_measures_both_directions() {
        let _alone = ONE_SERVER_AT_A_TIME.lock().await;
        let contents = test_file();
        let (_work, server) = start_kubeftp("10m.bin", &contents).await;

        let contents = Arc::new(contents);
        let round =
            tokio::time::timeout(Duration::from_secs(120), concurrent(&server, 8, &contents))
                .await
                .expect("the round did not end: a barrier never released")
                .unwrap();
        for (what, figure) in [
            ("RETR", round.retr),
            ("STOR", round.stor),
            ("PSS", round.pss),
        ] {
            assert!(figure.is_finite() && figure > 0.0, "{what}: {figure}");
        }
        // kubeftp's 226 comes after its fsync: nothing to add.
        assert_eq!(round.stor_durable, round.stor);
        let up = server.disk_dir.join("up");
        assert_eq!(fs::read_dir(&up).unwrap().count(), 0, "uploads left behind");
        if server.cpu_seconds().is_finite() {
            for cpu in [round.retr_cpu_per_gib, round.stor_cpu_per_gib] {
                assert!(cpu.is_finite() && cpu > 0.0, "CPU per GiB: {cpu}");
            }
        } else {
            eprintln!("no cgroup here: the CPU figures are not checked");
        }
    }

    /// The single-stream client, which reads and writes its data
    /// connections with blocking calls, moves a whole file each way
    /// against a real kubeftp-server (`retr` and `stor` check the sizes).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_single_stream_moves_the_whole_file_both_ways() {
        let _alone = ONE_SERVER_AT_A_TIME.lock().await;
        let contents = test_file();
        let size = contents.len() as u64;
        let (_work, server) = start_kubeftp("big.bin", &contents).await;
        let mut ftp = Ftp::login(server.addr, localhost(), server.user, &server.pass)
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let down = retr(&mut ftp, &server, size, &mut buf, None).await.unwrap();
        assert!(down.rate.is_finite() && down.rate > 0.0, "{}", down.rate);
        let up = stor(&mut ftp, &server, &contents, None).await.unwrap();
        assert!(up.rate.is_finite() && up.rate > 0.0, "{}", up.rate);
        // The session goes on after both.
        let (code, _) = ftp.command("NOOP").await.unwrap();
        assert_eq!(code, 200);
    }

    #[test]
    fn only_bbr_gets_the_pacing_note() {
        assert!(congestion_control_note("bbr").contains("paces"));
        assert_eq!(
            congestion_control_note("cubic"),
            "TCP congestion control: cubic."
        );
    }

    #[test]
    fn sources_stay_on_loopback() {
        assert_eq!(source_ip(0), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(source_ip(SOURCE_IPS), IpAddr::from([127, 0, 0, 2]));
        assert!(source_ip(SOURCE_IPS - 1).is_loopback());
    }

    #[test]
    fn cpu_is_measured_only_on_a_cpu_of_its_own() {
        assert!(CpuMeter::start(None).per_gib(MIB).is_nan());
        let on_cpu0 = CpuMeter::start(Some(0)).per_gib(MIB);
        assert!(on_cpu0 >= 0.0, "{on_cpu0}");
    }

    #[test]
    fn compare_pairs_rounds_in_order() {
        let t = |rate| Transfer {
            rate,
            durable_rate: f64::NAN,
            cpu_per_gib: f64::NAN,
        };
        let ours = [t(10.0), t(30.0), t(20.0)];
        let theirs = [t(20.0), t(20.0), t(10.0)];
        let (medians, ratios) = compare(&ours, &theirs, |t| t.rate);
        assert_eq!(medians, (20.0, 20.0));
        assert_eq!((ratios.median, ratios.min, ratios.max), (1.5, 0.5, 2.0));
    }

    #[test]
    fn servers_take_turns_to_go_first() {
        assert_eq!(in_turn(0, ["kubeftp", "vsftpd"]), ["kubeftp", "vsftpd"]);
        assert_eq!(in_turn(1, ["kubeftp", "vsftpd"]), ["vsftpd", "kubeftp"]);
        assert_eq!(in_turn(2, ["kubeftp", "vsftpd"]), ["kubeftp", "vsftpd"]);
    }

    #[test]
    fn the_concurrent_ceiling_gives_each_way() {
        let mib = MIB as f64;
        let c = ConcurrentFigures {
            sessions: 100,
            retr_ratio: Spread::of(&[1.0]),
            stor_ratio: Spread::of(&[0.6]),
            stor: (850.0 * mib, 1000.0 * mib),
            disk: 2440.0 * mib,
            disk_ways: (1365.0 * mib, 2440.0 * mib),
        };
        let line = concurrent_ceiling(&c, 3);
        assert!(
            line.contains("(median of 3, between the 100-session runs)"),
            "{line}"
        );
        assert!(
            line.contains(": 2440 MiB/s; kubeftp's 100-session STOR reaches 35% of it."),
            "{line}"
        );
        assert!(
            line.ends_with("O_DIRECT 1365 MiB/s, through the page cache 2440 MiB/s"),
            "{line}"
        );
    }

    #[test]
    fn unmeasured_ceilings_say_so() {
        assert_eq!(percent(1.0, f64::NAN), "- (not measured)");
        assert_eq!(percent(f64::NAN, 2.0), "- (not measured)");
        assert_eq!(percent(1.0, 2.0), "50% of it");
        assert_eq!(mib_per_s(f64::NAN), "not measured");
    }

    #[test]
    fn targets_are_judged_or_marked_unmeasured() {
        let f = Figures {
            iperf: 1000.0,
            sendfile: f64::NAN,
            disk: f64::NAN,
            // The rounds' ratios judge, not the ratio of the medians.
            retr: (900.0, 950.0),
            stor: (f64::NAN, 5.0),
            retr_ratio: Spread::of(&[0.95, 1.2, 1.1]),
            stor_ratio: Spread::of(&[]),
            idle: (10.0, 200.0),
            concurrent: vec![ConcurrentFigures {
                sessions: 100,
                retr_ratio: Spread::of(&[0.5, 0.5, 1.5]),
                stor_ratio: Spread::of(&[0.9, 1.0, 1.1]),
                stor: (1000.0, 1000.0),
                disk: f64::NAN,
                disk_ways: (f64::NAN, f64::NAN),
            }],
        };
        let lines = targets(&f);
        assert!(
            lines[0].starts_with("RETR single stream ≥ vsftpd: met"),
            "{lines:?}"
        );
        assert!(lines[0].contains("(1.10×)"), "{lines:?}");
        assert!(lines[1].contains(": met"), "{lines:?}");
        assert!(lines[2].contains("not measured"), "{lines:?}");
        assert!(lines[3].contains("NOT met (0.50×)"), "{lines:?}");
        assert!(lines[4].contains(": met (1.00×)"), "{lines:?}");
        assert!(lines[5].contains(": met (0.05"), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("ceiling")), "{lines:?}");
    }

    #[test]
    fn stor_targets_say_when_vsftpd_outran_the_disk() {
        let mib = MIB as f64;
        let concurrent = |theirs: f64| ConcurrentFigures {
            sessions: 100,
            retr_ratio: Spread::of(&[1.0]),
            stor_ratio: Spread::of(&[0.8]),
            stor: (1000.0 * mib, theirs * mib),
            disk: 1200.0 * mib,
            disk_ways: (1200.0 * mib, 900.0 * mib),
        };
        let f = Figures {
            iperf: f64::NAN,
            sendfile: f64::NAN,
            disk: 1000.0 * mib,
            retr: (f64::NAN, f64::NAN),
            stor: (900.0 * mib, 800.0 * mib),
            retr_ratio: Spread::of(&[]),
            stor_ratio: Spread::of(&[1.1]),
            idle: (f64::NAN, f64::NAN),
            concurrent: vec![concurrent(1500.0), concurrent(1100.0)],
        };
        let lines = targets(&f);
        assert!(lines[2].ends_with(": met (1.10×)"), "{lines:?}");
        assert!(
            lines[4].ends_with(
                "NOT met (0.80×); vsftpd's figure is 1.25× the disk's durable ceiling \
                 (1200 MiB/s), out of reach of any server that fsyncs before 226"
            ),
            "{lines:?}"
        );
        assert!(lines[6].ends_with("NOT met (0.80×)"), "{lines:?}");
    }
}
