//! Memory of a server: the PSS of every process in its tree. PSS, not RSS:
//! vsftpd forks two processes per session that share most of their pages,
//! and PSS charges each shared page to its sharers in proportion.

use std::collections::HashMap;
use std::fs;

use anyhow::{Context, Result};

/// Sum of `Pss:` over `root` and all its descendants, in bytes.
pub fn tree_pss(root: u32) -> Result<u64> {
    let mut total = 0;
    for pid in descendants(root)? {
        // A session process may exit between listing and reading.
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            total += parse_pss(&text).with_context(|| format!("smaps_rollup of {pid}"))?;
        }
    }
    Ok(total)
}

/// `root` and every process below it, from the parent links in /proc/*/stat.
pub fn descendants(root: u32) -> Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_ppid(&s))
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        tree.extend(children.get(&tree[i]).into_iter().flatten());
        i += 1;
    }
    Ok(tree)
}

/// The parent pid in /proc/PID/stat; the command name may hold spaces and
/// parentheses, so parse from the last ')'.
fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The `Pss:` line of smaps_rollup, in bytes.
fn parse_pss(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|line| {
        let kb = line.strip_prefix("Pss:")?.trim().strip_suffix("kB")?;
        Some(kb.trim().parse::<u64>().ok()? * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smaps_rollup() {
        let text = "55d0-7ffd ---p 00000000 00:00 0   [rollup]\n\
                    Rss:                8512 kB\n\
                    Pss:                1234 kB\n\
                    Pss_Anon:            900 kB\n";
        assert_eq!(parse_pss(text), Some(1234 * 1024));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    #[test]
    fn parses_stat_with_odd_names() {
        assert_eq!(parse_ppid("42 (a) b (c)) S 7 42 42 0"), Some(7));
    }

    #[test]
    fn own_tree_has_memory() {
        let me = std::process::id();
        assert_eq!(descendants(me).unwrap()[0], me);
        assert!(tree_pss(me).unwrap() > 0);
    }
}
