//! The current request's ID, for whatever runs on its behalf (errors put it in their body).
//! The `middleware::request_id` layer makes one per request and scopes it here.

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's ID (empty outside a request).
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Run `work` as the request `id`.
pub(crate) async fn scope<F: std::future::Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}
