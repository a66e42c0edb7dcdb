//! Command line: `render`, `serve`, `policy check`, `version`, `completion`. Parsing and
//! wiring only.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kserve_keda_webhook::controller::{self, ControllerOptions};
use kserve_keda_webhook::core::names;
use kserve_keda_webhook::core::settings::{self, AuthRef, RawMode, Settings};
use kserve_keda_webhook::core::spec;
use kserve_keda_webhook::core::text;
use kserve_keda_webhook::core::strategy::Strategy;
use kserve_keda_webhook::policy::{self, Policy};
use kserve_keda_webhook::render;
use kserve_keda_webhook::scaling::{self, NamespaceLabels, Scaling};
use kserve_keda_webhook::server::listener::{self, CertFiles, ServeOptions};
use kserve_keda_webhook::server::{AppState, Readiness};
use kserve_keda_webhook::simulate;
use kserve_keda_webhook::tls;
use kserve_keda_webhook::tls::self_managed;

#[derive(Parser)]
#[command(
    name = "kserve-keda-webhook",
    version,
    about = "Turns an annotated KServe InferenceService into a KEDA ScaledObject and a Prometheus monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the mutated InferenceService and every object generated for it, as YAML.
    Render(Box<RenderArgs>),
    /// Run the HTTPS admission webhook.
    Serve(Box<ServeArgs>),
    /// Replay a load through the generated scaling loop (KEDA, HPA, Prometheus, model server).
    Simulate(Box<simulate::cli::SimulateArgs>),
    /// Work with platform policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print the version, the commit, the build date and the compiler.
    Version {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: VersionFormat,
    },
    /// Print a shell completion script, e.g. `source <(kserve-keda-webhook completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum VersionFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check a policy file; errors name the line or the field.
    Check {
        /// Policy file to read, or `-` for standard input.
        #[arg(
            short = 'f',
            long = "filename",
            visible_alias = "policy",
            value_name = "FILE"
        )]
        file: String,
    },
}

#[derive(Args)]
struct RenderArgs {
    /// InferenceService manifest to read, or `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: String,
    /// Namespace for objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Labels the namespace has on the cluster, for policy rules that select by label
    /// (repeatable KEY=VALUE).
    #[arg(long = "namespace-label", value_name = "KEY=VALUE")]
    namespace_labels: Vec<String>,
    #[command(flatten)]
    planning: PlanningArgs,
}

