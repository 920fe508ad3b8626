//! The OpenAPI 3.1 document and its browsable page.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, Server};

/// Name of the bearer security scheme every protected operation lists.
pub const BEARER: &str = "bearer";

/// Completes a document assembled from routers: info, the bearer scheme, the server.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info.title = "smartsite".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Smart construction site platform for telecom integrators. Errors are RFC 9457 \
         problem+json. Each protected operation lists the roles that may call it in `x-roles`."
            .into(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    doc.servers = Some(vec![Server::new("/")]);
    doc
}

/// A self-contained HTML page listing every operation (no scripts, no CDN: works offline).
pub fn docs_page(doc: &OpenApi) -> String {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let mut rows = String::new();
    let json = serde_json::to_value(doc).unwrap_or_default();
    if let Some(paths) = json["paths"].as_object() {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                let summary = op["summary"]
                    .as_str()
                    .or(op["description"].as_str())
                    .unwrap_or("");
                let roles = op["x-roles"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| "public".into());
                rows.push_str(&format!(
                    "<tr><td class=m>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                    esc(&method.to_uppercase()),
                    esc(path),
                    esc(summary),
                    esc(&roles)
                ));
            }
        }
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>smartsite API</title>\
         <style>body{{font:14px system-ui;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}\
         .m{{font-weight:bold}}</style></head><body><h1>smartsite API {}</h1>\
         <p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {}).</p>\
         <table><tr><th>method</th><th>path</th><th>what</th><th>roles</th></tr>\n{}</table></body></html>",
        esc(&doc.info.version),
        esc(json["openapi"].as_str().unwrap_or("3.1.0")),
        rows
    )
}
