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
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate file {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error(
        "key file {key} does not belong to the certificate in {cert} (their public keys differ)"
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The I/O error is in the message, not a `source`, so a chain prints it once.
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Largest certificate or key file read. A chain of a few certificates is a few KiB, and a
/// Secret (where they usually come from) holds at most 1 MiB; anything bigger is a wrong path,
/// and reading it whole every reload interval would cost its size in memory.
pub const MAX_PEM_FILE: u64 = 1024 * 1024;

/// Builds the rustls server configuration from PEM bytes. Errors name the file (`cert_path`
/// or `key_path`) and say what is wrong with it.
pub fn server_config(
    pem: &PemPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<ServerConfig, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert_path.into(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: key_path.into(),
        reason,
    };
    let blocks = pem_blocks(&pem.cert).map_err(cert_err)?;
    let mut certs: Vec<CertificateDer<'static>> = Vec::new();
    for (kind, der) in &blocks {
        if *kind == SectionKind::Certificate {
            if let Err(e) = x509_parser::parse_x509_certificate(der) {
                return Err(cert_err(format!(
                    "certificate {} in the file is not valid X.509 (damaged or cut short): {e}",
                    certs.len() + 1
                )));
            }
            certs.push(CertificateDer::from(der.clone()));
        }
    }
    if certs.is_empty() {
        return Err(cert_err(missing(false, &pem.cert, &blocks)));
    }
    let blocks = pem_blocks(&pem.key).map_err(key_err)?;
    let mut keys = blocks
        .into_iter()
        .filter(|(kind, _)| is_private_key(*kind))
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der));
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key,
        (Some(_), Some(_)) => {
            return Err(key_err(
                "holds more than one private key; give exactly one".into(),
            ));
        }
        (None, _) => {
            let blocks = pem_blocks(&pem.key).unwrap_or_default();
            return Err(key_err(missing(true, &pem.key, &blocks)));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Loaded here first so a damaged or unsupported key is blamed on the key file.
    if provider
        .key_provider
        .load_private_key(key.clone_key())
        .is_err()
    {
        return Err(key_err(
            "is not a usable private key: damaged, cut short, or of an unsupported type (RSA of 2048 bits or more, ECDSA P-256 or P-384, and Ed25519 are supported)".into(),
        ));
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::Mismatch {
                    cert: cert_path.into(),
                    key: key_path.into(),
                }
            }
            other => TlsError::Config(other),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn is_private_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// Every PEM block of a file, or what is wrong with its PEM.
fn pem_blocks(bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| match e {
            pem::Error::MissingSectionEnd { .. } => {
                "a PEM block has no END line: the file is cut short".to_string()
            }
            pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".into(),
            pem::Error::Base64Decode(e) => {
                format!("the base64 inside a PEM block is damaged: {e}")
            }
            other => format!("cannot be read as PEM: {other}"),
        })
}

/// What a certificate file (`want_key` false) or key file holds instead of what it should.
fn missing(want_key: bool, bytes: &[u8], blocks: &[(SectionKind, Vec<u8>)]) -> String {
    let wanted = if want_key {
        "private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
    } else {
        "certificate (CERTIFICATE block)"
    };
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return format!("is empty; it should hold a {wanted}");
    }
    if want_key && text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return "holds an encrypted private key; the key must be unencrypted".into();
    }
    let held: std::collections::BTreeSet<&str> =
        blocks.iter().map(|(kind, _)| pem_label(*kind)).collect();
    let held = held.into_iter().collect::<Vec<_>>().join(", ");
    let swapped = blocks.iter().any(|(kind, _)| {
        if want_key {
            *kind == SectionKind::Certificate
        } else {
            is_private_key(*kind)
        }
    });
    if swapped {
        format!("holds {held} but no {wanted}: are the certificate and key files swapped?")
    } else if !held.is_empty() {
        format!("holds {held} but no {wanted}")
    } else if bytes.first() == Some(&0x30) {
        format!(
            "is binary DER, not PEM; convert it to PEM (openssl x509 or openssl pkey with -inform der) to give a {wanted}"
        )
    } else {
        format!("is not PEM: it holds no -----BEGIN line of a {wanted}")
    }
}

fn pem_label(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        _ => "another PEM block",
    }
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
    let cert_bytes = read_bounded(cert).map_err(|reason| TlsError::Cert {
        path: cert.into(),
        reason,
    })?;
    let key_bytes = read_bounded(key).map_err(|reason| TlsError::Key {
        path: key.into(),
        reason,
    })?;
    Ok(PemPair {
        cert: cert_bytes,
        key: key_bytes,
    })
}

