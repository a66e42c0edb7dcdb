//! Text helpers every layer uses: clipping user values for messages, and durations.

pub mod duration;

/// Shortens a user value for an error message so a huge annotation cannot flood a response.
pub fn clip(s: &str) -> String {
    clip_to(s, 64)
}

/// `s` cut to `max` characters, with `...` when something was cut. Control characters are
/// escaped (`\n`, `\u{1b}`), so a value can never break a message or a log line apart.
pub fn clip_to(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (shown, c) in s.chars().enumerate() {
        if shown == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` cut to at most `max` bytes at a character boundary, for fields whose limit is in
/// bytes (an Event's note).
pub fn cut_bytes(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Whether `text` opens more than `max` flow collections (`[`, `{`) inside one another. The
/// YAML parser takes time quadratic in that depth before its own limit (128) refuses the
/// document, so input is checked first. Brackets in strings and comments count too, which
/// only errs towards refusing text that nests far beyond what any manifest needs.
pub fn flow_nesting_exceeds(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_cuts_long_values_and_escapes_control_characters() {
        assert_eq!(clip_to("abcdef", 3), "abc...");
        assert_eq!(clip_to("abc", 3), "abc");
        assert_eq!(clip_to("a\nb", 10), "a\\nb");
        assert_eq!(clip("x".repeat(100).as_str()).len(), 64 + 3);
    }

    #[test]
    fn flow_nesting_counts_open_brackets_inside_one_another() {
        assert!(!flow_nesting_exceeds("a: [1, {b: [2]}, [3]]", 3));
        assert!(flow_nesting_exceeds("a: [1, {b: [[2]]}]", 3));
        assert!(!flow_nesting_exceeds(&"[]".repeat(10_000), 1));
        assert!(flow_nesting_exceeds(&"{a: ".repeat(1_001), 1_000));
    }

    #[test]
    fn cutting_by_bytes_never_splits_a_character() {
        assert_eq!(cut_bytes("abcdef".into(), 4), "abcd");
        assert_eq!(cut_bytes("abc".into(), 4), "abc");
        // 'é' is two bytes: a cut in its middle drops it whole.
        assert_eq!(cut_bytes("aé".into(), 2), "a");
        assert_eq!(cut_bytes("aé".into(), 3), "aé");
    }
}
