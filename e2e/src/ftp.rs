//! Real FTP clients, curl and lftp, run inside a [`NatClient`]'s
//! namespace, with their protocol logs kept so tests can check what the
//! server said (which address a 227 reply carried, that EPSV was used).

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::nat::NatClient;

/// How data connections are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passive {
    /// PASV: the server's 227 reply names an address and port.
    Pasv,
    /// EPSV: the 229 reply names only a port; the client reuses the
    /// control connection's address.
    Epsv,
}

/// One server as one client reaches it.
pub struct Session<'a> {
    pub nat: &'a NatClient,
    /// An address, or a name the client resolves (see [`NatClient::add_host`]).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub passive: Passive,
    /// FTPS (AUTH TLS, protected data) verified against this CA file; the
    /// certificate must name `host`.
    pub tls_ca: Option<&'a Path>,
}

impl Session<'_> {
    /// `curl -T`: uploads `local` as `remote`; returns curl's protocol log.
    pub fn curl_put(&self, local: &Path, remote: &str) -> Result<String> {
        let mut args = vec!["-T".to_owned(), local.display().to_string()];
        args.push(self.url(remote));
        self.curl(&args)
    }

    /// Downloads `remote` into `local`; returns curl's protocol log.
    pub fn curl_get(&self, remote: &str, local: &Path) -> Result<String> {
        let args = vec![
            "-o".to_owned(),
            local.display().to_string(),
            self.url(remote),
        ];
        self.curl(&args)
    }

    /// Lists the home directory until that works: a Service's address is
    /// published before every proxy on the way routes it.
    pub async fn wait_until_reachable(&self) -> Result<()> {
        crate::cluster::eventually(
            &format!("{}:{} answering", self.host, self.port),
            crate::SETTLE_TIMEOUT,
            || async { Ok(self.curl(&[self.url("")]).ok().map(|_| ())) },
        )
        .await
    }

    fn url(&self, remote: &str) -> String {
        format!("ftp://{}:{}/{remote}", self.host, self.port)
    }

    fn curl(&self, args: &[String]) -> Result<String> {
        let mut command = self.nat.command("curl");
        command
            .args(["--silent", "--show-error", "--fail", "--verbose"])
            .args(["--max-time", "60", "--ftp-create-dirs"])
            .args(["--user", &format!("{}:{}", self.user, self.password)]);
        if self.passive == Passive::Pasv {
            command.arg("--disable-epsv");
        }
        if let Some(ca) = self.tls_ca {
            command.arg("--ssl-reqd").arg("--cacert").arg(ca);
        }
        let output = command.args(args).output().context("running curl")?;
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            bail!("curl failed ({}):\n{log}", output.status);
        }
        Ok(log)
    }

    /// Runs lftp `commands` (one per line) after logging in with the
    /// session's settings; returns lftp's protocol log.
    pub fn lftp(&self, commands: &str) -> Result<String> {
        let epsv = if self.passive == Passive::Epsv {
            "yes"
        } else {
            "no"
        };
        let mut script = format!(
            "set net:max-retries 1\n\
             set net:timeout 30\n\
             set ftp:passive-mode on\n\
             set ftp:prefer-epsv {epsv}\n\
             set ftp:fix-pasv-address no\n"
        );
        match self.tls_ca {
            Some(ca) => script.push_str(&format!(
                "set ftp:ssl-force yes\n\
                 set ftp:ssl-protect-data yes\n\
                 set ssl:verify-certificate yes\n\
                 set ssl:ca-file {}\n",
                ca.display()
            )),
            None => script.push_str("set ftp:ssl-allow no\n"),
        }
        script.push_str(&format!(
            "open -u {},{} -p {} {}\n{commands}\n",
            self.user, self.password, self.port, self.host
        ));
        let output = self
            .nat
            .command("lftp")
            .arg("-d")
            .arg("-c")
            .arg(&script)
            .output()
            .context("running lftp")?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // lftp exits 0 even when a command in -c fails; its log says so.
        let failed = log
            .lines()
            .any(|line| line.contains("Fatal error") || line.contains("Access failed"));
        if !output.status.success() || failed {
            bail!("lftp failed ({}):\n{log}", output.status);
        }
        Ok(log)
    }
}

/// The address the server's first 227 reply in `log` names.
pub fn pasv_address(log: &str) -> Option<Ipv4Addr> {
    let line = log.lines().find(|line| line.contains("227 "))?;
    let numbers = &line[line.find('(')? + 1..line.find(')')?];
    let parts: Vec<u8> = numbers
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    (parts.len() == 6).then(|| Ipv4Addr::new(parts[0], parts[1], parts[2], parts[3]))
}

/// Whether the data connections in `log` were set up with EPSV only (no
/// PASV command sent: curl logs it as `> PASV`, lftp as `---> PASV`).
pub fn used_only_epsv(log: &str) -> bool {
    log.contains("229 ") && !log.lines().any(|line| line.contains("> PASV"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pasv_address_from_curl_and_lftp_logs() {
        let curl = "> PASV\r\n< 227 Entering Passive Mode (10,203,0,10,117,48).\r\n";
        assert_eq!(pasv_address(curl), Some(Ipv4Addr::new(10, 203, 0, 10)));
        let lftp = "---> PASV\n<--- 227 Entering Passive Mode (10,203,0,11,117,49)\n";
        assert_eq!(pasv_address(lftp), Some(Ipv4Addr::new(10, 203, 0, 11)));
        assert_eq!(
            pasv_address("< 229 Entering Extended Passive Mode (|||30000|)"),
            None
        );
    }

    #[test]
    fn tells_epsv_only_from_a_fallback_to_pasv() {
        assert!(used_only_epsv(
            "> EPSV\n< 229 Entering Extended Passive Mode (|||30000|)\n"
        ));
        let fell_back = "> EPSV\n< 500 no\n> PASV\n< 227 Entering Passive Mode (1,2,3,4,5,6)\n";
        assert!(!used_only_epsv(fell_back));
        // FEAT lists PASV; that is not using it.
        let lftp = "<--- 211-Features:\n<---  PASV\n---> EPSV\n<--- 229 Entering (|||30006|)\n";
        assert!(used_only_epsv(lftp));
    }
}
