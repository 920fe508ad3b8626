//! `smartsite admin …`: the operator's terminal client of the HTTP API (API.md, Identity and
//! Tenancy). Every verb is one request (lists follow `next` cursors) through [`Client`], which adds
//! the bearer token and turns problem+json answers into [`ApiError`].
//!
//! Output is meant for scripts: `login` prints only the access token, `create` (and the customer
//! state changes) only the id, unless `--json` asks for the full answer; `list` and `get` always
//! print pretty JSON (a list as one array of every item).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use smartsite_shared::auth::Role;
use smartsite_shared::domain::tenancy::{CustomerKind, Operator, ProjectType};

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Page size asked of list endpoints (their maximum).
const PAGE_LIMIT: u32 = 200;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of the HTTP API.
    #[arg(long, global = true, help_heading = "Admin options", env = "SMARTSITE_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Take the API address from a data dir's endpoints.json (`{"http": "host:port"}`) written
    /// by `smartsite serve`; overrides --url.
    #[arg(
        long,
        global = true,
        help_heading = "Admin options",
        value_name = "FILE"
    )]
    pub endpoints: Option<PathBuf>,
    /// Bearer token, from `smartsite admin login`.
    #[arg(
        long,
        global = true,
        help_heading = "Admin options",
        env = "SMARTSITE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the full JSON answer of `login`, `create` and state changes instead of only the
    /// token or id.
    #[arg(long, global = true, help_heading = "Admin options")]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Exchange a username and password for an access token, printed alone on stdout
    /// (`export SMARTSITE_TOKEN=$(smartsite admin login --username admin)`).
    Login(LoginArgs),
    /// Integrators (telecom operators' provincial branches); platform admin.
    #[command(subcommand)]
    Integrators(IntegratorsCommand),
    /// Customers of an integrator: government regions, enterprises, project owners.
    #[command(subcommand)]
    Customers(CustomersCommand),
    /// Construction projects.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Users and their roles.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Devices bound to projects.
    #[command(subcommand)]
    Devices(DevicesCommand),
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Provision the devices of a CSV file (header row; `serial_no,model_id,category,mn` and the
    /// category configuration columns) in batches; writes every credential returned (they are
    /// shown once) to --out and prints `created N, exists M, errors K`. Exit 1 if a row failed.
    Import(ImportDevices),
    /// Every device of a project.
    List {
        #[arg(long)]
        project: String,
    },
    /// One device.
    Get { id: String },
}

