//! The AWS identity path, end to end on the emulator (`AWS_ENDPOINT_URL`; fails without it):
//! Cognito (created through the real SDK with the template's custom attributes) issues an id
//! token; it is verified against the pool's JWKS, issuer and app client as API Gateway's JWT
//! authorizer does; the verified claims go, stringified as API Gateway renders them, into an
//! HTTP API v2 event's `requestContext.authorizer.jwt.claims`; `lambda_http` converts the event
//! and the tenants router (`Authenticator::ApiGateway`, DynamoDB on the emulator, `CognitoAccounts`
//! on the test's pool: wired as main.rs wires it) serves it.
//!
//! What moto enforces of Cognito here: the pool's password policy (length, upper, lower, digit,
//! symbol) in `AdminSetUserPassword` — not in `AdminCreateUser`, which takes no password when
//! `MessageAction` is `SUPPRESS` and no temporary password is given — with
//! `InvalidPasswordException`; unique usernames (`UsernameExistsException`); an unknown pool
//! (`ResourceNotFoundException`). It does not check attribute names against the pool's schema.
//! `AdminDisableUser` is enforced: the password flows answer `NotAuthorizedException` ("User is
//! disabled."); `AdminUserGlobalSignOut` revokes the user's refresh tokens (the refresh flow then
//! answers `NotAuthorizedException`); both answer `UserNotFoundException` for an unknown user.
//!
//! What moto puts in an id token: `iss` (the real AWS URL), `sub`, `aud` (the app client),
//! `token_use: "id"`, `iat`, `auth_time`, `exp`, `jti`, `origin_jti`, `cognito:username` and the
//! user's custom attributes as `custom:integrator_id`, `custom:customer_id`, `custom:roles`.
//! moto signs the tokens of every pool with one RS256 key (kid `dummy`), so on the emulator a
//! token of another pool is refused by the issuer check; on AWS the key differs as well.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_cognitoidentityprovider as cognito;
use axum::body::Body;
use base64::Engine as _;
use cognito::types::{
    AdminCreateUserConfigType, AttributeType, AuthFlowType, ExplicitAuthFlowsType,
    MessageActionType, PasswordPolicyType, SchemaAttributeType, StringAttributeConstraintsType,
    UserPoolPolicyType,
};
use http::StatusCode;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use smartsite_shared::accounts::{Accounts, CognitoAccounts};
use smartsite_shared::auth::{Authenticator, Caller, JwtVerifier, Role};
use smartsite_shared::directory::Directory;
use smartsite_shared::testkit::StoreFixture;
use smartsite_tenants::AppState;
use tower::ServiceExt;

const PASSWORD: &str = "Corr3ct-Horse-Battery!";

type TokenClaims = HashMap<String, Value>;

/// The emulator's endpoint and an SDK client for it. Panics — never skips — without an endpoint.
async fn cognito_client() -> (cognito::Client, String, String) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: run scripts/test, which starts the emulator, \
         or `localstack/emulator start && eval \"$(localstack/emulator env)\"`"
    );
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let region = conf
        .region()
        .expect("AWS_REGION is not set (localstack/emulator env sets us-east-1)")
        .to_string();
    (cognito::Client::new(&conf), endpoint, region)
}

/// A user pool shaped like `UserPool` of infra/template.yaml, with one app client.
struct Pool {
    client: cognito::Client,
    endpoint: String,
    region: String,
    id: String,
    /// The app client whose id is the audience API Gateway accepts.
    app_client: String,
}

