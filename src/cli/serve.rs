//! `serve`: assembles the admission server, the policy reload, the serving certificate and
//! (unless --no-controller) the controller from the flags, then serves until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kserve_keda_webhook::controller::{self, ControllerOptions};
use kserve_keda_webhook::core::text::duration;
use kserve_keda_webhook::logging::{self, LogFormat};
use kserve_keda_webhook::scaling::{self, Scaling};
use kserve_keda_webhook::server::listener::{self, CertFiles, ServeOptions};
use kserve_keda_webhook::server::{AppState, Readiness};
use kserve_keda_webhook::tls::{self, self_managed};

use super::planning::PlanningArgs;
use super::{cluster, policy};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CertMode {
    SelfManaged,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address of the HTTPS listener.
    #[arg(long, default_value = "0.0.0.0:8443")]
    addr: SocketAddr,
    /// Optional plain-HTTP listener for /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// PEM certificate chain; re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key; re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Generate a throw-away CA and certificate for localhost (for local runs).
    #[arg(long, conflicts_with_all = ["tls_cert_file", "tls_key_file", "cert_mode"])]
    self_signed: bool,
    /// Where --self-signed writes tls.crt, tls.key and ca.crt.
    #[arg(long, value_name = "DIR", requires = "self_signed")]
    self_signed_dir: Option<PathBuf>,
    /// `self-managed`: keep a shared CA and certificate in a Secret, publish the CA in the
    /// webhook configuration, renew before expiry (needs --cert-secret, --webhook-config,
    /// --service-name, --service-namespace).
    #[arg(long, value_enum, conflicts_with_all = ["tls_cert_file", "tls_key_file"])]
    cert_mode: Option<CertMode>,
    /// Secret (in --service-namespace) holding the self-managed certificate.
    #[arg(long, value_name = "NAME")]
    cert_secret: Option<String>,
    /// MutatingWebhookConfiguration whose caBundle the self-managed mode fills in.
    #[arg(long, value_name = "NAME")]
    webhook_config: Option<String>,
    /// Service the API server calls (the certificate's DNS names derive from it).
    #[arg(long, value_name = "NAME")]
    service_name: Option<String>,
    /// Namespace of that Service and of the certificate Secret.
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    service_namespace: Option<String>,
    /// The https URL the webhook configuration calls instead of the Service (a webhook run
    /// outside the cluster): the self-managed certificate also names its host.
    #[arg(long, value_name = "URL")]
    webhook_url: Option<self_managed::WebhookUrl>,
    /// Where the self-managed certificate is written for the TLS server.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/tmp/kserve-keda-webhook-certs"
    )]
    cert_dir: PathBuf,
    /// How often the self-managed certificate is re-read and checked for renewal, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    cert_check_interval: u64,
    /// How often the certificate files are checked for rotation, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    cert_reload_interval: u64,
    /// How often the --policy file is checked for changes, in seconds (default: the
    /// --cert-reload-interval value).
    #[arg(long, value_name = "SECONDS")]
    policy_reload_interval: Option<u64>,
    /// Seconds between turning unready and closing the listener on shutdown.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    shutdown_delay: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Log filter (tracing syntax), e.g. info or kserve_keda_webhook=debug.
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    log_level: String,
    /// Serve admission only; do not run the controller (no cluster access needed).
    #[arg(long)]
    no_controller: bool,
    /// Namespace the controller watches (repeatable); all namespaces when absent.
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Kubeconfig file for the API server; default: in-cluster service account, then the
    /// KUBECONFIG variable, then ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Elect one controller among the replicas through a Lease. `--leader-elect=false` runs
    /// the controller at once: then run a single replica.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    leader_elect: bool,
    /// How long others wait, after they last saw the Lease change, before taking it over.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = positive_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps leading through failed renews (below the lease duration).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often the leader renews and the others try to acquire (below the renew deadline).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    leader_elect_retry_period: Duration,
    /// Requests per second the controller's reconciles may send the API server, sustained
    /// (watches aside), like kube-controller-manager's flag of the same name.
    #[arg(long, value_name = "QPS", default_value_t = controller::DEFAULT_API_QPS, value_parser = positive_rate)]
    kube_api_qps: f64,
    /// Requests the reconciles may send at once above --kube-api-qps.
    #[arg(long, value_name = "N", default_value_t = controller::DEFAULT_API_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    kube_api_burst: u32,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        value_name = "NS",
        env = "POD_NAMESPACE",
        default_value = "default"
    )]
    leader_election_namespace: String,
    /// This replica's name in the Lease.
    #[arg(long, value_name = "ID", env = "POD_NAME")]
    identity: Option<String>,
    #[command(flatten)]
    planning: PlanningArgs,
}

/// A positive duration such as 15s, 500ms or 1m.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let secs = duration::parse("duration", text)?;
    if secs <= 0.0 {
        return Err(format!("'{text}' must be above zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{text}': {e}"))
}

