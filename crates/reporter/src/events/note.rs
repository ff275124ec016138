//! Making a message safe to put in an Event's `note`.
//!
//! Messages from the signer are already escaped and bounded by
//! `certflow-diagnostics`; messages from the gRPC `Report` API come from any
//! control-plane service. Both pass through [`sanitize`], so no Event ever
//! carries a control character, text that renders differently from its
//! bytes, something that looks like key material, or more than the API's
//! 1 KiB. A `Report` caller's message is also [`attributed`] to the caller,
//! so `kubectl describe` never shows it as certflow's own words.

/// The API server refuses an Event whose note is longer (bytes).
pub const MAX_NOTE_BYTES: usize = 1024;

/// Shown instead of anything that looks like key material.
pub const REDACTED: &str = "<redacted: looks like key material>";

/// A run of base64 characters at least this long, mixing upper case, lower
/// case and digits, is an encoded secret rather than a word or a DNS name.
const BASE64_RUN: usize = 40;

/// Shown when the message is empty.
const EMPTY: &str = "(no message)";

/// The most bytes of a caller's name an attribution quotes. A
/// ServiceAccount's username (`system:serviceaccount:<namespace>:<name>`)
/// is at most 338 bytes, so it is always quoted whole; only a name from
/// another authenticator could be longer, and the message keeps at least
/// 600 bytes.
pub const MAX_CALLER_BYTES: usize = 400;

/// `text` with key material redacted, control and invisible characters
/// escaped (`\n`, `\u{200B}`), surrounding whitespace trimmed, and cut to at
/// most [`MAX_NOTE_BYTES`] bytes on a character boundary, ending in "…"
/// when it was cut.
pub fn sanitize(text: &str) -> String {
    sanitize_within(text, MAX_NOTE_BYTES)
}

/// [`sanitize`], cut to at most `max` bytes.
fn sanitize_within(text: &str, max: usize) -> String {
    let redacted = redact_base64_runs(&redact_pem(text));
    let mut escaped = String::with_capacity(redacted.len());
    for c in redacted.trim().chars() {
        push_escaped(&mut escaped, c);
    }
    if escaped.is_empty() {
        return EMPTY.to_owned();
    }
    bounded(escaped, max)
}

/// The note of an Event written for a `Report` call of `caller` (the
/// username the API server's TokenReview named): `Reported by "<caller>": `
/// and the [`sanitize`]d `message`, at most [`MAX_NOTE_BYTES`] in all.
///
/// The attribution comes first, so cutting a long message never cuts it.
/// The caller's name is escaped like a message (and its quotes and
/// backslashes too, so it cannot close its own quotes) but never redacted:
/// the API server chose it, and an Event that hid who sent it would defeat
/// its purpose.
pub fn attributed(caller: &str, message: &str) -> String {
    let prefix = format!("Reported by \"{}\": ", quoted(caller));
    let message = sanitize_within(message, MAX_NOTE_BYTES - prefix.len());
    prefix + &message
}

/// `caller` escaped for a double-quoted string and cut to
/// [`MAX_CALLER_BYTES`].
fn quoted(caller: &str) -> String {
    let mut escaped = String::with_capacity(caller.len());
    for c in caller.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            c => push_escaped(&mut escaped, c),
        }
    }
    bounded(escaped, MAX_CALLER_BYTES)
}

/// `caller` as an Event's `reportingInstance`: escaped like a note and cut
/// to `max` bytes (the API's limit is 128; a ServiceAccount's username may
/// be longer, in which case the note still names it whole).
pub fn instance(caller: &str, max: usize) -> String {
    let mut escaped = String::with_capacity(caller.len());
    for c in caller.trim().chars() {
        push_escaped(&mut escaped, c);
    }
    bounded(escaped, max)
}

