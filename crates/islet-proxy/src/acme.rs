//! Certificates from an ACME CA (RFC 8555) for previews on tenants' domains, issued on demand:
//! the first TLS handshake for a preview host that no uploaded certificate covers waits for
//! one (about a second), later ones reuse it. Challenges are answered by the edge itself:
//! TLS-ALPN-01 on the TLS listener (RFC 8737) or HTTP-01 on the plain one. Certificates are
//! renewed in the background before they expire.
//!
//! Only hosts that name an existing sandbox of the domain's (verified) tenant get a
//! certificate, so nobody can make the edge order certificates for names of their choosing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use islet_store::{CertificateKind, CertificateRow, Store};
use islet_types::domain::DomainName;
use islet_types::time::now_millis;
use islet_types::TenantId;
use rustls::sign::CertifiedKey;

/// Which challenge proves control of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// On the TLS listener, which must be reachable on port 443.
    TlsAlpn01,
    /// On the plain listener, which must be reachable on port 80.
    Http01,
}

/// ACME settings.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    pub directory_url: String,
    /// PEM file of a CA to trust for the directory (test CAs such as pebble); the system's
    /// roots otherwise.
    pub root_ca: Option<std::path::PathBuf>,
    pub challenge: Challenge,
    /// Renew certificates this long before they expire.
    pub renew_before: Duration,
    /// How long a handshake waits for a certificate being issued.
    pub issue_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("ACME order ended as {0:?}")]
    Order(OrderStatus),
    #[error("the CA offered no {0:?} challenge")]
    NoChallenge(ChallengeType),
    #[error("certificate: {0}")]
    Certificate(#[from] islet_tls::CertError),
    #[error("store: {0}")]
    Store(#[from] islet_store::StoreError),
    #[error("account credentials: {0}")]
    Credentials(#[from] serde_json::Error),
    #[error("timed out")]
    Timeout,
}

/// Issues and renews host certificates; answers the CA's challenges meanwhile.
pub(crate) struct Issuer {
    config: AcmeConfig,
    store: Store,
    account: tokio::sync::OnceCell<Account>,
    /// HTTP-01: token → key authorisation.
    http_tokens: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: host → challenge certificate.
    alpn_certificates: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// One issuance per host at a time.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Issuer {
    pub(crate) fn new(config: AcmeConfig, store: Store) -> Self {
        Self {
            config,
            store,
            account: tokio::sync::OnceCell::new(),
            http_tokens: Mutex::default(),
            alpn_certificates: Mutex::default(),
            in_flight: Mutex::default(),
        }
    }

    pub(crate) fn renew_before(&self) -> Duration {
        self.config.renew_before
    }

    /// The key authorisation for an HTTP-01 token the CA asks about.
    pub(crate) fn http_response(&self, token: &str) -> Option<String> {
        self.http_tokens.lock().ok()?.get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `host`, while its challenge is pending.
    pub(crate) fn alpn_certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn_certificates.lock().ok()?.get(host).cloned()
    }

    async fn account(&self) -> Result<&Account, AcmeError> {
        self.account
            .get_or_try_init(|| async {
                let builder = || match &self.config.root_ca {
                    Some(path) => Account::builder_with_root(path),
                    None => Account::builder(),
                };
                let directory = &self.config.directory_url;
                if let Some(saved) = self.store.acme_account(directory).await? {
                    let credentials: AccountCredentials = serde_json::from_str(&saved)?;
                    return Ok(builder()?.from_credentials(credentials).await?);
                }
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &[],
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.clone(),
                        None,
                    )
                    .await?;
                self.store
                    .save_acme_account(directory, serde_json::to_string(&credentials)?)
                    .await?;
                tracing::info!(directory = %directory, "created ACME account");
                Ok(account)
            })
            .await
    }

    /// Obtain a certificate for `host` (under `tenant`'s verified `domain`), store it and
    /// return it. Concurrent calls for one host share one order; a caller that waited finds
    /// `fresh` answering with the certificate the first one stored.
    pub(crate) async fn issue(
        &self,
        host: &str,
        domain: &DomainName,
        tenant: &TenantId,
        fresh: impl Fn() -> Option<Arc<CertifiedKey>>,
    ) -> Result<Arc<CertifiedKey>, AcmeError> {
        let lock = self
            .in_flight
            .lock()
            .map(|mut m| m.entry(host.to_owned()).or_default().clone())
            .unwrap_or_default();
        let _guard = lock.lock().await;
        if let Some(key) = fresh() {
            return Ok(key);
        }
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.config.issue_timeout, self.order(host))
            .await
            .map_err(|_| AcmeError::Timeout)
            .and_then(|r| r);
        if let Ok(mut tokens) = self.alpn_certificates.lock() {
            tokens.remove(host);
        }
        let (chain_pem, key_pem) = result?;
        let parsed = islet_tls::parse_for(&chain_pem, &key_pem, host, now_millis())?;
        self.store
            .put_certificate(CertificateRow {
                name: host.to_owned(),
                domain: domain.clone(),
                kind: CertificateKind::Host,
                tenant_id: tenant.clone(),
                cert_pem: chain_pem,
                key_pem,
                not_after: parsed.not_after,
                source: "acme".into(),
            })
            .await?;
        tracing::info!(
            host,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "issued certificate"
        );
        if let Ok(mut m) = self.in_flight.lock() {
            m.remove(host);
        }
        Ok(parsed.key)
    }

    /// One ACME order for `host`: (PEM chain, PEM key).
    async fn order(&self, host: &str) -> Result<(String, String), AcmeError> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(host.to_owned())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let kind = match self.config.challenge {
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Http01 => ChallengeType::Http01,
        };
        let mut tokens = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let mut challenge = authorization
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::NoChallenge(kind.clone()))?;
            let key_authorization = challenge.key_authorization();
            match self.config.challenge {
                Challenge::Http01 => {
                    tokens.push(challenge.token.clone());
                    if let Ok(mut m) = self.http_tokens.lock() {
                        m.insert(challenge.token.clone(), key_authorization.as_str().to_owned());
                    }
                }
                Challenge::TlsAlpn01 => {
                    let name = challenge.identifier().to_string();
                    let cert = islet_tls::acme_challenge_certificate(
                        &name,
                        key_authorization.digest().as_ref(),
                    )?;
                    if let Ok(mut m) = self.alpn_certificates.lock() {
                        m.insert(name, cert);
                    }
                }
            }
            challenge.set_ready().await?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .backoff(1.5)
            .timeout(self.config.issue_timeout);
        let status = order.poll_ready(&retry).await;
        if let Ok(mut m) = self.http_tokens.lock() {
            for token in &tokens {
                m.remove(token);
            }
        }
        match status? {
            OrderStatus::Ready => {}
            other => return Err(AcmeError::Order(other)),
        }
        let (key_pem, csr) = islet_tls::key_and_csr(&[host.to_owned()])?;
        order.finalize_csr(&csr).await?;
        let chain = order.poll_certificate(&retry).await?;
        Ok((chain, key_pem))
    }
}
