//! The job credential: a certificate authority minted at launch and one
//! certificate it signed, shared by every process of the job. Connections are
//! mutual TLS against that authority, so a process without the credential is
//! refused at the handshake, whichever side it is on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

/// The name every job certificate is issued for and every peer is checked
/// against.
pub(crate) const SERVER_NAME: &str = "monarch.job";

/// The application protocol spoken over QUIC.
pub(crate) const ALPN: &[u8] = b"monarch/1";

/// A job's credential: the authority every process of the job trusts, and
/// the certificate and key they all present. A controller mints one for its
/// own workers; for host agents started by hand or by a scheduler, mint one
/// with [`JobCredential::mint`] (or `monarch credential new FILE`), write it
/// to a file only the job's user can read, and give the same file to the
/// agents and the controller.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use monarch_core::JobCredential;
/// let dir = std::env::temp_dir().join(format!("cred-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let file = dir.join("job.pem");
/// let credential = JobCredential::mint()?;
/// credential.write(&file)?;
/// assert!(JobCredential::read(&file)? == credential);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCredential {
    authority: Vec<u8>,
    certificate: Vec<u8>,
    key: Vec<u8>,
}

/// The credential could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Generating the keys or certificates failed.
    #[error("could not mint the job credential: {0}")]
    Mint(#[from] rcgen::Error),
    /// TLS refused the certificates.
    #[error("the job credential is unusable: {0}")]
    Tls(#[from] rustls::Error),
    /// QUIC refused the TLS settings.
    #[error("the job credential does not suit QUIC: {0}")]
    Quic(String),
    /// A credential file could not be read or written.
    #[error("credential file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A credential file is not one [`JobCredential::write`] wrote.
    #[error(
        "credential file {path} is malformed ({why}); make one with `monarch credential new FILE`"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// The PEM labels of a credential file, in order: the job certificate, its
/// authority, the certificate's private key.
const PEM_LABELS: [&str; 3] = ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"];

impl JobCredential {
    /// Mints a fresh authority and a job certificate it signed.
    pub fn mint() -> Result<Self, CredentialError> {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "monarch job authority");
        let ca_key = rcgen::KeyPair::generate()?;
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let leaf_params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
        Ok(JobCredential {
            authority: ca.der().to_vec(),
            certificate: leaf.der().to_vec(),
            key: leaf_key.serialize_der(),
        })
    }

    /// Writes the credential to `path` as PEM (the job certificate, its
    /// authority, the private key), readable by its owner only. An existing
    /// file is not overwritten.
    pub fn write(&self, path: &Path) -> Result<(), CredentialError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| CredentialError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(self.to_pem().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The credential as the PEM text [`write`](Self::write) puts in a file
    /// (for a secret store, such as a Kubernetes Secret). It holds the
    /// private key: keep it secret.
    pub fn to_pem(&self) -> String {
        let blocks: Vec<pem::Pem> = PEM_LABELS
            .iter()
            .zip([&self.certificate, &self.authority, &self.key])
            .map(|(label, der)| pem::Pem::new(*label, der.clone()))
            .collect();
        pem::encode_many(&blocks)
    }

    /// Reads a credential [`write`](Self::write) wrote, checking that its
    /// certificate is one its authority signed for a job.
    pub fn read(path: &Path) -> Result<Self, CredentialError> {
        let malformed = |why: String| CredentialError::Malformed {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read(path).map_err(|source| CredentialError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let blocks = pem::parse_many(&text).map_err(|e| malformed(e.to_string()))?;
        let labels: Vec<&str> = blocks.iter().map(pem::Pem::tag).collect();
        if labels != PEM_LABELS {
            return Err(malformed(format!(
                "expected PEM blocks {PEM_LABELS:?}, found {labels:?}"
            )));
        }
        let mut ders = blocks.into_iter().map(pem::Pem::into_contents);
        let mut next = || ders.next().expect("three blocks, checked above");
        let credential = JobCredential {
            certificate: next(),
            authority: next(),
            key: next(),
        };
        credential
            .check_signed()
            .and(credential.quic_server().map(drop))
            .and(credential.quic_client().map(drop))
            .map_err(|e| malformed(e.to_string()))?;
        Ok(credential)
    }

    /// Checks that the job certificate is one the authority signed, for the
    /// job's name, and valid now.
    fn check_signed(&self) -> Result<(), CredentialError> {
        use rustls::client::danger::ServerCertVerifier;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots()?,
            Self::provider(),
        )
        .build()
        .map_err(|e| CredentialError::Quic(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(SERVER_NAME)
            .map_err(|e| CredentialError::Quic(e.to_string()))?;
        verifier.verify_server_cert(
            &CertificateDer::from(self.certificate.clone()),
            &[],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )?;
        Ok(())
    }

    /// A key for proving, over a channel without TLS, that a peer holds this
    /// credential: derived from the job certificate's private key.
    pub(crate) fn proof_key(&self) -> ring::hmac::Key {
        let secret = ring::digest::digest(&ring::digest::SHA256, &self.key);
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref())
    }

    pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, CredentialError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.authority.clone()))?;
        Ok(Arc::new(roots))
    }

    pub(crate) fn chain(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![CertificateDer::from(self.certificate.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
        )
    }

    /// QUIC server settings that accept only peers holding this credential.
    pub(crate) fn quic_server(&self) -> Result<quinn::ServerConfig, CredentialError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            Self::provider(),
        )
        .build()
        .map_err(|e| CredentialError::Quic(e.to_string()))?;
        let (chain, key) = self.chain();
        let mut tls = rustls::ServerConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| CredentialError::Quic(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport());
        Ok(config)
    }

    /// QUIC client settings that present this credential and accept only
    /// servers holding it.
    pub(crate) fn quic_client(&self) -> Result<quinn::ClientConfig, CredentialError> {
        let (chain, key) = self.chain();
        let mut tls = rustls::ClientConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(chain, key)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| CredentialError::Quic(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport());
        Ok(config)
    }
}

