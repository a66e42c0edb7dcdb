//! Serving certificates: loading PEM files into rustls, hot reload, and self-signed
//! generation with rcgen.

pub mod self_managed;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate file {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Builds the rustls server configuration from PEM bytes. `what` names the source in errors.
pub fn server_config(
    pem: &PemPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert_path.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert_path.into(),
            reason: "holds no PEM CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| TlsError::Key {
        path: key_path.into(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// notAfter of the first certificate of a PEM chain (the one served), in seconds since the
/// epoch; `None` when there is no certificate or it does not parse.
pub fn not_after(cert_pem: &[u8]) -> Option<i64> {
    let der = CertificateDer::pem_slice_iter(cert_pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Publishes the expiry of the certificate in `pem` (0 when it cannot be read, which the
/// expiry alert treats as already expired).
pub fn record_expiry(metrics: &Metrics, pem: &PemPair) {
    metrics
        .certificate_expiry
        .set(not_after(&pem.cert).unwrap_or(0));
}

fn read(cert: &Path, key: &Path) -> Result<PemPair, TlsError> {
    let cert_bytes = std::fs::read(cert).map_err(|e| TlsError::Cert {
        path: cert.into(),
        reason: e.to_string(),
    })?;
    let key_bytes = std::fs::read(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    Ok(PemPair {
        cert: cert_bytes,
        key: key_bytes,
    })
}

/// Loads the files once; the error names the file and the problem.
pub fn load(cert: &Path, key: &Path) -> Result<(PemPair, ServerConfig), TlsError> {
    let pem = read(cert, key)?;
    let config = server_config(&pem, cert, key)?;
    Ok((pem, config))
}

/// Re-reads the files every `interval` and swaps the configuration when their content
/// changes. New handshakes use the new certificate; open connections keep theirs, so nothing
/// in flight is dropped. A broken new pair is logged and the old one stays in use.
pub async fn watch(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    current: PemPair,
    interval: Duration,
    metrics: Metrics,
) {
    let what = format!("serving certificate {}", cert.display());
    crate::reload::on_change(
        &what,
        interval,
        current,
        || read(&cert, &key).ok(),
        |next| {
            let c = server_config(next, &cert, &key).map_err(|e| e.to_string())?;
            config.reload_from_config(Arc::new(c));
            record_expiry(&metrics, next);
            Ok(())
        },
        metrics.cert_reloads.clone(),
    )
    .await;
}

/// A CA and a serving certificate it signed.
#[derive(Clone, Debug)]
pub struct Issued {
    pub ca_pem: String,
    pub serving: PemPair,
}

/// Creates a CA and a serving certificate for `dns_names` (IP addresses are accepted too),
/// valid from an hour ago (clock skew) for `validity`.
pub fn self_signed(dns_names: &[String], validity: Duration) -> Result<Issued, TlsError> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let not_after = now + validity;

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name = name("kserve-keda-webhook CA");
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut leaf = CertificateParams::new(dns_names.to_vec())?;
    leaf.distinguished_name = name(
        dns_names
            .first()
            .map_or("kserve-keda-webhook", |s| s.as_str()),
    );
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    Ok(Issued {
        ca_pem: ca.pem(),
        serving: PemPair {
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        },
    })
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Writes `tls.crt`, `tls.key` and `ca.crt` into `dir` (the key readable by the owner only).
pub fn write_dir(dir: &Path, issued: &Issued) -> Result<(PathBuf, PathBuf, PathBuf), TlsError> {
    let write = |file: &str, bytes: &[u8]| -> Result<PathBuf, TlsError> {
        let path = dir.join(file);
        std::fs::write(&path, bytes).map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.into(),
        source,
    })?;
    let cert = write("tls.crt", &issued.serving.cert)?;
    let key = write("tls.key", &issued.serving.key)?;
    restrict(&key)?;
    let ca = write("ca.crt", issued.ca_pem.as_bytes())?;
    Ok((cert, key, ca))
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        TlsError::Write {
            path: path.into(),
            source,
        }
    })
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<(), TlsError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_into_rustls() {
        let issued = self_signed(
            &["localhost".into(), "127.0.0.1".into()],
            Duration::from_secs(3600),
        )
        .unwrap();
        assert!(issued.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&issued.serving, Path::new("c"), Path::new("k")).unwrap();
    }

    #[test]
    fn not_after_is_the_served_certificates() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let issued = self_signed(&["a".into()], Duration::from_secs(7200)).unwrap();
        let end = not_after(&issued.serving.cert).unwrap();
        assert!((end - (now + 7200)).abs() <= 5, "{end} vs {now}");
        // The leaf comes first; a chain with the CA after it still reports the leaf.
        let other = self_signed(&["b".into()], Duration::from_secs(3 * 86400)).unwrap();
        let chain = [issued.serving.cert.clone(), other.ca_pem.into_bytes()].concat();
        assert_eq!(not_after(&chain), Some(end));
        assert_eq!(not_after(b"no certificate here"), None);
    }

    #[test]
    fn bad_pem_names_the_file() {
        let bad = PemPair {
            cert: b"not a cert".to_vec(),
            key: b"nor a key".to_vec(),
        };
        let err =
            server_config(&bad, Path::new("/x/tls.crt"), Path::new("/x/tls.key")).unwrap_err();
        assert!(err.to_string().contains("/x/tls.crt"), "{err}");
        let issued = self_signed(&["a".into()], Duration::from_secs(60)).unwrap();
        let mixed = PemPair {
            cert: issued.serving.cert.clone(),
            key: b"nor a key".to_vec(),
        };
        let err = server_config(&mixed, Path::new("c"), Path::new("/x/tls.key")).unwrap_err();
        assert!(err.to_string().contains("/x/tls.key"), "{err}");
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = self_signed(&["a".into()], Duration::from_secs(60)).unwrap();
        let b = self_signed(&["b".into()], Duration::from_secs(60)).unwrap();
        let mixed = PemPair {
            cert: a.serving.cert,
            key: b.serving.key,
        };
        assert!(server_config(&mixed, Path::new("c"), Path::new("k")).is_err());
    }
}
