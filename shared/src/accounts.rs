//! Accounts: where a user created through the API gets the credentials it signs in with.
//!
//! - single-box ([`LocalAccounts`]): an argon2id hash beside the user in the directory, which
//!   `POST /v1/auth/token` verifies;
//! - AWS ([`CognitoAccounts`]): a Cognito user whose custom attributes carry the tenant and roles
//!   (`custom:integrator_id`, `custom:customer_id`, `custom:roles`: what the id token carries and
//!   `Caller::from_gateway_claims` reads), beside the directory entry that keeps usernames unique
//!   platform-wide and lists the user.
//!
//! The caller has already validated and authorised the user; an adapter only stores it (or, on
//! offboarding, shuts its sign-in off).

use async_trait::async_trait;
#[cfg(feature = "aws")]
use aws_sdk_cognitoidentityprovider as cognito;
#[cfg(feature = "aws")]
use cognito::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
#[cfg(feature = "aws")]
use cognito::types::{AttributeType, MessageActionType};

#[cfg(feature = "aws")]
use crate::config::UserPoolConfig;
use crate::directory::{Directory, DirectoryError, User};
use crate::http::Problem;
use crate::password;
use crate::store::StoreError;

/// Creates and disables the sign-in account of a user.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates `user` with `password`. Either the whole account exists afterwards or, on an
    /// error, none of it (the username is free again).
    async fn create(&self, user: &User, password: &str) -> Result<(), AccountsError>;

    /// Makes sure `user` can no longer sign in nor refresh its tokens (its customer is being
    /// offboarded). Idempotent: a user already disabled, or already gone, is `Ok`.
    async fn disable(&self, user: &User) -> Result<(), AccountsError>;
}

/// How many users [`disable_all`] disables at once: enough to offboard a customer of a few
/// hundred users within the Lambda's timeout, few enough to stay near Cognito's request-rate
/// quota for user updates (the SDK retries what is throttled).
pub const DISABLE_CONCURRENCY: usize = 4;

/// Disables every one of `users`, [`DISABLE_CONCURRENCY`] at a time, and answers those that
/// failed with their error; none is skipped because another failed.
pub async fn disable_all<'u>(
    accounts: &dyn Accounts,
    users: &'u [User],
) -> Vec<(&'u User, AccountsError)> {
    let mut failed = Vec::new();
    for batch in users.chunks(DISABLE_CONCURRENCY) {
        let results = futures::future::join_all(batch.iter().map(|u| accounts.disable(u))).await;
        failed.extend(
            batch
                .iter()
                .zip(results)
                .filter_map(|(u, r)| r.err().map(|e| (u, e))),
        );
    }
    failed
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("username taken")]
    UsernameTaken,
    /// The identity provider's own password policy refused the password; the text is its own.
    #[error("password refused by the identity provider: {0}")]
    WeakPassword(String),
    /// Retryable: throttled, timed out, or the identity provider or the store answered 5xx or
    /// could not be reached.
    #[error("accounts backend unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("accounts backend error")]
    Backend(#[source] anyhow::Error),
}

impl From<DirectoryError> for AccountsError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Exists(_) => AccountsError::UsernameTaken,
            DirectoryError::Store(StoreError::Unavailable(cause)) => {
                AccountsError::Unavailable(cause)
            }
            other => AccountsError::Backend(other.into()),
        }
    }
}

