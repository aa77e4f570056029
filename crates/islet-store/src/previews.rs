//! Previews (exposed ports), minted preview tokens and share links, and the revocation log the
//! preview edge follows.

use islet_types::preview::{Scope, Visibility};
use islet_types::time::{now_millis, UnixMillis};
use islet_types::{PreviewId, PreviewTokenId, SandboxId, SandboxState, TenantId};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::rows::{json, parse};
use crate::{Store, StoreError};

/// A preview as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRecord {
    pub id: PreviewId,
    pub tenant_id: TenantId,
    pub sandbox_id: SandboxId,
    pub port: u16,
    pub visibility: Visibility,
    pub label: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub expires_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub deleted_at: Option<UnixMillis>,
    /// The live share link, if the preview has one.
    pub share: Option<TokenRecord>,
}

/// What `expose` or `previews.create` asks for. `None` fields keep what a live preview of the
/// port already has (or take the default for a new one).
#[derive(Debug, Clone, Default)]
pub struct PreviewRequest {
    pub port: u16,
    pub visibility: Option<Visibility>,
    pub label: Option<String>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub expires_at: Option<UnixMillis>,
}

/// What a minted token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `POST /sandboxes/{id}/preview-token`.
    Token,
    /// `POST /sandboxes/{id}/shares`.
    Share,
    /// `POST /sandboxes/{id}/previews/{pid}/share`.
    PreviewShare,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Token => "token",
            TokenKind::Share => "share",
            TokenKind::PreviewShare => "preview_share",
        }
    }
}

/// A minted token's record (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: PreviewTokenId,
    pub tenant_id: TenantId,
    pub sandbox_id: SandboxId,
    pub port: Option<u16>,
    pub scope: Scope,
    pub preview_id: Option<PreviewId>,
    /// The first characters of the token, for display.
    pub prefix: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// What the preview edge needs to route to a sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRoute {
    pub tenant_id: TenantId,
    pub state: SandboxState,
    pub net_index: Option<u32>,
    /// Ports with a live public preview: no token needed.
    pub public_ports: Vec<u16>,
}

/// One entry of the revocation log.
#[derive(Debug, Clone, PartialEq)]
pub struct Revocation {
    pub seq: i64,
    pub token_id: PreviewTokenId,
    pub expires_at: UnixMillis,
}

const PREVIEW_COLUMNS: &str = "p.id, p.tenant_id, p.sandbox_id, p.port, p.visibility, p.label, \
    p.metadata, p.expires_at, p.created_at, p.deleted_at, \
    t.id, t.tenant_id, t.sandbox_id, t.port, t.scope, t.preview_id, t.prefix, t.created_at, \
    t.expires_at, t.revoked_at";
const PREVIEW_FROM: &str = "previews p LEFT JOIN preview_tokens t \
    ON t.id = p.share_token_id AND t.revoked_at IS NULL";
const TOKEN_COLUMNS: &str =
    "id, tenant_id, sandbox_id, port, scope, preview_id, prefix, created_at, expires_at, revoked_at";

fn token_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<TokenRecord> {
    let preview_id: Option<String> = r.get(at + 5)?;
    Ok(TokenRecord {
        id: parse(r.get(at)?)?,
        tenant_id: parse(r.get(at + 1)?)?,
        sandbox_id: parse(r.get(at + 2)?)?,
        port: r.get(at + 3)?,
        scope: parse_enum(r.get(at + 4)?)?,
        preview_id: preview_id.map(parse).transpose()?,
        prefix: r.get(at + 6)?,
        created_at: r.get(at + 7)?,
        expires_at: r.get(at + 8)?,
        revoked_at: r.get(at + 9)?,
    })
}

fn parse_enum<T: std::str::FromStr<Err = ()>>(s: String) -> rusqlite::Result<T> {
    s.parse().map_err(|()| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown value `{s}`").into(),
        )
    })
}

fn preview_from_row(r: &Row<'_>) -> rusqlite::Result<PreviewRecord> {
    let has_share: Option<String> = r.get(10)?;
    Ok(PreviewRecord {
        id: parse(r.get(0)?)?,
        tenant_id: parse(r.get(1)?)?,
        sandbox_id: parse(r.get(2)?)?,
        port: r.get(3)?,
        visibility: parse_enum(r.get(4)?)?,
        label: r.get(5)?,
        metadata: json(r.get(6)?)?,
        expires_at: r.get(7)?,
        created_at: r.get(8)?,
        deleted_at: r.get(9)?,
        share: has_share.map(|_| token_from_row(r, 10)).transpose()?,
    })
}

/// The tenant's sandbox, if it exists and is not destroyed.
fn live_sandbox(tx: &Transaction<'_>, tenant: &str, sandbox: &str) -> Result<(), StoreError> {
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM sandboxes WHERE id = ?1 AND tenant_id = ?2",
            [sandbox, tenant],
            |r| r.get(0),
        )
        .optional()?;
    match state.as_deref() {
        Some("destroyed") | None => Err(StoreError::NotFound("sandbox")),
        Some(_) => Ok(()),
    }
}

