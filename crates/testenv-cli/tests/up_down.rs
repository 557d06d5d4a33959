//! `up` gives a person a control plane that kubectl can use; `down` leaves
//! nothing behind.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, ensure};

const BIN: &str = env!("CARGO_BIN_EXE_kubeftp-testenv");

fn testenv(args: &[&str], dir: &Path) -> Result<String> {
    let out = Command::new(BIN)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "kubeftp-testenv {args:?} failed: {stderr}"
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Running and not a zombie (`up` leaves `run` to whichever process adopts it).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn up_serves_kubectl_and_down_cleans_up() -> Result<()> {
    let parent = tempfile::tempdir()?;
    let dir = parent.path().join("cluster");

    // A descriptor the caller leaves open to children, as `flock FILE
    // make up` does: the background process must not hold it.
    let held = parent.path().join("held.lock");
    let file = std::fs::File::create(&held)?;
    // SAFETY: clears FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_SETFD, 0) };

    let printed = testenv(&["up"], &dir)?;
    let kubeconfig = dir.join("kubeconfig");
    ensure!(
        printed.contains(&kubeconfig.display().to_string()),
        "{printed}"
    );
    let pid: u32 = std::fs::read_to_string(dir.join("pid"))?.trim().parse()?;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = std::fs::read_link(fd?.path()).unwrap_or_default();
        ensure!(
            target != held,
            "the background process inherited {}",
            held.display()
        );
    }
    drop(file);

    // A second `up` finds the running one instead of starting another.
    testenv(&["up"], &dir)?;
    ensure!(std::fs::read_to_string(dir.join("pid"))?.trim() == pid.to_string());

    let kubectl =
        kubeftp_testenv::tools::binary_in(&kubeftp_testenv::tools::tools_dir(), "kubectl")?;
    let out = Command::new(kubectl)
        .args(["get", "ns", "default", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(String::from_utf8(out.stdout)?.trim() == "namespace/default");

    testenv(&["down"], &dir)?;
    ensure!(!alive(pid), "kubeftp-testenv run (pid {pid}) still running");
    ensure!(!dir.exists(), "{} left behind", dir.display());
    Ok(())
}
