//! A client behind NAT: two network namespaces on this machine.
//!
//! ```text
//! client kfe2e-cN            router kfe2e-rN                       host
//! eth0 10.210.N.2 ---- lan 10.210.N.1  wan 10.211.N.2 ---- kfe2eN 10.211.N.1 --> cluster
//!                         (MASQUERADE out of wan)
//! ```
//!
//! The client's connections leave the router as 10.211.N.2 and the host
//! routes them to the load balancers' addresses like any other traffic
//! (to the local cluster's node, or onto kind's Docker network). Servers
//! see the router's address, never the client's: a client behind NAT.
//! Everything is removed on drop, and leftovers of a killed run before the
//! first client is made.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context, Result, bail};

const PREFIX: &str = "kfe2e";

pub struct NatClient {
    index: u8,
}

impl NatClient {
    /// Builds a new client and router pair. Fails, with what went wrong,
    /// when this process may not (not root, no iproute2 or iptables).
    pub fn new() -> Result<NatClient> {
        static SWEPT: Once = Once::new();
        SWEPT.call_once(sweep_leftovers);
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let index = NEXT.fetch_add(1, Ordering::SeqCst);
        if index > 200 {
            bail!("too many NAT clients in one process");
        }
        let nat = NatClient { index };
        nat.build().context(
            "building the NAT client's network namespaces (needs root, iproute2 and iptables)",
        )?;
        Ok(nat)
    }

    fn client_ns(&self) -> String {
        format!("{PREFIX}-c{}", self.index)
    }

    fn router_ns(&self) -> String {
        format!("{PREFIX}-r{}", self.index)
    }

    fn host_link(&self) -> String {
        format!("{PREFIX}{}", self.index)
    }

    /// The address servers see this client's connections come from.
    pub fn public_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.index, 2)
    }

    fn build(&self) -> Result<()> {
        let (client, router, link, n) = (
            self.client_ns(),
            self.router_ns(),
            self.host_link(),
            self.index,
        );
        let steps = [
            format!("ip netns add {client}"),
            format!("ip netns add {router}"),
            format!("ip -n {router} link add lan type veth peer name eth0 netns {client}"),
            format!("ip link add {link} type veth peer name wan netns {router}"),
            format!("ip -n {client} addr add 10.210.{n}.2/24 dev eth0"),
            format!("ip -n {router} addr add 10.210.{n}.1/24 dev lan"),
            format!("ip -n {router} addr add 10.211.{n}.2/24 dev wan"),
            format!("ip addr add 10.211.{n}.1/24 dev {link}"),
            format!("ip -n {client} link set lo up"),
            format!("ip -n {client} link set eth0 up"),
            format!("ip -n {router} link set lo up"),
            format!("ip -n {router} link set lan up"),
            format!("ip -n {router} link set wan up"),
            format!("ip link set {link} up"),
            format!("ip -n {client} route add default via 10.210.{n}.1"),
            format!("ip -n {router} route add default via 10.211.{n}.1"),
            format!("ip netns exec {router} sysctl -q -w net.ipv4.ip_forward=1"),
            format!(
                "ip netns exec {router} iptables -t nat -A POSTROUTING -s 10.210.{n}.0/24 -o wan -j MASQUERADE"
            ),
            // The host forwards for the router; a host whose FORWARD chain
            // drops by default (Docker's) must let this pair through.
            "sysctl -q -w net.ipv4.ip_forward=1".to_owned(),
            format!("iptables -I FORWARD 1 -i {link} -j ACCEPT"),
            format!("iptables -I FORWARD 1 -o {link} -j ACCEPT"),
        ];
        for step in &steps {
            run(step)?;
        }
        Ok(())
    }

    /// A command run inside the client's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.client_ns(), program]);
        command
    }

    /// Makes `name` resolve to `address` inside the client's namespace
    /// (`ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts).
    pub fn add_host(&self, name: &str, address: &str) -> Result<()> {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir)?;
        let hosts = dir.join("hosts");
        let mut text =
            std::fs::read_to_string(&hosts).unwrap_or_else(|_| "127.0.0.1 localhost\n".into());
        text.push_str(&format!("{address} {name}\n"));
        std::fs::write(&hosts, text).with_context(|| format!("writing {}", hosts.display()))
    }

    fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(self.client_ns())
    }
}

impl Drop for NatClient {
    fn drop(&mut self) {
        let link = self.host_link();
        for direction in ["-i", "-o"] {
            let _ = run(&format!("iptables -D FORWARD {direction} {link} -j ACCEPT"));
        }
        // Deleting the router's namespace deletes the host's veth end too.
        let _ = run(&format!("ip netns del {}", self.router_ns()));
        let _ = run(&format!("ip netns del {}", self.client_ns()));
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// Removes the namespaces, links, rules and files of a run that was killed
/// before it could clean up.
fn sweep_leftovers() {
    if let Ok(list) = run("ip netns list") {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(&format!("{PREFIX}-")) {
                let _ = run(&format!("ip netns del {name}"));
                let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(name));
            }
        }
    }
    if let Ok(rules) = run("iptables -S FORWARD") {
        for rule in rules.lines().filter(|r| r.contains(&format!(" {PREFIX}"))) {
            let _ = run(&rule.replacen("-A ", "iptables -D ", 1));
        }
    }
}

/// Runs a command line of space-separated words; fails with its stderr.
fn run(line: &str) -> Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let output = Command::new(words[0])
        .args(&words[1..])
        .output()
        .with_context(|| format!("running `{line}`"))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
