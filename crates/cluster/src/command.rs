//! Running the host tools the cluster is wired with (`ip`, `ctr`, ...).

use std::ffi::OsStr;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `program args...` and returns its stdout; a failure names the
/// command and carries its stderr.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = || {
        let words: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        format!("{program} {}", words.join(" "))
    };
    let output = Command::new(program)
        .args(&args)
        .output()
        .with_context(|| format!("running `{}` (is it installed?)", shown()))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            shown(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command given as one string of space-separated words.
pub fn sh(line: &str) -> Result<String> {
    let mut words = line.split_whitespace();
    let program = words.next().context("empty command")?;
    run(program, words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_stdout() {
        assert_eq!(sh("echo hello").unwrap(), "hello\n");
    }

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let message = run("sh", ["-c", "echo oops >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(message.contains("sh -c"), "{message}");
        assert!(message.contains("oops"), "{message}");
    }

    #[test]
    fn missing_program_is_named() {
        let message = sh("no-such-program-kubeftp").unwrap_err().to_string();
        assert!(message.contains("no-such-program-kubeftp"), "{message}");
    }
}
