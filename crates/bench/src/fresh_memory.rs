//! What new memory costs on the benchmark machine. A virtual machine that
//! hands freed memory back to its host (virtio-balloon free page
//! reporting) has the host map a page again the first time the guest
//! writes it. Writes through the page cache take new pages for every file
//! they grow, so on such a machine their speed follows the first-write
//! rate printed here, and changes from round to round as freed pages are
//! taken again before the guest reports them.

use std::fs;
use std::time::Instant;

use crate::MIB;

/// Bytes written for each rate.
const PROBE_BYTES: usize = 256 * MIB as usize;

/// The virtio-balloon feature bit for free page reporting
/// (VIRTIO_BALLOON_F_REPORTING); sysfs shows a device's features as one
/// character per bit, bit 0 first.
const F_REPORTING: usize = 5;

/// Write rates of memory, in GB/s.
pub struct WriteRates {
    /// Memory written for the first time since it was mapped.
    first: f64,
    /// The same memory written again.
    again: f64,
}

/// Writes `bytes` of newly mapped memory twice and times each pass.
fn measure(bytes: usize) -> WriteRates {
    // Zeroed allocations this large are fresh mappings, untouched.
    let mut memory = vec![0u8; bytes];
    let rate = |memory: &mut Vec<u8>, byte: u8| {
        let started = Instant::now();
        memory.fill(byte);
        std::hint::black_box(&memory);
        bytes as f64 / started.elapsed().as_secs_f64() / 1e9
    };
    let first = rate(&mut memory, 1);
    let again = rate(&mut memory, 2);
    WriteRates { first, again }
}

/// Whether a virtio-balloon device reports free pages to the host.
fn free_page_reporting() -> bool {
    let Ok(devices) = fs::read_dir("/sys/bus/virtio/drivers/virtio_balloon") else {
        return false;
    };
    devices.flatten().any(|device| {
        fs::read_to_string(device.path().join("features")).is_ok_and(|f| reports_free_pages(&f))
    })
}

fn reports_free_pages(features: &str) -> bool {
    features.trim().as_bytes().get(F_REPORTING) == Some(&b'1')
}

/// Measures, and says what the rates mean for this run.
pub fn note() -> String {
    describe(&measure(PROBE_BYTES), free_page_reporting())
}

fn describe(rates: &WriteRates, reporting: bool) -> String {
    let mut note = format!(
        "Memory: {} MiB written for the first time at {:.1} GB/s, written again at {:.1} GB/s.",
        PROBE_BYTES as u64 / MIB,
        rates.first,
        rates.again
    );
    if reporting {
        note.push_str(
            " This virtual machine hands freed memory back to its host (virtio-balloon free \
             page reporting), so pages the page cache takes anew are mapped again on their \
             first write: writes through the page cache (vsftpd's, and kubeftp's while at most \
             four uploads run) go faster in rounds that reuse pages freed moments before.",
        );
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_page_reporting_is_feature_bit_five() {
        let bits = |set: &[usize]| -> String {
            (0..64)
                .map(|i| if set.contains(&i) { '1' } else { '0' })
                .collect()
        };
        assert!(reports_free_pages(&(bits(&[1, 2, 5, 32]) + "\n")));
        assert!(!reports_free_pages(&bits(&[1, 2, 4, 6, 32])));
        assert!(!reports_free_pages(""));
    }

    #[test]
    fn only_reporting_machines_get_the_page_cache_note() {
        let rates = WriteRates {
            first: 0.5,
            again: 14.0,
        };
        let plain = describe(&rates, false);
        assert_eq!(
            plain,
            "Memory: 256 MiB written for the first time at 0.5 GB/s, written again at 14.0 GB/s."
        );
        let reporting = describe(&rates, true);
        assert!(reporting.starts_with(&plain) && reporting.contains("free page reporting"));
    }
}
