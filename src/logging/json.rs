//! The `--log-format json` line, written straight into the line buffer.
//!
//! The object is the one `tracing-subscriber`'s JSON formatter writes with `flatten_event`:
//! `timestamp`, `level`, the event's fields in the order they were recorded (`message` among
//! them), `target`, then `span` and `spans` inside a span. That formatter passes every field
//! through a serde serializer and an `io::Write` adapter that checks each small write for
//! UTF-8; here each value is appended to the line as it is visited, and a string needs no
//! work beyond a scan for the bytes JSON escapes. Span fields are stored by
//! `tracing-subscriber`'s own `JsonFields` (spans are created far less often than events).

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// Formats one event as one JSON object per line.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records bridged from the `log` crate carry their real level and target in fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());

        out.write_str("{\"timestamp\":\"")?;
        timestamp(&mut out)?;
        out.write_str("\",\"level\":\"")?;
        out.write_str(meta.level().as_str())?;
        out.write_str("\"")?;

        let mut fields = Fields {
            out: &mut out,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;

        out.write_str(",\"target\":")?;
        string(&mut out, meta.target())?;

        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = &current {
            out.write_str(",\"span\":")?;
            span_object(&mut out, span)?;
            // Like the upstream formatter, the list is the current span's scope even when the
            // event names another parent.
            out.write_str(",\"spans\":[")?;
            if let Some(leaf) = ctx.lookup_current() {
                for (i, span) in leaf.scope().from_root().enumerate() {
                    if i > 0 {
                        out.write_char(',')?;
                    }
                    span_object(&mut out, &span)?;
                }
            }
            out.write_char(']')?;
        }
        out.write_str("}\n")
    }
}

/// `{<the span's recorded fields>,"name":"<span name>"}`.
fn span_object<S>(out: &mut Writer<'_>, span: &SpanRef<'_, S>) -> fmt::Result
where
    S: for<'a> LookupSpan<'a>,
{
    let extensions = span.extensions();
    let stored = extensions
        .get::<FormattedFields<JsonFields>>()
        .map(|f| f.fields.as_str());
    out.write_char('{')?;
    match stored.and_then(|s| s.strip_prefix('{')?.strip_suffix('}')) {
        Some("") => {}
        Some(inner) => {
            out.write_str(inner)?;
            out.write_char(',')?;
        }
        // The fmt layer stores an object for every span it saw created; a span it did not
        // see says so rather than failing the record.
        None => out.write_str("\"field_error\":\"the span's fields were not recorded\",")?,
    }
    out.write_str("\"name\":")?;
    string(out, span.metadata().name())?;
    out.write_char('}')
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber`'s `SystemTime` timer writes it.
fn timestamp(out: &mut Writer<'_>) -> fmt::Result {
    let now = std::time::SystemTime::now();
    let at = now
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| {
            let secs = i64::try_from(d.as_secs()).ok()?;
            let at = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
            Some((at, d.subsec_micros()))
        })
        .filter(|(at, _)| (0..=9999).contains(&at.year()));
    let Some((at, micros)) = at else {
        // A clock outside years 0 to 9999: the upstream timer handles every value.
        return tracing_subscriber::fmt::time::SystemTime.format_time(out);
    };
    // Digits are written one by one: `write!` with padding costs more than the whole line.
    let mut buf = *b"0000-00-00T00:00:00.000000";
    put_digits(&mut buf[0..4], at.year().unsigned_abs());
    put_digits(&mut buf[5..7], u32::from(u8::from(at.month())));
    put_digits(&mut buf[8..10], u32::from(at.day()));
    put_digits(&mut buf[11..13], u32::from(at.hour()));
    put_digits(&mut buf[14..16], u32::from(at.minute()));
    put_digits(&mut buf[17..19], u32::from(at.second()));
    put_digits(&mut buf[20..26], micros);
    // Only ASCII digits and separators went in.
    out.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)?;
    out.write_char('Z')
}

/// Writes `value`'s last `to.len()` decimal digits into `to`, zero-padded.
fn put_digits(to: &mut [u8], mut value: u32) {
    for slot in to.iter_mut().rev() {
        // `value % 10` is below 10, so the cast keeps it whole.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Appends each field as `,"name":value`: numbers and booleans bare, everything else a string.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// `,"name":` and the value, in quotes when `quoted`.
    fn entry(
        &mut self,
        field: &Field,
        quoted: bool,
        value: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
    ) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_str(",\"")?;
            escape(self.out, field.name())?;
            self.out.write_str(if quoted { "\":\"" } else { "\":" })?;
            value(self.out)?;
            if quoted {
                self.out.write_str("\"")
            } else {
                Ok(())
            }
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, true, |out| escape(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, false, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, false, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, false, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's spelling (`1.0`, `1.5e300`), which a reader parses back as a float,
        // and `null` for what JSON cannot hold.
        self.entry(field, false, |out| {
            match serde_json::Number::from_f64(value) {
                Some(n) => write!(out, "{n}"),
                None => out.write_str("null"),
            }
        });
    }

    // 128-bit integers, errors and byte slices keep tracing's defaults, which come here as
    // text, as they do in the upstream formatter.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, true, |out| write!(Escaping(out), "{value:?}"));
    }
}

/// `s` as a JSON string.
fn string(out: &mut Writer<'_>, s: &str) -> fmt::Result {
    out.write_str("\"")?;
    escape(out, s)?;
    out.write_str("\"")
}

/// Passes text through JSON string escaping, so a `Debug` or `Display` value is escaped as it
/// is formatted, without a copy.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s)
    }
}

/// Appends `s` with the escapes serde_json writes: `\"`, `\\`, the short forms for backspace,
/// form feed, newline, carriage return and tab, and `\u00XX` for other control characters.
/// Everything else, non-ASCII included, goes through as it is.
fn escape(out: &mut Writer<'_>, s: &str) -> fmt::Result {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // One table lookup per byte: this loop sees every byte of every record.
        let class = ESCAPE[usize::from(b)];
        if class == 0 {
            continue;
        }
        // Every escaped byte is ASCII, so `i` is a character boundary.
        out.write_str(&s[start..i])?;
        match class {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let code = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ];
                out.write_str(std::str::from_utf8(&code).map_err(|_| fmt::Error)?)?;
            }
            short => {
                let code = [b'\\', short];
                out.write_str(std::str::from_utf8(&code).map_err(|_| fmt::Error)?)?;
            }
        }
        start = i + 1;
    }
    out.write_str(&s[start..])
}