/// A reload period in seconds; zero would spin, so it is at least one second.
fn every(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Held to the end: dropping it writes out the last lines.
    let _logs = logging::init(args.log_format, &args.log_level, std::io::stderr())?;
    let settings = args.planning.settings()?;
    check_leader_election(&args)?;
    let self_managed = self_managed_config(&args)?;
    let policy = match &args.planning.policy {
        Some(path) => Some(policy::load(path)?),
        None => None,
    };
    let needs_labels = policy
        .as_ref()
        .is_some_and(|(p, _)| p.uses_namespace_labels());
    let listener = listener::listen(args.addr)?;
    let metrics_listener = args.metrics_addr.map(listener::listen).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = if !args.no_controller || self_managed.is_some() || needs_labels {
        Some(runtime.block_on(cluster::client(args.kubeconfig.as_deref()))?)
    } else {
        None
    };
    let labels = match (&client, needs_labels) {
        (Some(client), true) => runtime.block_on(cluster::namespace_labels(client.clone()))?,
        _ => cluster::no_labels(),
    };
    let (policy, policy_text) = policy.unwrap_or_default();
    let scaling = Arc::new(Scaling::new(settings, policy, labels));
    let state = AppState::with_scaling(scaling.clone(), Readiness::new(!args.no_controller));
    if let Some(path) = &args.planning.policy {
        runtime.spawn(scaling::watch_policy(
            scaling,
            path.clone(),
            policy_text,
            policy_reload_interval(&args),
            state.metrics.clone(),
        ));
    }
    let reload_interval = every(args.cert_reload_interval);
    let certs = match (
        &self_managed,
        &client,
        &args.tls_cert_file,
        &args.tls_key_file,
    ) {
        (Some(cfg), Some(client), _, _) => {
            let (cert, key) = runtime.block_on(self_managed::start(
                client.clone(),
                cfg.clone(),
                args.cert_dir.clone(),
            ))?;
            CertFiles {
                cert,
                key,
                reload_interval,
            }
        }
        (_, _, Some(cert), Some(key)) => CertFiles {
            cert: cert.clone(),
            key: key.clone(),
            reload_interval,
        },
        _ if args.self_signed => self_signed(&args)?,
        _ => bail!(
            "no serving certificate: give --tls-cert-file and --tls-key-file, --cert-mode self-managed, or --self-signed"
        ),
    };
    if let (false, Some(client)) = (args.no_controller, client) {
        runtime.block_on(cluster::start_controller(
            client,
            controller_options(&args),
            &state,
        ));
    }
    runtime.block_on(listener::run(
        ServeOptions {
            listener,
            metrics_listener,
            certs,
            shutdown_delay: Duration::from_secs(args.shutdown_delay),
            drain_timeout: Duration::from_secs(25),
        },
        state,
        listener::signal(),
    ))?;
    Ok(())
}

/// The policy file is re-read as often as the certificate files unless told otherwise, as
/// before the two had flags of their own.
fn policy_reload_interval(args: &ServeArgs) -> Duration {
    every(
        args.policy_reload_interval
            .unwrap_or(args.cert_reload_interval),
    )
}

/// The leader-election timings must nest: retry period < renew deadline < lease duration,
/// and a healthy leader renews at least twice per lease duration.
fn check_leader_election(args: &ServeArgs) -> anyhow::Result<()> {
    let (lease, deadline, retry) = (
        args.leader_elect_lease_duration,
        args.leader_elect_renew_deadline,
        args.leader_elect_retry_period,
    );
    if deadline >= lease {
        bail!(
            "--leader-elect-renew-deadline {deadline:?} must be below --leader-elect-lease-duration {lease:?}"
        );
    }
    if retry >= deadline {
        bail!(
            "--leader-elect-retry-period {retry:?} must be below --leader-elect-renew-deadline {deadline:?}"
        );
    }
    if retry * 2 > lease {
        bail!(
            "--leader-elect-retry-period {retry:?} must be at most half of --leader-elect-lease-duration {lease:?}"
        );
    }
    Ok(())
}

fn controller_options(args: &ServeArgs) -> ControllerOptions {
    let identity = match &args.identity {
        Some(id) => id.clone(),
        None => format!("kserve-keda-webhook-{}", std::process::id()),
    };
    let mut opts = ControllerOptions::new(args.leader_election_namespace.clone(), identity);
    opts.namespaces = args.namespaces.clone();
    opts.leader_elect = args.leader_elect;
    opts.lease_duration = args.leader_elect_lease_duration;
    opts.renew_deadline = Some(args.leader_elect_renew_deadline);
    opts.renew_interval = args.leader_elect_retry_period;
    opts.api_qps = args.kube_api_qps;
    opts.api_burst = args.kube_api_burst;
    opts
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(q) if q.is_finite() && q > 0.0 => Ok(q),
        _ => Err(format!(
            "'{s}' is not allowed; use a number of requests per second above 0, such as 50 or 0.5"
        )),
    }
}

