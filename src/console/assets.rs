//! Static assets embedded in the binary under content-hashed names, so they can be
//! cached for a year and a new release never serves a stale stylesheet.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    pub name: String,
    pub body: &'static str,
    pub content_type: &'static str,
}

fn hashed(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    Asset {
        name: format!("{stem}.{hex}.{ext}"),
        body,
        content_type,
    }
}

pub static STYLESHEET: LazyLock<Asset> = LazyLock::new(|| {
    hashed(
        "console",
        "css",
        include_str!("assets/console.css"),
        "text/css; charset=utf-8",
    )
});

/// The instance page's scan-status poller (progressive enhancement; the page works
/// without it).
pub static SCAN_STATUS_SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    hashed(
        "scan-status",
        "js",
        include_str!("assets/scan-status.js"),
        "text/javascript; charset=utf-8",
    )
});

/// The stylesheet's URL path, for templates.
pub fn stylesheet_href() -> String {
    format!("/assets/{}", STYLESHEET.name)
}

/// The scan-status script's URL path, for templates.
pub fn scan_status_src() -> String {
    format!("/assets/{}", SCAN_STATUS_SCRIPT.name)
}

pub async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = [&*STYLESHEET, &*SCAN_STATUS_SCRIPT]
        .into_iter()
        .find(|a| a.name == name)
    else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body,
    )
        .into_response()
}
