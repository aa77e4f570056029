//! PEM certificate chains and keys: checked, parsed, and generated.

use std::sync::Arc;

use islet_types::domain::DomainName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a certificate upload was refused (safe to show to the tenant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate_pem holds no PEM certificate")]
    NoCertificate,
    #[error("private_key_pem holds no PEM private key")]
    NoKey,
    #[error("the certificate could not be parsed")]
    BadCertificate,
    #[error("the private key is not a supported RSA, ECDSA or Ed25519 key")]
    BadKey,
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate does not cover `{0}`")]
    WrongName(String),
    #[error("the certificate has expired or is not valid yet")]
    NotCurrent,
    #[error("could not generate a certificate: {0}")]
    Generate(String),
}

/// A checked certificate, ready for the resolver.
#[derive(Debug, Clone)]
pub struct ParsedCertificate {
    pub key: Arc<CertifiedKey>,
    /// Unix milliseconds.
    pub not_after: i64,
    pub dns_names: Vec<String>,
}

/// Parse and check a certificate chain (leaf first) and its key for `*.<domain>` at `now_ms`.
pub fn parse_pair(
    cert_pem: &str,
    key_pem: &str,
    domain: &DomainName,
    now_ms: i64,
) -> Result<ParsedCertificate, CertError> {
    parse_for(cert_pem, key_pem, &format!("*.{domain}"), now_ms)
}

/// Parse and check a certificate chain and its key for exactly `name` (a host, or `*.<domain>`)
/// at `now_ms`.
pub fn parse_for(
    cert_pem: &str,
    key_pem: &str,
    name: &str,
    now_ms: i64,
) -> Result<ParsedCertificate, CertError> {
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| CertError::BadCertificate)?;
    let leaf = chain.first().ok_or(CertError::NoCertificate)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|_| CertError::BadKey)?
        .ok_or(CertError::NoKey)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| CertError::BadCertificate)?;
    let validity = parsed.validity();
    let not_before = validity.not_before.timestamp() * 1000;
    let not_after = validity.not_after.timestamp() * 1000;
    if now_ms < not_before || now_ms >= not_after {
        return Err(CertError::NotCurrent);
    }
    let dns_names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !dns_names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return Err(CertError::WrongName(name.to_owned()));
    }
    let provider = crate::provider();
    let signing = provider.key_provider.load_private_key(key).map_err(|_| CertError::BadKey)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| CertError::KeyMismatch)?;
    Ok(ParsedCertificate { key: Arc::new(certified), not_after, dns_names })
}

/// The self-signed certificate that answers an ACME TLS-ALPN-01 challenge for `name`
/// (RFC 8737): it carries the SHA-256 of the key authorisation in a critical extension.
pub fn acme_challenge_certificate(
    name: &str,
    digest: &[u8],
) -> Result<Arc<CertifiedKey>, CertError> {
    let generate = |e: rcgen::Error| CertError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(generate)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(generate)?;
    let der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    let signing = crate::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| CertError::Generate(e.to_string()))?;
    // Not `CertifiedKey::from_der`: that refuses the critical ACME extension.
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)))
}

/// A fresh key and a CSR for `names` (PEM key, DER request): what an ACME order is finalised
/// with.
pub fn key_and_csr(names: &[String]) -> Result<(String, Vec<u8>), CertError> {
    let generate = |e: rcgen::Error| CertError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(generate)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// A self-signed certificate (PEM chain, PEM key) for `names`.
pub fn self_signed(names: &[String]) -> Result<(String, String), CertError> {
    let key = rcgen::KeyPair::generate().map_err(|e| CertError::Generate(e.to_string()))?;
    let params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| CertError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    #[test]
    fn accepts_matching_pair_and_refuses_others() {
        let domain: DomainName = "preview.acme.dev".parse().expect("domain");
        let names = vec!["*.preview.acme.dev".to_owned(), "preview.acme.dev".to_owned()];
        let (cert, key) = self_signed(&names).expect("generate");
        let parsed = parse_pair(&cert, &key, &domain, now()).expect("valid pair");
        assert!(parsed.dns_names.contains(&"*.preview.acme.dev".to_owned()));
        assert!(parsed.not_after > now());

        let (_, other_key) = self_signed(&names).expect("generate");
        assert_eq!(
            parse_pair(&cert, &other_key, &domain, now()).err(),
            Some(CertError::KeyMismatch)
        );
        let other: DomainName = "preview.evil.dev".parse().expect("domain");
        assert!(matches!(parse_pair(&cert, &key, &other, now()), Err(CertError::WrongName(_))));
        assert_eq!(parse_pair("junk", &key, &domain, now()).err(), Some(CertError::NoCertificate));
        assert_eq!(parse_pair(&cert, "junk", &domain, now()).err(), Some(CertError::NoKey));
        assert_eq!(
            parse_pair(&cert, &key, &domain, i64::MAX / 2).err(),
            Some(CertError::NotCurrent)
        );
    }
}
