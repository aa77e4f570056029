//! Where a preview token may ride, and removing every trace of it before a request goes on.
//!
//! A token arrives once as `?mt=` (or `?ms=`, the share links' spelling) and is swapped for a
//! host-only cookie; API clients may send it as `X-Preview-Token` or `Authorization: Bearer`.
//! None of these, nor any other platform credential, ever reaches the sandbox.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

/// The edge's cookie over plain HTTP. Its name says nothing about who runs the edge.
pub const COOKIE_NAME: &str = "pv_session";
/// The edge's cookie behind TLS: the `__Host-` prefix makes browsers refuse it unless it is
/// host-only, `Secure` and `Path=/`, so a page on a sibling preview host cannot plant one with
/// a `Domain` attribute (cookie tossing).
pub const SECURE_COOKIE_NAME: &str = "__Host-pv_session";

fn is_edge_cookie(name: &str) -> bool {
    name == COOKIE_NAME || name == SECURE_COOKIE_NAME
}
/// Query parameters that carry tokens.
pub const QUERY_PARAMS: [&str; 2] = ["mt", "ms"];
/// Header for API clients.
pub const TOKEN_HEADER: &str = "x-preview-token";

/// Prefixes of every credential the platform issues.
const PLATFORM_PREFIXES: [&str; 4] = ["mp_", "msk_", "mst_", "miosa_pv_"];

/// The token(s) a request presents. Only the most explicit kind counts: a URL token alone
/// decides, else a header token, else any of the edge's cookies that verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    Query(String),
    Header(String),
    Cookies(Vec<String>),
    Nothing,
}

/// Split a query string into its token (if any) and the rest, keeping the rest byte for byte.
pub fn split_query(query: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(query) = query else {
        return (None, None);
    };
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if QUERY_PARAMS.contains(&key) {
            if token.is_none() {
                let value = pair.split_once('=').map_or("", |(_, v)| v);
                token =
                    Some(urlencoding::decode(value).map(|v| v.into_owned()).unwrap_or_default());
            }
        } else if !pair.is_empty() {
            kept.push(pair);
        }
    }
    let rest = (!kept.is_empty()).then(|| kept.join("&"));
    (token, rest)
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn is_platform_credential(value: &str) -> bool {
    PLATFORM_PREFIXES.iter().any(|p| value.starts_with(p))
}

fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
}

/// The token the request presents, most explicit first.
pub fn presented(headers: &HeaderMap, query_token: Option<String>) -> Presented {
    if let Some(token) = query_token {
        return Presented::Query(token);
    }
    if let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Presented::Header(token.trim().to_owned());
    }
    if let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .filter(|t| t.starts_with(islet_tokens::PREFIX))
    {
        return Presented::Header(token.to_owned());
    }
    let cookies: Vec<String> = cookie_pairs(headers)
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| is_edge_cookie(name))
        .map(|(_, value)| value.to_owned())
        .collect();
    if cookies.is_empty() {
        Presented::Nothing
    } else {
        Presented::Cookies(cookies)
    }
}

/// Remove the edge's cookies, the token header, platform bearer credentials and tokens in the
/// `Referer`.
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(TOKEN_HEADER);
    let platform_bearer =
        headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            bearer(v).is_some_and(is_platform_credential) || is_platform_credential(v.trim())
        });
    if platform_bearer {
        headers.remove(AUTHORIZATION);
    }
    if headers.contains_key(COOKIE) {
        let kept: Vec<String> = cookie_pairs(headers)
            .filter(|pair| {
                let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
                !pair.is_empty() && !is_edge_cookie(name)
            })
            .map(str::to_owned)
            .collect();
        headers.remove(COOKIE);
        if !kept.is_empty() {
            if let Ok(value) = kept.join("; ").parse() {
                headers.insert(COOKIE, value);
            }
        }
    }
    strip_referer(headers);
}

