//! Conversions shared by issuance and inspection, kept in one place so that
//! the serial, fingerprint and time an issued certificate reports are exactly
//! what inspecting it later reports.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

use crate::PkiError;

pub(crate) const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// All PEM blocks in `input`, in order; bytes outside blocks are ignored, as
/// OpenSSL does, so comments and blank lines in Secrets are harmless.
pub(crate) fn pem_blocks(input: &[u8], what: &'static str) -> Result<Vec<Pem>, PkiError> {
    Pem::iter_from_buffer(input)
        .map(|block| {
            block.map_err(|source| PkiError::Pem {
                input: what,
                source,
            })
        })
        .collect()
}

/// The DER of every CERTIFICATE block, in order. Other blocks (a key pasted
/// into tls.crt, say) are skipped rather than misread as certificates.
pub(crate) fn certificate_ders(input: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, PkiError> {
    Ok(pem_blocks(input, what)?
        .into_iter()
        .filter(|block| block.label == CERTIFICATE_LABEL)
        .map(|block| block.contents)
        .collect())
}

/// Parses one DER certificate, rejecting trailing bytes after it.
pub(crate) fn parse_certificate<'a>(
    der: &'a [u8],
    what: &'static str,
) -> Result<X509Certificate<'a>, PkiError> {
    let invalid = |source| PkiError::Certificate {
        input: what,
        source,
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], certificate)) => Ok(certificate),
        Ok(_) => Err(invalid(x509_parser::error::X509Error::InvalidCertificate)),
        Err(x509_parser::nom::Err::Error(source) | x509_parser::nom::Err::Failure(source)) => {
            Err(invalid(source))
        }
        Err(x509_parser::nom::Err::Incomplete(_)) => {
            Err(invalid(x509_parser::error::X509Error::InvalidCertificate))
        }
    }
}

/// PEM-encodes one certificate with LF line endings, ending in a newline so
/// that certificates can be concatenated into a chain.
pub(crate) fn certificate_pem(der: &[u8]) -> String {
    let body = base64_lines(der);
    format!("-----BEGIN {CERTIFICATE_LABEL}-----\n{body}-----END {CERTIFICATE_LABEL}-----\n")
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut lines = String::with_capacity(encoded.len() + encoded.len() / 64 + 1);
    let mut rest = encoded.as_str();
    while !rest.is_empty() {
        // Base64 is ASCII, so any byte index is a char boundary.
        let (line, tail) = rest.split_at(rest.len().min(64));
        lines.push_str(line);
        lines.push('\n');
        rest = tail;
    }
    lines
}

/// Lowercase hex without separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Lowercase hex SHA-256 of a DER certificate: the same value as
/// `openssl x509 -noout -fingerprint -sha256`, lowercased and without colons.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

/// A serial number as lowercase hex of its minimal big-endian magnitude,
/// whole bytes: `openssl x509 -serial` prints the same digits in uppercase.
pub fn serial_hex(raw_serial: &[u8]) -> String {
    let first_significant = raw_serial
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(raw_serial.len());
    match &raw_serial[first_significant..] {
        [] => "00".to_owned(),
        magnitude => hex(magnitude),
    }
}

/// Whole seconds since the Unix epoch, rounded down (towards the past), since
/// X.509 times have second precision.
fn unix_seconds(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::from(after.as_secs()),
        Err(before) => {
            let before = before.duration();
            let whole = i128::from(before.as_secs());
            if before.subsec_nanos() > 0 {
                -whole - 1
            } else {
                -whole
            }
        }
    }
}

/// Truncates to the second and converts for rcgen; fails for times a
/// certificate cannot hold.
pub(crate) fn to_offset_date_time(time: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let seconds = unix_seconds(time);
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .filter(|converted| (0..=9999).contains(&converted.year()))
        .ok_or(PkiError::TimeOutOfRange {
            seconds_since_epoch: seconds,
        })
}

/// `time + duration`, failing instead of panicking when the sum does not fit.
pub(crate) fn add(time: SystemTime, duration: Duration) -> Result<SystemTime, PkiError> {
    time.checked_add(duration).ok_or(PkiError::TimeOutOfRange {
        seconds_since_epoch: unix_seconds(time).saturating_add(i128::from(duration.as_secs())),
    })
}

/// The inverse of [`to_offset_date_time`], for values that came from it or
/// from a parsed certificate.
pub(crate) fn to_system_time(unix_seconds: i64) -> Result<SystemTime, PkiError> {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    let converted = if unix_seconds >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    converted.ok_or(PkiError::TimeOutOfRange {
        seconds_since_epoch: i128::from(unix_seconds),
    })
}

/// RFC 3339 for error messages; falls back to raw seconds for times that
/// cannot be formatted, since the message matters more than the format.
pub(crate) fn display_time(time: SystemTime) -> String {
    to_offset_date_time(time)
        .ok()
        .and_then(|converted| converted.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{}s since the Unix epoch", unix_seconds(time)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_drops_the_sign_byte_but_keeps_whole_bytes() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x0a, 0xbc]), "0abc");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn times_before_the_epoch_round_towards_the_past() {
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(unix_seconds(before), -2);
        let after = UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(unix_seconds(after), 1);
    }

    #[test]
    fn times_beyond_year_9999_are_rejected() {
        let far = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert!(matches!(
            to_offset_date_time(far),
            Err(PkiError::TimeOutOfRange { .. })
        ));
    }

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg==\n"),
            ("fo", "Zm8=\n"),
            ("foo", "Zm9v\n"),
            ("foob", "Zm9vYg==\n"),
            ("fooba", "Zm9vYmE=\n"),
            ("foobar", "Zm9vYmFy\n"),
        ] {
            assert_eq!(base64_lines(input.as_bytes()), expected, "input {input:?}");
        }
    }

    #[test]
    fn base64_wraps_at_64_columns() {
        let encoded = base64_lines(&[0u8; 96]);
        let lines: Vec<_> = encoded.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 64);
        assert_eq!(lines[1].len(), 64);
    }
}