/// The self-managed certificate settings, when that mode is chosen; every flag it needs is
/// checked here so a missing one is named at start-up.
fn self_managed_config(args: &ServeArgs) -> anyhow::Result<Option<self_managed::SelfManaged>> {
    if args.cert_mode != Some(CertMode::SelfManaged) {
        return Ok(None);
    }
    let need = |v: &Option<String>, flag: &str| -> anyhow::Result<String> {
        v.clone()
            .filter(|s| !s.is_empty())
            .with_context(|| format!("--cert-mode self-managed needs {flag}"))
    };
    let service_namespace = need(
        &args.service_namespace,
        "--service-namespace (or POD_NAMESPACE)",
    )?;
    Ok(Some(self_managed::SelfManaged {
        secret_namespace: service_namespace.clone(),
        secret_name: need(&args.cert_secret, "--cert-secret")?,
        webhook_config: need(&args.webhook_config, "--webhook-config")?,
        service_name: need(&args.service_name, "--service-name")?,
        service_namespace,
        url: args.webhook_url.clone(),
        validity: Duration::from_secs(365 * 24 * 3600),
        renew_before: Duration::from_secs(30 * 24 * 3600),
        check_interval: every(args.cert_check_interval),
    }))
}

fn self_signed(args: &ServeArgs) -> anyhow::Result<CertFiles> {
    let dir = args.self_signed_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kserve-keda-webhook-{}", std::process::id()))
    });
    let names = [
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let issued = tls::self_signed(&names, Duration::from_secs(365 * 24 * 3600))?;
    let (cert, key, ca) = tls::write_dir(&dir, &issued)?;
    eprintln!(
        "self-signed CA written to {} (trust it with: curl --cacert {} ...)",
        ca.display(),
        ca.display()
    );
    Ok(CertFiles {
        cert,
        key,
        reload_interval: every(args.cert_reload_interval),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(flags: &[&str]) -> ServeArgs {
        let argv = std::iter::once("serve").chain(flags.iter().copied());
        match Serve::try_parse_from(argv) {
            Ok(s) => s.args,
            Err(e) => panic!("{flags:?}: {e}"),
        }
    }

    #[test]
    fn the_policy_reload_follows_the_certificate_reload_unless_set() {
        let cases: [(&[&str], u64, u64); 4] = [
            (&[], 10, 10),
            (&["--cert-reload-interval", "30"], 30, 30),
            (
                &[
                    "--cert-reload-interval",
                    "30",
                    "--policy-reload-interval",
                    "2",
                ],
                30,
                2,
            ),
            (&["--policy-reload-interval", "0"], 10, 1),
        ];
        for (flags, cert, policy) in cases {
            let args = parse(flags);
            assert_eq!(
                every(args.cert_reload_interval),
                Duration::from_secs(cert),
                "{flags:?}"
            );
            assert_eq!(
                policy_reload_interval(&args),
                Duration::from_secs(policy),
                "{flags:?}"
            );
        }
    }

    #[test]
    fn the_request_limit_reaches_the_controller_and_refuses_what_cannot_work() {
        let defaults = controller_options(&parse(&[]));
        assert_eq!(
            (defaults.api_qps, defaults.api_burst),
            (controller::DEFAULT_API_QPS, controller::DEFAULT_API_BURST)
        );
        let set = controller_options(&parse(&["--kube-api-qps", "2.5", "--kube-api-burst", "7"]));
        assert_eq!((set.api_qps, set.api_burst), (2.5, 7));
        for (flag, value) in [
            ("--kube-api-qps", "0"),
            ("--kube-api-qps", "-1"),
            ("--kube-api-qps", "inf"),
            ("--kube-api-qps", "NaN"),
            ("--kube-api-burst", "0"),
            ("--kube-api-burst", "1.5"),
        ] {
            let argv = ["serve".to_string(), format!("{flag}={value}")];
            let err = match Serve::try_parse_from(argv) {
                Ok(_) => panic!("{flag} {value} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(flag) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn leader_election_timings_must_nest() {
        let ok = parse(&[]);
        assert!(check_leader_election(&ok).is_ok());
        let cases: [(&[&str], &str); 3] = [
            (
                &["--leader-elect-renew-deadline", "15s"],
                "--leader-elect-renew-deadline",
            ),
            (
                &["--leader-elect-retry-period", "10s"],
                "--leader-elect-retry-period",
            ),
            (
                &[
                    "--leader-elect-lease-duration",
                    "9s",
                    "--leader-elect-renew-deadline",
                    "8s",
                ],
                "at most half",
            ),
        ];
        for (flags, wanted) in cases {
            let err = check_leader_election(&parse(flags)).expect_err(flags.join(" ").as_str());
            assert!(err.to_string().contains(wanted), "{flags:?}: {err}");
        }
    }
}