impl Pool {
    async fn create(name: &str) -> Pool {
        let (client, endpoint, region) = cognito_client().await;
        let custom = |name: &str, max: &str| {
            SchemaAttributeType::builder()
                .name(name)
                .attribute_data_type(cognito::types::AttributeDataType::String)
                .mutable(true)
                .required(false)
                .string_attribute_constraints(
                    StringAttributeConstraintsType::builder()
                        .min_length("0")
                        .max_length(max)
                        .build(),
                )
                .build()
        };
        let pool = client
            .create_user_pool()
            .pool_name(name)
            .admin_create_user_config(
                AdminCreateUserConfigType::builder()
                    .allow_admin_create_user_only(true)
                    .build(),
            )
            .policies(
                UserPoolPolicyType::builder()
                    .password_policy(
                        PasswordPolicyType::builder()
                            .minimum_length(12)
                            .require_lowercase(true)
                            .require_uppercase(true)
                            .require_numbers(true)
                            .require_symbols(true)
                            .build(),
                    )
                    .build(),
            )
            .schema(custom("integrator_id", "64"))
            .schema(custom("customer_id", "64"))
            .schema(custom("roles", "512"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateUserPool: {e:?}"));
        let id = pool.user_pool().and_then(|p| p.id()).unwrap().to_owned();
        let mut pool = Pool {
            client,
            endpoint,
            region,
            id,
            app_client: String::new(),
        };
        pool.app_client = pool.new_app_client("app").await;
        pool
    }

    /// An app client like `UserPoolClient` of the template (no secret; the custom attributes
    /// readable, not writable), plus ADMIN_USER_PASSWORD_AUTH, the server-side flow this test
    /// signs in with (the deployed client allows only SRP and refresh).
    async fn new_app_client(&self, name: &str) -> String {
        let out = self
            .client
            .create_user_pool_client()
            .user_pool_id(&self.id)
            .client_name(name)
            .generate_secret(false)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserSrpAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
            .set_read_attributes(Some(
                [
                    "name",
                    "email",
                    "custom:integrator_id",
                    "custom:customer_id",
                    "custom:roles",
                ]
                .map(String::from)
                .to_vec(),
            ))
            .set_write_attributes(Some(["name", "email"].map(String::from).to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateUserPoolClient: {e:?}"));
        out.user_pool_client()
            .and_then(|c| c.client_id())
            .unwrap()
            .to_owned()
    }

    /// A user created by an administrator with `attrs` (e.g. `custom:roles`), with a permanent
    /// password.
    async fn user(&self, username: &str, attrs: &[(&str, &str)]) {
        let mut req = self
            .client
            .admin_create_user()
            .user_pool_id(&self.id)
            .username(username)
            .message_action(MessageActionType::Suppress);
        for (name, value) in attrs {
            req = req.user_attributes(
                AttributeType::builder()
                    .name(*name)
                    .value(*value)
                    .build()
                    .unwrap(),
            );
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("AdminCreateUser {username}: {e:?}"));
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.id)
            .username(username)
            .password(PASSWORD)
            .permanent(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("AdminSetUserPassword {username}: {e:?}"));
    }

    /// Signs `username` in through `app_client` and returns the id token.
    async fn id_token(&self, app_client: &str, username: &str) -> String {
        self.id_token_with(app_client, username, PASSWORD).await
    }

    async fn id_token_with(&self, app_client: &str, username: &str, password: &str) -> String {
        let out = self
            .client
            .admin_initiate_auth()
            .user_pool_id(&self.id)
            .client_id(app_client)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", password)
            .send()
            .await
            .unwrap_or_else(|e| panic!("AdminInitiateAuth {username}: {e:?}"));
        out.authentication_result()
            .and_then(|r| r.id_token())
            .unwrap_or_else(|| panic!("no IdToken for {username}: {out:?}"))
            .to_owned()
    }

    /// Signs `username` in with the password flow, answering Cognito's error as is.
    async fn sign_in(
        &self,
        username: &str,
    ) -> Result<
        cognito::operation::admin_initiate_auth::AdminInitiateAuthOutput,
        cognito::error::SdkError<cognito::operation::admin_initiate_auth::AdminInitiateAuthError>,
    > {
        self.client
            .admin_initiate_auth()
            .user_pool_id(&self.id)
            .client_id(&self.app_client)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", PASSWORD)
            .send()
            .await
    }

    /// New tokens for a refresh token.
    async fn refresh(
        &self,
        refresh_token: &str,
    ) -> Result<
        cognito::operation::admin_initiate_auth::AdminInitiateAuthOutput,
        cognito::error::SdkError<cognito::operation::admin_initiate_auth::AdminInitiateAuthError>,
    > {
        self.client
            .admin_initiate_auth()
            .user_pool_id(&self.id)
            .client_id(&self.app_client)
            .auth_flow(AuthFlowType::RefreshTokenAuth)
            .auth_parameters("REFRESH_TOKEN", refresh_token)
            .send()
            .await
    }

    /// How many users of the pool are called `username`.
    async fn users_named(&self, username: &str) -> usize {
        let out = self
            .client
            .list_users()
            .user_pool_id(&self.id)
            .filter(format!("username = \"{username}\""))
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListUsers {username}: {e:?}"));
        out.users().len()
    }

    /// The accounts adapter main.rs wires, on this pool.
    fn accounts(&self, directory: Directory) -> Arc<dyn Accounts> {
        Arc::new(CognitoAccounts::new(
            self.client.clone(),
            self.id.clone(),
            directory,
        ))
    }

    /// What the template's JWT authorizer is configured with as `issuer`: the real AWS URL, also
    /// on the emulator.
    fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.{}.amazonaws.com/{}",
            self.region, self.id
        )
    }

    /// The pool's JWKS, served by the emulator at `/<pool-id>/.well-known/jwks.json` (on AWS:
    /// `<issuer>/.well-known/jwks.json`).
    async fn jwks(&self) -> JwkSet {
        let url = format!(
            "{}/{}/.well-known/jwks.json",
            self.endpoint.trim_end_matches('/'),
            self.id
        );
        let res = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(res.status().is_success(), "GET {url}: {}", res.status());
        res.json()
            .await
            .unwrap_or_else(|e| panic!("JWKS at {url}: {e}"))
    }

    /// A verifier accepting exactly what the template's authorizer accepts: this pool's keys and
    /// issuer, audience = `app_client`.
    async fn verifier(&self, app_client: &str) -> JwtVerifier {
        JwtVerifier::from_jwks(&self.jwks().await, &self.issuer(), Some(app_client)).unwrap()
    }
}

/// The claims as API Gateway hands them to the Lambda: every value a string (strings as-is,
/// anything else as its JSON text).
fn gateway_claims(claims: &TokenClaims) -> HashMap<String, String> {
    claims
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// An HTTP API (v2) event as API Gateway sends it after its JWT authorizer accepted `token`
/// (`claims` = `None`: a route without an authorizer), converted by lambda_http as the runtime
/// does.
fn gateway_request(
    method: &str,
    path: &str,
    token: Option<&str>,
    claims: Option<&TokenClaims>,
    body: Option<Value>,
) -> http::Request<Body> {
    let mut headers = json!({"host": "abc.execute-api.us-east-1.amazonaws.com"});
    if let Some(t) = token {
        headers["authorization"] = json!(t);
    }
    if body.is_some() {
        headers["content-type"] = json!("application/json");
    }
    let route_key = format!("{method} /v1/{{proxy+}}");
    let mut ctx = json!({
        "accountId": "123456789012", "apiId": "abc",
        "domainName": "abc.execute-api.us-east-1.amazonaws.com", "domainPrefix": "abc",
        "requestId": "r1", "routeKey": route_key, "stage": "$default",
        "time": "23/Nov/2026:00:00:00 +0000", "timeEpoch": 1795392000000u64,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "test"}
    });
    if let Some(c) = claims {
        ctx["authorizer"] = json!({"jwt": {"claims": gateway_claims(c), "scopes": null}});
    }
    let mut event = json!({
        "version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": "",
        "headers": headers, "requestContext": ctx, "isBase64Encoded": false
    });
    if let Some(b) = body {
        event["body"] = json!(b.to_string());
    }
    lambda_http::request::from_str(&event.to_string())
        .unwrap()
        .map(Body::new)
}

/// The tenants Lambda's router over DynamoDB on the emulator, its users' accounts in `pool`.
struct Lambda {
    state: AppState,
    _store: Option<StoreFixture>,
}

impl Lambda {
    async fn new(pool: &Pool) -> Lambda {
        let store = smartsite_shared::testkit::dynamo().await;
        let accounts = pool.accounts(Directory::new(Arc::clone(&store.store)));
        let state = AppState::new(
            Arc::clone(&store.store),
            Authenticator::ApiGateway,
            None,
            accounts,
        );
        Lambda {
            state,
            _store: Some(store),
        }
    }