fn get_preview_tx(
    tx: &Transaction<'_>,
    tenant: &str,
    sandbox: &str,
    preview: &str,
) -> Result<PreviewRecord, StoreError> {
    tx.query_row(
        &format!(
            "SELECT {PREVIEW_COLUMNS} FROM {PREVIEW_FROM}
             WHERE p.id = ?1 AND p.sandbox_id = ?2 AND p.tenant_id = ?3 AND p.deleted_at IS NULL"
        ),
        [preview, sandbox, tenant],
        preview_from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("preview"))
}

fn revoke_tx(tx: &Transaction<'_>, token_id: &str) -> Result<bool, StoreError> {
    let now = now_millis();
    let expires: Option<i64> = tx
        .query_row(
            "UPDATE preview_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL
             RETURNING expires_at",
            params![token_id, now],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(expires_at) = expires {
        tx.execute(
            "INSERT INTO token_revocations (token_id, expires_at) VALUES (?1, ?2)",
            params![token_id, expires_at],
        )?;
    }
    Ok(expires.is_some())
}

fn insert_token(
    tx: &Transaction<'_>,
    token: &TokenRecord,
    kind: TokenKind,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO preview_tokens (id, tenant_id, sandbox_id, port, scope, kind, preview_id,
             prefix, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            token.id.as_str(),
            token.tenant_id.as_str(),
            token.sandbox_id.as_str(),
            token.port,
            token.scope.as_str(),
            kind.as_str(),
            token.preview_id.as_ref().map(PreviewId::as_str),
            token.prefix,
            token.created_at,
            token.expires_at,
        ],
    )?;
    Ok(())
}