/// For each byte, 0 when it goes through as it is, else the letter after the backslash.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing::{debug, error, info, info_span, warn};
    use tracing_subscriber::EnvFilter;

    use crate::logging::json_subscriber;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.ends_with('\n'), "every record ends its line: {text:?}");
            text.lines().map(str::to_string).collect()
        }
    }

    /// The lines `emit` logs through the upstream JSON formatter and through ours.
    fn both(emit: impl Fn()) -> (Vec<String>, Vec<String>) {
        let (upstream, ours) = (Capture::default(), Capture::default());
        let sink = upstream.clone();
        let reference = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("trace"))
            .with_writer(move || sink.clone())
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(reference, &emit);
        let sink = ours.clone();
        let subscriber = json_subscriber(EnvFilter::new("trace"), move || sink.clone());
        tracing::subscriber::with_default(subscriber, &emit);
        (upstream.lines(), ours.lines())
    }

    /// Each of our lines is one JSON object equal to upstream's, timestamps aside, and is
    /// byte for byte the same line once the timestamp is swapped in.
    fn assert_same(upstream: &[String], ours: &[String]) {
        assert_eq!(upstream.len(), ours.len(), "{upstream:#?}\n{ours:#?}");
        for (u, o) in upstream.iter().zip(ours) {
            let mut uv: Value = serde_json::from_str(u).unwrap();
            let mut ov: Value = serde_json::from_str(o).unwrap_or_else(|e| panic!("{e}: {o}"));
            let ut = uv["timestamp"].take();
            let ot = ov["timestamp"].take();
            assert_timestamp_shape(ut.as_str().unwrap());
            assert_timestamp_shape(ot.as_str().unwrap());
            assert_eq!(uv, ov, "\nupstream: {u}\nours:     {o}");
            let swapped = o.replacen(ot.as_str().unwrap(), ut.as_str().unwrap(), 1);
            assert_eq!(u, &swapped);
        }
    }

    fn assert_timestamp_shape(t: &str) {
        let shape: String = t
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{t}");
    }

    #[derive(Debug)]
    #[allow(dead_code)] // read through Debug only
    struct Request {
        name: String,
        labels: Vec<&'static str>,
    }

    #[test]
    fn event_fields_match_the_upstream_json_formatter() {
        let tricky = "quote \" backslash \\ newline \n cr \r tab \t bell \u{7} nul \0 \
                      esc \u{1b} del \u{7f} backspace \u{8} formfeed \u{c} é 日本 😀 \u{2028}";
        let (upstream, ours) = both(|| {
            info!(
                isvc = %tricky, namespace = "ns\n", op = ?"CREATE", uid = "705ab4f5",
                dry_run = false, outcome = tricky, warnings = 3u64, "admitted"
            );
            warn!(
                delta = -42i64,
                big = u128::MAX,
                small = i128::MIN,
                ratio = 1.0f64,
                huge = 1.5e300f64,
                tiny = 5e-324f64,
                nan = f64::NAN,
                inf = f64::INFINITY,
                "numbers {} and {:?}",
                7,
                "quoted \"arg\""
            );
            let request = Request {
                name: tricky.to_string(),
                labels: vec!["a\"b", "c\\d"],
            };
            error!(request = ?request, pretty = format_args!("{request:#?}"), "debug values");
            let err = io::Error::other("disk \"full\"\n");
            error!(error = &err as &(dyn std::error::Error + 'static), "failed");
            debug!(bytes = ?b"\x00\xff".as_slice(), "object.ref" = "ns/name", r#type = "x");
            info!(message = "explicit message field", level = "not the level");
            info!("");
        });
        assert_eq!(upstream.len(), 7);
        assert_same(&upstream, &ours);
    }

    #[test]
    fn spans_match_the_upstream_json_formatter() {
        let (upstream, ours) = both(|| {
            let outer = info_span!("reconciling object", "object.ref" = "ns/\"q\"", n = 2u64);
            let _outer = outer.enter();
            info!("inside one span");
            let inner = info_span!("inner", later = tracing::field::Empty);
            let _inner = inner.enter();
            info!("inside two spans");
            inner.record("later", "recorded \n after");
            warn!(a = 1u64, "after a record");
            let bare = info_span!("bare");
            info!(parent: &bare, "explicit parent");
            drop(_inner);
            info!(parent: None, "explicit root");
        });
        assert_eq!(upstream.len(), 5);
        assert_same(&upstream, &ours);
    }

    #[test]
    fn records_from_the_log_crate_match_the_upstream_json_formatter() {
        use tracing_log::log;
        let (upstream, ours) = both(|| {
            let code = 40;
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("handshake \"failed\": {code}"))
                    .level(log::Level::Warn)
                    .target("rustls::server")
                    .module_path_static(Some("rustls::server::hs"))
                    .file_static(Some("src/server/hs.rs"))
                    .line(Some(120))
                    .build(),
            )
            .unwrap();
        });
        assert_eq!(upstream.len(), 1);
        assert_same(&upstream, &ours);
        let v: Value = serde_json::from_str(&ours[0]).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "rustls::server");
    }

    #[test]
    fn the_timestamp_is_the_clock_in_utc() {
        // Upstream's timer before and after ours brackets it; the fixed-width format sorts
        // like the times it spells.
        let (a, ours, b) = (Capture::default(), Capture::default(), Capture::default());
        for (capture, upstream) in [(&a, true), (&ours, false), (&b, true)] {
            let sink = capture.clone();
            let make = move || sink.clone();
            if upstream {
                let s = tracing_subscriber::fmt().with_writer(make).json().finish();
                tracing::subscriber::with_default(s, || info!("tick"));
            } else {
                let s = json_subscriber(EnvFilter::new("info"), make);
                tracing::subscriber::with_default(s, || info!("tick"));
            }
        }
        let stamp = |c: &Capture| {
            let v: Value = serde_json::from_str(&c.lines()[0]).unwrap();
            v["timestamp"].as_str().unwrap().to_string()
        };
        let (before, at, after) = (stamp(&a), stamp(&ours), stamp(&b));
        assert_timestamp_shape(&at);
        assert!(before <= at && at <= after, "{before} {at} {after}");
    }
}