/// Transport settings for long-lived, high-volume streams between procs:
/// large windows so one stream can carry bulk data, and keep-alives so an idle
/// link is not timed out by QUIC before the application's heartbeats decide.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(64 << 20));
    t.receive_window(quinn::VarInt::from_u32(256 << 20));
    t.send_window(256 << 20);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(16));
    t.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(std::time::Duration::from_secs(30)).expect("30 s fits"),
    ));
    Arc::new(t)
}

impl std::fmt::Debug for JobCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobCredential(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_the_environment() {
        let credential = JobCredential::mint().unwrap();
        let bytes = postcard::to_allocvec(&credential).unwrap();
        let again: JobCredential = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(again.certificate, credential.certificate);
        again.quic_server().unwrap();
        again.quic_client().unwrap();
    }

    #[test]
    fn credential_files_round_trip_and_refuse_damage() {
        let dir = std::env::temp_dir().join(format!("monarch-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("job.pem");
        let credential = JobCredential::mint().unwrap();
        credential.write(&file).unwrap();
        assert!(JobCredential::read(&file).unwrap() == credential);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = credential.write(&file).unwrap_err();
        assert!(matches!(again, CredentialError::Io { .. }), "{again}");

        let text = std::fs::read_to_string(&file).unwrap();
        let cut = dir.join("cut.pem");
        std::fs::write(&cut, &text[..text.rfind("-----BEGIN").unwrap()]).unwrap();
        let error = JobCredential::read(&cut).unwrap_err();
        assert!(error.to_string().contains("expected PEM blocks"), "{error}");
        // Another job's authority did not sign this certificate.
        let other = JobCredential {
            authority: JobCredential::mint().unwrap().authority,
            ..credential.clone()
        };
        let foreign = dir.join("foreign.pem");
        other.write(&foreign).unwrap();
        let error = JobCredential::read(&foreign).unwrap_err();
        assert!(
            matches!(error, CredentialError::Malformed { .. }),
            "{error}"
        );
        let missing = JobCredential::read(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