#[derive(Debug, Args)]
pub struct ImportDevices {
    /// The CSV file (UTF-8, one record per line).
    pub file: PathBuf,
    /// The project to provision into.
    #[arg(long)]
    pub project: String,
    /// Data rows per request (at most 5000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub batch: u32,
    /// Where to write the credentials (mode 0600); default FILE.credentials.json.
    #[arg(long, value_name = "CREDENTIALS.json")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(long)]
    pub username: String,
    /// The password; if neither this nor SMARTSITE_PASSWORD is given, one line is read from
    /// stdin.
    #[arg(long, env = "SMARTSITE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum IntegratorsCommand {
    /// Onboard an integrator; prints its id.
    Create(CreateIntegrator),
    /// Every integrator the caller may see.
    List,
    /// One integrator.
    Get { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Onboard a customer of the caller's integrator; prints its id.
    Create(CreateCustomer),
    /// Every customer the caller may see.
    List,
    /// One customer.
    Get { id: String },
    /// Suspend an active customer (its users keep read access); prints its id.
    Suspend { id: String },
    /// Resume a suspended customer; prints its id.
    Resume { id: String },
    /// Offboard a customer (final); prints its id, or with --json the full export.
    Offboard { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Register a project for an enterprise customer; prints its id.
    Create(CreateProject),
    /// Every project the caller may see.
    List,
    /// One project.
    Get { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; prints its id.
    Create(CreateUser),
    /// The users of the caller's integrator (platform admin: the platform's).
    List,
}

// The create arguments are the request bodies: clap parses them, serde sends them. Enumerations
// use the platform's own types, so a typo is refused before any request, naming the choices.

#[derive(Debug, Args, Serialize)]
pub struct CreateIntegrator {
    #[arg(long)]
    pub name: String,
    /// china_telecom, china_unicom or china_mobile.
    #[arg(long, value_parser = snake_enum::<Operator>)]
    pub operator: Operator,
    /// Province (GB/T 2260, `xx0000`).
    #[arg(long)]
    pub province_code: String,
}

#[derive(Debug, Args, Serialize)]
pub struct CreateCustomer {
    /// gov_region, enterprise or project_owner.
    #[arg(long, value_parser = snake_enum::<CustomerKind>)]
    pub kind: CustomerKind,
    #[arg(long)]
    pub name: String,
    /// GB/T 2260, 6 digits; for a government customer, the region it governs.
    #[arg(long)]
    pub region_code: String,
    /// Unified social credit code (18 characters); required for enterprises and project owners.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uscc: Option<String>,
}

#[derive(Debug, Args, Serialize)]
pub struct CreateProject {
    #[arg(long)]
    pub name: String,
    /// The general contractor (an enterprise customer).
    #[arg(long)]
    pub contractor_customer_id: String,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_customer_id: Option<String>,
    #[arg(long)]
    pub region_code: String,
    /// mining, railway, building, urban_rail, water_hydro, power, smelting, mech_elec_install,
    /// chem_petro, telecom, municipal, port_waterway or highway.
    #[arg(long, value_parser = snake_enum::<ProjectType>)]
    pub project_type: ProjectType,
    /// Construction and installation cost in fen (1 yuan = 100 fen).
    #[arg(long)]
    pub contract_value_fen: i64,
    /// YYYY-MM-DD.
    #[arg(long)]
    pub contract_signed_date: NaiveDate,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tender_completed_date: Option<NaiveDate>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_end_date: Option<NaiveDate>,
}

#[derive(Debug, Args, Serialize)]
pub struct CreateUser {
    #[arg(long)]
    pub username: String,
    /// At least 10 characters with two of: lower case, upper case, digits, symbols.
    #[arg(long)]
    pub password: String,
    /// Comma-separated, e.g. `integrator_admin` or `enterprise_admin,safety_officer`.
    #[arg(long, required = true, value_delimiter = ',', value_parser = snake_enum::<Role>)]
    pub roles: Vec<Role>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrator_id: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// Parses a snake_case enumeration value exactly as the API would.
fn snake_enum<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(s.to_owned())).map_err(|e| e.to_string())
}

/// An error answer of the API (RFC 9457 problem+json). Its Display is the whole message the
/// operator sees: `<title> (<status>): <detail> [field: <field>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub title: String,
    pub detail: Option<String>,
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.status)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " [field: {field}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// From an error answer's body: its problem+json if it is one, else the status and the start
    /// of whatever came back (a proxy's page, say).
    fn from_body(status: reqwest::StatusCode, body: &[u8]) -> Self {
        let problem: Option<Value> = serde_json::from_slice(body).ok();
        let text = |k: &str| {
            problem
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let title = text("title")
            .or_else(|| status.canonical_reason().map(str::to_owned))
            .unwrap_or_else(|| "HTTP error".to_owned());
        let detail = if problem.is_some() {
            text("detail")
        } else {
            let s = String::from_utf8_lossy(body);
            let s = s.trim();
            (!s.is_empty()).then(|| s.chars().take(200).collect())
        };
        ApiError {
            status: status.as_u16(),
            title,
            detail,
            field: text("field"),
        }
    }
}

/// The HTTP API as the operator's client sees it: a base URL, an optional bearer token, and
/// JSON in, JSON or [`ApiError`] out.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("smartsite-admin/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.trim().is_empty()),
            http,
        })
    }

    fn token(&self) -> anyhow::Result<&str> {
        self.token.as_deref().context(
            "no access token: pass --token or set SMARTSITE_TOKEN \
             (get one with `smartsite admin login --username NAME`)",
        )
    }

    /// GET with the token.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let req = self.http.get(self.url(path)).query(query);
        self.send(req.bearer_auth(self.token()?)).await
    }

    /// POST a JSON body with the token.
    pub async fn post(&self, path: &str, body: &impl Serialize) -> anyhow::Result<Value> {
        let req = self.http.post(self.url(path)).json(body);
        self.send(req.bearer_auth(self.token()?)).await
    }

    /// POST a CSV body with the token.
    pub async fn post_csv(&self, path: &str, csv: String) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "text/csv; charset=utf-8")
            .body(csv);
        self.send(req.bearer_auth(self.token()?)).await
    }

    /// POST a JSON body without a token (sign-in).
    pub async fn post_anonymous(&self, path: &str, body: &impl Serialize) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Every item of a list endpoint, following `next` cursors.
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let limit = PAGE_LIMIT.to_string();
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", limit.as_str())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.as_str()));
            }
            let mut page = self.get(path, &query).await?;
            match page.get_mut("items").map(Value::take) {
                Some(Value::Array(a)) => items.extend(a),
                _ => bail!("GET {path}: the answer has no `items` list"),
            }
            match page.get("next").and_then(Value::as_str) {
                Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .with_context(|| format!("reading the answer from {}", self.base))?;
        if !status.is_success() {
            return Err(ApiError::from_body(status, &body).into());
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("the API answered {status} with a body that is not JSON"))
    }
}

