//! The client side of the API's TLS (api.md section 1), for the CLI subcommands and tools
//! driving a node on another machine: the node's certificate is trusted by its SHA-256
//! fingerprint (pinned), as printed by the node (`api_tls:` line) — nothing else is needed,
//! and nothing else is trusted.
//!
//! `PEERSHARE_API_FINGERPRINT` gives the fingerprint and `PEERSHARE_API_TOKEN` the token;
//! both are read only for an API address outside loopback.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::tls::{fingerprint_of, SERVER_NAME};

/// The environment variable naming the certificate fingerprint a remote node must show.
pub const FINGERPRINT_ENV: &str = "PEERSHARE_API_FINGERPRINT";
/// The environment variable holding the API token sent to a remote node.
pub const TOKEN_ENV: &str = "PEERSHARE_API_TOKEN";

/// Trusts exactly one certificate, named by its fingerprint; the handshake's signatures are
/// still verified against that certificate's key.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint_of(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the node's API certificate has SHA-256 {}, not the {} given in {FINGERPRINT_ENV}",
                fingerprint_of(end_entity),
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Normalises a fingerprint as given by a person: hex pairs with or without colons, any case.
pub fn normalise_fingerprint(given: &str) -> Option<String> {
    let hex: String = given.chars().filter(|c| *c != ':' && *c != ' ').collect();
    let bytes = hex::decode(hex).ok()?;
    (bytes.len() == 32).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// A connection to a remote node's API: TLS over `sock`, trusting only `fingerprint`.
pub fn connect(
    sock: TcpStream,
    fingerprint: &str,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let fingerprint = normalise_fingerprint(fingerprint).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{FINGERPRINT_ENV} is not a SHA-256 fingerprint (32 hex pairs)"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint,
            provider,
        }))
        .with_no_client_auth();
    let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// An API client connection: plain on loopback, TLS to another machine.
pub enum ClientStream {
    /// Loopback: JSON in clear, as EchoChain's clients speak it.
    Plain(TcpStream),
    /// Another machine: TLS with a pinned certificate.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl ClientStream {
    /// The TCP socket underneath (timeouts).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf),
            ClientStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.write(buf),
            ClientStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush(),
            ClientStream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised_and_checked() {
        let upper = vec!["AB"; 32].join(":");
        assert_eq!(normalise_fingerprint(&"ab".repeat(32)), Some(upper.clone()));
        assert_eq!(normalise_fingerprint(&upper.to_lowercase()), Some(upper));
        assert_eq!(normalise_fingerprint("ab:cd"), None);
        assert_eq!(normalise_fingerprint(&"zz".repeat(32)), None);
    }
}