    /// The same router and table with other accounts.
    fn with_accounts(&self, accounts: Arc<dyn Accounts>) -> Lambda {
        Lambda {
            state: AppState {
                accounts,
                ..self.state.clone()
            },
            _store: None,
        }
    }

    async fn call(&self, req: http::Request<Body>) -> (StatusCode, Value) {
        let res = smartsite_tenants::app(self.state.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    /// Verifies `token` as the authorizer would, then sends the request with its claims.
    async fn as_user(
        &self,
        verifier: &JwtVerifier,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let claims: TokenClaims = verifier
            .verify(token)
            .unwrap_or_else(|e| panic!("the authorizer would refuse this token: {e}"));
        let bearer = format!("Bearer {token}");
        self.call(gateway_request(
            method,
            path,
            Some(&bearer),
            Some(&claims),
            body,
        ))
        .await
    }
}

fn b64_json(segment: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn cognito_id_tokens_verify_as_the_jwt_authorizer_does() {
    let pool = Pool::create("smartsite-test").await;
    pool.user(
        "ops",
        &[
            ("custom:integrator_id", "ct-jl"),
            ("custom:roles", "integrator_ops"),
        ],
    )
    .await;
    let token = pool.id_token(&pool.app_client, "ops").await;
    let verifier = pool.verifier(&pool.app_client).await;

    let claims: TokenClaims = verifier.verify(&token).unwrap();
    println!(
        "moto id token: header {} claims {}",
        b64_json(token.split('.').next().unwrap()),
        serde_json::to_string(&claims).unwrap()
    );
    assert_eq!(claims["iss"], pool.issuer().as_str());
    assert_eq!(claims["aud"], pool.app_client.as_str());
    assert_eq!(claims["token_use"], "id");
    assert_eq!(claims["custom:integrator_id"], "ct-jl");
    assert_eq!(claims["custom:roles"], "integrator_ops");
    assert!(claims["sub"].as_str().is_some_and(|s| !s.is_empty()));

    // Another app client of the same pool: a valid token, but not for this API's audience.
    let other_client = pool.new_app_client("other-app").await;
    let wrong_aud = pool.id_token(&other_client, "ops").await;
    let e = verifier.verify::<TokenClaims>(&wrong_aud).unwrap_err();
    println!("wrong audience refused: {e}");
    assert!(
        pool.verifier(&other_client)
            .await
            .verify::<TokenClaims>(&wrong_aud)
            .is_ok()
    );

    // Another pool, same user name and attributes: refused (moto signs every pool with one
    // key, so here the issuer check is what refuses it).
    let other_pool = Pool::create("someone-else").await;
    other_pool
        .user(
            "ops",
            &[
                ("custom:integrator_id", "ct-jl"),
                ("custom:roles", "platform_admin"),
            ],
        )
        .await;
    let foreign = other_pool.id_token(&other_pool.app_client, "ops").await;
    let e = verifier.verify::<TokenClaims>(&foreign).unwrap_err();
    println!("token of another pool refused: {e}");
    assert!(
        other_pool
            .verifier(&other_pool.app_client)
            .await
            .verify::<TokenClaims>(&foreign)
            .is_ok()
    );

    // A payload rewritten to grant platform_admin keeps the old signature: refused.
    let mut payload = b64_json(token.split('.').nth(1).unwrap());
    payload["custom:roles"] = json!("platform_admin");
    payload
        .as_object_mut()
        .unwrap()
        .remove("custom:integrator_id");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &b64;
    assert!(verifier.verify::<TokenClaims>(&parts.join(".")).is_err());
}

#[tokio::test]
async fn verified_cognito_claims_drive_the_tenants_lambda() {
    let pool = Pool::create("smartsite-test").await;
    let verifier = pool.verifier(&pool.app_client).await;
    let lambda = Lambda::new(&pool).await;

    // The platform admin onboards an integrator.
    pool.user("root", &[("custom:roles", "platform_admin")])
        .await;
    let root = pool.id_token(&pool.app_client, "root").await;
    let root_sub = verifier.verify::<TokenClaims>(&root).unwrap()["sub"].clone();
    let (s, me) = lambda
        .as_user(&verifier, &root, "GET", "/v1/me", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["user_id"], root_sub);
    assert_eq!(me["integrator_id"], Value::Null);
    assert_eq!(me["roles"], json!(["platform_admin"]));
    let (s, integrator) = lambda
        .as_user(
            &verifier,
            &root,
            "POST",
            "/v1/integrators",
            Some(
                json!({"name": "CU Jilin", "operator": "china_unicom", "province_code": "220000"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{integrator}");
    let integrator = integrator["id"].as_str().unwrap().to_owned();

    // Its admin, created in Cognito with the new integrator as custom:integrator_id, creates and
    // lists a customer.
    pool.user(
        "jl-admin",
        &[
            ("custom:integrator_id", &integrator),
            ("custom:roles", "integrator_admin"),
        ],
    )
    .await;
    let admin = pool.id_token(&pool.app_client, "jl-admin").await;
    let (s, me) = lambda
        .as_user(&verifier, &admin, "GET", "/v1/me", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["integrator_id"], integrator.as_str());
    assert_eq!(me["customer_id"], Value::Null);
    assert_eq!(me["roles"], json!(["integrator_admin"]));
    let (s, customer) = lambda
        .as_user(
            &verifier,
            &admin,
            "POST",
            "/v1/customers",
            Some(json!({"kind": "gov_region", "name": "住建局", "region_code": "220100"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{customer}");
    let customer = customer["id"].as_str().unwrap().to_owned();
    let (s, list) = lambda
        .as_user(&verifier, &admin, "GET", "/v1/customers", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![customer.as_str()]);

    // A customer user (roles as a JSON array string) sees its own customer.
    pool.user(
        "supervisor",
        &[
            ("custom:integrator_id", &integrator),
            ("custom:customer_id", &customer),
            ("custom:roles", r#"["gov_supervisor"]"#),
        ],
    )
    .await;
    let supervisor = pool.id_token(&pool.app_client, "supervisor").await;
    let (s, me) = lambda
        .as_user(&verifier, &supervisor, "GET", "/v1/me", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["customer_id"], customer.as_str());
    assert_eq!(me["roles"], json!(["gov_supervisor"]));
    let (s, got) = lambda
        .as_user(
            &verifier,
            &supervisor,
            "GET",
            &format!("/v1/customers/{customer}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");

    // No authorizer claims in the event (a route without the authorizer): 401.
    let (s, body) = lambda
        .call(gateway_request("GET", "/v1/me", None, None, None))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["detail"], "no bearer token");
    // Cognito signs whatever attributes an administrator set; a customer role without a
    // customer is inconsistent, and the handler refuses it.
    pool.user(
        "half-configured",
        &[
            ("custom:integrator_id", &integrator),
            ("custom:roles", "enterprise_admin"),
        ],
    )
    .await;
    let half = pool.id_token(&pool.app_client, "half-configured").await;
    let (s, body) = lambda
        .as_user(&verifier, &half, "GET", "/v1/me", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["detail"],
        "token claim roles is missing or inconsistent"
    );
    let (s, body) = lambda
        .as_user(&verifier, &half, "GET", "/v1/customers", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
}

/// The caller API Gateway's authorizer would hand the Lambda for `token`.
fn caller_of(verifier: &JwtVerifier, token: &str) -> Caller {
    let claims: TokenClaims = verifier.verify(token).unwrap();
    Caller::from_gateway_claims(&gateway_claims(&claims)).unwrap()
}

#[tokio::test]
async fn users_created_through_the_api_sign_in_with_cognito() {
    let pool = Pool::create("smartsite-users").await;
    let verifier = pool.verifier(&pool.app_client).await;
    let lambda = Lambda::new(&pool).await;
    let directory = lambda.state.directory.clone();

    // The first platform admin is made by hand in Cognito (as on AWS); it onboards an integrator.
    pool.user("root", &[("custom:roles", "platform_admin")])
        .await;
    let root = pool.id_token(&pool.app_client, "root").await;
    let (s, integrator) = lambda
        .as_user(
            &verifier,
            &root,
            "POST",
            "/v1/integrators",
            Some(
                json!({"name": "CT Jilin", "operator": "china_telecom", "province_code": "220000"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{integrator}");
    let integrator = integrator["id"].as_str().unwrap().to_owned();

    // The platform admin creates the integrator's admin through the API; it signs in with
    // Cognito, and the verified claims name its integrator and role.
    let (s, created) = lambda
        .as_user(
            &verifier,
            &root,
            "POST",
            "/v1/users",
            Some(json!({"username": "jl-admin", "password": PASSWORD,
                        "roles": ["integrator_admin"], "integrator_id": integrator})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let admin = pool.id_token(&pool.app_client, "jl-admin").await;
    let caller = caller_of(&verifier, &admin);
    assert_eq!(
        caller.integrator.as_ref().map(ToString::to_string),
        Some(integrator.clone())
    );
    assert_eq!(caller.customer, None);
    assert_eq!(caller.roles, BTreeSet::from([Role::IntegratorAdmin]));

    // With those claims the new admin works: it creates a customer, and a user of that customer
    // with two roles, who signs in as that customer's.
    let first17 = "91220101MA0000001";
    let uscc = format!(
        "{first17}{}",
        smartsite_shared::domain::tenancy::Uscc::check_char(first17).unwrap()
    );
    let (s, customer) = lambda
        .as_user(
            &verifier,
            &admin,
            "POST",
            "/v1/customers",
            Some(json!({"kind": "enterprise", "name": "建工集团", "region_code": "220100", "uscc": uscc})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{customer}");
    let customer = customer["id"].as_str().unwrap().to_owned();
    let (s, body) = lambda
        .as_user(
            &verifier,
            &admin,
            "POST",
            "/v1/users",
            Some(json!({"username": "jl-pm", "password": PASSWORD,
                        "roles": ["safety_officer", "project_manager"], "customer_id": customer})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let pm = caller_of(&verifier, &pool.id_token(&pool.app_client, "jl-pm").await);
    assert_eq!(
        pm.integrator.as_ref().map(ToString::to_string),
        Some(integrator.clone())
    );
    assert_eq!(
        pm.customer.as_ref().map(ToString::to_string),
        Some(customer.clone())
    );
    assert_eq!(
        pm.roles,
        BTreeSet::from([Role::ProjectManager, Role::SafetyOfficer])
    );

    // The same username again (any case): 409; Cognito still has exactly the first user, whose
    // password still signs it in, and the directory still has it.
    let (s, body) = lambda
        .as_user(
            &verifier,
            &root,
            "POST",
            "/v1/users",
            Some(
                json!({"username": "JL-Admin", "password": "Another-Passw0rd!",
                        "roles": ["integrator_ops"], "integrator_id": integrator}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(pool.users_named("jl-admin").await, 1);
    assert_eq!(
        caller_of(
            &verifier,
            &pool.id_token(&pool.app_client, "jl-admin").await
        )
        .roles,
        BTreeSet::from([Role::IntegratorAdmin])
    );
    let kept = directory
        .user_by_username("jl-admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.user.id.to_string(), created["id"].as_str().unwrap());

    // A password our rule accepts (10 characters, two kinds) but the pool's policy refuses: 422
    // on "password", and neither the directory nor Cognito keeps the user.
    let ops = |password: &str| {
        Some(json!({"username": "jl-ops", "password": password, "roles": ["integrator_ops"]}))
    };
    let (s, body) = lambda
        .as_user(&verifier, &admin, "POST", "/v1/users", ops("abcdefgh12"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "password", "{body}");
    println!("weak password refused: {body}");
    assert!(
        directory
            .user_by_username("jl-ops")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(pool.users_named("jl-ops").await, 0);
    // So the username is free: with a strong password it is created and signs in.
    let (s, body) = lambda
        .as_user(&verifier, &admin, "POST", "/v1/users", ops(PASSWORD))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let ops_caller = caller_of(&verifier, &pool.id_token(&pool.app_client, "jl-ops").await);
    assert_eq!(ops_caller.roles, BTreeSet::from([Role::IntegratorOps]));

    // Cognito failing after the username was claimed releases the claim. A pool that does not
    // exist (AdminCreateUser: ResourceNotFoundException) is a 500 …
    let labour = || {
        Some(json!({"username": "jl-labour", "password": PASSWORD,
                    "roles": ["labour_officer"], "customer_id": customer}))
    };
    let wrong_pool = lambda.with_accounts(Arc::new(CognitoAccounts::new(
        pool.client.clone(),
        "us-east-1_doesnotexist",
        directory.clone(),
    )));
    let (s, body) = wrong_pool
        .as_user(&verifier, &admin, "POST", "/v1/users", labour())
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        directory
            .user_by_username("jl-labour")
            .await
            .unwrap()
            .is_none()
    );
    // … an unreachable Cognito a 503 (nothing listens on the endpoint; no retries) …
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let unreachable = cognito::Client::from_conf(
        cognito::config::Builder::from(&conf)
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(cognito::config::retry::RetryConfig::disabled())
            .build(),
    );
    let down = lambda.with_accounts(Arc::new(CognitoAccounts::new(
        unreachable,
        pool.id.clone(),
        directory.clone(),
    )));
    let (s, body) = down
        .as_user(&verifier, &admin, "POST", "/v1/users", labour())
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        directory
            .user_by_username("jl-labour")
            .await
            .unwrap()
            .is_none()
    );
    // … and afterwards the username is free.
    let (s, body) = lambda
        .as_user(&verifier, &admin, "POST", "/v1/users", labour())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(pool.users_named("jl-labour").await, 1);

    // The directory lists the users created through the API, never a password hash.
    let (s, list) = lambda
        .as_user(&verifier, &admin, "GET", "/v1/users", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["jl-admin", "jl-labour", "jl-ops", "jl-pm"]);
    assert!(!list.to_string().contains("cognito"), "{list}");
}

#[tokio::test]
async fn offboarding_a_customer_disables_its_users_in_cognito() {
    let pool = Pool::create("smartsite-offboard").await;
    let verifier = pool.verifier(&pool.app_client).await;
    let lambda = Lambda::new(&pool).await;

    // An integrator (by the platform admin), its admin (made by hand in Cognito), an enterprise
    // customer and one user of it, both through the API.
    pool.user("root", &[("custom:roles", "platform_admin")])
        .await;
    let root = pool.id_token(&pool.app_client, "root").await;
    let (s, integrator) = lambda
        .as_user(
            &verifier,
            &root,
            "POST",
            "/v1/integrators",
            Some(
                json!({"name": "CM Jilin", "operator": "china_mobile", "province_code": "220000"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{integrator}");
    let integrator = integrator["id"].as_str().unwrap().to_owned();
    pool.user(
        "jl-admin",
        &[
            ("custom:integrator_id", &integrator),
            ("custom:roles", "integrator_admin"),
        ],
    )
    .await;
    let admin = pool.id_token(&pool.app_client, "jl-admin").await;
    let first17 = "91220101MA0000002";
    let uscc = format!(
        "{first17}{}",
        smartsite_shared::domain::tenancy::Uscc::check_char(first17).unwrap()
    );
    let (s, customer) = lambda
        .as_user(
            &verifier,
            &admin,
            "POST",
            "/v1/customers",
            Some(json!({"kind": "enterprise", "name": "路桥集团", "region_code": "220100", "uscc": uscc})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{customer}");
    let customer = customer["id"].as_str().unwrap().to_owned();
    let (s, user) = lambda
        .as_user(
            &verifier,
            &admin,
            "POST",
            "/v1/users",
            Some(json!({"username": "lq-pm", "password": PASSWORD,
                        "roles": ["project_manager"], "customer_id": customer})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let user_id = user["id"].as_str().unwrap().to_owned();

    // The user signs in, and holds a refresh token.
    let signed_in = pool.sign_in("lq-pm").await.unwrap();
    let refresh = signed_in
        .authentication_result()
        .and_then(|r| r.refresh_token())
        .unwrap()
        .to_owned();
    assert!(pool.refresh(&refresh).await.is_ok());
    let offboard = format!("/v1/customers/{customer}/offboard");

    // Cognito unreachable: 503, and nothing changed — the customer is still active, its user
    // still signs in — so offboarding can be retried.
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let unreachable = cognito::Client::from_conf(
        cognito::config::Builder::from(&conf)
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(cognito::config::retry::RetryConfig::disabled())
            .build(),
    );
    let down = lambda.with_accounts(Arc::new(CognitoAccounts::new(
        unreachable,
        pool.id.clone(),
        lambda.state.directory.clone(),
    )));
    let (s, body) = down
        .as_user(&verifier, &admin, "POST", &offboard, None)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    println!("offboarding with Cognito down: {body}");
    let (s, got) = lambda
        .as_user(
            &verifier,
            &admin,
            "GET",
            &format!("/v1/customers/{customer}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["status"], "active", "{got}");
    assert!(pool.sign_in("lq-pm").await.is_ok());

    // Offboarding again, with Cognito up: 200, and the export lists the user.
    let (s, export) = lambda
        .as_user(&verifier, &admin, "POST", &offboard, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{export}");
    assert_eq!(export["customer"]["status"], "offboarded", "{export}");
    let users: Vec<&str> = export["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(users, vec![user_id.as_str()], "{export}");

    // From now on Cognito refuses the user's password and its refresh token, and shows it
    // disabled.
    let e = pool
        .sign_in("lq-pm")
        .await
        .expect_err("a disabled user signed in")
        .into_service_error();
    println!("sign-in after offboarding: {e:?}");
    assert!(e.is_not_authorized_exception(), "{e:?}");
    let e = pool
        .refresh(&refresh)
        .await
        .expect_err("a revoked refresh token worked")
        .into_service_error();
    println!("refresh after offboarding: {e:?}");
    assert!(e.is_not_authorized_exception(), "{e:?}");
    let got = pool
        .client
        .admin_get_user()
        .user_pool_id(&pool.id)
        .username("lq-pm")
        .send()
        .await
        .unwrap();
    assert!(!got.enabled(), "{got:?}");

    // Offboarding is final; the integrator's own admin is untouched.
    let (s, body) = lambda
        .as_user(&verifier, &admin, "POST", &offboard, None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(pool.sign_in("jl-admin").await.is_ok());

    // Disabling is idempotent: a disabled user, and one Cognito does not know, are Ok.
    let accounts = pool.accounts(lambda.state.directory.clone());
    let kept = lambda
        .state
        .directory
        .user_by_username("lq-pm")
        .await
        .unwrap()
        .unwrap()
        .user;
    accounts.disable(&kept).await.unwrap();
    let gone = smartsite_shared::directory::User {
        username: "never-created".into(),
        ..kept
    };
    accounts.disable(&gone).await.unwrap();
}
