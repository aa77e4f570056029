//! The envelopes every answer uses (contract §3): `{"data": …}` for one object and
//! `{"data": […], "page": {…}}` for a page of a list. The objects inside are typed `Serialize`
//! structs, one per resource, kept with their resource; `tests/it/wire.rs` pins them all.

use axum::Json;
use serde::Serialize;

/// `{"data": T}`.
#[derive(Debug, Serialize)]
pub(crate) struct Data<T> {
    pub data: T,
}

/// A page of a list: `{"data": [T], "page": {limit, offset, total}}`.
#[derive(Debug, Serialize)]
pub(crate) struct Paged<T> {
    pub data: Vec<T>,
    pub page: Page,
}

#[derive(Debug, Serialize)]
pub(crate) struct Page {
    pub limit: u32,
    pub offset: u32,
    pub total: u64,
}

/// One object as an answer's body.
pub(crate) fn data<T: Serialize>(data: T) -> Json<Data<T>> {
    Json(Data { data })
}
