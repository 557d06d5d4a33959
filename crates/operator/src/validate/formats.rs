//! Kubernetes' formats for names, keys and label values (k8s.io/
//! apimachinery's validation), as the CRD's CEL rules check them;
//! quantities are in [`crate::quantity`].

use std::net::{IpAddr, Ipv4Addr};

/// Letters, digits and `extra`, starting and ending with a letter or digit.
fn word(s: &str, extra: &[u8], lowercase: bool) -> bool {
    let alnum = |b: u8| {
        b.is_ascii_digit() || b.is_ascii_lowercase() || (!lowercase && b.is_ascii_uppercase())
    };
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || extra.contains(&b))
        }
        _ => false,
    }
}

/// A DNS subdomain (RFC 1123): Secret, claim and StorageClass names.
pub fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|label| word(label, b"-", true))
}

/// `[prefix/]name`: label and annotation keys, load balancer classes.
pub fn qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(dns_subdomain) && name.len() <= 63 && word(name, b"-_.", false)
}

/// A label value: at most 63 characters, possibly none.
pub fn label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && word(s, b"-_.", false))
}

/// A key of a Secret's data.
pub fn secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && s != "."
        && !s.starts_with("..")
}

/// What kubeftp-server takes for an IPv4 address or a DNS name, without
/// names it would take for a host but a person meant as an address: those
/// whose last label is all digits (256.1.1.1, 1.2.3, 01.02.03.04).
pub fn advertised_address(s: &str) -> bool {
    if s.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let all_digits = |label: &str| label.bytes().all(|b| b.is_ascii_digit());
    s.parse::<IpAddr>().is_err()
        && s.len() <= 253
        && s.split('.')
            .all(|label| label.len() <= 63 && word(label, b"-", true))
        && !s.rsplit('.').next().is_some_and(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_follow_kubernetes() {
        for good in ["u", "ftp-users", "ftp.users-1", "a".repeat(253).as_str()] {
            assert!(dns_subdomain(good), "{good}");
        }
        for bad in [
            "",
            "Bad_Secret",
            "Bad Secret",
            "-a",
            "a-",
            "a..b",
            "a".repeat(254).as_str(),
        ] {
            assert!(!dns_subdomain(bad), "{bad}");
        }
        for good in [
            "app",
            "example.com/tier",
            "a_b.c-D",
            "service.beta.kubernetes.io/x",
        ] {
            assert!(qualified_name(good), "{good}");
        }
        let long_prefix = format!("{}.example.com/note", "a".repeat(250));
        for bad in [
            "bad key!",
            "/disk",
            "a/",
            "_a",
            "a/b/c",
            "a".repeat(64).as_str(),
            &long_prefix,
        ] {
            assert!(!qualified_name(bad), "{bad}");
        }
        for good in ["", "ftp", "A.b_c-1", "s".repeat(63).as_str()] {
            assert!(label_value(good), "{good}");
        }
        for bad in ["a/b", "-a", "s".repeat(64).as_str()] {
            assert!(!label_value(bad), "{bad}");
        }
        for good in ["users.toml", "users_v2.toml", ".hidden", "a..b"] {
            assert!(secret_key(good), "{good}");
        }
        for bad in ["", ".", "..", "../x", "..x", "a/b"] {
            assert!(!secret_key(bad), "{bad}");
        }
    }

    #[test]
    fn advertised_addresses_are_what_the_server_reads() {
        for good in ["203.0.113.5", "ftp.example.com", "123.example", "localhost"] {
            assert!(advertised_address(good), "{good}");
        }
        let long_label = format!("{}.example.com", "a".repeat(64));
        for bad in [
            "256.1.1.1",
            "1.2.3",
            "01.02.03.04",
            "example.123",
            "2001:db8::1",
            "Ftp.example.com",
            "a..b",
            &long_label,
        ] {
            assert!(!advertised_address(bad), "{bad}");
        }
    }
}
