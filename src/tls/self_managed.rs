//! Self-managed serving certificates: the replicas share one CA and serving certificate in a
//! Secret, publish the CA in their own MutatingWebhookConfiguration, and renew before expiry.
//!
//! Several replicas start at once, so every write is guarded: the first `create` wins and the
//! others read what it wrote (409 AlreadyExists); a renewal is an `update` with the Secret's
//! resourceVersion, and a replica that loses that race reads the winner's certificate.
//!
//! A renewal creates a new CA, and the published bundle holds the new and the previous CA, so
//! a replica still serving the previous certificate (it picks up the Secret on its next check)
//! keeps verifying until then.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch as JsonPatch, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;
use tracing::{info, warn};

use crate::tls::{self, Issued, PemPair, TlsError};

/// When the serving certificate stops being valid, in Unix seconds.
pub const NOT_AFTER_ANNOTATION: &str = "kserve-keda-webhook/not-after";
const CA_BUNDLE_KEY: &str = "ca-bundle.crt";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The API error is in the message, not a `source`, so a chain prints it once.
    #[error("Secret {namespace}/{name}: {error}")]
    Secret {
        namespace: String,
        name: String,
        error: kube::Error,
    },
    #[error("Secret {namespace}/{name} kept changing under us; giving up for now")]
    Contended { namespace: String, name: String },
    #[error("MutatingWebhookConfiguration {name}: {error}")]
    WebhookConfig { name: String, error: kube::Error },
    #[error("MutatingWebhookConfiguration {name} has no webhook calling {service}")]
    NoWebhookForService { name: String, service: String },
}

/// Where the certificate lives and what it is for.
#[derive(Clone, Debug)]
pub struct SelfManaged {
    pub secret_namespace: String,
    pub secret_name: String,
    pub webhook_config: String,
    pub service_name: String,
    pub service_namespace: String,
    /// When the webhook configuration calls a URL instead of the Service: its host goes into
    /// the certificate and the CA is published on the webhook with exactly this URL.
    pub url: Option<WebhookUrl>,
    pub validity: Duration,
    /// Renew when less than this is left.
    pub renew_before: Duration,
    /// How often the Secret is re-read (another replica may have renewed it) and the
    /// certificate checked for renewal.
    pub check_interval: Duration,
}

impl SelfManaged {
    /// The names the API server uses to reach the Service (and the URL's host, when set).
    pub fn dns_names(&self) -> Vec<String> {
        let (s, n) = (&self.service_name, &self.service_namespace);
        let mut names = vec![
            s.clone(),
            format!("{s}.{n}"),
            format!("{s}.{n}.svc"),
            format!("{s}.{n}.svc.cluster.local"),
        ];
        if let Some(url) = &self.url {
            names.push(url.host.clone());
        }
        names
    }

    fn calls_us(&self, config: &WebhookClientConfig) -> bool {
        let by_service = config
            .service
            .as_ref()
            .is_some_and(|s| s.name == self.service_name && s.namespace == self.service_namespace);
        let by_url = match (&self.url, &config.url) {
            (Some(ours), Some(theirs)) => ours.url == *theirs,
            _ => false,
        };
        by_service || by_url
    }
}

/// An https URL the API server calls the webhook at (`clientConfig.url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    pub url: String,
    /// DNS name or IP address, without brackets or port.
    pub host: String,
}

impl std::str::FromStr for WebhookUrl {
    type Err = String;

