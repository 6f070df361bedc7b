//! Probes for tests: what an intruder without the job credential gets when it
//! tries to join.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::CertificateDer;

use super::connect::{incarnation_of, socket_of};
use super::credential::{CredentialError, JobCredential, ALPN, SERVER_NAME};
use super::local;
use crate::wire::frame::{encode_prefix, Header, Hello, Purpose};
use crate::ProcId;

/// Tries to join the process listening at `addr` without the job credential,
/// as an intruder would, on both paths: over QUIC with a certificate of its
/// own, and through the same-host socket with a key of its own. `Ok` means the
/// peer let it in on either, which it must never do; the error says how each
/// attempt was refused.
pub(crate) async fn probe_as_intruder(addr: &str) -> Result<(), String> {
    let quic = probe_quic(addr).await;
    let local = probe_local(addr).await;
    match (quic, local) {
        (Err(q), Err(l)) => Err(format!("QUIC: {q}; same-host: {l}")),
        _ => Ok(()),
    }
}

async fn probe_local(addr: &str) -> Result<(), String> {
    let mut stream = local::connect(incarnation_of(addr))
        .await
        .map_err(|e| format!("no same-host socket ({e})"))?;
    let own = JobCredential::mint()
        .map_err(|e| e.to_string())?
        .proof_key();
    let attempt = local::authenticate(&mut stream, &own);
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("refused: {e}"))
}

async fn probe_quic(addr: &str) -> Result<(), String> {
    let socket = socket_of(addr).map_err(|e| e.to_string())?;
    let config = intruder_client().map_err(|e| e.to_string())?;
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let connection = endpoint
            .connect_with(config, socket, SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("handshake refused: {e}"))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let mut hello = BytesMut::new();
        let header = Header::Hello(Hello {
            proc: ProcId::new("intruder", "nowhere", 0),
            addr: "127.0.0.1:9/0".into(),
            purpose: Purpose::Link,
            max_frame: 1 << 20,
        });
        encode_prefix(&header, 0, &mut hello);
        send.write_all(&hello).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        match recv.read(&mut buf).await {
            Ok(Some(n)) if n > 0 => Ok(()),
            Ok(_) => Err("the peer closed the stream".to_string()),
            Err(e) => Err(format!("refused: {e}")),
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer".to_string()));
    endpoint.close(0u32.into(), b"done");
    result
}

/// Client settings for a process that does not hold the job credential but
/// presents its own and trusts any server: what an intruder would try. Used to
/// check that servers refuse it.
pub(crate) fn intruder_client() -> Result<quinn::ClientConfig, CredentialError> {
    let own = JobCredential::mint()?;
    let (chain, key) = own.chain();
    let provider = JobCredential::provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
        .with_client_auth_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| CredentialError::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// Accepts any server certificate (checking only that the handshake is signed
/// by it), so an intruder gets as far as the server lets it.
#[derive(Debug)]
struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
