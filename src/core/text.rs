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
}