    /// Accepts what the API server accepts for `clientConfig.url`: https, a host, no user
    /// info, query or fragment.
    fn from_str(s: &str) -> Result<Self, String> {
        let uri: axum::http::Uri = s
            .parse()
            .map_err(|e| format!("webhook URL '{s}' is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("webhook URL '{s}' must start with https://"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("webhook URL '{s}' has no host"))?;
        if authority.as_str().contains('@') || s.contains('#') || uri.query().is_some() {
            return Err(format!(
                "webhook URL '{s}' must not carry user info, a query or a fragment"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("webhook URL '{s}' has no host"));
        }
        Ok(WebhookUrl {
            url: s.to_string(),
            host: host.to_string(),
        })
    }
}

/// The certificate in force: what to serve and which CAs to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shared {
    pub serving: PemPair,
    pub ca_bundle: String,
    pub not_after: i64,
}

impl Shared {
    fn from_secret(secret: &Secret) -> Option<Shared> {
        let data = secret.data.as_ref()?;
        let bytes = |k: &str| data.get(k).map(|b| b.0.clone());
        let not_after = secret
            .metadata
            .annotations
            .as_ref()?
            .get(NOT_AFTER_ANNOTATION)?
            .parse()
            .ok()?;
        Some(Shared {
            serving: PemPair {
                cert: bytes("tls.crt")?,
                key: bytes("tls.key")?,
            },
            ca_bundle: String::from_utf8(bytes(CA_BUNDLE_KEY)?).ok()?,
            not_after,
        })
    }

    fn needs_renewal(&self, now: i64, renew_before: Duration) -> bool {
        let renew_before = i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX);
        now.saturating_add(renew_before) >= self.not_after
    }
}

fn secret_for(
    cfg: &SelfManaged,
    issued: &Issued,
    previous_ca: Option<&str>,
    not_after: i64,
) -> Secret {
    let mut bundle = issued.ca_pem.clone();
    if let Some(prev) = previous_ca {
        bundle.push_str(prev);
    }
    let data = BTreeMap::from([
        (
            "tls.crt".to_string(),
            ByteString(issued.serving.cert.clone()),
        ),
        (
            "tls.key".to_string(),
            ByteString(issued.serving.key.clone()),
        ),
        (
            "ca.crt".to_string(),
            ByteString(issued.ca_pem.clone().into_bytes()),
        ),
        (CA_BUNDLE_KEY.to_string(), ByteString(bundle.into_bytes())),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(cfg.secret_name.clone()),
            namespace: Some(cfg.secret_namespace.clone()),
            annotations: Some(BTreeMap::from([(
                NOT_AFTER_ANNOTATION.to_string(),
                not_after.to_string(),
            )])),
            labels: Some(BTreeMap::from([(
                crate::core::plan::MANAGED_BY_LABEL.to_string(),
                crate::core::plan::MANAGED_BY.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

fn issue(cfg: &SelfManaged, now: i64) -> Result<(Issued, i64), CertError> {
    let issued = tls::self_signed(&cfg.dns_names(), cfg.validity)?;
    let validity = i64::try_from(cfg.validity.as_secs()).unwrap_or(i64::MAX);
    Ok((issued, now.saturating_add(validity)))
}

/// Returns the shared certificate, creating it or renewing it first when needed. `now` is
/// Unix seconds, passed in so tests can move the clock.
pub async fn ensure(client: Client, cfg: &SelfManaged, now: i64) -> Result<Shared, CertError> {
    let api: Api<Secret> = Api::namespaced(client, &cfg.secret_namespace);
    let secret_err = |error| CertError::Secret {
        namespace: cfg.secret_namespace.clone(),
        name: cfg.secret_name.clone(),
        error,
    };
    // A few rounds are enough: each lost race means another replica just wrote a fresh one.
    for _ in 0..4 {
        let current = api.get_opt(&cfg.secret_name).await.map_err(secret_err)?;
        match current {
            None => {
                let (issued, not_after) = issue(cfg, now)?;
                let secret = secret_for(cfg, &issued, None, not_after);
                match api.create(&PostParams::default(), &secret).await {
                    Ok(s) => {
                        info!(secret = %cfg.secret_name, "created the serving certificate");
                        if let Some(shared) = Shared::from_secret(&s) {
                            return Ok(shared);
                        }
                    }
                    // Another replica created it first: use theirs.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(secret_err(e)),
                }
            }
            Some(secret) => {
                match Shared::from_secret(&secret) {
                    Some(shared) if !shared.needs_renewal(now, cfg.renew_before) => {
                        // A pair that does not load (edited by hand, cut short) would stop
                        // every replica at start-up: replace it like an expiring one.
                        match tls::server_config(
                            &shared.serving,
                            std::path::Path::new("tls.crt"),
                            std::path::Path::new("tls.key"),
                        ) {
                            Ok(_) => return Ok(shared),
                            Err(e) => warn!(
                                secret = %format!("{}/{}", cfg.secret_namespace, cfg.secret_name),
                                error = %e,
                                "the Secret's certificate does not load; issuing a new one"
                            ),
                        }
                    }
                    _ => {}
                }
                // Only a CA that parses is kept: one bad block would make the API server
                // reject the whole caBundle.
                let previous_ca = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .and_then(|b| String::from_utf8(b.0.clone()).ok())
                    .filter(|pem| is_pem_certificates(pem));
                let (issued, not_after) = issue(cfg, now)?;
                let mut renewed = secret_for(cfg, &issued, previous_ca.as_deref(), not_after);
                renewed.metadata.resource_version = secret.metadata.resource_version.clone();
                match api
                    .replace(&cfg.secret_name, &PostParams::default(), &renewed)
                    .await
                {
                    Ok(s) => {
                        info!(secret = %cfg.secret_name, "renewed the serving certificate");
                        if let Some(shared) = Shared::from_secret(&s) {
                            return Ok(shared);
                        }
                    }
                    // Another replica renewed it first: read theirs.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(secret_err(e)),
                }
            }
        }
    }
    Err(CertError::Contended {
        namespace: cfg.secret_namespace.clone(),
        name: cfg.secret_name.clone(),
    })
}

/// Sets `caBundle` on every webhook of the configuration that calls our Service. Returns
/// whether anything was written. The patch tests each webhook's name first, so a concurrent
/// reordering of the list fails the patch instead of touching the wrong entry.
pub async fn publish_ca(
    client: Client,
    cfg: &SelfManaged,
    ca_bundle: &str,
) -> Result<bool, CertError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let wrap = |error| CertError::WebhookConfig {
        name: cfg.webhook_config.clone(),
        error,
    };
    let config = api.get(&cfg.webhook_config).await.map_err(wrap)?;
    let wanted = ca_bundle.as_bytes();
    let mut ops = Vec::new();
    let mut ours = 0;
    for (i, hook) in config.webhooks.iter().flatten().enumerate() {
        if !cfg.calls_us(&hook.client_config) {
            continue;
        }
        ours += 1;
        if hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice())
            == Some(wanted)
        {
            continue;
        }
        let index = i.to_string();
        ops.push(PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["webhooks", index.as_str(), "name"]),
            value: Value::String(hook.name.clone()),
        }));
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["webhooks", index.as_str(), "clientConfig", "caBundle"]),
            value: Value::String(base64::engine::general_purpose::STANDARD.encode(wanted)),
        }));
    }
    if ours == 0 {
        return Err(CertError::NoWebhookForService {
            name: cfg.webhook_config.clone(),
            service: match &cfg.url {
                Some(u) => format!(
                    "Service {}/{} or URL {}",
                    cfg.service_namespace, cfg.service_name, u.url
                ),
                None => format!("Service {}/{}", cfg.service_namespace, cfg.service_name),
            },
        });
    }
    if ops.is_empty() {
        return Ok(false);
    }
    // Named, so managedFields show who owns caBundle (a chart that later sets caBundle itself,
    // e.g. a switch to provided certificates, conflicts with this manager under server-side
    // apply until the field is removed or the apply forced).
    let params = PatchParams {
        field_manager: Some(crate::core::names::FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch(
        &cfg.webhook_config,
        &params,
        &Patch::Json::<()>(JsonPatch(ops)),
    )
    .await
    .map_err(wrap)?;
    info!(config = %cfg.webhook_config, "published the CA bundle");
    Ok(true)
}

fn is_pem_certificates(pem: &str) -> bool {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut any = false;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        if cert.is_err() {
            return false;
        }
        any = true;
    }
    any
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Gets the shared certificate, writes it for the TLS server (which reloads the files), and
/// keeps checking it: renewals by any replica reach every replica within `check_interval`.
/// Publishing the CA is retried in the background, so a webhook configuration created after
/// the pod does not block start-up.
pub async fn start(
    client: Client,
    cfg: SelfManaged,
    dir: PathBuf,
) -> Result<(PathBuf, PathBuf), CertError> {
    let shared = ensure(client.clone(), &cfg, unix_now()).await?;
    let (cert, key) = write(&dir, &shared)?;
    tokio::spawn(maintain(client, cfg, dir, shared));
    Ok((cert, key))
}

fn write(dir: &std::path::Path, shared: &Shared) -> Result<(PathBuf, PathBuf), CertError> {
    let issued = Issued {
        ca_pem: shared.ca_bundle.clone(),
        serving: shared.serving.clone(),
    };
    let (cert, key, _) = tls::write_dir(dir, &issued)?;
    Ok((cert, key))
}

async fn maintain(client: Client, cfg: SelfManaged, dir: PathBuf, mut shared: Shared) {
    loop {
        // Re-published every round (it writes only on a difference), so a caBundle reset by
        // an upgrade or by hand comes back.
        let published = match publish_ca(client.clone(), &cfg, &shared.ca_bundle).await {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "cannot publish the CA bundle; retrying");
                false
            }
        };
        // Until the CA is published the API server cannot call us at all, so retry soon.
        let wait = if published {
            cfg.check_interval
        } else {
            cfg.check_interval.min(Duration::from_secs(10))
        };
        tokio::time::sleep(wait).await;
        match ensure(client.clone(), &cfg, unix_now()).await {
            Ok(next) if next != shared => match write(&dir, &next) {
                Ok(_) => shared = next,
                Err(e) => warn!(error = %e, "cannot write the renewed certificate"),
            },
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot check the serving certificate"),
        }
    }
}
