//! TLS material for the preview edge.
//!
//! - [`parse_pair`] checks an uploaded certificate chain and key (they match, the chain covers
//!   the domain, it has not expired) and turns them into a `rustls` signing key;
//! - [`self_signed`] makes a certificate for local use and tests;
//! - [`SniResolver`] picks the certificate for a TLS handshake by its server name: a tenant's
//!   domain certificate for `*.<domain>`, else the platform's.

mod pem;
mod resolver;

pub use pem::{parse_pair, self_signed, CertError, ParsedCertificate};
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