/// A `Referer` without the token parameters (a page may have been opened with one).
pub fn strip_referer(headers: &mut HeaderMap) {
    let Some(referer) = headers.get(http::header::REFERER).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let Some((base, query)) = referer.split_once('?') else {
        return;
    };
    let (token, kept) = split_query(Some(query));
    if token.is_none() {
        return;
    }
    let cleaned = match kept {
        Some(q) => format!("{base}?{q}"),
        None => base.to_owned(),
    };
    match cleaned.parse() {
        Ok(value) => {
            headers.insert(http::header::REFERER, value);
        }
        Err(_) => {
            headers.remove(http::header::REFERER);
        }
    }
}

/// Whether a `Set-Cookie` value from the app names one of the edge's cookies.
pub fn sets_edge_cookie(value: &str) -> bool {
    value.split_once('=').is_some_and(|(name, _)| is_edge_cookie(name.trim()))
}

/// The `Set-Cookie` value handing a verified token to the browser. Host-only (no `Domain`),
/// alive no longer than the token. Behind TLS it is `Secure; SameSite=None; Partitioned` so it
/// works inside another site's iframe; over plain HTTP browsers refuse such cookies, so it is
/// `SameSite=Lax` there (local use only).
pub fn set_cookie(token: &str, max_age_secs: u64, tls: bool) -> String {
    let (name, attributes) = if tls {
        (SECURE_COOKIE_NAME, "Secure; SameSite=None; Partitioned")
    } else {
        (COOKIE_NAME, "SameSite=Lax")
    };
    format!("{name}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; {attributes}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_token_from_query() {
        assert_eq!(split_query(None), (None, None));
        assert_eq!(
            split_query(Some("a=1&mt=mp_x%2D&b=%20")),
            (Some("mp_x-".into()), Some("a=1&b=%20".into()))
        );
        assert_eq!(split_query(Some("mt=a&mt=b")), (Some("a".into()), None));
        assert_eq!(split_query(Some("ms=z")), (Some("z".into()), None));
        assert_eq!(split_query(Some("mtx=1")), (None, Some("mtx=1".into())));
    }

    #[test]
    fn strips_platform_credentials_only() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; pv_session=mp_secret; b=2".parse().expect("value"));
        h.append(COOKIE, "__Host-pv_session=mp_other".parse().expect("value"));
        h.insert(AUTHORIZATION, "Bearer mp_secret".parse().expect("value"));
        h.insert(TOKEN_HEADER, "mp_secret".parse().expect("value"));
        assert_eq!(presented(&h, None), Presented::Header("mp_secret".into()));
        let mut only_cookies = h.clone();
        only_cookies.remove(AUTHORIZATION);
        only_cookies.remove(TOKEN_HEADER);
        assert_eq!(
            presented(&only_cookies, None),
            Presented::Cookies(vec!["mp_secret".into(), "mp_other".into()])
        );
        strip(&mut h);
        assert_eq!(h.get(COOKIE).and_then(|v| v.to_str().ok()), Some("a=1; b=2"));
        assert!(h.get(AUTHORIZATION).is_none());
        assert!(h.get(TOKEN_HEADER).is_none());

        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, "Basic dXNlcjpwdw==".parse().expect("value"));
        strip(&mut basic);
        assert!(basic.get(AUTHORIZATION).is_some());
        let mut key = HeaderMap::new();
        key.insert(AUTHORIZATION, "Bearer msk_live_abc".parse().expect("value"));
        strip(&mut key);
        assert!(key.get(AUTHORIZATION).is_none());
    }
}

#[cfg(test)]
mod referer_tests {
    use super::*;

    #[test]
    fn referer_loses_only_the_token() {
        let mut h = HeaderMap::new();
        h.insert(http::header::REFERER, "https://a.b/p?x=1&mt=mp_secret".parse().expect("value"));
        strip_referer(&mut h);
        assert_eq!(h[http::header::REFERER], "https://a.b/p?x=1");
        h.insert(http::header::REFERER, "https://a.b/p?ms=mp_secret".parse().expect("value"));
        strip_referer(&mut h);
        assert_eq!(h[http::header::REFERER], "https://a.b/p");
        assert!(sets_edge_cookie("__Host-pv_session=x; Path=/"));
        assert!(!sets_edge_cookie("theme=dark"));
    }
}
