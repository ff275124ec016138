//! "Did you mean": edit distance over short strings, look-alike folding and
//! punycode, each bounded so a hostile spec cannot make the signer slow.

/// Strings longer than this (in characters) are never compared: edit distance
/// is quadratic, and a name this long is reported as too long before anyone
/// would want a suggestion for it.
pub const MAX_COMPARED_CHARS: usize = 256;
/// Candidates considered by [`closest`]; more than this and the rest are
/// ignored (a cluster with 1,000 CertificateAuthorities has other problems).
pub const MAX_CANDIDATES: usize = 1000;

/// Optimal-string-alignment Damerau-Levenshtein distance: insertions,
/// deletions, substitutions and swaps of two adjacent characters each cost
/// one. `None` when either string is longer than [`MAX_COMPARED_CHARS`].
pub fn edit_distance(a: &str, b: &str) -> Option<usize> {
    let a: Vec<char> = a.chars().take(MAX_COMPARED_CHARS + 1).collect();
    let b: Vec<char> = b.chars().take(MAX_COMPARED_CHARS + 1).collect();
    if a.len() > MAX_COMPARED_CHARS || b.len() > MAX_COMPARED_CHARS {
        return None;
    }
    // Three rows suffice: the swap looks two rows back.
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = vec![0; width];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    Some(previous[b.len()])
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

/// The IDNA A-label form of a lower-case hostname: each non-ASCII label
/// punycode-encoded behind `xn--` (RFC 3492). `None` if a label contains
/// combining marks or symbols, where Unicode normalisation would be needed to
/// get the right answer and a wrong suggestion is worse than none.
pub(crate) fn to_ascii_hostname(hostname: &str) -> Option<String> {
    let mut labels = Vec::new();
    for label in hostname.split('.') {
        if label.is_ascii() {
            labels.push(label.to_owned());
            continue;
        }
        if label
            .chars()
            .any(|c| !c.is_alphanumeric() && c != '-' || ('\u{0300}'..='\u{036F}').contains(&c))
        {
            return None;
        }
        labels.push(format!("xn--{}", punycode(label)?));
    }
    Some(labels.join("."))
}

/// RFC 3492 punycode encoding of one label.
fn punycode(label: &str) -> Option<String> {
    const BASE: u32 = 36;
    const T_MIN: u32 = 1;
    const T_MAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;

    fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
        delta /= if first { DAMP } else { 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - T_MIN) * T_MAX) / 2 {
            delta /= BASE - T_MIN;
            k += BASE;
        }
        k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
    }

    fn digit(d: u32) -> Option<char> {
        match d {
            0..=25 => char::from_u32(u32::from(b'a') + d),
            26..=35 => char::from_u32(u32::from(b'0') + d - 26),
            _ => None,
        }
    }

    let input: Vec<u32> = label.chars().map(u32::from).collect();
    let mut output: String = label.chars().filter(char::is_ascii).collect();
    let basic = u32::try_from(output.len()).ok()?;
    if basic > 0 {
        output.push('-');
    }
    let total = u32::try_from(input.len()).ok()?;
    let (mut n, mut delta, mut bias, mut handled) = (128u32, 0u32, 72u32, basic);
    while handled < total {
        let m = input.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in &input {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        T_MIN
                    } else if k >= bias + T_MAX {
                        T_MAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    output.push(digit(t + (q - t) % (BASE - t))?);
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                output.push(digit(q)?);
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(output)
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
    fn cyrillic_look_alikes_fold_to_latin() {
        assert_eq!(fold_look_alikes("pаyments").as_deref(), Some("payments"));
        assert_eq!(fold_look_alikes("bücher"), None);
    }
}
