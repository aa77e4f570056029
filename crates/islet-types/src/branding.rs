//! A tenant's branding: what the preview edge puts on pages its customers see.

use serde::{Deserialize, Serialize};

/// Every field is optional; a page without a product name says "Preview".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_color: Option<String>,
}

/// Which field is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BrandingError {
    pub field: &'static str,
    pub reason: &'static str,
}

fn err(field: &'static str, reason: &'static str) -> BrandingError {
    BrandingError { field, reason }
}

fn check_url(field: &'static str, url: &str) -> Result<(), BrandingError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(err(field, "must be an http(s) URL"))?;
    if rest.is_empty()
        || url.len() > 2048
        || url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
    {
        return Err(err(field, "must be an http(s) URL without spaces, quotes or angle brackets"));
    }
    Ok(())
}

fn check_color(field: &'static str, color: &str) -> Result<(), BrandingError> {
    let hex = color.strip_prefix('#').ok_or(err(field, "must be a #rrggbb colour"))?;
    if !(hex.len() == 6 || hex.len() == 3) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(field, "must be a #rrggbb colour"));
    }
    Ok(())
}

impl Branding {
    /// Check every field; values are only ever rendered escaped, but junk is refused early.
    pub fn validate(&self) -> Result<(), BrandingError> {
        if let Some(name) = &self.product_name {
            if name.trim().is_empty()
                || name.chars().count() > 100
                || name.chars().any(char::is_control)
            {
                return Err(err("product_name", "must be 1 to 100 printable characters"));
            }
        }
        if let Some(url) = &self.logo_url {
            check_url("logo_url", url)?;
        }
        if let Some(url) = &self.support_url {
            check_url("support_url", url)?;
        }
        if let Some(email) = &self.support_email {
            let ok = email.len() <= 254
                && email.split_once('@').is_some_and(|(local, host)| {
                    !local.is_empty() && host.contains('.') && !host.starts_with('.')
                })
                && !email
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>\"'".contains(c));
            if !ok {
                return Err(err("support_email", "must be an email address"));
            }
        }
        if let Some(c) = &self.primary_color {
            check_color("primary_color", c)?;
        }
        if let Some(c) = &self.background_color {
            check_color("background_color", c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_fields() {
        let good = Branding {
            product_name: Some("Acme Code".into()),
            logo_url: Some("https://cdn.acme.dev/logo.svg".into()),
            support_url: Some("https://acme.dev/help".into()),
            support_email: Some("help@acme.dev".into()),
            primary_color: Some("#ff6600".into()),
            background_color: Some("#fff".into()),
        };
        assert_eq!(good.validate(), Ok(()));
        let cases = [
            Branding { logo_url: Some("javascript:alert(1)".into()), ..Default::default() },
            Branding { logo_url: Some("https://x/\"onerror=1".into()), ..Default::default() },
            Branding { primary_color: Some("red".into()), ..Default::default() },
            Branding { support_email: Some("nope".into()), ..Default::default() },
            Branding { product_name: Some(" ".into()), ..Default::default() },
        ];
        for case in cases {
            assert!(case.validate().is_err(), "{case:?} accepted");
        }
    }
}
