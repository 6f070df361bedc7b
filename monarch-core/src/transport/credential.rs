//! The job credential: a certificate authority minted at launch and one
//! certificate it signed, shared by every process of the job. Connections are
//! mutual TLS against that authority, so a process without the credential is
//! refused at the handshake, whichever side it is on.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

/// The name every job certificate is issued for and every peer is checked
/// against.
pub(crate) const SERVER_NAME: &str = "monarch.job";

/// The application protocol spoken over QUIC.
pub(crate) const ALPN: &[u8] = b"monarch/1";

/// A job's credential, as handed from the controller to its workers.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Credential {
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
}

impl Credential {
    /// Mints a fresh authority and job certificate.
    pub(crate) fn mint() -> Result<Self, CredentialError> {
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
        Ok(Credential {
            authority: ca.der().to_vec(),
            certificate: leaf.der().to_vec(),
            key: leaf_key.serialize_der(),
        })
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

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_the_environment() {
        let credential = Credential::mint().unwrap();
        let bytes = postcard::to_allocvec(&credential).unwrap();
        let again: Credential = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(again.certificate, credential.certificate);
        again.quic_server().unwrap();
        again.quic_client().unwrap();
    }
}
