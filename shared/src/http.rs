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
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    #[serde(skip)]
    pub retry_after: Option<u32>,
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
            retry_after: None,
        }
    }

    /// Sets the `Retry-After` header (seconds).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(u32::try_from(secs).unwrap_or(u32::MAX).max(1));
        self
    }

    /// 429: the caller is throttled; retry after `secs`.
    pub fn too_many_requests(secs: u64) -> Self {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too many requests",
        )
        .retry_after(secs)
    }

    /// A problem for any status, with the status's own reason as its title (used where a layer
    /// below the handlers answered, e.g. a timeout or an over-long body).
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, title) = match status {
            StatusCode::BAD_REQUEST => ("malformed-request", "Malformed request"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Authentication required"),
            StatusCode::FORBIDDEN => ("forbidden", "Forbidden"),
            StatusCode::NOT_FOUND => ("not-found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
            StatusCode::NOT_ACCEPTABLE => ("not-acceptable", "Not acceptable"),
            StatusCode::REQUEST_TIMEOUT => ("request-timeout", "Request timeout"),
            StatusCode::CONFLICT => ("conflict", "Conflict"),
            StatusCode::LENGTH_REQUIRED => ("length-required", "Length required"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Request body too large"),
            StatusCode::URI_TOO_LONG => ("uri-too-long", "URI too long"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported-media-type", "Unsupported media type")
            }
            StatusCode::UNPROCESSABLE_ENTITY => ("validation", "Invalid request field"),
            StatusCode::TOO_MANY_REQUESTS => ("too-many-requests", "Too many requests"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                ("headers-too-large", "Request headers too large")
            }
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "Service unavailable"),
            StatusCode::GATEWAY_TIMEOUT => ("timeout", "The request took too long"),
            s if s.is_server_error() => ("internal", "Internal error"),
            _ => ("http-error", status.canonical_reason().unwrap_or("Error")),
        };
        Problem::new(status, slug, title)
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
        let retry_after = self.retry_after;
        let mut res = (status, Json(self)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
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

impl From<crate::ids::FieldError> for Problem {
    fn from(e: crate::ids::FieldError) -> Self {
        Problem::validation(&e.field, e.message)
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
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A body that could not be read: too long (413, the limit named), cut off or unreadable (400).
pub fn body_rejection(e: axum::extract::rejection::BytesRejection) -> Problem {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::for_status(status).detail(format!(
            "the request body is larger than the limit of {} bytes",
            body_limit()
        ))
    } else {
        Problem::for_status(status).detail(e.body_text())
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

/// Limits of the HTTP edge, the same in every deployment of a router. The single-box edition
/// sets them from its command line ([`set_edge_limits`]); Lambdas use the defaults (API Gateway
/// adds its own: 10 MB payloads, 30 s integrations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Largest request body read, in bytes; beyond it 413.
    pub max_body_bytes: usize,
    /// Longest a request may take, body and handler; beyond it 503.
    pub request_timeout: std::time::Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout: std::time::Duration::from_secs(60),
        }
    }
}

static EDGE_LIMITS: std::sync::OnceLock<EdgeLimits> = std::sync::OnceLock::new();

/// Sets the process's edge limits once, before the routers are built; later calls are ignored.
pub fn set_edge_limits(limits: EdgeLimits) {
    let _ = EDGE_LIMITS.set(limits);
}

/// The process's edge limits ([`EdgeLimits::default`] unless set).
pub fn edge_limits() -> EdgeLimits {
    *EDGE_LIMITS.get_or_init(EdgeLimits::default)
}

fn body_limit() -> usize {
    edge_limits().max_body_bytes
}

/// Completes a router into a service: problem+json 404 for unknown routes, request tracing, the
/// body-size limit (413), the request timeout (503), and every error answer as problem+json —
/// also those that layers below the handlers give as plain text or an empty body (axum's path
/// and query rejections, 405, 413, timeouts).
pub fn finish(router: axum::Router) -> axum::Router {
    let limits = edge_limits();
    router
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(axum::middleware::map_response(problem_json_errors))
        .layer(trace_layer())
}

/// Rewrites an error answer that is not problem+json into one with the same status, keeping its
/// text as `detail` for 4xx (a 5xx body is never shown) and its other headers (`Allow`,
/// `WWW-Authenticate`, `Retry-After` …).
pub async fn problem_json_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(PROBLEM_JSON));
    if is_problem {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let mut problem = Problem::for_status(status);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        problem = problem.detail(format!(
            "the request body is larger than the limit of {} bytes",
            body_limit()
        ));
    } else if status.is_client_error() && !text.is_empty() {
        problem = problem.detail(text);
    }
    let mut out = problem.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// The caller's network address, when the deployment knows it: the TCP peer in the single-box
/// edition (`ConnectInfo`), API Gateway's `sourceIp` in Lambda. Used to throttle by source, never
/// to authorise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::ConnectInfo;
        if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>()
        {
            return Ok(ClientIp(Some(addr.ip())));
        }
        Ok(ClientIp(gateway_source_ip(parts)))
    }
}

