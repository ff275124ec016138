//! "Did you mean": edit distance over short strings, look-alike folding and
//! IDNA A-labels, each bounded so a hostile spec cannot make the signer slow.
//!
//! The crates that fit do the general work: `strsim` computes the full edit
//! distance and `idna` the A-label of an internationalized name. Two parts
//! stay here because no maintained crate has them: the banded distance
//! ([`edit_distance_within`]), which keeps comparing a hostile 256-character
//! name against a thousand candidates linear instead of quadratic, and the
//! look-alike table, which names the ASCII letter a homoglyph imitates
//! (Unicode's confusables data maps to skeletons, not to the letter an app
//! owner meant to type).

/// Strings longer than this (in characters) are never compared: edit distance
/// is quadratic, and a name this long is reported as too long before anyone
/// would want a suggestion for it.
pub const MAX_COMPARED_CHARS: usize = 256;
/// Candidates considered by [`closest`]; more than this and the rest are
/// ignored (a cluster with 1,000 CertificateAuthorities has other problems).
pub const MAX_CANDIDATES: usize = 1000;

/// Optimal-string-alignment Damerau-Levenshtein distance (`strsim`'s):
/// insertions, deletions, substitutions and swaps of two adjacent
/// characters each cost one. `None` when either string is longer than
/// [`MAX_COMPARED_CHARS`].
pub fn edit_distance(a: &str, b: &str) -> Option<usize> {
    let too_long = |s: &str| s.chars().nth(MAX_COMPARED_CHARS).is_some();
    if too_long(a) || too_long(b) {
        return None;
    }
    Some(strsim::osa_distance(a, b))
}

/// The most edits that still count as a typo of a string of `len` characters:
/// one for very short strings, about a third of the length, at most six.
pub fn typo_budget(len: usize) -> usize {
    (len / 3).clamp(1, 6)
}

