//! Preview URLs for event bodies: the same URLs the API hands out, on the tenant's domain when
//! it has a verified one.

use std::future::Future;
use std::pin::Pin;

use islet_types::TenantId;
use islet_webhooks::payload::{PreviewLinks, UrlFn};

use crate::preview_urls::PreviewUrls;
use crate::state::AppState;

pub(crate) struct ControlLinks(pub AppState);

impl PreviewLinks for ControlLinks {
    fn for_tenant<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = Option<UrlFn>> + Send + 'a>> {
        Box::pin(async move {
            match PreviewUrls::for_tenant(&self.0, tenant).await {
                Ok(urls) => Some(Box::new(move |sandbox: &islet_types::SandboxId, port: u16| {
                    urls.url(sandbox, port)
                }) as UrlFn),
                Err(e) => {
                    tracing::warn!(error = %e, %tenant, "no preview URLs for event bodies");
                    None
                }
            }
        })
    }
}