/// Runs one `smartsite admin` command, printing its result on stdout.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let base = match &args.endpoints {
        Some(file) => base_from_endpoints(file)?,
        None => args.url.clone(),
    };
    let client = Client::new(&base, args.token.clone())?;
    let json = args.json;
    match args.command {
        AdminCommand::Login(login) => {
            let password = match login.password {
                Some(p) => p,
                None => read_password()?,
            };
            let body = serde_json::json!({"username": login.username, "password": password});
            let answer = client.post_anonymous("/v1/auth/token", &body).await?;
            if json {
                print_json(&answer)
            } else {
                let token = answer
                    .get("access_token")
                    .and_then(Value::as_str)
                    .context("the token answer has no access_token")?;
                print_line(token)
            }
        }
        AdminCommand::Integrators(cmd) => match cmd {
            IntegratorsCommand::Create(body) => {
                created(json, client.post("/v1/integrators", &body).await?)
            }
            IntegratorsCommand::List => list(&client, "/v1/integrators").await,
            IntegratorsCommand::Get { id } => get(&client, "/v1/integrators", &id).await,
        },
        AdminCommand::Customers(cmd) => match cmd {
            CustomersCommand::Create(body) => {
                created(json, client.post("/v1/customers", &body).await?)
            }
            CustomersCommand::List => list(&client, "/v1/customers").await,
            CustomersCommand::Get { id } => get(&client, "/v1/customers", &id).await,
            CustomersCommand::Suspend { id } => {
                customer_action(&client, json, &id, "suspend").await
            }
            CustomersCommand::Resume { id } => customer_action(&client, json, &id, "resume").await,
            CustomersCommand::Offboard { id } => {
                customer_action(&client, json, &id, "offboard").await
            }
        },
        AdminCommand::Projects(cmd) => match cmd {
            ProjectsCommand::Create(body) => {
                created(json, client.post("/v1/projects", &body).await?)
            }
            ProjectsCommand::List => list(&client, "/v1/projects").await,
            ProjectsCommand::Get { id } => get(&client, "/v1/projects", &id).await,
        },
        AdminCommand::Users(cmd) => match cmd {
            UsersCommand::Create(body) => created(json, client.post("/v1/users", &body).await?),
            UsersCommand::List => list(&client, "/v1/users").await,
        },
        AdminCommand::Devices(cmd) => match cmd {
            DevicesCommand::Import(args) => import_devices(&client, &args).await,
            DevicesCommand::List { project } => {
                let path = format!("/v1/projects/{}/devices", path_segment(&project)?);
                list(&client, &path).await
            }
            DevicesCommand::Get { id } => get(&client, "/v1/devices", &id).await,
        },
    }
}