impl Store {
    /// The live preview of `req.port`, created if there is none (so `expose` is idempotent per
    /// port); fields given in `req` update an existing one.
    pub async fn upsert_preview(
        &self,
        tenant_id: &TenantId,
        sandbox_id: &SandboxId,
        req: PreviewRequest,
    ) -> Result<PreviewRecord, StoreError> {
        let (tenant, sandbox) = (tenant_id.to_string(), sandbox_id.to_string());
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            live_sandbox(&tx, &tenant, &sandbox)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT id FROM previews
                     WHERE sandbox_id = ?1 AND port = ?2 AND deleted_at IS NULL",
                    params![sandbox, req.port],
                    |r| r.get(0),
                )
                .optional()?;
            let id = match existing {
                Some(id) => {
                    tx.execute(
                        "UPDATE previews SET
                             visibility = COALESCE(?2, visibility),
                             label = COALESCE(?3, label),
                             metadata = COALESCE(?4, metadata),
                             expires_at = COALESCE(?5, expires_at)
                         WHERE id = ?1",
                        params![
                            id,
                            req.visibility.map(Visibility::as_str),
                            req.label,
                            req.metadata
                                .as_ref()
                                .map(|m| serde_json::Value::Object(m.clone()).to_string()),
                            req.expires_at,
                        ],
                    )?;
                    id
                }
                None => {
                    let id = PreviewId::generate().to_string();
                    tx.execute(
                        "INSERT INTO previews (id, tenant_id, sandbox_id, port, visibility, label,
                             metadata, expires_at, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            id,
                            tenant,
                            sandbox,
                            req.port,
                            req.visibility.unwrap_or(Visibility::Private).as_str(),
                            req.label,
                            serde_json::Value::Object(req.metadata.unwrap_or_default()).to_string(),
                            req.expires_at,
                            now_millis(),
                        ],
                    )?;
                    id
                }
            };
            let record = get_preview_tx(&tx, &tenant, &sandbox, &id)?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    pub async fn list_previews(
        &self,
        tenant_id: &TenantId,
        sandbox_id: &SandboxId,
    ) -> Result<Vec<PreviewRecord>, StoreError> {
        let (tenant, sandbox) = (tenant_id.to_string(), sandbox_id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            live_sandbox(&tx, &tenant, &sandbox)?;
            let mut stmt = tx.prepare(&format!(
                "SELECT {PREVIEW_COLUMNS} FROM {PREVIEW_FROM}
                 WHERE p.sandbox_id = ?1 AND p.tenant_id = ?2 AND p.deleted_at IS NULL
                 ORDER BY p.port"
            ))?;
            let rows = stmt
                .query_map([&sandbox, &tenant], preview_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn get_preview(
        &self,
        tenant_id: &TenantId,
        sandbox_id: &SandboxId,
        preview_id: &PreviewId,
    ) -> Result<PreviewRecord, StoreError> {
        let ids = (tenant_id.to_string(), sandbox_id.to_string(), preview_id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            get_preview_tx(&tx, &ids.0, &ids.1, &ids.2)
        })
        .await
    }

    /// Delete a preview; its share link dies with it. Deleting twice is fine.
    pub async fn delete_preview(
        &self,
        tenant_id: &TenantId,
        sandbox_id: &SandboxId,
        preview_id: &PreviewId,
    ) -> Result<(), StoreError> {
        let ids = (tenant_id.to_string(), sandbox_id.to_string(), preview_id.to_string());
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            let share: Option<Option<String>> = tx
                .query_row(
                    "SELECT share_token_id FROM previews
                     WHERE id = ?1 AND sandbox_id = ?2 AND tenant_id = ?3",
                    [&ids.2, &ids.1, &ids.0],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(share) = share else {
                return Err(StoreError::NotFound("preview"));
            };
            if let Some(token) = share {
                revoke_tx(&tx, &token)?;
            }
            tx.execute(
                "UPDATE previews SET deleted_at = ?2, share_token_id = NULL
                 WHERE id = ?1 AND deleted_at IS NULL",
                params![ids.2, now_millis()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Record a freshly minted token. For a preview share it replaces (and revokes) the
    /// preview's previous share link in the same transaction.
    pub async fn record_token(
        &self,
        token: TokenRecord,
        kind: TokenKind,
    ) -> Result<(), StoreError> {
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            live_sandbox(&tx, token.tenant_id.as_str(), token.sandbox_id.as_str())?;
            insert_token(&tx, &token, kind)?;
            if let (TokenKind::PreviewShare, Some(preview)) = (kind, &token.preview_id) {
                let previous: Option<Option<String>> = tx
                    .query_row(
                        "SELECT share_token_id FROM previews
                         WHERE id = ?1 AND sandbox_id = ?2 AND deleted_at IS NULL",
                        [preview.as_str(), token.sandbox_id.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(previous) = previous else {
                    return Err(StoreError::NotFound("preview"));
                };
                if let Some(previous) = previous {
                    revoke_tx(&tx, &previous)?;
                }
                tx.execute(
                    "UPDATE previews SET share_token_id = ?2 WHERE id = ?1",
                    [preview.as_str(), token.id.as_str()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Unexpired, unrevoked tokens of one kind on a sandbox, newest first.
    pub async fn list_tokens(
        &self,
        tenant_id: &TenantId,
        sandbox_id: &SandboxId,
        kind: TokenKind,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let (tenant, sandbox) = (tenant_id.to_string(), sandbox_id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            live_sandbox(&tx, &tenant, &sandbox)?;
            let mut stmt = tx.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM preview_tokens
                 WHERE sandbox_id = ?1 AND tenant_id = ?2 AND kind = ?3
                   AND revoked_at IS NULL AND expires_at > ?4
                 ORDER BY created_at DESC"
            ))?;
            let rows = stmt
                .query_map(params![sandbox, tenant, kind.as_str(), now_millis()], |r| {
                    token_from_row(r, 0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Revoke one token of `kind` of the tenant's sandbox. `NotFound` if there is no such
    /// token; revoking twice is fine.
    pub async fn revoke_token(
        &self,
        tenant_id: &TenantId,
        sandbox_id: &SandboxId,
        token_id: &PreviewTokenId,
        kind: TokenKind,
    ) -> Result<(), StoreError> {
        let ids = (tenant_id.to_string(), sandbox_id.to_string(), token_id.to_string());
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM preview_tokens
                     WHERE id = ?1 AND sandbox_id = ?2 AND tenant_id = ?3 AND kind = ?4",
                    params![ids.2, ids.1, ids.0, kind.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NotFound("token"));
            }
            revoke_tx(&tx, &ids.2)?;
            tx.execute(
                "UPDATE previews SET share_token_id = NULL WHERE share_token_id = ?1",
                [&ids.2],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Revocations after `seq` whose tokens have not expired yet, oldest first.
    pub async fn revocations_after(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, token_id, expires_at FROM token_revocations
                 WHERE seq > ?1 AND expires_at > ?2 ORDER BY seq LIMIT 10000",
            )?;
            let rows = stmt
                .query_map(params![seq, now_millis()], |r| {
                    Ok(Revocation {
                        seq: r.get(0)?,
                        token_id: parse(r.get(1)?)?,
                        expires_at: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Where the preview edge sends traffic for a sandbox; `None` if it never existed.
    pub async fn edge_route(
        &self,
        sandbox_id: &SandboxId,
    ) -> Result<Option<EdgeRoute>, StoreError> {
        let sandbox = sandbox_id.to_string();
        self.with(move |conn| {
            let row: Option<(String, String, Option<u32>)> = conn
                .prepare_cached("SELECT tenant_id, state, net_index FROM sandboxes WHERE id = ?1")?
                .query_row([&sandbox], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((tenant, state, net_index)) = row else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT port FROM previews WHERE sandbox_id = ?1 AND deleted_at IS NULL
                   AND visibility = 'public' AND (expires_at IS NULL OR expires_at > ?2)",
            )?;
            let public_ports = stmt
                .query_map(params![sandbox, now_millis()], |r| r.get(0))?
                .collect::<Result<Vec<u16>, _>>()?;
            Ok(Some(EdgeRoute {
                tenant_id: parse(tenant).map_err(StoreError::from)?,
                state: parse(state).map_err(StoreError::from)?,
                net_index,
                public_ports,
            }))
        })
        .await
    }
}