/// [`edit_distance`] if it is at most `max`, else `None`. Only a band of
/// `2 * max + 1` cells per row is computed, so comparing against many long
/// candidates costs time linear in their length.
pub fn edit_distance_within(a: &str, b: &str, max: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().take(MAX_COMPARED_CHARS + 1).collect();
    let b: Vec<char> = b.chars().take(MAX_COMPARED_CHARS + 1).collect();
    if a.len() > MAX_COMPARED_CHARS
        || b.len() > MAX_COMPARED_CHARS
        || a.len().abs_diff(b.len()) > max
    {
        return None;
    }
    let far = max + 1;
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![far; width];
    let mut previous: Vec<usize> = (0..width).map(|j| j.min(far)).collect();
    let mut current: Vec<usize> = vec![far; width];
    for i in 1..=a.len() {
        current.fill(far);
        if i <= max {
            current[0] = i;
        }
        let low = i.saturating_sub(max).max(1);
        let high = (i + max).min(b.len());
        for j in low..=high {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best.min(far);
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[b.len()];
    (distance <= max).then_some(distance)
}

/// The candidate closest to `target`, ignoring case, if it is close enough to
/// be a typo (see [`typo_budget`]). Ties go to the earlier candidate.
pub fn closest<'a>(target: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let target_lower = target.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates.into_iter().take(MAX_CANDIDATES) {
        let len = target.chars().count().max(candidate.chars().count());
        let budget = typo_budget(len).min(len.saturating_sub(1));
        let Some(distance) = edit_distance_within(&target_lower, &candidate.to_lowercase(), budget)
        else {
            continue;
        };
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// The ASCII character `c` is commonly mistaken for, for letters from other
/// scripts that render like Latin ones and for typographic punctuation that
/// word processors substitute.
pub(crate) fn ascii_look_alike(c: char) -> Option<char> {
    let ascii = match c {
        // Cyrillic
        'а' => 'a',
        'с' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'ӏ' => 'l',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'у' => 'y',
        'ԝ' => 'w',
        'х' => 'x',
        // Greek
        'α' => 'a',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'υ' => 'u',
        'χ' => 'x',
        // Latin look-alikes
        'ı' => 'i',
        'ɡ' => 'g',
        // Dashes and dots that editors substitute
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
        '\u{3002}' | '\u{FF0E}' | '\u{FF61}' => '.',
        // Full-width forms, as typed with an East Asian input method
        '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
            char::from_u32(u32::from(c) - 0xFF00 + 0x20)?.to_ascii_lowercase()
        }
        _ => return None,
    };
    Some(ascii)
}

/// `value` with every non-ASCII character replaced by its ASCII look-alike,
/// or `None` if some non-ASCII character has none (a real internationalized
/// name rather than a homoglyph).
pub(crate) fn fold_look_alikes(value: &str) -> Option<String> {
    value
        .chars()
        .map(|c| {
            if c.is_ascii() {
                Some(c)
            } else {
                ascii_look_alike(c)
            }
        })
        .collect()
}

/// Hostnames longer than this (in bytes) get no A-label suggestion: the
/// longest valid one has 253 characters, each at most 4 bytes.
const MAX_HOSTNAME_BYTES: usize = 4 * 253;

/// The IDNA A-label form of a hostname (`idna`'s UTS #46 processing: case
/// folding and normalisation, then punycode behind `xn--`, with the STD3
/// and DNS length rules), or `None` if it has none.
pub(crate) fn to_ascii_hostname(hostname: &str) -> Option<String> {
    if hostname.len() > MAX_HOSTNAME_BYTES {
        return None;
    }
    idna::domain_to_ascii_strict(hostname).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_a_swap_of_neighbours_as_one_edit() {
        assert_eq!(edit_distance("defualt", "default"), Some(1));
        assert_eq!(edit_distance("locl", "local"), Some(1));
        assert_eq!(edit_distance("", "abc"), Some(3));
        assert_eq!(edit_distance("kitten", "sitting"), Some(3));
    }

    #[test]
    fn the_banded_distance_agrees_with_the_full_one_within_its_bound() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "acb",
            "default",
            "defualt",
            "dfeault",
            "svc.cluster.local",
            "svc.cluster.locl",
            "kitten",
            "sitting",
        ];
        for a in words {
            for b in words {
                let full = edit_distance(a, b).expect("short");
                for max in 0..8 {
                    let expected = (full <= max).then_some(full);
                    assert_eq!(
                        edit_distance_within(a, b, max),
                        expected,
                        "{a:?} {b:?} {max}"
                    );
                }
            }
        }
    }

    #[test]
    fn edit_distance_refuses_huge_strings() {
        assert_eq!(edit_distance(&"a".repeat(10_000), "a"), None);
    }

    #[test]
    fn closest_finds_a_typo_but_not_an_unrelated_name() {
        let issuers = ["internal", "public-acme", "mesh-root"];
        assert_eq!(closest("intenral", issuers), Some("internal"));
        assert_eq!(closest("Internal", issuers), Some("internal"));
        assert_eq!(closest("vault", issuers), None);
    }

    #[test]
    fn punycode_matches_the_rfc_examples() {
        assert_eq!(
            to_ascii_hostname("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(
            to_ascii_hostname("münchen.de").as_deref(),
            Some("xn--mnchen-3ya.de")
        );
        assert_eq!(
            to_ascii_hostname("例え.jp").as_deref(),
            Some("xn--r8jz45g.jp")
        );
    }

    #[test]
    fn a_labels_normalise_case_and_combining_marks() {
        // "e" followed by U+0301 COMBINING ACUTE ACCENT is "é" once normalised.
        assert_eq!(
            to_ascii_hostname("cafe\u{301}.example").as_deref(),
            Some("xn--caf-dma.example")
        );
        assert_eq!(
            to_ascii_hostname("CAFÉ.example").as_deref(),
            Some("xn--caf-dma.example")
        );
        assert_eq!(to_ascii_hostname("☃ snow.example"), None);
        assert_eq!(to_ascii_hostname(&"ü".repeat(1000)), None);
    }

    #[test]
    fn cyrillic_look_alikes_fold_to_latin() {
        assert_eq!(fold_look_alikes("pаyments").as_deref(), Some("payments"));
        assert_eq!(fold_look_alikes("bücher"), None);
    }
}