/// Cluster defaults: what a platform team sets for everyone.
#[derive(Args, Clone)]
struct PlanningArgs {
    /// Platform policy file (YAML): defaults, limits, namespace rules. `serve` re-reads it
    /// when it changes.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Value written to serving.kserve.io/deploymentMode (Standard needs KServe >= 0.16).
    #[arg(long, value_name = "MODE", default_value = "RawDeployment")]
    raw_mode: String,
    /// Prometheus URL KEDA queries when an InferenceService names none.
    #[arg(long, value_name = "URL")]
    prometheus_address: Option<String>,
    /// Label put on every generated monitor, e.g. release=prometheus (repeatable).
    #[arg(long = "monitor-label", value_name = "KEY=VALUE")]
    monitor_labels: Vec<String>,
    /// Kind of the KEDA authentication object for Prometheus.
    #[arg(long, value_name = "KIND", requires = "trigger_auth_name")]
    trigger_auth_kind: Option<TriggerAuthKind>,
    /// Name of the (Cluster)TriggerAuthentication for Prometheus.
    #[arg(long, value_name = "NAME", requires = "trigger_auth_kind")]
    trigger_auth_name: Option<String>,
    /// KEDA authModes for Prometheus, e.g. bearer.
    #[arg(long, value_name = "MODES", default_value = "bearer")]
    trigger_auth_modes: String,
    /// Default per-replica target for a strategy, e.g. queue=8 (repeatable).
    #[arg(long = "default-target", value_name = "STRATEGY=VALUE")]
    default_targets: Vec<String>,
    /// Minimum replicas when neither annotation nor spec sets one.
    #[arg(long, value_name = "N")]
    default_min_replicas: Option<u32>,
    /// Maximum replicas when neither annotation nor spec sets one.
    #[arg(long, value_name = "N")]
    default_max_replicas: Option<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TriggerAuthKind {
    #[value(name = "TriggerAuthentication")]
    TriggerAuthentication,
    #[value(name = "ClusterTriggerAuthentication")]
    ClusterTriggerAuthentication,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CertMode {
    SelfManaged,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Args)]
struct ServeArgs {
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
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = duration_flag)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps leading through failed renews (below the lease duration).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration_flag)]
    leader_elect_renew_deadline: Duration,
    /// How often the leader renews and the others try to acquire (below the renew deadline).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration_flag)]
    leader_elect_retry_period: Duration,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version { output } => {
            print!("{}", version_text(output));
            ExitCode::SUCCESS
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(
                shell,
                &mut cmd,
                "kserve-keda-webhook",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Render(args) => run_render(*args),
        Command::Simulate(args) => match simulate::cli::run(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Policy(PolicyCommand::Check { file }) => match check_policy(&file) {
            Ok(()) => {
                println!("{}: ok", input_name(&file));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match run_serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_render(args: RenderArgs) -> ExitCode {
    let scaling = match render_scaling(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let text = match read_input(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match render::render(&text, &args.namespace, &scaling) {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", out.yaml);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn render_scaling(args: &RenderArgs) -> anyhow::Result<Scaling> {
    let settings = settings(&args.planning)?;
    let policy = match &args.planning.policy {
        Some(path) => load_policy(path)?.0,
        None => Policy::default(),
    };
    names::dns1123_label(&args.namespace).map_err(|e| anyhow::anyhow!("--namespace (-n): {e}"))?;
    let labels = pairs("--namespace-label", &args.namespace_labels)?;
    Ok(Scaling::new(
        settings,
        policy,
        Arc::new(move |_: &str| labels.clone()),
    ))
}

/// Reads and checks a policy file; the error names the file and the line or field.
fn load_policy(path: &std::path::Path) -> anyhow::Result<(Policy, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))?;
    let parsed = policy::parse(&text).with_context(|| format!("policy {}", path.display()))?;
    Ok((parsed, text))
}

fn check_policy(file: &str) -> anyhow::Result<()> {
    let text = read_input(file)?;
    policy::parse(&text).with_context(|| format!("policy {}", input_name(file)))?;
    Ok(())
}

/// How an input file is named in messages.
fn input_name(file: &str) -> &str {
    if file == "-" { "standard input" } else { file }
}

/// `version` output; the build facts come from build.rs.
fn version_text(format: VersionFormat) -> String {
    let facts = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("commit", env!("KKW_GIT_COMMIT")),
        ("buildDate", env!("KKW_BUILD_DATE")),
        ("rustcVersion", env!("KKW_RUSTC_VERSION")),
    ];
    match format {
        VersionFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> = facts
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect();
            format!("{}\n", serde_json::Value::Object(map))
        }
        VersionFormat::Text => {
            let [(_, version), (_, commit), (_, date), (_, rustc)] = facts;
            format!(
                "kserve-keda-webhook {version}\ncommit: {commit}\nbuilt: {date}\nrustc: {rustc}\n"
            )
        }
    }
}

fn read_input(file: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    }
    String::from_utf8(bytes).with_context(|| format!("{file} is not UTF-8 text"))
}

fn settings(args: &PlanningArgs) -> anyhow::Result<Settings> {
    let mut s = Settings {
        raw_mode: args
            .raw_mode
            .parse::<RawMode>()
            .map_err(|e| anyhow::anyhow!("--raw-mode: {e}"))?,
        ..Settings::default()
    };
    if let Some(addr) = &args.prometheus_address {
        spec::check_url(addr).map_err(|e| anyhow::anyhow!("--prometheus-address: {e}"))?;
        s.prometheus_address = addr.clone();
    }
    s.monitor_labels = pairs("--monitor-label", &args.monitor_labels)?;
    for (k, v) in &s.monitor_labels {
        names::label_key(k).map_err(|e| anyhow::anyhow!("--monitor-label: {e}"))?;
        names::label_value(v).map_err(|e| anyhow::anyhow!("--monitor-label {k}: {e}"))?;
    }
    if let (Some(kind), Some(name)) = (args.trigger_auth_kind, &args.trigger_auth_name) {
        names::dns1123_subdomain(name).map_err(|e| anyhow::anyhow!("--trigger-auth-name: {e}"))?;
        settings::check_auth_modes(&args.trigger_auth_modes)
            .map_err(|e| anyhow::anyhow!("--trigger-auth-modes: {e}"))?;
        s.trigger_auth = Some(AuthRef {
            kind: match kind {
                TriggerAuthKind::TriggerAuthentication => "TriggerAuthentication",
                TriggerAuthKind::ClusterTriggerAuthentication => "ClusterTriggerAuthentication",
            }
            .to_string(),
            name: name.clone(),
            modes: args.trigger_auth_modes.clone(),
        });
    }
    for (name, value) in pairs("--default-target", &args.default_targets)? {
        let strategy = Strategy::parse(&name).filter(|s| *s != Strategy::Custom).with_context(|| {
            format!("--default-target: '{name}' is not a strategy; allowed: tokens, concurrency, queue, kv-cache, ttft, itl, gpu, power")
        })?;
        let target =
            spec::positive(&value).map_err(|e| anyhow::anyhow!("--default-target {name}: {e}"))?;
        s.targets.insert(strategy, target);
    }
    if let Some(n) = args.default_min_replicas {
        s.min_replicas = n;
    }
    if let Some(n) = args.default_max_replicas {
        if n == 0 {
            bail!("--default-max-replicas: must be at least 1");
        }
        s.max_replicas = n;
    }
    if s.min_replicas > s.max_replicas {
        bail!(
            "--default-min-replicas {} is greater than --default-max-replicas {}",
            s.min_replicas,
            s.max_replicas
        );
    }
    Ok(s)
}

fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag}: '{}' is not KEY=VALUE", text::clip(item)),
        })
        .collect()
}