/// The header and the non-empty data lines of a device CSV.
fn csv_lines(text: &str) -> anyhow::Result<(&str, Vec<&str>)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("the CSV is empty (no header row)")?;
    Ok((header, lines.collect()))
}

/// `devices import`: the CSV in batches to the bulk endpoint, a progress bar on a terminal, every
/// credential to the --out file, a summary line; an error if any row was refused.
async fn import_devices(client: &Client, args: &ImportDevices) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {} as UTF-8 text", args.file.display()))?;
    let (header, rows) = csv_lines(&text)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".credentials.json");
        PathBuf::from(name)
    });
    let path = format!("/v1/projects/{}/devices:bulk", path_segment(&args.project)?);
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(rows.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rows  {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut created, mut exists) = (0u64, 0u64);
    let mut errors: Vec<Value> = Vec::new();
    let mut devices: Vec<Value> = Vec::new();
    let (mut ca_pem, mut mqtt_endpoint) = (Value::Null, Value::Null);
    let mut failure = None;
    let mut offset = 0usize;
    for chunk in rows.chunks(args.batch as usize) {
        let mut csv = String::with_capacity(
            header.len() + chunk.iter().map(|l| l.len() + 1).sum::<usize>() + 1,
        );
        csv.push_str(header);
        csv.push('\n');
        for line in chunk {
            csv.push_str(line);
            csv.push('\n');
        }
        let answer = match client.post_csv(&path, csv).await {
            Ok(a) => a,
            Err(e) => {
                failure = Some(e.context(format!(
                    "the batch of rows {}..={} failed",
                    offset + 1,
                    offset + chunk.len()
                )));
                break;
            }
        };
        if ca_pem.is_null() {
            ca_pem = answer.get("ca_pem").cloned().unwrap_or(Value::Null);
        }
        if mqtt_endpoint.is_null() {
            mqtt_endpoint = answer.get("mqtt_endpoint").cloned().unwrap_or(Value::Null);
        }
        let results = answer
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for mut r in results {
            // Rows of the file, not of the batch.
            let row = r.get("row").and_then(Value::as_u64).unwrap_or(0) + offset as u64;
            r["row"] = Value::from(row);
            match r.get("status").and_then(Value::as_str) {
                Some("created") => {
                    created += 1;
                    let mut d = serde_json::json!({"row": row, "serial_no": r["serial_no"],
                        "device_id": r["device_id"]});
                    if let Some(Value::Object(c)) = r.get("credentials") {
                        for (k, v) in c {
                            d[k] = v.clone();
                        }
                    }
                    devices.push(d);
                }
                Some("exists") => exists += 1,
                _ => errors.push(r),
            }
        }
        offset += chunk.len();
        bar.inc(chunk.len() as u64);
        bar.set_message(format!(
            "created {created}, exists {exists}, errors {}",
            errors.len()
        ));
    }
    bar.finish_and_clear();
    let file = serde_json::json!({"project_id": args.project, "ca_pem": ca_pem,
        "mqtt_endpoint": mqtt_endpoint, "devices": devices});
    smartsite_shared::fsutil::write_private(&out, &serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("cannot write the credentials to {}", out.display()))?;
    for e in &errors {
        let why = &e["error"];
        let mut msg = why["title"].as_str().unwrap_or("error").to_owned();
        if let Some(d) = why["detail"].as_str() {
            msg.push_str(": ");
            msg.push_str(d);
        }
        if let Some(f) = why["field"].as_str() {
            msg.push_str(&format!(" [field: {f}]"));
        }
        eprintln!(
            "row {} ({}): {msg}",
            e["row"],
            e["serial_no"].as_str().unwrap_or("")
        );
    }
    print_line(&format!(
        "created {created}, exists {exists}, errors {}",
        errors.len()
    ))?;
    if created > 0 {
        eprintln!(
            "credentials of {created} new devices written to {}",
            out.display()
        );
    }
    if let Some(f) = failure {
        return Err(f);
    }
    if !errors.is_empty() {
        bail!("{} rows were refused", errors.len());
    }
    Ok(())
}

async fn list(client: &Client, path: &str) -> anyhow::Result<()> {
    print_json(&Value::Array(client.list_all(path).await?))
}

