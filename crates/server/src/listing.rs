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
    let t: DateTime<Utc> = e.modified.into();
    let age = now.duration_since(e.modified).map(|d| d.as_secs());
    let recent = matches!(age, Ok(secs) if secs < 180 * 24 * 3600);
    let when = if recent {
        t.format("%b %e %H:%M")
    } else {
        t.format("%b %e  %Y")
    };
    format!("{perms} 1 ftp ftp {:>12} {when} {}", e.size, e.name)
}

/// `type=file;size=12;modify=20261125172300;perm=adfrw; name`
pub fn mlsx_facts(e: &Entry, writable: bool) -> String {
    let kind = if e.is_dir { "dir" } else { "file" };
    let perm = match (e.is_dir, writable) {
        (true, true) => "flcdmpe",
        (true, false) => "el",
        (false, true) => "adfrw",
        (false, false) => "r",
    };
    format!(
        "type={kind};size={};modify={};perm={perm}; {}",
        e.size,
        timestamp(e.modified),
        e.name
    )
}

/// RFC 3659 time-val: `YYYYMMDDHHMMSS` in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let t: DateTime<Utc> = t.into();
    t.format("%Y%m%d%H%M%S").to_string()
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

    #[test]
    fn mlsx() {
        assert_eq!(
            mlsx_facts(&entry(false, 0), false),
            "type=file;size=42;modify=19700101000000;perm=r; a b"
        );
        assert!(mlsx_facts(&entry(true, 0), true).starts_with("type=dir;"));
    }
}
