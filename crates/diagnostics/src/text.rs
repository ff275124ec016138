//! Turning user-supplied strings into text that is safe to put in an Event:
//! quoted, escaped, truncated and, when it looks like key material, redacted.
//!
//! Every value that came from a user or an operator goes through [`quote`]
//! before it reaches a message, so a message can never carry a control
//! character, an unbounded string or a pasted private key.

/// Bytes of escaped text shown for a value before it is elided in the middle.
const VALUE_BUDGET: usize = 160;
/// Bytes kept from the start of an elided value.
const HEAD_BYTES: usize = 110;
/// Bytes kept from the end of an elided value: the end of a long DNS name is
/// usually where the mistake is (the cluster suffix).
const TAIL_BYTES: usize = 40;
/// The longest replacement offered in a "did you mean": a full DNS name.
pub(crate) const MAX_REPLACEMENT_BYTES: usize = 253;
/// The most bytes kept of a raw value stored in a `Violation`.
pub(crate) const MAX_STORED_VALUE_BYTES: usize = 512;
/// Shown instead of a value that looks like key material.
pub(crate) const REDACTED: &str = "<redacted: looks like key material>";

/// Whether `c` must never appear raw in text a person reads (an Event, a
/// status message): control characters, and characters that render as
/// nothing, as a plain space, or reorder what follows (bidirectional
/// controls), although they change the bytes. That is what copy-paste from
/// chat tools and documents leaves behind, and what a crafted message uses to
/// read differently from what it says.
///
/// The one table for all of certflow: the diagnostics escape these in every
/// quoted value and refuse them in names (`ControlCharacters`), and the
/// reporter escapes them in every Event note, including the text of `Report`
/// calls, so no path lets through a character another escapes.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // No-break space, soft hyphen, combining grapheme joiner, Arabic
            // letter mark, Mongolian vowel separator.
            '\u{00A0}'
                | '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{180E}'
                // Zero-width space, joiners, left-to-right and right-to-left marks.
                | '\u{200B}'..='\u{200F}'
                // Line and paragraph separators, bidirectional embeddings and
                // overrides, narrow no-break space.
                | '\u{2028}'..='\u{202F}'
                // Medium mathematical space, word joiner, invisible operators.
                | '\u{205F}'..='\u{2064}'
                // Bidirectional isolates and deprecated format characters.
                | '\u{2066}'..='\u{206F}'
                // Ideographic space.
                | '\u{3000}'
                // Byte-order mark (zero-width no-break space).
                | '\u{FEFF}'
                // Interlinear annotation characters.
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Whether `value` looks like a PEM block or a long base64 blob. Such a value
/// is never echoed: a user who pasted a key into the wrong field must not see
/// it copied into Events that the whole namespace can read.
pub(crate) fn looks_like_key_material(value: &str) -> bool {
    if value.contains("-----BEGIN") || value.contains("PRIVATE KEY") {
        return true;
    }
    // A run of 40+ base64 characters mixing upper case, lower case and digits
    // is not a DNS label (at most 63 characters, and lower case by the time a
    // name is valid) or a readable path segment; it is an encoded secret.
    let mut run = 0usize;
    let (mut upper, mut lower, mut digit) = (false, false, false);
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') {
            run += 1;
            upper |= c.is_ascii_uppercase();
            lower |= c.is_ascii_lowercase();
            digit |= c.is_ascii_digit();
            if run >= 40 && upper && lower && digit {
                return true;
            }
        } else {
            run = 0;
            (upper, lower, digit) = (false, false, false);
        }
    }
    false
}

/// The raw value stored in a `Violation`: capped in size, redacted when it
/// looks like key material, otherwise unchanged.
pub(crate) fn stored_value(value: &str) -> String {
    if looks_like_key_material(value) {
        return REDACTED.to_owned();
    }
    truncate_bytes(value, MAX_STORED_VALUE_BYTES).to_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends `c` to `out`, escaped so that the result has no control or
/// invisible characters and no unescaped quote.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_invisible(c) => out.push_str(&format!("\\u{{{:04X}}}", u32::from(c))),
        c => out.push(c),
    }
}

fn escaped_len(c: char) -> usize {
    let mut buffer = String::new();
    push_escaped(&mut buffer, c);
    buffer.len()
}

