//! HTTP edge shared by every function: RFC 9457 problem+json errors, the tracing layer, health.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem. `type` and `title` are stable per kind of error; `detail` is for humans.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The offending request field, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// RFC 9457 extension members (e.g. `blacklist_entry_id`); boxed to keep `Result<_, Problem>`
    /// small.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Problem {
            type_uri: format!("https://smartsite.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            field: None,
            extensions: None,
        }
    }

    /// Adds an extension member.
    pub fn extension(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions
            .get_or_insert_default()
            .insert(name.to_owned(), value.into());
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }

    pub fn not_found() -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
    }

    pub fn unauthorized() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(detail)
    }

    pub fn validation(field: &str, detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request field",
        )
        .field(field)
        .detail(detail)
    }

    /// A 5xx with an opaque body; the cause is logged, never sent.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %cause, source = ?cause.source(), "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail)
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
        )
        .detail(detail)
    }

    pub fn unavailable() -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .detail("retry later")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (status, Json(self)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ConditionFailed | StoreError::TransactionConditionFailed { .. } => {
                Problem::conflict("the resource changed or already exists")
            }
            StoreError::BadCursor => Problem::malformed("the cursor is not one this list returned"),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                Problem::unavailable()
            }
            other => Problem::internal(&other),
        }
    }
}

impl From<crate::domain::tenancy::FieldError> for Problem {
    fn from(e: crate::domain::tenancy::FieldError) -> Self {
        Problem::validation(&e.field, e.message)
    }
}

impl From<crate::directory::DirectoryError> for Problem {
    fn from(e: crate::directory::DirectoryError) -> Self {
        use crate::directory::DirectoryError;
        match e {
            DirectoryError::Exists(what) => Problem::conflict(format!("{what} already exists")),
            DirectoryError::Store(s) => s.into(),
            DirectoryError::Corrupt(c) => Problem::internal(&c),
        }
    }
}

/// What every concern's health route answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub concern: &'static str,
    pub store: &'static str,
}

/// Proves a concern is up and its table answers (one consistent read of the health probe).
pub async fn check_store(
    store: &dyn crate::store::Store,
    concern: &'static str,
) -> Result<Json<Health>, Problem> {
    let (pk, sk) = crate::store::keys::health_probe();
    store.get(&crate::store::Key::new(pk, sk)).await?;
    Ok(Json(Health {
        status: "ok",
        concern,
        store: "ok",
    }))
}

/// A JSON request body. Syntax errors answer 400; a field that does not parse (a bad USCC, an
/// unknown enum value, a missing field) answers 422 naming the field.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json") || ct.ends_with("+json"));
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail("send Content-Type: application/json"));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::malformed(e.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body like [`ApiJson`] does (400 for syntax, 422 naming the field), for handlers
/// that read the body only after checking the caller's rights, so a stranger learns nothing from
/// body validation.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(Problem::malformed(format!("invalid JSON: {inner}")));
            }
            // serde names a missing field in the message, not the path.
            let msg = inner.to_string();
            let field = if path == "." {
                msg.split('`').nth(1).unwrap_or("body").to_owned()
            } else {
                path
            };
            Err(Problem::validation(&field, strip_position(&msg)))
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// `?limit=&cursor=` of list endpoints.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, 200)
    }
}

/// The list answer shape of API.md: `{"items": [...], "next": cursor-or-null}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct List<T: utoipa::ToSchema> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// The fallback for unknown routes.
pub async fn not_found() -> Problem {
    Problem::not_found().detail("no such route")
}

/// Completes a router into a service: problem+json 404 for unknown routes and request tracing.
pub fn finish(router: axum::Router) -> axum::Router {
    router.fallback(not_found).layer(trace_layer())
}

/// The request span: method, path, and the tenant fields, declared empty here and recorded by
/// the [`crate::auth::Caller`] extractor once the token is verified, so every log line of a
/// request carries its tenant.
pub fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        integrator_id = tracing::field::Empty,
        customer_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
    )
}

/// The tracing layer type: server errors are failures, spans come from [`request_span`].
pub type TraceLayer = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::http::Request<axum::body::Body>) -> tracing::Span,
>;

/// The request-tracing layer every router gets: one span per request (see [`request_span`]) with
/// status and latency on completion.
pub fn trace_layer() -> TraceLayer {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span as fn(&_) -> _)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problems_are_problem_json_and_5xx_are_opaque() {
        let io = std::io::Error::other("secret table name smartsite-prod-main");
        let res = Problem::internal(&io).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("secret"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "https://smartsite.dev/problems/internal");
        assert_eq!(v["status"], 500);
    }

    #[test]
    fn store_conflicts_map_to_409() {
        assert_eq!(Problem::from(StoreError::ConditionFailed).status, 409);
        assert_eq!(
            Problem::from(StoreError::Unavailable(anyhow::anyhow!("x"))).status,
            503
        );
        let v = Problem::validation("uscc", "bad check character");
        assert_eq!((v.status, v.field.as_deref()), (422, Some("uscc")));
    }
}