/// Replaces each PEM block (and an unterminated one, to the end) by [`REDACTED`].
fn redact_pem(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN";
    const END: &str = "-----END";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        out.push_str(&rest[..start]);
        out.push_str(REDACTED);
        let after_begin = &rest[start + BEGIN.len()..];
        rest = match after_begin.find(END) {
            Some(end) => {
                let after_end = &after_begin[end + END.len()..];
                // Skip " PRIVATE KEY-----" after "-----END".
                match after_end.find("-----") {
                    Some(close) => &after_end[close + 5..],
                    None => "",
                }
            }
            None => "",
        };
    }
    out.push_str(rest);
    if out.contains("PRIVATE KEY") {
        return REDACTED.to_owned();
    }
    out
}

/// Replaces every long mixed-case base64 run by [`REDACTED`].
fn redact_base64_runs(text: &str) -> String {
    let is_base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let mixed = run.chars().any(|c| c.is_ascii_uppercase())
            && run.chars().any(|c| c.is_ascii_lowercase())
            && run.chars().any(|c| c.is_ascii_digit());
        if run.len() >= BASE64_RUN && mixed {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_base64(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Appends `c` to `out`, escaped when the diagnostics' one table of
/// invisible characters ([`certflow_diagnostics::is_invisible`]) lists it,
/// so a `Report` caller's text is held to the same rule as certflow's own.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if certflow_diagnostics::is_invisible(c) => {
            out.push_str(&format!("\\u{{{:04X}}}", u32::from(c)));
        }
        c => out.push(c),
    }
}