/// A positive duration such as 15s, 500ms or 1m.
fn duration_flag(text: &str) -> Result<Duration, String> {
    let secs = kserve_keda_webhook::core::text::duration::parse("duration", text)?;
    if secs <= 0.0 {
        return Err(format!("'{text}' must be above zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{text}': {e}"))
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

/// A client from --kubeconfig, or the usual inference (in-cluster, KUBECONFIG, ~/.kube).
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let Some(path) = kubeconfig else {
        return kube::Client::try_default().await.context(
            "the controller, self-managed certificates and label-selected policy rules need a Kubernetes API server (in-cluster service account or kubeconfig); run with --no-controller and file or --self-signed certificates to serve admission only",
        );
    };
    let file =
        Kubeconfig::read_from(path).with_context(|| format!("--kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("--kubeconfig {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("--kubeconfig {}: cannot build a client", path.display()))
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, &args.log_level)?;
    let settings = settings(&args.planning)?;
    check_leader_election(&args)?;
    let self_managed = self_managed_config(&args)?;
    let policy = match &args.planning.policy {
        Some(path) => Some(load_policy(path)?),
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
        Some(runtime.block_on(kube_client(args.kubeconfig.as_deref()))?)
    } else {
        None
    };
    let labels: NamespaceLabels = match (&client, needs_labels) {
        (Some(client), true) => runtime.block_on(namespace_labels(client.clone()))?,
        _ => Arc::new(|_: &str| BTreeMap::new()),
    };
    let (policy, policy_text) = policy.unwrap_or_default();
    let scaling = Arc::new(Scaling::new(settings, policy, labels));
    let state = AppState::with_scaling(scaling.clone(), Readiness::new(!args.no_controller));
    if let Some(path) = &args.planning.policy {
        runtime.spawn(scaling::watch_policy(
            scaling,
            path.clone(),
            policy_text,
            Duration::from_secs(args.cert_reload_interval.max(1)),
            state.metrics.clone(),
        ));
    }
    let reload_interval = Duration::from_secs(args.cert_reload_interval.max(1));
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
        runtime.block_on(start_controller(client, &args, &state));
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
        check_interval: Duration::from_secs(args.cert_check_interval.max(1)),
    }))
}

/// Keeps namespace labels in a watched cache (metadata only) and returns the lookup; waits
/// until the cache has filled so the first reviews see the labels.
async fn namespace_labels(client: kube::Client) -> anyhow::Result<NamespaceLabels> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::core::PartialObjectMeta;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    // Metadata only: labels are all the rules read, and whole Namespaces would cost memory.
    let api: kube::Api<PartialObjectMeta<Namespace>> = kube::Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    tokio::time::timeout(Duration::from_secs(30), reader.wait_until_ready())
        .await
        .context("namespace labels (for label-selected policy rules) did not load within 30 s")?
        .context("namespace label cache")?;
    Ok(Arc::new(move |ns: &str| {
        reader
            .get(&reflector::ObjectRef::new(ns))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default()
    }))
}

/// Runs the controller in the background; readiness follows its sync state.
async fn start_controller(client: kube::Client, args: &ServeArgs, state: &AppState) {
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
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let readiness = state.readiness.clone();
    tokio::spawn(async move {
        while ready_rx.changed().await.is_ok() {
            readiness.set_controller_synced(*ready_rx.borrow());
        }
    });
    let scaling = state.scaling.clone();
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = controller::run(client, scaling, opts, metrics, ready_tx).await {
            tracing::error!(error = %e, "controller stopped");
        }
    });
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
        reload_interval: Duration::from_secs(args.cert_reload_interval.max(1)),
    })
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("--log-level: '{filter}' is not a valid filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}
