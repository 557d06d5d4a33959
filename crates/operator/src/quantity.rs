//! Kubernetes quantities (`500m`, `1.5Gi`, `1e3`), as resource.ParseQuantity
//! reads them: compared by value (the apiserver stores `1000m` as `1`) and
//! checked for their sign.

use std::cmp::Ordering;

/// Whether two Kubernetes quantities (`500m`, `1.5Gi`, `1e3`) have the same
/// value. Exact; anything unparsable or too large to compare is "different",
/// which costs at most an unneeded apply.
pub fn same(a: &str, b: &str) -> bool {
    a == b || compare(a, b) == Some(Ordering::Equal)
}

/// How two quantities compare by value, exactly; None if either is not a
/// quantity, or if they are too far apart in scale to compare exactly.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = in_one_unit(a, b)?;
    Some(a.cmp(&b))
}

/// Whether the quantity `a` is a whole multiple of the quantity `b` (a
/// hugepages value of its page size); None if either is not a quantity,
/// `b` is zero, or they cannot be compared exactly.
pub fn is_multiple(a: &str, b: &str) -> Option<bool> {
    let (a, b) = in_one_unit(a, b)?;
    (b != 0).then(|| a % b == 0)
}

/// Two quantities as integers of one unit, exactly; None if either is not
/// a quantity, or if they are too far apart in scale.
fn in_one_unit(a: &str, b: &str) -> Option<(i128, i128)> {
    let (a, b) = (parse(a)?, parse(b)?);
    // mantissa × 10^pow10 × 2^pow2: bring both to the smaller exponents.
    let scale = |(mantissa, pow10, pow2): (i128, i32, i32), min10: i32, min2: i32| {
        let ten = 10i128.checked_pow(u32::try_from(pow10 - min10).ok()?)?;
        let two = 2i128.checked_pow(u32::try_from(pow2 - min2).ok()?)?;
        mantissa.checked_mul(ten)?.checked_mul(two)
    };
    let (min10, min2) = (a.1.min(b.1), a.2.min(b.2));
    Some((scale(a, min10, min2)?, scale(b, min10, min2)?))
}

/// A quantity as (mantissa, power of ten, power of two): a decimal number,
/// optionally signed, and a suffix (Ki to Ei; n, u, m, k, M, G, T, P, E; or
/// e or E and an integer exponent). At most 30 digits.
fn parse(text: &str) -> Option<(i128, i32, i32)> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (negative, number) = match number.as_bytes().first()? {
        b'-' => (true, &number[1..]),
        b'+' => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
        || whole.len() + fraction.len() > 30
    {
        return None;
    }
    let mut mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    if negative {
        mantissa = -mantissa;
    }
    let mut pow10 = -i32::try_from(fraction.len()).ok()?;
    let mut pow2 = 0;
    match suffix {
        "Ki" => pow2 = 10,
        "Mi" => pow2 = 20,
        "Gi" => pow2 = 30,
        "Ti" => pow2 = 40,
        "Pi" => pow2 = 50,
        "Ei" => pow2 = 60,
        "n" => pow10 -= 9,
        "u" => pow10 -= 6,
        "m" => pow10 -= 3,
        "" => {}
        "k" => pow10 += 3,
        "M" => pow10 += 6,
        "G" => pow10 += 9,
        "T" => pow10 += 12,
        "P" => pow10 += 15,
        "E" => pow10 += 18,
        exponent if exponent.starts_with(['e', 'E']) => {
            let exponent: i32 = exponent[1..].parse().ok()?;
            pow10 = pow10.checked_add(exponent)?;
        }
        _ => return None,
    }
    Some((mantissa, pow10, pow2))
}

/// The sign of a quantity (-1, 0 or 1), or None if it is not one.
pub fn sign(text: &str) -> Option<i8> {
    parse(text).map(|(mantissa, _, _)| mantissa.signum() as i8)
}