/// The caller's address as API Gateway saw it (HTTP API `requestContext.http.sourceIp`).
#[cfg(feature = "aws")]
fn gateway_source_ip(parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
    match parts
        .extensions
        .get::<lambda_http::request::RequestContext>()
    {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => {
            ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok())
        }
        _ => None,
    }
}

/// Without the AWS adapters there is no API Gateway in front.
#[cfg(not(feature = "aws"))]
fn gateway_source_ip(_parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
    None
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

/// The tracing layer type: server errors are failures, spans come from [`request_span`],
/// failures are logged by [`log_failure`].
pub type TraceLayer = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::http::Request<axum::body::Body>) -> tracing::Span,
    tower_http::trace::DefaultOnRequest,
    tower_http::trace::DefaultOnResponse,
    tower_http::trace::DefaultOnBodyChunk,
    tower_http::trace::DefaultOnEos,
    fn(tower_http::classify::ServerErrorsFailureClass, std::time::Duration, &tracing::Span),
>;

/// The request-tracing layer every router gets: one span per request (see [`request_span`]) with
/// status and latency on completion.
pub fn trace_layer() -> TraceLayer {
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&_) -> _)
        .on_failure(log_failure as fn(_, _, &_))
}

/// How loud a failed request is. 503 is the platform shedding load as designed (the sign-in
/// hashing pool is full, a request ran past its timeout, the store is briefly unavailable): the
/// client is told to retry, so it is a warning. Any other 5xx or a failed body is an error.
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass as Class;
    let latency_ms = latency.as_millis();
    match class {
        Class::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::warn!(status = 503, latency_ms, "request shed (503, retry later)");
        }
        Class::StatusCode(status) => {
            tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        }
        Class::Error(error) => tracing::error!(%error, latency_ms, "request failed"),
    }
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

    /// Records the level and message of every event, for asserting what a layer logs.
    #[derive(Clone, Default)]
    struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" {
                        self.0 = format!("{v:?}");
                    }
                }
            }
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), m.0));
        }
    }

    #[tokio::test]
    async fn shed_load_is_a_warning_and_other_server_errors_are_errors() {
        use tower::ServiceExt;
        use tracing_subscriber::layer::SubscriberExt;
        let recorded = Recorded::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(recorded.clone()));
        let app = axum::Router::new()
            .route(
                "/busy",
                axum::routing::get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .route(
                "/broken",
                axum::routing::get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route("/fine", axum::routing::get(|| async { StatusCode::OK }))
            .layer(trace_layer());
        for path in ["/busy", "/broken", "/fine"] {
            let req = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let events = recorded.0.lock().unwrap().clone();
        let at = |level| {
            events
                .iter()
                .filter(|(l, _)| *l == level)
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(tracing::Level::WARN),
            ["request shed (503, retry later)"]
        );
        assert_eq!(at(tracing::Level::ERROR), ["request failed"]);
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