/// `text` cut to at most `max` bytes, ending in "…" when it was cut.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sentences_pass_unchanged() {
        let sentence = "ServiceCertificate \"web\": spec.dnsNames[0] \"web.shop.svc.cluster.locl\" \
                        is not allowed; did you mean \"web.shop.svc\"?";
        assert_eq!(sanitize(sentence), sentence);
    }

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        let cases = [
            ("a\nb", "a\\nb"),
            ("a\tb\r", "a\\tb"),
            ("zero\u{200B}width", "zero\\u{200B}width"),
            ("bidi\u{202E}txt", "bidi\\u{202E}txt"),
            ("bell\u{7}", "bell\\u{0007}"),
            ("  padded  ", "padded"),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize(input), expected, "{input:?}");
        }
    }

    /// Every character either escaping table listed before they became one
    /// (`certflow_diagnostics::is_invisible`): this module's own, and the
    /// diagnostics', which also had U+00A0, U+034F, U+202F, U+205F and
    /// U+3000. Control characters are in both through `char::is_control`.
    const ESCAPED_BY_EITHER_TABLE: &[(char, char)] = &[
        ('\u{0000}', '\u{001F}'),
        ('\u{007F}', '\u{009F}'),
        ('\u{00A0}', '\u{00A0}'),
        ('\u{00AD}', '\u{00AD}'),
        ('\u{034F}', '\u{034F}'),
        ('\u{061C}', '\u{061C}'),
        ('\u{180E}', '\u{180E}'),
        ('\u{200B}', '\u{200F}'),
        ('\u{2028}', '\u{202F}'),
        ('\u{205F}', '\u{2064}'),
        ('\u{2066}', '\u{206F}'),
        ('\u{3000}', '\u{3000}'),
        ('\u{FEFF}', '\u{FEFF}'),
        ('\u{FFF9}', '\u{FFFB}'),
    ];

    #[test]
    fn every_character_either_table_escaped_is_escaped_in_notes_and_in_diagnostics() {
        for &(first, last) in ESCAPED_BY_EITHER_TABLE {
            for c in first..=last {
                let escape = match c {
                    '\n' => "\\n".to_owned(),
                    '\r' => "\\r".to_owned(),
                    '\t' => "\\t".to_owned(),
                    c => format!("\\u{{{:04X}}}", u32::from(c)),
                };
                let text = format!("a{c}b");
                let note = sanitize(&text);
                assert_eq!(note, format!("a{escape}b"), "note, U+{:04X}", u32::from(c));
                let sentence = certflow_diagnostics::issuance_failed(&text).sentence("web");
                assert!(
                    sentence.contains(&format!("\"a{escape}b\"")) && !sentence.contains(c),
                    "diagnostics, U+{:04X}: {sentence}",
                    u32::from(c)
                );
            }
        }
    }

    #[test]
    fn key_material_never_reaches_a_note() {
        let pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5\n-----END EC PRIVATE KEY-----";
        let cases = [
            format!("value {pem} was pasted"),
            format!("unterminated {}", &pem[..40]),
            "blob MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oY4/kTc0fHKvoAoGCCqGSM49 end".to_owned(),
            "the PRIVATE KEY is here".to_owned(),
        ];
        for case in cases {
            let note = sanitize(&case);
            assert!(note.contains(REDACTED), "{case:?} -> {note:?}");
            assert!(!note.contains("MHcCAQEE"), "{case:?} -> {note:?}");
        }
    }

    #[test]
    fn names_that_merely_are_long_are_not_redacted() {
        for value in [
            "payments-api-v2.default.svc.cluster.local",
            "spiffe://cluster.local/ns/default/sa/payments-service-account",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(sanitize(value), value);
        }
    }

    #[test]
    fn notes_are_at_most_one_kibibyte_and_cut_on_a_character_boundary() {
        for input in ["x".repeat(5000), "é".repeat(3000), "\u{7}".repeat(2000)] {
            let note = sanitize(&input);
            assert!(note.len() <= MAX_NOTE_BYTES, "{} bytes", note.len());
            assert!(note.ends_with('…'));
        }
        let exact = "y".repeat(MAX_NOTE_BYTES);
        assert_eq!(sanitize(&exact), exact);
    }

    const CALLER: &str = "system:serviceaccount:platform:quota-checker";

    #[test]
    fn a_callers_message_opens_with_who_sent_it() {
        assert_eq!(
            attributed(CALLER, "  Over\nquota. "),
            "Reported by \"system:serviceaccount:platform:quota-checker\": Over\\nquota."
        );
    }

    #[test]
    fn a_long_message_gives_way_to_the_attribution() {
        for message in ["x".repeat(5000), "é".repeat(3000)] {
            let note = attributed(CALLER, &message);
            assert!(note.len() <= MAX_NOTE_BYTES, "{} bytes", note.len());
            assert!(note.starts_with(&format!("Reported by \"{CALLER}\": ")));
            assert!(note.ends_with('…'));
        }
        // The longest ServiceAccount username is quoted whole.
        let longest = format!(
            "system:serviceaccount:{}:{}",
            "n".repeat(63),
            "a".repeat(253)
        );
        let note = attributed(&longest, &"x".repeat(5000));
        assert!(note.contains(&longest));
        assert!(note.len() <= MAX_NOTE_BYTES);
    }

    #[test]
    fn a_caller_cannot_end_its_own_quotes_or_break_the_line() {
        let note = attributed("mallory\": PolicyViolation\nx\\", "hi");
        assert_eq!(
            note,
            "Reported by \"mallory\\\": PolicyViolation\\nx\\\\\": hi"
        );
    }

    #[test]
    fn the_message_is_redacted_but_the_callers_name_never_is() {
        let opaque = "oidc:CiQ4ZjQ3YjBmZS1hMmM4LTQ5ZTQtYmVmMC02NzE2N2E2MzI1YjASBWxvY2Fs";
        let note = attributed(
            opaque,
            "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oY4/kTc0fHKvoAoGCCqGSM49 leaked",
        );
        assert!(
            note.starts_with(&format!("Reported by \"{opaque}\": ")),
            "{note}"
        );
        assert!(note.contains(REDACTED), "{note}");
        assert!(!note.contains("MHcCAQEE"), "{note}");
    }

    #[test]
    fn an_instance_is_the_caller_within_the_apis_limit() {
        assert_eq!(instance(CALLER, 128), CALLER);
        let long = format!("system:serviceaccount:team-a:{}", "a".repeat(200));
        let cut = instance(&long, 128);
        assert!(cut.len() <= 128, "{} bytes", cut.len());
        assert!(cut.starts_with("system:serviceaccount:team-a:aaa") && cut.ends_with('…'));
        assert_eq!(instance("a\nb", 128), "a\\nb");
    }

    #[test]
    fn an_empty_message_still_says_something() {
        assert_eq!(sanitize(" \n "), "(no message)");
    }
}