/// Reads at most [`MAX_PEM_FILE`] bytes, so a wrong path (a log, a device) is refused rather
/// than read whole.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(format!(
            "is larger than {} KiB; a certificate chain or a key is a few KiB",
            MAX_PEM_FILE / 1024
        ));
    }
    Ok(bytes)
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
    // A file that cannot be read (too large, unreadable) is reported once, not every tick;
    // the current certificate stays in force meanwhile.
    let mut unreadable: Option<String> = None;
    crate::reload::on_change(
        &what,
        interval,
        current,
        || match read(&cert, &key) {
            Ok(pair) => {
                unreadable = None;
                Some(pair)
            }
            Err(e) => {
                let e = e.to_string();
                if unreadable.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "cannot read the serving certificate; the current one stays in force");
                    unreadable = Some(e);
                }
                None
            }
        },
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
        std::fs::write(&path, bytes).map_err(|error| TlsError::Write {
            path: path.clone(),
            error,
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|error| TlsError::Write {
        path: dir.into(),
        error,
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|error| {
        TlsError::Write {
            path: path.into(),
            error,
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

    /// A name, the certificate and key files' bytes, and what the error must mention.
    type BrokenPair = (&'static str, Vec<u8>, Vec<u8>, &'static str, &'static str);

    /// The error for a pair of files holding `cert` and `key`.
    fn refusal(cert: &[u8], key: &[u8]) -> String {
        let pair = PemPair {
            cert: cert.to_vec(),
            key: key.to_vec(),
        };
        match server_config(&pair, Path::new("/c/tls.crt"), Path::new("/k/tls.key")) {
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(cert)),
            Err(e) => e.to_string(),
        }
    }

    /// `pem` without its `n`th base64 line: still PEM, but the DER inside is cut short.
    fn without_line(pem: &[u8], n: usize) -> Vec<u8> {
        let text = String::from_utf8_lossy(pem);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(n);
        (lines.join("\n") + "\n").into_bytes()
    }

    #[test]
    fn each_broken_file_is_named_with_what_is_wrong() {
        let good = self_signed(&["a".into()], Duration::from_secs(60))
            .unwrap()
            .serving;
        let other = self_signed(&["b".into()], Duration::from_secs(60))
            .unwrap()
            .serving;
        let (cert, key) = (good.cert.as_slice(), good.key.as_slice());
        let der_cert = CertificateDer::pem_slice_iter(cert)
            .next()
            .unwrap()
            .unwrap();
        let csr = CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .serialize_request(&KeyPair::generate().unwrap())
            .unwrap()
            .pem()
            .unwrap();
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let half = |b: &[u8]| b[..b.len() / 2].to_vec();
        let cases: Vec<BrokenPair> = vec![
            (
                "empty certificate",
                vec![],
                key.into(),
                "/c/tls.crt",
                "is empty",
            ),
            (
                "blank key",
                cert.into(),
                b" \n".to_vec(),
                "/k/tls.key",
                "is empty",
            ),
            (
                "certificate cut short",
                half(cert),
                key.into(),
                "/c/tls.crt",
                "no END line: the file is cut short",
            ),
            (
                "key cut short",
                cert.into(),
                half(key),
                "/k/tls.key",
                "cut short",
            ),
            (
                "certificate missing a line",
                without_line(cert, 3),
                key.into(),
                "/c/tls.crt",
                "certificate 1 in the file is not valid X.509",
            ),
            (
                "key missing a line",
                cert.into(),
                without_line(key, 1),
                "/k/tls.key",
                "is not a usable private key",
            ),
            (
                "damaged base64",
                String::from_utf8_lossy(cert)
                    .replacen("\nM", "\n!", 1)
                    .into_bytes(),
                key.into(),
                "/c/tls.crt",
                "the base64 inside a PEM block is damaged",
            ),
            (
                "swapped",
                key.into(),
                cert.into(),
                "/c/tls.crt",
                "holds PRIVATE KEY but no certificate (CERTIFICATE block): are the certificate and key files swapped?",
            ),
            (
                "certificate twice",
                cert.into(),
                cert.into(),
                "/k/tls.key",
                "holds CERTIFICATE but no private key",
            ),
            (
                "key twice",
                cert.into(),
                [key, other.key.as_slice()].concat(),
                "/k/tls.key",
                "more than one private key",
            ),
            (
                "binary DER certificate",
                der_cert.to_vec(),
                key.into(),
                "/c/tls.crt",
                "is binary DER, not PEM",
            ),
            (
                "a certificate request",
                csr.into_bytes(),
                key.into(),
                "/c/tls.crt",
                "holds CERTIFICATE REQUEST but no certificate",
            ),
            (
                "an encrypted key",
                cert.into(),
                encrypted.to_vec(),
                "/k/tls.key",
                "encrypted private key",
            ),
            (
                "text that is not PEM",
                b"hello".to_vec(),
                key.into(),
                "/c/tls.crt",
                "is not PEM",
            ),
            (
                "a key of another certificate",
                cert.into(),
                other.key.clone(),
                "/k/tls.key does not belong to the certificate in /c/tls.crt",
                "",
            ),
        ];
        for (name, c, k, file, wanted) in cases {
            let err = refusal(&c, &k);
            assert!(err.contains(file) && err.contains(wanted), "{name}: {err}");
        }
    }

    #[test]
    fn a_file_past_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let issued = self_signed(&["a".into()], Duration::from_secs(60)).unwrap();
        let (cert, key, _) = write_dir(dir.path(), &issued).unwrap();
        assert!(load(&cert, &key).is_ok());
        // A chain padded with comment lines until it is past the limit.
        let mut padded = issued.serving.cert.clone();
        padded.resize(MAX_PEM_FILE as usize + 1, b'\n');
        std::fs::write(&cert, &padded).unwrap();
        let err = load(&cert, &key).unwrap_err().to_string();
        assert!(
            err.contains(&*cert.to_string_lossy()) && err.contains("larger than 1024 KiB"),
            "{err}"
        );
        #[cfg(unix)]
        {
            let err = load(Path::new("/dev/zero"), &key).unwrap_err().to_string();
            assert!(
                err.contains("/dev/zero") && err.contains("larger than"),
                "{err}"
            );
        }
        let err = load(dir.path(), &key).unwrap_err().to_string();
        assert!(err.contains(&*dir.path().to_string_lossy()), "{err}");
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