impl From<AccountsError> for Problem {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::UsernameTaken => Problem::conflict("username already exists"),
            AccountsError::WeakPassword(m) => Problem::validation("password", m),
            AccountsError::Unavailable(cause) => {
                tracing::warn!(error = ?cause, "accounts backend unavailable");
                Problem::unavailable()
            }
            AccountsError::Backend(cause) => Problem::internal(cause.as_ref()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Single-box.

/// The single-box edition's accounts: the password's argon2id hash stored with the user.
#[derive(Clone)]
pub struct LocalAccounts {
    directory: Directory,
}

impl LocalAccounts {
    pub fn new(directory: Directory) -> Self {
        LocalAccounts { directory }
    }
}

#[async_trait]
impl Accounts for LocalAccounts {
    async fn create(&self, user: &User, password: &str) -> Result<(), AccountsError> {
        let hash = password::hash(password.to_owned())
            .await
            .map_err(AccountsError::Backend)?;
        self.directory.create_user(user, &hash).await?;
        Ok(())
    }

    /// Nothing to do: the single-box `POST /v1/auth/token` looks the user's customer up at every
    /// sign-in and refuses an offboarded one's users, and it issues no refresh tokens (an access
    /// token already issued runs out at its `exp`).
    async fn disable(&self, _user: &User) -> Result<(), AccountsError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// AWS.

/// The `password_hash` of a directory user whose password Cognito holds. It is not a PHC string,
/// so `password::verify` never accepts any password against it; `POST /v1/auth/token` is not
/// served in the AWS edition anyway (Cognito issues the tokens).
pub const COGNITO_MANAGED_HASH: &str = "!cognito";

/// The AWS edition's accounts: a Cognito user in the pool behind the HTTP API's JWT authorizer.
///
/// `create` claims the username in the directory first (so usernames stay unique across the
/// platform, and two concurrent creations cannot both reach Cognito), then `AdminCreateUser`
/// (no invitation message) and `AdminSetUserPassword` (permanent: the user signs in with it at
/// once). When a Cognito step fails it undoes what it did — the Cognito user, if created, then
/// the directory entries — and answers the Cognito error. An undo that fails is logged at error
/// level with the username, which then needs an operator.
///
/// `disable` is `AdminDisableUser` (no more sign-in) then `AdminUserGlobalSignOut` (the user's
/// refresh tokens stop working too; id and access tokens already issued stay valid until they
/// expire, as the JWT authorizer only checks their signature and expiry).
#[cfg(feature = "aws")]
#[derive(Clone)]
pub struct CognitoAccounts {
    client: cognito::Client,
    user_pool_id: String,
    directory: Directory,
}

#[cfg(feature = "aws")]
impl CognitoAccounts {
    pub fn new(
        client: cognito::Client,
        user_pool_id: impl Into<String>,
        directory: Directory,
    ) -> Self {
        CognitoAccounts {
            client,
            user_pool_id: user_pool_id.into(),
            directory,
        }
    }

    /// The client from an SDK configuration loaded once per process (a Lambda cold start).
    pub fn from_sdk_config(
        aws: &aws_config::SdkConfig,
        cfg: &UserPoolConfig,
        directory: Directory,
    ) -> Self {
        CognitoAccounts::new(
            cognito::Client::new(aws),
            cfg.user_pool_id.clone(),
            directory,
        )
    }

    async fn admin_create_user(&self, user: &User) -> Result<(), AccountsError> {
        let roles = user
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let attrs = [
            (
                "custom:integrator_id",
                user.integrator_id.as_ref().map(|i| i.to_string()),
            ),
            (
                "custom:customer_id",
                user.customer_id.as_ref().map(|c| c.to_string()),
            ),
            ("custom:roles", Some(roles)),
        ];
        let mut req = self
            .client
            .admin_create_user()
            .user_pool_id(&self.user_pool_id)
            .username(&user.username)
            .message_action(MessageActionType::Suppress);
        for (name, value) in attrs {
            if let Some(value) = value {
                let attr = AttributeType::builder()
                    .name(name)
                    .value(value)
                    .build()
                    .map_err(|e| AccountsError::Backend(e.into()))?;
                req = req.user_attributes(attr);
            }
        }
        req.send().await.map_err(|e| {
            // Without an answer (timeout, lost connection) the user may have been created. It is
            // left alone rather than risk deleting a user this call did not create (one made by
            // hand in the console, say); creating it again answers 409 until an operator has
            // deleted it.
            if matches!(
                e,
                SdkError::DispatchFailure(_)
                    | SdkError::TimeoutError(_)
                    | SdkError::ResponseError(_)
            ) {
                tracing::error!(
                    user_id = %user.id, username = %user.username,
                    "AdminCreateUser got no answer: the Cognito user may exist without a password"
                );
            }
            cognito_err(e, "AdminCreateUser")
        })?;
        Ok(())
    }

    async fn admin_set_user_password(
        &self,
        user: &User,
        password: &str,
    ) -> Result<(), AccountsError> {
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.user_pool_id)
            .username(&user.username)
            .password(password)
            .permanent(true)
            .send()
            .await
            .map_err(|e| match e.code() {
                // Pool and username have just worked for AdminCreateUser, so the password is
                // what Cognito's parameter check refused (e.g. its pattern forbids leading or
                // trailing white space, which our own rule allows).
                Some("InvalidParameterException") => AccountsError::WeakPassword(
                    e.message()
                        .unwrap_or("the identity provider refused the password")
                        .to_owned(),
                ),
                _ => cognito_err(e, "AdminSetUserPassword"),
            })?;
        Ok(())
    }

    /// Runs `op` (named `name` in errors) on `user`; a user Cognito does not know is `Ok` (it
    /// cannot sign in, which is what `disable` wants).
    async fn on_existing_user<T, E>(
        user: &User,
        name: &'static str,
        op: impl std::future::Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<(), AccountsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match op.await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("UserNotFoundException") => {
                tracing::warn!(
                    user_id = %user.id, username = %user.username,
                    "{name}: no such Cognito user; nothing to disable"
                );
                Ok(())
            }
            Err(e) => Err(cognito_err(e, name)),
        }
    }

    /// Undoes a creation that failed after the directory claim: the Cognito user first (when
    /// `cognito_user` says it was created), so the username is released only once nothing holds
    /// it any more.
    async fn undo(&self, user: &User, cognito_user: bool) {
        if cognito_user
            && let Err(e) = self
                .client
                .admin_delete_user()
                .user_pool_id(&self.user_pool_id)
                .username(&user.username)
                .send()
                .await
        {
            tracing::error!(
                user_id = %user.id, username = %user.username, error = %DisplayErrorContext(&e),
                "cannot delete the Cognito user of a failed creation; delete it by hand"
            );
            return;
        }
        if let Err(e) = self.directory.delete_user(user).await {
            tracing::error!(
                user_id = %user.id, username = %user.username, error = %e,
                "cannot release the username of a failed creation; delete it by hand"
            );
        }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl Accounts for CognitoAccounts {
    async fn create(&self, user: &User, password: &str) -> Result<(), AccountsError> {
        self.directory
            .create_user(user, COGNITO_MANAGED_HASH)
            .await?;
        if let Err(e) = self.admin_create_user(user).await {
            // Cognito's answer was "not created", or no answer came (see admin_create_user).
            self.undo(user, false).await;
            return Err(e);
        }
        if let Err(e) = self.admin_set_user_password(user, password).await {
            self.undo(user, true).await;
            return Err(e);
        }
        Ok(())
    }

    async fn disable(&self, user: &User) -> Result<(), AccountsError> {
        // Disabling first: from then on no sign-in succeeds, whatever the sign-out does. Both
        // calls are idempotent, so a failed `disable` is simply called again.
        let disable = self
            .client
            .admin_disable_user()
            .user_pool_id(&self.user_pool_id)
            .username(&user.username)
            .send();
        Self::on_existing_user(user, "AdminDisableUser", disable).await?;
        let sign_out = self
            .client
            .admin_user_global_sign_out()
            .user_pool_id(&self.user_pool_id)
            .username(&user.username)
            .send();
        Self::on_existing_user(user, "AdminUserGlobalSignOut", sign_out).await?;
        tracing::info!(user_id = %user.id, username = %user.username, "Cognito user disabled and signed out");
        Ok(())
    }
}

/// Maps a Cognito error: the refusals a caller can act on to their own variants, throttling, 5xx
/// and transport failures to the retryable `Unavailable`, anything else to `Backend`.
#[cfg(feature = "aws")]
fn cognito_err<E>(e: SdkError<E>, op: &'static str) -> AccountsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    const RETRYABLE: [&str; 3] = [
        "TooManyRequestsException",
        "ThrottlingException",
        "InternalErrorException",
    ];
    let transient = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))
        || e.raw_response()
            .is_some_and(|r| r.status().is_server_error())
        || e.code().is_some_and(|c| RETRYABLE.contains(&c));
    match e.code() {
        Some("InvalidPasswordException") => AccountsError::WeakPassword(
            e.message()
                .unwrap_or("the password does not meet the identity provider's policy")
                .to_owned(),
        ),
        Some("UsernameExistsException") => AccountsError::UsernameTaken,
        _ if transient => AccountsError::Unavailable(anyhow::Error::new(e).context(op)),
        _ => AccountsError::Backend(anyhow::Error::new(e).context(op)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn errors_map_to_problems() {
        let cases = [
            (AccountsError::UsernameTaken, StatusCode::CONFLICT, None),
            (
                AccountsError::WeakPassword("needs a symbol".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("password"),
            ),
            (
                AccountsError::Unavailable(anyhow::anyhow!("throttled")),
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
            (
                AccountsError::Backend(anyhow::anyhow!("secret pool id")),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
        ];
        for (e, status, field) in cases {
            let p = Problem::from(e);
            assert_eq!(p.status, status.as_u16());
            assert_eq!(p.field.as_deref(), field);
            assert!(!p.detail.unwrap_or_default().contains("secret"));
        }
    }

    #[test]
    fn directory_errors_map_to_accounts_errors() {
        assert!(matches!(
            AccountsError::from(DirectoryError::Exists("username")),
            AccountsError::UsernameTaken
        ));
        assert!(matches!(
            AccountsError::from(DirectoryError::Store(StoreError::Unavailable(
                anyhow::anyhow!("throttled")
            ))),
            AccountsError::Unavailable(_)
        ));
        assert!(matches!(
            AccountsError::from(DirectoryError::Store(StoreError::Backend(anyhow::anyhow!(
                "boom"
            )))),
            AccountsError::Backend(_)
        ));
    }

    #[tokio::test]
    async fn local_disable_is_a_no_op() {
        let fixture = crate::testkit::embedded().await;
        let accounts = LocalAccounts::new(Directory::new(fixture.store.clone()));
        let user = User {
            id: crate::domain::tenancy::UserId::generate(),
            username: "nobody".into(),
            roles: vec![crate::auth::Role::IntegratorOps],
            integrator_id: None,
            customer_id: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        // Not even in the directory: still Ok, and twice.
        accounts.disable(&user).await.unwrap();
        accounts.disable(&user).await.unwrap();
        assert!(disable_all(&accounts, &[user]).await.is_empty());
    }

    #[tokio::test]
    async fn the_cognito_marker_never_verifies() {
        for guess in ["", "!cognito", "cognito", "Corr3ct-Horse-Battery!"] {
            assert!(
                !password::verify(guess.into(), COGNITO_MANAGED_HASH.into())
                    .await
                    .unwrap()
            );
        }
    }
}
