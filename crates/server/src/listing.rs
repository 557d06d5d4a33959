//! Directory listing formats: `ls -l` lines for LIST, facts for MLSD/MLST
//! (RFC 3659), and the timestamp format of MDTM.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// What a listing needs to know about one entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: SystemTime,
}

/// `-rw-r--r-- 1 ftp ftp 1234 Nov 25 17:23 name`, the form clients parse.
/// Entries older than six months (or in the future) show the year instead.
pub fn ls_line(e: &Entry, writable: bool, now: SystemTime) -> String {
    let perms = match (e.is_dir, writable) {
        (true, true) => "drwxr-xr-x",
        (true, false) => "dr-xr-xr-x",
        (false, true) => "-rw-r--r--",
        (false, false) => "-r--r--r--",
    };
    let t = utc(e.modified);
    let age = now.duration_since(e.modified).map(|d| d.as_secs());
    let recent = matches!(age, Ok(secs) if secs < 180 * 24 * 3600);
    let when = if recent {
        t.format("%b %e %H:%M")
    } else {
        t.format("%b %e  %Y")
    };
    format!("{perms} 1 ftp ftp {:>12} {when} {}", e.size, e.name)
}

/// The MLSD/MLST facts this server knows, in the order it sends them.
const FACT_NAMES: [&str; 4] = ["type", "size", "modify", "perm"];

/// The facts a session asked for with `OPTS MLST` (RFC 3659 7.9); all of
/// them until it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts([bool; FACT_NAMES.len()]);

impl Default for Facts {
    fn default() -> Facts {
        Facts([true; FACT_NAMES.len()])
    }
}

impl Facts {
    /// The facts named in `list` (`type;size;`, any case); names this
    /// server does not know are ignored, and an empty list selects none.
    pub fn select(list: &str) -> Facts {
        let named: Vec<String> = list
            .split(';')
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        Facts(FACT_NAMES.map(|fact| named.iter().any(|name| name == fact)))
    }

    /// `type;size;`: the selected facts, as OPTS MLST's reply lists them.
    pub fn selected(&self) -> String {
        FACT_NAMES
            .iter()
            .zip(self.0)
            .filter(|(_, on)| *on)
            .map(|(name, _)| format!("{name};"))
            .collect()
    }

    /// FEAT's line: every fact, the selected ones marked with `*`.
    pub fn feature(&self) -> String {
        let facts: String = FACT_NAMES
            .iter()
            .zip(self.0)
            .map(|(name, on)| format!("{name}{};", if on { "*" } else { "" }))
            .collect();
        format!("MLST {facts}")
    }
}

/// `type=file;size=12;modify=20261125172300;perm=adfrw; name`, with the
/// facts in `facts` only.
pub fn mlsx_facts(e: &Entry, writable: bool, facts: Facts) -> String {
    let kind = if e.is_dir { "dir" } else { "file" };
    let perm = match (e.is_dir, writable) {
        (true, true) => "flcdmpe",
        (true, false) => "el",
        (false, true) => "adfrw",
        (false, false) => "r",
    };
    let values = [
        kind.to_string(),
        e.size.to_string(),
        timestamp(e.modified),
        perm.to_string(),
    ];
    let mut line: String = FACT_NAMES
        .iter()
        .zip(values)
        .zip(facts.0)
        .filter(|(_, on)| *on)
        .map(|((name, value), _)| format!("{name}={value};"))
        .collect();
    line.push(' ');
    line.push_str(&e.name);
    line
}

/// RFC 3659 time-val: `YYYYMMDDHHMMSS` in UTC.
pub fn timestamp(t: SystemTime) -> String {
    utc(t).format("%Y%m%d%H%M%S").to_string()
}

/// Seconds since the epoch of 0000-01-01 00:00:00 and of 9999-12-31
/// 23:59:59 UTC.
const FIRST_SECOND: i64 = -62_167_219_200;
const LAST_SECOND: i64 = 253_402_300_799;

/// `t` in UTC to the second, within years 0 to 9999: the formats here have
/// four-digit years, and a file's time is whatever its filesystem stores
/// (tmpfs takes 2^62 seconds, far beyond what chrono can represent).
fn utc(t: SystemTime) -> DateTime<Utc> {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        // Before the epoch: round down to the whole second.
        Err(before) => {
            let before = before.duration();
            let secs = before.as_secs() + u64::from(before.subsec_nanos() > 0);
            i64::try_from(secs).map_or(i64::MIN, |secs| -secs)
        }
    };
    DateTime::from_timestamp(secs.clamp(FIRST_SECOND, LAST_SECOND), 0)
        .expect("years 0 to 9999 are within chrono's range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(is_dir: bool, secs: u64) -> Entry {
        Entry {
            name: "a b".into(),
            is_dir,
            size: 42,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn ls_lines_show_time_when_recent_and_year_when_old() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000 + 3600);
        let recent = ls_line(&entry(false, 1_764_000_000), true, now);
        assert_eq!(recent, "-rw-r--r-- 1 ftp ftp           42 Nov 24 16:00 a b");
        let old = ls_line(&entry(true, 0), false, now);
        assert_eq!(old, "dr-xr-xr-x 1 ftp ftp           42 Jan  1  1970 a b");
    }

    /// Times a filesystem can store but a four-digit year cannot show are
    /// clamped, not a panic.
    #[test]
    fn times_out_of_range_are_clamped() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 62);
        assert_eq!(timestamp(far), "99991231235959");
        let long_ago = SystemTime::UNIX_EPOCH - Duration::from_secs(1 << 62);
        assert_eq!(timestamp(long_ago), "00000101000000");
        let e = Entry {
            modified: far,
            ..entry(false, 0)
        };
        assert!(ls_line(&e, true, SystemTime::now()).contains("Dec 31  9999"));
        let just_before = SystemTime::UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(timestamp(just_before), "19691231235959");
    }

    #[test]
    fn mlsx() {
        assert_eq!(
            mlsx_facts(&entry(false, 0), false, Facts::default()),
            "type=file;size=42;modify=19700101000000;perm=r; a b"
        );
        assert!(mlsx_facts(&entry(true, 0), true, Facts::default()).starts_with("type=dir;"));
    }

    #[test]
    fn only_the_selected_facts_are_sent() {
        let some = Facts::select("Size;unknown;TYPE;");
        assert_eq!(some.selected(), "type;size;");
        assert_eq!(some.feature(), "MLST type*;size*;modify;perm;");
        assert_eq!(
            mlsx_facts(&entry(false, 0), true, some),
            "type=file;size=42; a b"
        );
        let none = Facts::select("");
        assert_eq!(none.selected(), "");
        assert_eq!(mlsx_facts(&entry(false, 0), true, none), " a b");
        assert_eq!(
            Facts::default().feature(),
            "MLST type*;size*;modify*;perm*;"
        );
    }
}
