//! The fields of a `--log-format text` line, with every control character escaped.
//!
//! Values in these lines come from requests: an InferenceService's name, a namespace, a
//! denial that quotes an annotation. `tracing-subscriber`'s own text fields write the message
//! and every `%`-recorded value as they are, escaping only a few terminal controls (ESC, BEL,
//! BS, FF, DEL, C1) in the message: a newline in a name starts a line of the attacker's
//! choosing, and a `%` value can still colour the terminal. Here every value, the message
//! included, goes through [`Escape`], so one event is one line whatever it carries.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Formats event and span fields as `message name=value ...`, like the default text
/// fields (strings and `?` values in their `Debug` form, `%` values as `Display`), escaped.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            out: Escape(writer),
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    out: Escape<Writer<'w>>,
    empty: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Records bridged from the `log` crate carry their metadata in fields the event
        // formatter has already used.
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let first = std::mem::replace(&mut self.empty, false);
        self.result = write_field(&mut self.out, first, name, value);
    }
}

fn write_field(
    out: &mut Escape<Writer<'_>>,
    first: bool,
    name: &str,
    value: fmt::Arguments<'_>,
) -> fmt::Result {
    if !first {
        out.0.write_char(' ')?;
    }
    if name != "message" {
        // Field names are identifiers in the source, not input.
        write!(out.0, "{name}=")?;
    }
    out.write_fmt(value)
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// A writer that escapes what could end a line or steer a terminal: control characters
/// (C0, DEL, C1), the Unicode line and paragraph separators, and the bidirectional
/// overrides that reorder what a reader sees. They are written as Rust escapes (`\n`,
/// `\u{1b}`), which no value in this product legitimately needs.
pub struct Escape<W>(pub W);

impl<W: Write> Write for Escape<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(escaped) {
            self.0.write_str(&rest[..at])?;
            let mut chars = rest[at..].chars();
            if let Some(c) = chars.next() {
                for e in c.escape_default() {
                    self.0.write_char(e)?;
                }
            }
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(s: &str) -> String {
        let mut out = Escape(String::new());
        out.write_str(s).unwrap_or_else(|e| panic!("{e}"));
        out.0
    }

    #[test]
    fn controls_separators_and_overrides_are_escaped_and_the_rest_kept() {
        assert_eq!(escape("qwen-7b"), "qwen-7b");
        assert_eq!(escape("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("\u{85}\u{9b}"), "\\u{85}\\u{9b}");
        assert_eq!(escape("x\u{2028}y\u{202e}z"), "x\\u{2028}y\\u{202e}z");
        assert_eq!(escape("é 日本 \\n"), "é 日本 \\n");
    }
}