async fn get(client: &Client, collection: &str, id: &str) -> anyhow::Result<()> {
    let path = format!("{collection}/{}", path_segment(id)?);
    print_json(&client.get(&path, &[]).await?)
}

async fn customer_action(client: &Client, json: bool, id: &str, verb: &str) -> anyhow::Result<()> {
    let path = format!("/v1/customers/{}/{verb}", path_segment(id)?);
    let answer = client.post(&path, &serde_json::json!({})).await?;
    if json {
        return print_json(&answer);
    }
    // Offboarding answers the export `{customer, …}`; suspend and resume the customer itself.
    let customer = answer.get("customer").unwrap_or(&answer);
    print_line(customer.get("id").and_then(Value::as_str).unwrap_or(id))
}

/// Prints the new resource's id, or the whole answer with --json.
fn created(json: bool, answer: Value) -> anyhow::Result<()> {
    if json {
        return print_json(&answer);
    }
    let id = answer
        .get("id")
        .and_then(Value::as_str)
        .context("the API's answer has no id")?;
    print_line(id)
}

/// Ids are slugs; anything that would change the path is refused rather than escaped.
fn path_segment(id: &str) -> anyhow::Result<&str> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("{id:?} is not an id (letters, digits, '-' and '_' only)");
    }
    Ok(id)
}

fn base_from_endpoints(file: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).with_context(|| {
        format!(
            "cannot read {} (is `smartsite serve` running on that data dir?)",
            file.display()
        )
    })?;
    let endpoints: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", file.display()))?;
    let http = endpoints
        .get("http")
        .and_then(Value::as_str)
        .with_context(|| format!("{} has no \"http\" address", file.display()))?;
    Ok(format!("http://{http}"))
}

/// One line from stdin, without its line ending; prompts on stderr when stdin is a terminal.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("no password: pass --password, set SMARTSITE_PASSWORD, or give it on stdin");
    }
    Ok(password.to_owned())
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    print_line(&serde_json::to_string_pretty(v)?)
}

/// Writes one line to stdout; a closed pipe is an error rather than a panic.
fn print_line(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser as _;

    use super::*;

    #[test]
    fn problem_display_names_title_status_detail_and_field() {
        let body = br#"{"type":"https://smartsite.dev/problems/validation","title":"Invalid request field","status":422,"detail":"bad check digit","field":"uscc"}"#;
        let e = ApiError::from_body(reqwest::StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(
            e.to_string(),
            "Invalid request field (422): bad check digit [field: uscc]"
        );
        let e = ApiError::from_body(reqwest::StatusCode::BAD_GATEWAY, b"<html>oops</html>");
        assert_eq!(e.to_string(), "Bad Gateway (502): <html>oops</html>");
    }

    #[test]
    fn create_arguments_become_the_request_body() {
        let cli = crate::Cli::try_parse_from([
            "smartsite",
            "admin",
            "projects",
            "create",
            "--name",
            "P",
            "--contractor-customer-id",
            "cus-1",
            "--region-code",
            "220102",
            "--project-type",
            "urban_rail",
            "--contract-value-fen",
            "12000000000",
            "--contract-signed-date",
            "2026-03-01",
            "--json",
        ])
        .unwrap();
        let crate::Command::Admin(a) = cli.command else {
            panic!("not admin")
        };
        assert!(a.json);
        let AdminCommand::Projects(ProjectsCommand::Create(p)) = a.command else {
            panic!("not projects create")
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"name": "P", "contractor_customer_id": "cus-1",
                "region_code": "220102", "project_type": "urban_rail",
                "contract_value_fen": 12000000000i64, "contract_signed_date": "2026-03-01"})
        );
    }

    #[test]
    fn unknown_enum_values_are_refused_with_the_choices() {
        let err = crate::Cli::try_parse_from([
            "smartsite",
            "admin",
            "users",
            "create",
            "--username",
            "u",
            "--password",
            "p",
            "--roles",
            "integrator_admin,boss",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("boss") && err.contains("integrator_ops"),
            "{err}"
        );
    }
}