/// `value` escaped, with the middle elided ("…") when the escaped text would
/// be longer than a value deserves in a one-line message.
pub(crate) fn escape(value: &str) -> String {
    let total: usize = value.chars().map(escaped_len).sum();
    let mut out = String::new();
    if total <= VALUE_BUDGET {
        value.chars().for_each(|c| push_escaped(&mut out, c));
        return out;
    }
    let mut head_chars = 0;
    for c in value.chars() {
        if out.len() + escaped_len(c) > HEAD_BYTES {
            break;
        }
        push_escaped(&mut out, c);
        head_chars += 1;
    }
    let mut tail: Vec<char> = Vec::new();
    let mut tail_len = 0;
    for c in value.chars().rev().take(value.chars().count() - head_chars) {
        if tail_len + escaped_len(c) > TAIL_BYTES {
            break;
        }
        tail_len += escaped_len(c);
        tail.push(c);
    }
    out.push('…');
    tail.iter().rev().for_each(|&c| push_escaped(&mut out, c));
    out
}

/// `value` in double quotes, escaped, elided, or redacted.
pub(crate) fn quote(value: &str) -> String {
    if looks_like_key_material(value) {
        return REDACTED.to_owned();
    }
    format!("\"{}\"", escape(value))
}

/// `value` in double quotes, only if it can be shown whole: a replacement
/// that was cut short or redacted would be worse than none.
pub(crate) fn quote_whole(value: &str) -> Option<String> {
    if value.len() > MAX_REPLACEMENT_BYTES || looks_like_key_material(value) {
        return None;
    }
    let mut out = String::from("\"");
    value.chars().for_each(|c| push_escaped(&mut out, c));
    out.push('"');
    Some(out)
}

/// A replacement inside a suggestion: whole when it fits, else elided.
pub(crate) fn quote_fix(value: &str) -> String {
    quote_whole(value).unwrap_or_else(|| quote(value))
}

/// A comma-separated list of at most `max_items` items (patterns, names),
/// each escaped, with "and N more" for the rest; at most about 300 bytes.
pub(crate) fn list<'a>(items: impl IntoIterator<Item = &'a str>, max_items: usize) -> String {
    const LIST_BUDGET: usize = 300;
    let mut out = String::new();
    let mut shown = 0usize;
    let mut rest = 0usize;
    for item in items {
        let item = if looks_like_key_material(item) {
            REDACTED.to_owned()
        } else {
            escape(item)
        };
        if shown < max_items && out.len() + item.len() <= LIST_BUDGET {
            if shown > 0 {
                out.push_str(", ");
            }
            out.push_str(&item);
            shown += 1;
        } else {
            rest += 1;
        }
    }
    if rest > 0 {
        out.push_str(&format!(" and {rest} more"));
    }
    out
}

/// `s` cut to at most `max` bytes, ending in "…" when it was cut.
pub(crate) fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let keep = truncate_bytes(&s, max.saturating_sub('…'.len_utf8())).len();
        s.truncate(keep);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_not_invisible() {
        for c in [
            'a', 'Z', '0', ' ', '-', '.', '*', 'é', 'а', '中', '…', '\u{2010}', '\u{2030}',
        ] {
            assert!(!is_invisible(c), "{c:?} U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn quoting_escapes_newlines_and_zero_width_spaces() {
        assert_eq!(quote("a\nb\u{200B}c\"d"), "\"a\\nb\\u{200B}c\\\"d\"");
    }

    #[test]
    fn long_values_keep_their_head_and_tail() {
        let value = format!("{}.svc.cluster.local", "a".repeat(300));
        let quoted = quote(&value);
        assert!(quoted.contains('…'));
        assert!(quoted.ends_with(".svc.cluster.local\""));
        assert!(quoted.len() <= VALUE_BUDGET + 8);
    }

    #[test]
    fn pem_blocks_and_base64_blobs_are_redacted() {
        assert_eq!(quote("-----BEGIN EC PRIVATE KEY-----\nMHc"), REDACTED);
        assert_eq!(
            quote("MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oY4/kTc0fHKvoAoGCCqGSM49"),
            REDACTED
        );
        assert_ne!(quote("payments-api-v2.default.svc.cluster.local"), REDACTED);
        assert_ne!(
            quote("spiffe://cluster.local/ns/default/sa/payments-service-account"),
            REDACTED
        );
    }

    #[test]
    fn escaped_control_characters_count_against_the_budget() {
        assert!(quote(&"\u{B}".repeat(500)).len() <= VALUE_BUDGET + 8);
    }

    #[test]
    fn a_replacement_is_shown_whole_or_not_at_all() {
        assert_eq!(
            quote_whole("api.default.svc").as_deref(),
            Some("\"api.default.svc\"")
        );
        assert_eq!(quote_whole(&"a".repeat(300)), None);
    }

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        let cut = bounded("ééééé".to_owned(), 6);
        assert!(cut.len() <= 6);
        assert!(cut.ends_with('…'));
    }
}
