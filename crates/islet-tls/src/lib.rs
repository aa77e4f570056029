//! TLS material for the preview edge.
//!
//! - [`parse_pair`] checks an uploaded certificate chain and key (they match, the chain covers
//!   the domain, it has not expired) and turns them into a `rustls` signing key;
//! - [`self_signed`] makes a certificate for local use and tests;
//! - [`SniResolver`] picks the certificate for a TLS handshake by its server name: a tenant's
//!   domain certificate for `*.<domain>`, else the platform's.

mod pem;
mod resolver;

pub use pem::{
    acme_challenge_certificate, key_and_csr, parse_for, parse_pair, self_signed, CertError,
    ParsedCertificate,
};
pub use resolver::SniResolver;
pub use rustls::sign::CertifiedKey;

/// The crypto provider every Islet TLS endpoint uses.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config resolving certificates through `resolver`, speaking HTTP/2 and HTTP/1.1.
pub fn server_config(
    resolver: std::sync::Arc<SniResolver>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A server config that presents `key` to every client and speaks only `alpn` (for answering
/// one TLS-ALPN-01 challenge).
pub fn single_certificate_config(
    key: std::sync::Arc<rustls::sign::CertifiedKey>,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, rustls::Error> {
    #[derive(Debug)]
    struct Fixed(std::sync::Arc<rustls::sign::CertifiedKey>);
    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(std::sync::Arc::new(Fixed(key)));
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}
