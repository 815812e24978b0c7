//! The error class of a dead letter: a grouping key that stays the same for every message that
//! failed the same way. It is the reason (ours, `x-dead-letter-reason`, or the broker's
//! `x-death` reason) and the error text (`x-dead-letter-error`) with what varies from message
//! to message replaced by a placeholder: numbers, uuids, hex ids and quoted values. "product
//! 17 not found" and "product 42 not found" are one class, "product <n> not found".

use super::message::DeadLetter;

/// The class of a dead letter with neither a reason nor an error.
pub const UNKNOWN: &str = "unknown";
/// A normalized error is cut here: the consumer cuts errors at 2,000 bytes, so two long
/// messages differing only in the length of a number would otherwise be cut at different
/// points and fall into different classes.
const MAX_ERROR_CHARS: usize = 160;
/// Hex words this long or longer that mix digits and letters are ids (a hash, a uuid without
/// dashes), not words.
const MIN_HEX_ID: usize = 8;

/// Hex digits of a group id: 40 bits, short enough to type, and a collision among the handful
/// of groups a system has is out of reach.
pub const GROUP_ID_LEN: usize = 10;

/// The id of the group of `queue`, `event_type` and `class` (`sagactl dlq summary` shows it,
/// `--group` selects by it): a digest of the three, so it is the same in every process and on
/// every run for as long as the dead letters fail the same way, and needs no table.
pub fn group_id(queue: &str, event_type: Option<&str>, class: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefixed, so that no two different triples hash the same bytes (`a` + `b:c` is
    // not `a:b` + `c`); a missing type is a value no event type can be.
    for part in [queue, event_type.unwrap_or("\u{0}none"), class] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()
        .chars()
        .take(GROUP_ID_LEN)
        .collect()
}

/// The id of `letter`'s group.
pub fn group_of(letter: &DeadLetter) -> String {
    group_id(&letter.queue, letter.event_type.as_deref(), &of(letter))
}

/// True for something shaped like a group id ([`GROUP_ID_LEN`] hex digits, either case).
pub fn is_group_id(text: &str) -> bool {
    text.len() == GROUP_ID_LEN && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `letter`'s class: `reason: normalized error`, either alone when the other is missing.
pub fn of(letter: &DeadLetter) -> String {
    let error = letter
        .error
        .as_deref()
        .map(normalize)
        .filter(|e| !e.is_empty());
    match (letter.reason.as_deref(), error) {
        (Some(reason), Some(error)) => format!("{reason}: {error}"),
        (Some(reason), None) => reason.to_owned(),
        (None, Some(error)) => error,
        (None, None) => UNKNOWN.to_owned(),
    }
}

/// `error` with its volatile parts replaced: a quoted value by `"?"` (in its own quotes), a
/// uuid by `<uuid>`, a long hex id by `<id>`, a number by `<n>`; runs of whitespace become one
/// space, and the result is cut at [`MAX_ERROR_CHARS`].
pub fn normalize(error: &str) -> String {
    let chars: Vec<char> = error.chars().collect();
    let mut out = String::with_capacity(error.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(end) = quoted(&chars, i) {
            out.extend([c, '?', c]);
            i = end + 1;
        } else if is_word(c) {
            let start = i;
            while i < chars.len() && (is_word(chars[i]) || inside_number(&chars, i)) {
                i += 1;
            }
            push_word(&mut out, &chars[start..i]);
        } else {
            out.push(c);
            i += 1;
        }
    }
    let spaced = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if spaced.chars().count() <= MAX_ERROR_CHARS {
        return spaced;
    }
    let mut cut: String = spaced.chars().take(MAX_ERROR_CHARS).collect();
    cut.push('…');
    cut
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

/// A `.` or `,` between two digits belongs to the number (`179.80`, `1,000`).
fn inside_number(chars: &[char], i: usize) -> bool {
    matches!(chars[i], '.' | ',')
        && i > 0
        && chars[i - 1].is_ascii_digit()
        && chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

/// The index of the quote closing the one at `i`, if `i` opens a quoted value. A quote right
/// after a letter or digit is an apostrophe (`doesn't`), not an opening quote; an opening
/// quote never closed is left as it is.
fn quoted(chars: &[char], i: usize) -> Option<usize> {
    let quote = chars[i];
    if !matches!(quote, '"' | '\'' | '`') || (i > 0 && chars[i - 1].is_alphanumeric()) {
        return None;
    }
    chars[i + 1..]
        .iter()
        .position(|&c| c == quote)
        .map(|offset| i + 1 + offset)
}

/// Appends `word` with its volatile parts replaced.
fn push_word(out: &mut String, word: &[char]) {
    if is_uuid(word) {
        out.push_str("<uuid>");
        return;
    }
    if word.len() >= MIN_HEX_ID
        && word.iter().all(char::is_ascii_hexdigit)
        && word.iter().any(char::is_ascii_digit)
        && word.iter().any(char::is_ascii_alphabetic)
    {
        out.push_str("<id>");
        return;
    }
    let mut i = 0;
    while i < word.len() {
        if word[i].is_ascii_digit() {
            while i < word.len() && (word[i].is_ascii_digit() || inside_number(word, i)) {
                i += 1;
            }
            out.push_str("<n>");
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(word: &[char]) -> bool {
    word.len() == 36
        && word.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_id_is_short_stable_and_tells_its_parts_apart() {
        let id = group_id("p.product.dlq", Some("CouponFailed"), "rejected: x <n>");
        assert!(is_group_id(&id), "{id}");
        assert_eq!(
            id,
            group_id("p.product.dlq", Some("CouponFailed"), "rejected: x <n>")
        );
        assert_ne!(id, group_id("p.product.dlq", None, "rejected: x <n>"));
        assert_ne!(
            group_id("a", Some("b:c"), "d"),
            group_id("a:b", Some("c"), "d")
        );
        assert!(!is_group_id("12345"));
        assert!(!is_group_id("zzzzzzzzzz"));
    }

    #[test]
    fn numbers_become_one_placeholder_wherever_they_are() {
        assert_eq!(normalize("product 17 not found"), "product <n> not found");
        assert_eq!(
            normalize("product 42 not found"),
            normalize("product 17 not found")
        );
        assert_eq!(
            normalize("expected 179.80, got 1,000 at line 1 column 12"),
            "expected <n>, got <n> at line <n> column <n>"
        );
        assert_eq!(
            normalize("order-42 on p.order.p2"),
            "order-<n> on p.order.p<n>"
        );
        assert_eq!(
            normalize("at 2026-12-06T04:27:55.123Z"),
            normalize("at 2025-01-31T23:59:01.9Z")
        );
    }

    #[test]
    fn ids_and_quoted_values_become_placeholders() {
        assert_eq!(
            normalize("event 0193a5b2-7c1e-7d3f-9a41-3c2b1d0e9f88 refused"),
            "event <uuid> refused"
        );
        assert_eq!(
            normalize("signature by key 9f86d081884c7d65 does not verify"),
            "signature by key <id> does not verify"
        );
        assert_eq!(
            normalize(r#"relation "balance_history" violates check constraint "poison""#),
            r#"relation "?" violates check constraint "?""#
        );
        assert_eq!(
            normalize("invalid type: integer `17`, expected struct OrderCommand"),
            "invalid type: integer `?`, expected struct OrderCommand"
        );
        assert_eq!(normalize("coupon 'SPRING-7' expired"), "coupon '?' expired");
    }

    #[test]
    fn words_apostrophes_and_unclosed_quotes_stay() {
        let plain = "payload doesn't decode: missing field command";
        assert_eq!(normalize(plain), plain);
        assert_eq!(normalize("utf8 in sha256"), "utf<n> in sha<n>");
        assert_eq!(normalize("deadbeef accepted"), "deadbeef accepted");
        assert_eq!(normalize("an \"unclosed quote"), "an \"unclosed quote");
        assert_eq!(normalize("  two\n lines\t"), "two lines");
    }

    #[test]
    fn a_long_error_is_cut_where_it_varies_no_more() {
        let long = |n: u64| format!("{} {n} {}", "x".repeat(150), "y".repeat(2000));
        assert_eq!(normalize(&long(7)), normalize(&long(123_456_789)));
        assert_eq!(normalize(&long(7)).chars().count(), MAX_ERROR_CHARS + 1);
    }
}
