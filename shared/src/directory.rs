//! The tenancy directory: integrators, customers, projects and users over the storage port, and
//! the visibility rules of API.md. Every concern that needs "may this caller see that project"
//! asks here.

use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::auth::{Caller, Role};
use crate::domain::tenancy::{
    Customer, CustomerId, CustomerKind, Integrator, Project, ProjectId, RegionCode, UserId,
};
use crate::ids::IntegratorId;
use crate::store::keys::{self, Pk};
use crate::store::records::{self, decode, record};
use crate::store::{Condition, Cursor, Item, Key, Query, SkCond, Store, StoreError, TxOp};

pub use crate::store::records::ListPage;

/// A user as the API shows it. The password hash is stored beside it, never in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    #[schema(value_type = String)]
    pub id: UserId,
    pub username: String,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub integrator_id: Option<IntegratorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<CustomerId>,
    pub created_at: String,
}

pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}

#[derive(Serialize, Deserialize)]
struct UsernameRef {
    integrator_id: Option<IntegratorId>,
    user_id: UserId,
}

#[derive(Serialize, Deserialize)]
struct ProjectRef {
    integrator_id: IntegratorId,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0} already exists")]
    Exists(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

#[derive(Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
}

fn pk_of(integrator: Option<&IntegratorId>) -> Pk {
    integrator.map_or_else(keys::platform, keys::integrator)
}

fn map_exists(e: StoreError, what: &'static str) -> DirectoryError {
    match e {
        StoreError::ConditionFailed | StoreError::TransactionConditionFailed { .. } => {
            DirectoryError::Exists(what)
        }
        other => DirectoryError::Store(other),
    }
}

impl Directory {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Directory { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn get_json<T: DeserializeOwned>(&self, key: Key) -> Result<Option<T>, DirectoryError> {
        records::get_json(&*self.store, key).await
    }

