//! Preview URLs as the API hands them out: `<scheme>://<port>-sbx-<id>.<domain>[:port]/`, on the
//! tenant's verified domain when it has one, else on the platform's.

use islet_types::domain::DomainName;
use islet_types::preview::PreviewLabel;
use islet_types::{SandboxId, TenantId};

use crate::error::ApiError;
use crate::state::AppState;

/// Port a preview URL names when the caller gave none and the sandbox exposes nothing yet.
pub(crate) const DEFAULT_PORT: u16 = 3000;

/// Builds URLs for one tenant (its domain looked up once).
pub(crate) struct PreviewUrls {
    scheme: String,
    domain: DomainName,
    public_port: Option<u16>,
}

impl PreviewUrls {
    pub(crate) async fn for_tenant(state: &AppState, tenant: &TenantId) -> Result<Self, ApiError> {
        // A verified domain, and over https only once it can present a certificate (its own,
        // or one the edge obtains by ACME on the first visit).
        let tls = state.config.preview_scheme == "https";
        let domain = state
            .store
            .preview_domain(tenant)
            .await?
            .filter(|d| d.verified_at.is_some())
            .filter(|d| !tls || state.config.preview_acme || d.certificate_expires_at.is_some())
            .map(|d| d.domain)
            .unwrap_or_else(|| state.config.preview_domain.clone());
        Ok(Self {
            scheme: state.config.preview_scheme.clone(),
            domain,
            public_port: state.config.preview_public_port,
        })
    }

    pub(crate) fn url(&self, sandbox_id: &SandboxId, port: u16) -> String {
        let label = PreviewLabel { port, sandbox_id: sandbox_id.clone() };
        match self.public_port {
            Some(p) => format!("{}://{label}.{}:{p}/", self.scheme, self.domain),
            None => format!("{}://{label}.{}/", self.scheme, self.domain),
        }
    }

    /// The URL with a token for the edge to exchange (`param` is `mt` or `ms`).
    pub(crate) fn url_with_token(
        &self,
        sandbox_id: &SandboxId,
        port: u16,
        param: &str,
        token: &str,
    ) -> String {
        format!("{}?{param}={token}", self.url(sandbox_id, port))
    }
}