/// Whether a quantity is a whole number (`2`, `1e3`, `1Ki`; not `500m`),
/// or None if it is not one.
pub fn is_integer(text: &str) -> Option<bool> {
    let (mantissa, pow10, pow2) = parse(text)?;
    if mantissa == 0 || pow10 >= 0 {
        return Some(true);
    }
    // mantissa × 2^pow2 / (2^k × 5^k): whole if both factors divide it.
    let k = pow10.unsigned_abs();
    let fives = 5i128.checked_pow(k).is_some_and(|f| mantissa % f == 0);
    let twos = mantissa.trailing_zeros() + pow2.unsigned_abs() >= k;
    Some(fives && twos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_value() {
        for (a, b) in [
            ("1000m", "1"),
            ("1024Mi", "1Gi"),
            ("0.5Gi", "512Mi"),
            ("1.5", "1500m"),
            ("100000", "100k"),
            ("1e3", "1k"),
            ("1E3", "1000"),
            ("+2", "2"),
            ("0", "0Gi"),
            ("1Ki", "1024"),
            ("1E", "1000P"),
            (".5", "500m"),
        ] {
            assert!(same(a, b), "{a} = {b}");
            assert!(same(b, a), "{b} = {a}");
        }
        for (a, b) in [
            ("1", "1001m"),
            ("1Gi", "1G"),
            ("1Mi", "1M"),
            ("-1", "1"),
            ("1", "one"),
            ("1Qi", "1Ki"),
            ("1e99999", "1"),
            ("", "0"),
        ] {
            assert!(!same(a, b), "{a} != {b}");
        }
    }

    #[test]
    fn quantities_order_by_value() {
        for (less, more) in [
            ("999m", "1"),
            ("1G", "1Gi"),
            ("-1Ki", "0"),
            ("255Mi", "0.25Gi"),
            ("1e2", "1Ki"),
        ] {
            assert_eq!(compare(less, more), Some(Ordering::Less), "{less} < {more}");
            assert_eq!(
                compare(more, less),
                Some(Ordering::Greater),
                "{more} > {less}"
            );
        }
        assert_eq!(compare("1", "1e99999"), None, "too far apart");
        assert_eq!(compare("lots", "1"), None);
    }

    #[test]
    fn multiples_are_told_apart() {
        for (a, b) in [
            ("4Mi", "2Mi"),
            ("0", "2Mi"),
            ("2Gi", "1Gi"),
            ("4194304", "2Mi"),
        ] {
            assert_eq!(is_multiple(a, b), Some(true), "{a} of {b}");
        }
        for (a, b) in [("3Mi", "2Mi"), ("1Mi", "2Mi"), ("1G", "1Gi")] {
            assert_eq!(is_multiple(a, b), Some(false), "{a} of {b}");
        }
        assert_eq!(is_multiple("1Mi", "0"), None);
        assert_eq!(is_multiple("lots", "2Mi"), None);
    }

    #[test]
    fn whole_numbers_are_told_apart() {
        for whole in [
            "2", "0", "-0", "1e3", "1Ki", "1000m", "1.5k", "0.5Ki", "0e-50", "2.000",
        ] {
            assert_eq!(is_integer(whole), Some(true), "{whole}");
        }
        for fraction in ["500m", "1.5", "1e-3", "1.001", "1n", "0.3Ki"] {
            assert_eq!(is_integer(fraction), Some(false), "{fraction}");
        }
        assert_eq!(is_integer("lots"), None);
    }

    #[test]
    fn quantities_parse_as_kubernetes_parses_them() {
        for (quantity, expected) in [
            ("10Gi", 1),
            ("500m", 1),
            ("1.5e9", 1),
            ("1E3", 1),
            ("1E", 1),
            ("+.5", 1),
            ("1.", 1),
            ("0", 0),
            ("0.0Mi", 0),
            ("-0", 0),
            ("-1", -1),
            ("-100u", -1),
        ] {
            assert_eq!(sign(quantity), Some(expected), "{quantity}");
        }
        for bad in [
            "", "lots", "1e", "1K", "1.2.3", ".", "-", "1 Gi", "1Gib", "e3",
        ] {
            assert_eq!(sign(bad), None, "{bad}");
        }
    }
}
