//! TLS for the API beyond loopback (api.md section 1): the token, and every request and reply,
//! must not cross a network in clear.
//!
//! A node whose API listens beyond loopback keeps a self-signed certificate in its data dir
//! (`api-tls.crt`, and its key in `api-tls.key`, mode 0600), made on first start. Clients
//! trust it by its SHA-256 fingerprint, which the node prints at start and in `status`, or by
//! the certificate file itself, as Syncthing's GUI and SSH host keys are trusted: there is no
//! certificate authority for a machine on a home or office network. TLS 1.3 only, on ring.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The name the certificate is made for; clients that check names ask for this one.
pub const SERVER_NAME: &str = "peershare-api";
/// The certificate's file in the data dir.
pub const CERT_FILE: &str = "api-tls.crt";
/// Its private key's file in the data dir (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "api-tls.key";

/// Why the API's TLS identity could not be loaded or made.
#[derive(Debug)]
pub enum TlsError {
    /// Reading or writing one of the files failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file is there but is not a certificate or key this node can use.
    Bad {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Making the certificate failed.
    Generate(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            TlsError::Bad { path, why } => write!(
                f,
                "{} is not usable: {why} (move it away to make a new certificate; clients \
                 will then need the new fingerprint)",
                path.display()
            ),
            TlsError::Generate(why) => write!(f, "cannot make the API's certificate: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The API's TLS identity: the server configuration and the certificate's fingerprint.
pub struct ApiTls {
    /// What every TLS connection of the API is served with.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate (DER), as `AB:CD:...` (32 pairs): what clients pin.
    pub fingerprint: String,
    /// The certificate file, for clients that trust it by the file.
    pub cert_path: PathBuf,
}

impl ApiTls {
    /// Loads the certificate and key from `data_dir`, making both on first use. A file that
    /// is there but unreadable or broken is an error, never silently replaced: clients pinned
    /// the old fingerprint.
    pub fn load_or_create(data_dir: &Path) -> Result<ApiTls, TlsError> {
        let cert_path = data_dir.join(CERT_FILE);
        let key_path = data_dir.join(KEY_FILE);
        if !cert_path.exists() && !key_path.exists() {
            create(&cert_path, &key_path)?;
        }
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        if let Ok(meta) = fs::metadata(&key_path) {
            if meta.permissions().mode() & 0o077 != 0 {
                log::warn!(
                    "{} is readable by others than its owner: chmod 600 it",
                    key_path.display()
                );
            }
        }
        let cert = CertificateDer::from_pem_slice(&cert_pem).map_err(|e| TlsError::Bad {
            path: cert_path.clone(),
            why: format!("no PEM certificate in it ({e})"),
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Bad {
            path: key_path.clone(),
            why: format!("no PEM private key in it ({e})"),
        })?;
        let fingerprint = fingerprint_of(&cert);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Generate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Bad {
            path: key_path.clone(),
            why: format!("the key does not go with {CERT_FILE}: {e}"),
        })?;
        Ok(ApiTls {
            config: Arc::new(config),
            fingerprint,
            cert_path,
        })
    }
}

/// SHA-256 of a certificate's DER bytes, as upper-case hex pairs joined by colons (the form
/// `openssl x509 -fingerprint -sha256` prints).
pub fn fingerprint_of(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Makes a self-signed ECDSA P-256 certificate (the key type every TLS client takes) for
/// [`SERVER_NAME`], valid for 100 years (it is pinned, not checked against a calendar), and
/// writes it and its key: each to a temporary file, synced, then renamed.
fn create(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(gen)?;
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).map_err(gen)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "peershare API");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.self_signed(&key).map_err(gen)?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    write_new(key_path, key_pem.as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)?;
    log::info!(
        "made the API's TLS certificate {} (SHA-256 {})",
        cert_path.display(),
        fingerprint_of(cert.der())
    );
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let io = |what, source| TlsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded_with_the_same_fingerprint_and_a_broken_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let a = ApiTls::load_or_create(d.path()).unwrap();
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let mode = fs::metadata(d.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = ApiTls::load_or_create(d.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);

        fs::write(d.path().join(KEY_FILE), "not a key\n").unwrap();
        let e = ApiTls::load_or_create(d.path()).err().unwrap().to_string();
        assert!(e.contains("no PEM private key"), "{e}");
        // A key without its certificate is not replaced either.
        fs::remove_file(d.path().join(CERT_FILE)).unwrap();
        let e = ApiTls::load_or_create(d.path()).err().unwrap().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