    async fn page<T: DeserializeOwned>(
        &self,
        q: Query,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<T>, DirectoryError> {
        records::page(&*self.store, q, limit, cursor).await
    }

    // ---- integrators

    pub async fn create_integrator(&self, i: &Integrator) -> Result<(), DirectoryError> {
        let profile = record(Key::new(keys::integrator(&i.id), keys::SK_PROFILE), i)?;
        let registry = record(
            Key::new(keys::platform(), keys::integrator_registry_sk(&i.id)),
            i,
        )?;
        self.store
            .transact(vec![
                TxOp::Put {
                    item: profile,
                    cond: Some(Condition::NotExists),
                },
                TxOp::Put {
                    item: registry,
                    cond: Some(Condition::NotExists),
                },
            ])
            .await
            .map_err(|e| map_exists(e, "integrator"))
    }

    pub async fn integrator(
        &self,
        id: &IntegratorId,
    ) -> Result<Option<Integrator>, DirectoryError> {
        self.get_json(Key::new(keys::integrator(id), keys::SK_PROFILE))
            .await
    }

    pub async fn list_integrators(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Integrator>, DirectoryError> {
        let q = Query::partition(&keys::platform())
            .sk(SkCond::BeginsWith(keys::INTEGRATOR_REGISTRY_PREFIX.into()));
        self.page(q, limit, cursor).await
    }

    // ---- customers

    fn customer_key(i: &IntegratorId, c: &CustomerId) -> Key {
        Key::new(keys::integrator(i), keys::customer_sk(c.as_str()))
    }

    pub async fn create_customer(&self, c: &Customer) -> Result<(), DirectoryError> {
        let item =
            record(Self::customer_key(&c.integrator_id, &c.id), c)?.with("status", status_str(c));
        self.store
            .put(item, Some(Condition::NotExists))
            .await
            .map_err(|e| map_exists(e, "customer"))
    }

    pub async fn customer(
        &self,
        i: &IntegratorId,
        c: &CustomerId,
    ) -> Result<Option<Customer>, DirectoryError> {
        self.get_json(Self::customer_key(i, c)).await
    }

    /// Replaces the customer if its stored status is still `expected` (optimistic concurrency).
    pub async fn update_customer(
        &self,
        c: &Customer,
        expected: &Customer,
    ) -> Result<(), DirectoryError> {
        let item =
            record(Self::customer_key(&c.integrator_id, &c.id), c)?.with("status", status_str(c));
        self.store
            .put(
                item,
                Some(Condition::equals("status", status_str(expected))),
            )
            .await
            .map_err(|e| map_exists(e, "a newer version of the customer"))
    }

    pub async fn list_customers(
        &self,
        i: &IntegratorId,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Customer>, DirectoryError> {
        let q = Query::partition(&keys::integrator(i))
            .sk(SkCond::BeginsWith(keys::CUSTOMER_PREFIX.into()));
        self.page(q, limit, cursor).await
    }

    // ---- projects

    /// Writes the project, its id pointer and the access entries of its contractor and owner in
    /// one transaction.
    pub async fn create_project(&self, p: &Project) -> Result<(), DirectoryError> {
        let gsi = self.store.table().index("gsi1")?.clone();
        let pk = keys::integrator(&p.integrator_id);
        let project = record(Key::new(pk.clone(), keys::project_sk(p.id.as_str())), p)?
            .with_index_key(
                &gsi,
                keys::region_gsi_pk(p.region_code.province()),
                keys::region_gsi_sk(p.region_code.as_str(), p.id.as_str()),
            );
        let pointer = record(
            Key::new(keys::platform(), keys::project_sk(p.id.as_str())),
            &ProjectRef {
                integrator_id: p.integrator_id.clone(),
            },
        )?;
        let mut ops = vec![
            TxOp::Put {
                item: project,
                cond: Some(Condition::NotExists),
            },
            TxOp::Put {
                item: pointer,
                cond: Some(Condition::NotExists),
            },
        ];
        for (c, basis) in std::iter::once((&p.contractor_customer_id, "contractor"))
            .chain(p.owner_customer_id.as_ref().map(|o| (o, "owner")))
        {
            let access = Item::new(Key::new(
                pk.clone(),
                keys::access_sk(c.as_str(), p.id.as_str()),
            ))
            .with("project_id", p.id.as_str())
            .with("basis", basis);
            ops.push(TxOp::Put {
                item: access,
                cond: None,
            });
        }
        self.store
            .transact(ops)
            .await
            .map_err(|e| map_exists(e, "project"))
    }

    pub async fn project(
        &self,
        i: &IntegratorId,
        p: &ProjectId,
    ) -> Result<Option<Project>, DirectoryError> {
        self.get_json(Key::new(keys::integrator(i), keys::project_sk(p.as_str())))
            .await
    }

    /// The integrator a project belongs to, for callers whose view spans integrators.
    pub async fn project_integrator(
        &self,
        p: &ProjectId,
    ) -> Result<Option<IntegratorId>, DirectoryError> {
        let r: Option<ProjectRef> = self
            .get_json(Key::new(keys::platform(), keys::project_sk(p.as_str())))
            .await?;
        Ok(r.map(|r| r.integrator_id))
    }

    // ---- users

    fn user_key(integrator: Option<&IntegratorId>, u: &UserId) -> Key {
        Key::new(pk_of(integrator), keys::user_sk(u.as_str()))
    }

    /// Creates the user; fails with `Exists` when the username is taken (platform-wide).
    pub async fn create_user(&self, u: &User, password_hash: &str) -> Result<(), DirectoryError> {
        let user = record(Self::user_key(u.integrator_id.as_ref(), &u.id), u)?
            .with("password_hash", password_hash);
        let name = record(
            Key::new(keys::platform(), keys::username_sk(&u.username)),
            &UsernameRef {
                integrator_id: u.integrator_id.clone(),
                user_id: u.id.clone(),
            },
        )?;
        self.store
            .transact(vec![
                TxOp::Put {
                    item: name,
                    cond: Some(Condition::NotExists),
                },
                TxOp::Put {
                    item: user,
                    cond: Some(Condition::NotExists),
                },
            ])
            .await
            .map_err(|e| map_exists(e, "username"))
    }

    /// Removes what `create_user(u, …)` wrote (the user and its username) in one transaction,
    /// releasing the username. Deleting what does not exist is not an error. For undoing one's
    /// own `create_user` when a later step fails (see `accounts::CognitoAccounts`).
    pub async fn delete_user(&self, u: &User) -> Result<(), DirectoryError> {
        self.store
            .transact(vec![
                TxOp::Delete {
                    key: Key::new(keys::platform(), keys::username_sk(&u.username)),
                    cond: None,
                },
                TxOp::Delete {
                    key: Self::user_key(u.integrator_id.as_ref(), &u.id),
                    cond: None,
                },
            ])
            .await
            .map_err(DirectoryError::Store)
    }

    pub async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserRecord>, DirectoryError> {
        let Some(r) = self
            .get_json::<UsernameRef>(Key::new(keys::platform(), keys::username_sk(username)))
            .await?
        else {
            return Ok(None);
        };
        let Some(item) = self
            .store
            .get(&Self::user_key(r.integrator_id.as_ref(), &r.user_id))
            .await?
        else {
            return Ok(None);
        };
        let hash = item.s("password_hash").unwrap_or_default().to_owned();
        Ok(Some(UserRecord {
            user: decode(&item)?,
            password_hash: hash,
        }))
    }

    pub async fn list_users(
        &self,
        integrator: Option<&IntegratorId>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<User>, DirectoryError> {
        let q =
            Query::partition(&pk_of(integrator)).sk(SkCond::BeginsWith(keys::USER_PREFIX.into()));
        self.page(q, limit, cursor).await
    }

    // ---- visibility (API.md)

    /// The project, if `caller` may see it. Anything the caller may not see is `None`, exactly as
    /// if it did not exist.
    pub async fn visible_project(
        &self,
        caller: &Caller,
        id: &ProjectId,
    ) -> Result<Option<Project>, DirectoryError> {
        let integrator = if caller.is_platform_admin() || caller.has(Role::GovSupervisor) {
            match self.project_integrator(id).await? {
                Some(i) => i,
                None => return Ok(None),
            }
        } else {
            match &caller.integrator {
                Some(i) => i.clone(),
                None => return Ok(None),
            }
        };
        let Some(p) = self.project(&integrator, id).await? else {
            return Ok(None);
        };
        Ok(self.may_see_project(caller, &p).await?.then_some(p))
    }

    /// Whether `caller` may see `p` (read access).
    pub async fn may_see_project(
        &self,
        caller: &Caller,
        p: &Project,
    ) -> Result<bool, DirectoryError> {
        if caller.is_platform_admin() {
            return Ok(true);
        }
        if caller.staff_of() == Some(&p.integrator_id) {
            return Ok(true);
        }
        let (Some(ci), Some(cc)) = (&caller.integrator, &caller.customer) else {
            return Ok(false);
        };
        if caller.has(Role::GovSupervisor)
            && let Some(region) = self.jurisdiction(ci, cc).await?
            && region.covers(&p.region_code)
        {
            return Ok(true);
        }
        let party = ci == &p.integrator_id
            && (&p.contractor_customer_id == cc || p.owner_customer_id.as_ref() == Some(cc));
        Ok(party
            && caller.has_any(&[
                Role::EnterpriseAdmin,
                Role::ProjectManager,
                Role::SafetyOfficer,
                Role::LabourOfficer,
                Role::OwnerRep,
            ]))
    }

    /// The region a government customer governs (`None` unless `c` is a government customer).
    pub async fn jurisdiction(
        &self,
        i: &IntegratorId,
        c: &CustomerId,
    ) -> Result<Option<RegionCode>, DirectoryError> {
        Ok(self
            .customer(i, c)
            .await?
            .filter(|c| c.kind == CustomerKind::GovRegion)
            .map(|c| c.region_code))
    }

    /// The projects `caller` may see, a page at a time.
    pub async fn visible_projects(
        &self,
        caller: &Caller,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Project>, DirectoryError> {
        if caller.is_platform_admin() {
            return self.all_projects(limit, cursor).await;
        }
        if let Some(i) = caller.staff_of() {
            let q = Query::partition(&keys::integrator(i))
                .sk(SkCond::BeginsWith(keys::PROJECT_PREFIX.into()));
            return self.page(q, limit, cursor).await;
        }
        let (Some(ci), Some(cc)) = (&caller.integrator, &caller.customer) else {
            return Ok(ListPage {
                items: Vec::new(),
                next: None,
            });
        };
        if caller.has(Role::GovSupervisor) {
            let Some(region) = self.jurisdiction(ci, cc).await? else {
                return Ok(ListPage {
                    items: Vec::new(),
                    next: None,
                });
            };
            let q = Query::index("gsi1", keys::region_gsi_pk(region.province()))
                .sk(SkCond::BeginsWith(region.prefix().to_owned()));
            return self.page(q, limit, cursor).await;
        }
        if !caller.has_any(&[
            Role::EnterpriseAdmin,
            Role::ProjectManager,
            Role::SafetyOfficer,
            Role::LabourOfficer,
            Role::OwnerRep,
        ]) {
            return Ok(ListPage {
                items: Vec::new(),
                next: None,
            });
        }
        self.projects_of_customer(ci, cc, limit, cursor).await
    }

    /// The projects a customer is a party to (as contractor or owner).
    pub async fn list_customers_projects(
        &self,
        c: &Customer,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Project>, DirectoryError> {
        self.projects_of_customer(&c.integrator_id, &c.id, limit, cursor)
            .await
    }

    async fn projects_of_customer(
        &self,
        i: &IntegratorId,
        c: &CustomerId,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Project>, DirectoryError> {
        let q = Query::partition(&keys::integrator(i))
            .sk(SkCond::BeginsWith(keys::access_prefix(c.as_str())));
        let access = self
            .store
            .query(q.limit(limit).after(cursor.map(Cursor::from_client)))
            .await?;
        let mut items = Vec::with_capacity(access.items.len());
        for a in &access.items {
            if let Some(pid) = a
                .s("project_id")
                .and_then(|s| ProjectId::parse("id", s).ok())
                && let Some(p) = self.project(i, &pid).await?
            {
                items.push(p);
            }
        }
        Ok(ListPage {
            items,
            next: access.next.map(|c| c.as_str().to_owned()),
        })
    }

    /// Every project of every integrator, a page at a time (platform jobs and the platform
    /// administrator).
    pub async fn all_projects(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Project>, DirectoryError> {
        let q =
            Query::partition(&keys::platform()).sk(SkCond::BeginsWith(keys::PROJECT_PREFIX.into()));
        let refs = self
            .store
            .query(q.limit(limit).after(cursor.map(Cursor::from_client)))
            .await?;
        let mut items = Vec::with_capacity(refs.items.len());
        for r in &refs.items {
            let pr: ProjectRef = decode(r)?;
            let pid = r.key.sk.trim_start_matches(keys::PROJECT_PREFIX);
            if let Ok(pid) = ProjectId::parse("id", pid)
                && let Some(p) = self.project(&pr.integrator_id, &pid).await?
            {
                items.push(p);
            }
        }
        Ok(ListPage {
            items,
            next: refs.next.map(|c| c.as_str().to_owned()),
        })
    }

    /// The customer, if `caller` may see it: its integrator's staff, or its own users.
    pub async fn visible_customer(
        &self,
        caller: &Caller,
        id: &CustomerId,
    ) -> Result<Option<Customer>, DirectoryError> {
        let Some(i) = &caller.integrator else {
            return Ok(None);
        };
        let allowed = caller.staff_of().is_some() || caller.customer.as_ref() == Some(id);
        if !allowed {
            return Ok(None);
        }
        self.customer(i, id).await
    }
}

/// The project named by a path id if `caller` may see it, else the 404 a nonexistent id gets
/// (a malformed id included): what handlers of project-scoped routes start with.
pub async fn visible_project_or_404(
    directory: &Directory,
    caller: &Caller,
    id: &str,
) -> Result<Project, crate::http::Problem> {
    use crate::http::Problem;
    let id = ProjectId::parse("project_id", id).map_err(|_| Problem::not_found())?;
    directory
        .visible_project(caller, &id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(Problem::not_found)
}

/// The role check, then [`visible_project_or_404`]: what a handler of a project-scoped route
/// that only some roles may call starts with (403 for another role, then 404 for a project the
/// caller does not see).
pub async fn allowed_project(
    directory: &Directory,
    caller: &Caller,
    id: &str,
    roles: &[Role],
) -> Result<Project, crate::http::Problem> {
    caller.require(roles)?;
    visible_project_or_404(directory, caller, id).await
}

/// A concern's router state: how callers are authenticated, the directory that decides what
/// they see, and the concern's own service. Its `FromRef` impls give the `Caller` extractor and
/// [`guarded`] what they need, so a concern's `lib.rs` does not restate them.
#[derive(Clone)]
pub struct ConcernState<S> {
    pub auth: crate::auth::Authenticator,
    pub directory: Directory,
    pub service: S,
}

impl<S> ConcernState<S> {
    pub fn new(store: Arc<dyn Store>, auth: crate::auth::Authenticator, service: S) -> Self {
        ConcernState {
            auth,
            directory: Directory::new(store),
            service,
        }
    }
}

impl<S: Clone> axum::extract::FromRef<ConcernState<S>> for crate::auth::Authenticator {
    fn from_ref(s: &ConcernState<S>) -> Self {
        s.auth.clone()
    }
}

impl<S: Clone> axum::extract::FromRef<ConcernState<S>> for Directory {
    fn from_ref(s: &ConcernState<S>) -> Self {
        s.directory.clone()
    }
}

/// A concern's routes as a complete service: [`guard`] on every route (with the roles of `doc`,
/// the routes' OpenAPI document), then the shared layers of [`crate::http::finish`]. What every
/// concern's `app`/`finish` does.
pub fn guarded<S>(router: axum::Router<S>, doc: &utoipa::openapi::OpenApi, state: S) -> axum::Router
where
    S: Clone + Send + Sync + 'static,
    crate::auth::Authenticator: axum::extract::FromRef<S>,
    Directory: axum::extract::FromRef<S>,
{
    let roles = Arc::new(crate::auth::RoleTable::from_openapi(doc));
    let guarded = router.route_layer(axum::middleware::from_fn_with_state(
        (state.clone(), roles),
        guard::<S>,
    ));
    crate::http::finish(guarded.with_state(state))
}

/// Middleware for every route, before its handler extracts anything else:
/// 1. **Authorization before input**: an authenticated caller none of whose roles the operation
///    admits (its `x-roles`) gets 403 before the body is read, so a forbidden role never learns
///    what a valid body looks like.
/// 2. A user of a suspended or offboarded customer may read but not write (API.md, Tenancy
///    lifecycle): unsafe methods need the caller's customer active.
///
/// The verified caller is left in the request's extensions for the handler's `Caller`
/// extractor (one signature check per request). Requests that fail authentication pass through
/// so the handler answers 401.
pub async fn guard<S>(
    axum::extract::State((state, roles)): axum::extract::State<(S, Arc<crate::auth::RoleTable>)>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response
where
    S: Clone + Send + Sync + 'static,
    crate::auth::Authenticator: axum::extract::FromRef<S>,
    Directory: axum::extract::FromRef<S>,
{
    use axum::extract::{FromRef, FromRequestParts, MatchedPath};
    use axum::response::IntoResponse;
    let (mut parts, body) = req.into_parts();
    let Ok(caller) = Caller::from_request_parts(&mut parts, &state).await else {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    };
    let admitted = parts
        .extensions
        .get::<MatchedPath>()
        .and_then(|p| roles.roles(&parts.method, p.as_str()));
    if let Some(admitted) = admitted
        && let Err(p) = caller.require(admitted)
    {
        return p.into_response();
    }
    if !parts.method.is_safe()
        && let (Some(i), Some(c)) = (&caller.integrator, &caller.customer)
    {
        match Directory::from_ref(&state).customer(i, c).await {
            Ok(Some(cust)) if cust.status == crate::domain::tenancy::Status::Active => {}
            Ok(_) => {
                return crate::http::Problem::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "customer-suspended",
                    "Customer suspended",
                )
                .detail("your organisation is suspended or offboarded: read-only access")
                .into_response();
            }
            Err(e) => return crate::http::Problem::internal(&e).into_response(),
        }
    }
    parts.extensions.insert(caller);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

fn status_str(c: &Customer) -> &'static str {
    match c.status {
        crate::domain::tenancy::Status::Active => "active",
        crate::domain::tenancy::Status::Suspended => "suspended",
        crate::domain::tenancy::Status::Offboarded => "offboarded",
    }
}

impl From<DirectoryError> for crate::http::Problem {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Exists(what) => {
                crate::http::Problem::conflict(format!("{what} already exists"))
            }
            DirectoryError::Store(s) => s.into(),
            DirectoryError::Corrupt(c) => crate::http::Problem::internal(&c),
        }
    }
}
