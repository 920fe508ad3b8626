//! The web console, served by `smartsite serve` at `/`.
//!
//! `scripts/console` builds `console/` (Vue + Vite) into `console/dist`; the files are embedded
//! in the binary (rust-embed, as quickwit embeds its UI), so the single box needs no other file
//! and no CDN. `build.rs` embeds a placeholder page instead when the console was not built.
//!
//! The console is the router's fallback: every route of the API wins, and an unknown path under
//! the API's prefixes still answers problem+json 404. Anything else that names no file is a
//! console route and gets `index.html` (SPA fallback). Vite's content-hashed files under
//! `assets/` are cached for a year; `index.html` and `config.json` are revalidated every time.
//! Where the build left a `.gz` beside a file and the client accepts gzip, that is sent.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "$SMARTSITE_CONSOLE_DIR"]
struct Assets;

/// Paths that belong to the API even when no route matches them.
const API_PATHS: &[&str] = &["/v1", "/healthz", "/openapi.json", "/docs", "/metrics"];
const API_PREFIXES: &[&str] = &["/v1/", "/.well-known/", "/docs/"];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Serves the console from `router`'s fallback.
pub fn mount(router: Router) -> Router {
    router.fallback(serve)
}

fn is_api(path: &str) -> bool {
    API_PATHS.contains(&path) || API_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// Vite names what it emits under `assets/` by content hash, so those never change.
fn cache_control(file: &str) -> &'static str {
    if file.starts_with("assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name == "gzip" || name == "*") && !refused
        })
}

async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if is_api(path) || (method != Method::GET && method != Method::HEAD) {
        return smartsite_shared::http::not_found().await.into_response();
    }
    let file = path.trim_start_matches('/');
    if !file.is_empty() {
        if let Some(r) = asset(file, &headers) {
            return r;
        }
        // A hashed file that is gone (a stale tab after an upgrade) must fail as itself, not
        // load index.html as JavaScript.
        if file.starts_with("assets/") {
            return (StatusCode::NOT_FOUND, "no such console asset").into_response();
        }
    }
    asset("index.html", &headers)
        .unwrap_or_else(|| (StatusCode::NOT_FOUND, "the console is not built").into_response())
}

fn asset(file: &str, headers: &HeaderMap) -> Option<Response> {
    let plain = Assets::get(file)?;
    let etag = format!("\"{}\"", hex(&plain.metadata.sha256_hash()[..16]));
    let mut out = HeaderMap::new();
    let mime = plain.metadata.mimetype();
    let mime = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    out.insert(header::CONTENT_TYPE, HeaderValue::from_str(&mime).ok()?);
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control(file)),
    );
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    out.insert(header::ETAG, HeaderValue::from_str(&etag).ok()?);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return Some((StatusCode::NOT_MODIFIED, out).into_response());
    }
    let gz = accepts_gzip(headers)
        .then(|| Assets::get(&format!("{file}.gz")))
        .flatten();
    let body = match gz {
        Some(gz) => {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz.data
        }
        None => plain.data,
    };
    Some((StatusCode::OK, out, body.into_owned()).into_response())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt as _;

    fn app() -> Router {
        mount(Router::new().route("/healthz", get(|| async { "ok" })))
    }

    async fn call(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header_of(r: &Response, name: header::HeaderName) -> &str {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_console_route_gets_index_html_revalidated() {
        let r = call("/projects/prj-1/dashboard", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(header_of(&r, header::CONTENT_TYPE).starts_with("text/html"));
        assert_eq!(header_of(&r, header::CACHE_CONTROL), REVALIDATE);
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("<html"));
    }

    #[tokio::test]
    async fn unknown_api_paths_stay_problem_json_404() {
        for path in [
            "/v1/no-such-thing",
            "/v1",
            "/.well-known/nope",
            "/docs/x",
            "/metrics",
        ] {
            let r = call(path, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                header_of(&r, header::CONTENT_TYPE),
                smartsite_shared::http::PROBLEM_JSON,
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn api_routes_win_over_the_console() {
        let r = call("/healthz", &[]).await;
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], b"ok");
    }

    #[tokio::test]
    async fn a_missing_hashed_asset_is_404_not_the_index() {
        let r = call("/assets/index-00000000.js", &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_matching_etag_answers_304() {
        let first = call("/", &[]).await;
        let etag = header_of(&first, header::ETAG).to_owned();
        assert!(etag.starts_with('"'));
        let again = call("/", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn writes_to_console_paths_are_refused() {
        let r = app()
            .oneshot(Request::post("/projects").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn hashed_assets_are_immutable_and_the_rest_revalidated() {
        assert_eq!(cache_control("assets/index-3f9a1c.js"), IMMUTABLE);
        assert_eq!(cache_control("index.html"), REVALIDATE);
        assert_eq!(cache_control("config.json"), REVALIDATE);
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }
}
