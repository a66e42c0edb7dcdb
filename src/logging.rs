//! Logging for `serve`: the filter, the format and where the lines go. Every answered review
//! is logged at the default level (the audit trail), so the JSON record is formatted by
//! [`json::JsonLine`], which writes it straight into the line buffer.

pub mod json;

use std::io::Write;

use tracing::Subscriber;
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

/// Installs the process-wide subscriber writing to `out`.
pub fn init<W>(format: LogFormat, filter: &str, out: W) -> Result<(), LoggingError>
where
    W: Write + Send + 'static,
{
    let env_filter = EnvFilter::try_new(filter).map_err(|source| LoggingError::Filter {
        filter: filter.to_string(),
        source,
    })?;
    let out = std::sync::Mutex::new(out);
    match format {
        LogFormat::Json => json_subscriber(env_filter, out).try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(env_filter)
            .with_writer(out)
            .finish()
            .try_init(),
    }
    .map_err(|e| LoggingError::Init(e.to_string()))
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
