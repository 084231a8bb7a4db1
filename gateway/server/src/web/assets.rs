//! The dashboard's static files, compiled into the binary from `gateway/server/web/` (plain
//! HTML, CSS and JavaScript modules: no CDN, no build step, nothing fetched at run time).
//!
//! Contract: `/` is `index.html`; any other path that is not an API route is the file of that
//! name or 404. Every answer forbids other origins' scripts, frames and connections
//! (`Content-Security-Policy: default-src 'self'`) and MIME sniffing.

use axum::{
    Router,
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use include_dir::{Dir, include_dir};

static ASSETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// The static files, as the fallback of every path that no API route takes.
pub fn router() -> Router {
    Router::new().fallback(asset)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

async fn asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = ASSETS.get_file(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut resp = file.contents().into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_is_embedded() {
        for f in [
            "index.html",
            "app.js",
            "app.css",
            "operator.html",
            "operator.js",
        ] {
            assert!(ASSETS.get_file(f).is_some(), "{f} embedded");
        }
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
    }
}
