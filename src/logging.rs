//! Logging for `serve`: the filter, the format and where the lines go. Every answered review
//! is logged at the default level (the audit trail), so the JSON record is formatted by
//! [`json::JsonLine`], which writes it straight into the line buffer.

pub mod json;
pub mod text;

use std::io::Write;

use tracing::Subscriber;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("--log-level: '{filter}' is not a valid filter: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot start logging: {0}")]
    Init(String),
}

/// Lines waiting for the writer thread before a caller waits for room. The channel's slots
/// are allocated up front (about 40 bytes each); 4,096 lines cover a burst of several hundred
/// milliseconds at the review rates the bench reaches, and a stalled stderr holds at most
/// that many lines (about 2 MiB) before logging waits.
const BUFFERED_LINES: usize = 4096;

/// Keeps the writer thread alive; dropping it writes out every line logged before, then
/// stops the thread (waiting at most about a second for a stalled stderr).
#[must_use = "logging stops, and queued lines may be lost, when this is dropped"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Installs the process-wide subscriber. Lines are formatted on the logging thread and
/// written to `out` by a thread of their own, through a buffer, so a review does not wait for
/// a `write(2)` and lines logged together leave in one. The writer never drops a line (the
/// per-review record is the audit trail): when [`BUFFERED_LINES`] are waiting, logging
/// waits for room, as a direct write to a stalled stderr would.
pub fn init<W>(format: LogFormat, filter: &str, out: W) -> Result<LogGuard, LoggingError>
where
    W: Write + Send + 'static,
{
    let env_filter = EnvFilter::try_new(filter).map_err(|source| LoggingError::Filter {
        filter: filter.to_string(),
        source,
    })?;
    let (writer, worker) = non_blocking(out, BUFFERED_LINES);
    match format {
        LogFormat::Json => json_subscriber(env_filter, writer).try_init(),
        LogFormat::Text => text_subscriber(env_filter, writer).try_init(),
    }
    .map_err(|e| LoggingError::Init(e.to_string()))?;
    Ok(LogGuard { _worker: worker })
}

/// The writer thread's end of [`init`]: never drops a line, waits for room instead.
fn non_blocking<W>(out: W, lines: usize) -> (NonBlocking, WorkerGuard)
where
    W: Write + Send + 'static,
{
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(lines)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(out))
}

/// The `--log-format text` subscriber: tracing-subscriber's line, with fields that escape
/// control characters ([`text::TextFields`]).
fn text_subscriber<W>(filter: EnvFilter, out: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out)
        .fmt_fields(text::TextFields)
        .finish()
}

/// The `--log-format json` subscriber.
fn json_subscriber<W>(filter: EnvFilter, out: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out)
        .with_ansi(false)
        .fmt_fields(JsonFields::new())
        .event_format(json::JsonLine)
        .finish()
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::EnvFilter;

    use super::{non_blocking, text_subscriber};

    /// What a subscriber wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A name that would start a forged line and clear the terminal if written as it is.
    #[test]
    fn a_crafted_name_stays_on_one_text_line_escaped() {
        let crafted = "m\n2030-01-01T00:00:00Z  INFO admission: allowed isvc=m\u{1b}[2J\r\u{202e}";
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = text_subscriber(EnvFilter::new("info"), move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("review", uid = %crafted);
            let _in = span.enter();
            tracing::info!(isvc = %crafted, namespace = crafted, reason = ?crafted, "denied {crafted}");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.ends_with('\n'), "{text:?}");
        assert!(
            !text.contains('\r') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(!text.contains("\u{1b}[2J"), "{text:?}");
        // Message, span field, `%` and plain values: each escaped where it stands.
        let escaped =
            "m\\n2030-01-01T00:00:00Z  INFO admission: allowed isvc=m\\u{1b}[2J\\r\\u{202e}";
        assert!(text.contains(&format!("denied {escaped}")), "{text:?}");
        assert!(text.contains(&format!("uid={escaped}")), "{text:?}");
        assert!(text.contains(&format!("isvc={escaped}")), "{text:?}");
        assert!(text.contains("namespace=\"m\\n2030"), "{text:?}");
    }

    /// A sink that takes `delay` per write, like a stderr whose reader falls behind.
    #[derive(Clone)]
    struct Slow {
        written: Arc<Mutex<Vec<u8>>>,
        delay: Duration,
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(self.delay);
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_buffer_waits_and_every_line_is_written_in_order_by_the_time_the_guard_drops() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Slow {
            written: written.clone(),
            delay: Duration::from_millis(1),
        };
        // Eight lines of room for 2,000 lines: the writer must wait, not drop.
        let (mut writer, guard) = non_blocking(sink, 8);
        let dropped = writer.error_counter();
        for i in 0..2000 {
            writer
                .write_all(format!("{{\"n\":{i}}}\n").as_bytes())
                .unwrap();
        }
        drop(writer);
        drop(guard);
        assert_eq!(dropped.dropped_lines(), 0);
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let got: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(got, (0..2000).collect::<Vec<u64>>());
    }
}
