//! The HTTPS listener for the router: binds, serves with hot-reloaded certificates until a
//! shutdown signal, then turns unready and drains. The controller is started by the caller.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::{error, info};

use crate::server::limits::{self, Limited};
use crate::server::{self, AppState};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the TLS listener failed: {0}")]
    Stopped(String),
    /// The I/O error is part of the message and not a `source`: printed as a chain (the
    /// binary's `{:#}`), it would otherwise appear twice.
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for a rotated certificate.
    pub reload_interval: Duration,
}

pub struct ServeOptions {
    pub listener: TcpListener,
    /// Optional plain-HTTP listener for probes and metrics.
    pub metrics_listener: Option<TcpListener>,
    pub certs: CertFiles,
    /// Time between turning unready and closing the listener, so endpoint controllers stop
    /// sending new reviews here before it goes away.
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish once draining starts.
    pub drain_timeout: Duration,
}

/// Binds a TCP listener; with port 0 the kernel picks one (see `local_addr`).
pub fn listen(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let l = TcpListener::bind(addr).map_err(|error| ServeError::Listen {
        addr: addr.to_string(),
        error,
    })?;
    l.set_nonblocking(true)
        .map_err(|error| ServeError::Listen {
            addr: addr.to_string(),
            error,
        })?;
    Ok(l)
}

/// Serves until `shutdown` resolves, then drains gracefully.
pub async fn run(
    opts: ServeOptions,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (pem, config) = tls::load(&opts.certs.cert, &opts.certs.key)?;
    tls::record_expiry(&state.metrics, &pem);
    let rustls = RustlsConfig::from_config(std::sync::Arc::new(config));
    let reload = tokio::spawn(tls::watch(
        rustls.clone(),
        opts.certs.cert.clone(),
        opts.certs.key.clone(),
        pem,
        opts.certs.reload_interval,
        state.metrics.clone(),
    ));

    let addr = opts
        .listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let handle: Handle<SocketAddr> = Handle::new();
    // The cap is taken before the handshake, so handshakes in progress count against it.
    let acceptor = RustlsAcceptor::new(rustls)
        .handshake_timeout(limits::TLS_HANDSHAKE_TIMEOUT)
        .acceptor(Limited::new(
            "https",
            limits::MAX_TLS_CONNECTIONS,
            &state.metrics,
        ));
    let mut server = axum_server::from_tcp(opts.listener)
        .map_err(|error| ServeError::Listen {
            addr: addr.clone(),
            error,
        })?
        .acceptor(acceptor)
        .handle(handle.clone())
        // ALPN offers only http/1.1; skipping protocol detection also puts a client that
        // completes the handshake and then sends nothing under the header timeout.
        .http1_only();
    http1_limits(server.http_builder());
    let app = server::router(state.clone());
    let mut tls_task = tokio::spawn(server.serve(app.into_make_service()));

    let metrics_handle: Handle<SocketAddr> = Handle::new();
    let metrics_task = match opts.metrics_listener {
        Some(l) => {
            let mut server = axum_server::from_tcp(l)
                .map_err(|error| ServeError::Listen {
                    addr: "metrics".into(),
                    error,
                })?
                .acceptor(Limited::new(
                    "metrics",
                    limits::MAX_METRICS_CONNECTIONS,
                    &state.metrics,
                ))
                .handle(metrics_handle.clone())
                // Without this, hyper's protocol detection waits for the first bytes with no
                // timeout at all.
                .http1_only();
            http1_limits(server.http_builder());
            let app = server::probes_router(state.clone());
            let task = tokio::spawn(server.serve(app.into_make_service()));
            if let Some(bound) = metrics_handle.listening().await {
                info!(addr = %bound, "serving probes and metrics over plain HTTP");
            }
            Some(task)
        }
        None => None,
    };

    if let Some(bound) = handle.listening().await {
        info!(addr = %bound, "listening for admission reviews over TLS");
        state.readiness.set_listening();
    }

    tokio::select! {
        () = shutdown => {}
        // The listener ending on its own is a failure: stop rather than sit unready forever.
        ended = &mut tls_task => {
            reload.abort();
            metrics_handle.shutdown();
            let reason = match ended {
                Ok(Ok(())) => "stopped unexpectedly".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(ServeError::Stopped(reason));
        }
    }
    info!("shutdown requested; turning unready and draining");
    state.readiness.set_shutting_down();
    tokio::time::sleep(opts.shutdown_delay).await;
    handle.graceful_shutdown(Some(opts.drain_timeout));
    metrics_handle.graceful_shutdown(Some(opts.drain_timeout));
    reload.abort();
    for task in std::iter::once(tls_task).chain(metrics_task) {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(error = %e, "listener failed"),
            Err(e) => error!(error = %e, "listener task failed"),
        }
    }
    info!("stopped");
    Ok(())
}

/// The same HTTP/1 bounds on both ports (see [`limits`]).
fn http1_limits(builder: &mut hyper_util::server::conn::auto::Builder<TokioExecutor>) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits::HEADER_READ_TIMEOUT)
        .max_buf_size(limits::READ_BUFFER);
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
