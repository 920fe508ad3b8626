//! Black-box tests of `smartsite admin`: an operator onboards an integrator, its admin, customers
//! and a project from a terminal, against a running single-box edition.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use smartsite_tests::Server;

const ADMIN_PASSWORD: &str = "Platform-Admin-2026";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// `smartsite admin --url URL [--token T] ARGS…`, isolated from the caller's SMARTSITE_* settings,
/// with `stdin` fed to it.
fn admin_with_stdin(url: &str, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["admin", "--url", url]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let mut child = cmd
        .args(args)
        .env_remove("SMARTSITE_URL")
        .env_remove("SMARTSITE_TOKEN")
        .env_remove("SMARTSITE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn admin(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    admin_with_stdin(url, token, args, "")
}

/// Runs it, asserts success, and returns stdout without the final newline.
fn ok(url: &str, token: Option<&str>, args: &[&str]) -> String {
    let out = admin(url, token, args);
    assert!(
        out.status.success(),
        "smartsite admin {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

fn single_line(s: &str) {
    assert!(!s.is_empty() && !s.contains(char::is_whitespace), "{s:?}");
}

#[test]
fn an_operator_onboards_an_integrator_its_customers_and_a_project() {
    let server =
        Server::spawn_with_env(bin(), &[("SMARTSITE_ADMIN_PASSWORD", ADMIN_PASSWORD)]).unwrap();
    let url = server.http();
    let url = url.as_str();

    // The platform admin signs in; stdout is the token alone.
    let admin_token = ok(
        url,
        None,
        &["login", "--username", "admin", "--password", ADMIN_PASSWORD],
    );
    single_line(&admin_token);
    assert_eq!(admin_token.split('.').count(), 3, "a JWT: {admin_token}");
    let t = Some(admin_token.as_str());

    let integrator = ok(
        url,
        t,
        &[
            "integrators",
            "create",
            "--name",
            "中国电信吉林分公司",
            "--operator",
            "china_telecom",
            "--province-code",
            "220000",
        ],
    );
    single_line(&integrator);
    assert!(integrator.starts_with("int-"), "{integrator}");
    let got: serde_json::Value =
        serde_json::from_str(&ok(url, t, &["integrators", "get", &integrator])).unwrap();
    assert_eq!(got["operator"], "china_telecom");
    let all: serde_json::Value =
        serde_json::from_str(&ok(url, t, &["integrators", "list"])).unwrap();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == integrator.as_str()),
        "{all}"
    );

    // --json prints the full answer instead of the id.
    let user: serde_json::Value = serde_json::from_str(&ok(
        url,
        t,
        &[
            "--json",
            "users",
            "create",
            "--username",
            "ct-jilin-admin",
            "--password",
            "Jilin-Admin-2026",
            "--roles",
            "integrator_admin",
            "--integrator-id",
            &integrator,
        ],
    ))
    .unwrap();
    assert_eq!(user["integrator_id"], integrator.as_str());
    assert_eq!(user["roles"], serde_json::json!(["integrator_admin"]));

    // The integrator's admin signs in with the password on stdin.
    let out = admin_with_stdin(
        url,
        None,
        &["login", "--username", "ct-jilin-admin"],
        "Jilin-Admin-2026\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    single_line(&token);
    let t = Some(token.as_str());

    let enterprise = ok(
        url,
        t,
        &[
            "customers",
            "create",
            "--kind",
            "enterprise",
            "--name",
            "吉林建工集团",
            "--region-code",
            "220100",
            "--uscc",
            "91220101MA00000013",
        ],
    );
    single_line(&enterprise);
    let gov = ok(
        url,
        t,
        &[
            "customers",
            "create",
            "--kind",
            "gov_region",
            "--name",
            "长春市住房和城乡建设局",
            "--region-code",
            "220100",
        ],
    );
    single_line(&gov);
    assert_ne!(enterprise, gov);
    let got: serde_json::Value =
        serde_json::from_str(&ok(url, t, &["customers", "get", &gov])).unwrap();
    assert_eq!(got["kind"], "gov_region");

    let project = ok(
        url,
        t,
        &[
            "projects",
            "create",
            "--name",
            "长春市朝阳区某住宅项目",
            "--contractor-customer-id",
            &enterprise,
            "--region-code",
            "220102",
            "--project-type",
            "building",
            "--contract-value-fen",
            "12000000000",
            "--contract-signed-date",
            "2026-03-01",
            "--start-date",
            "2026-04-01",
            "--planned-end-date",
            "2027-10-31",
        ],
    );
    single_line(&project);
    let projects: serde_json::Value =
        serde_json::from_str(&ok(url, t, &["projects", "list"])).unwrap();
    let listed = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == project.as_str())
        .unwrap_or_else(|| panic!("{project} not in {projects}"));
    assert_eq!(listed["contractor_customer_id"], enterprise.as_str());
    assert_eq!(listed["contract_value_fen"], 12_000_000_000_i64);
    assert_eq!(listed["start_date"], "2026-04-01");
    let got: serde_json::Value =
        serde_json::from_str(&ok(url, t, &["projects", "get", &project])).unwrap();
    assert_eq!(got["id"], project.as_str());

    // State changes print the id; suspending twice is the API's conflict, reported as such.
    assert_eq!(ok(url, t, &["customers", "suspend", &gov]), gov);
    let out = admin(url, t, &["customers", "suspend", &gov]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Conflict (409)"), "{err}");
    assert_eq!(ok(url, t, &["customers", "resume", &gov]), gov);

    // A bad USCC: the API's validation problem, naming the field, and nothing on stdout.
    let out = admin(
        url,
        t,
        &[
            "customers",
            "create",
            "--kind",
            "enterprise",
            "--name",
            "某公司",
            "--region-code",
            "220100",
            "--uscc",
            "91220101MA00000014",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("smartsite: "), "{err}");
    assert!(
        err.contains("(422)") && err.contains("[field: uscc]"),
        "{err}"
    );

    // Wrong password: the API's 401, nothing on stdout (so `$(…)` captures no garbage).
    let out = admin(
        url,
        None,
        &[
            "login",
            "--username",
            "admin",
            "--password",
            "Not-The-Password-1",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(401)"), "{err}");
}

#[test]
fn commands_without_a_token_say_how_to_get_one() {
    // No server needed: the CLI refuses before sending anything.
    let out = admin("http://127.0.0.1:9", None, &["projects", "list"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token")
            && err.contains("SMARTSITE_TOKEN")
            && err.contains("smartsite admin login"),
        "{err}"
    );
}

#[test]
fn the_address_can_come_from_the_data_dirs_endpoints_file() {
    let server =
        Server::spawn_with_env(bin(), &[("SMARTSITE_ADMIN_PASSWORD", ADMIN_PASSWORD)]).unwrap();
    let endpoints = server.data_dir.join("endpoints.json");
    let out = Command::new(bin())
        .args(["admin", "--endpoints"])
        .arg(&endpoints)
        .args(["login", "--username", "admin"])
        .env_remove("SMARTSITE_URL")
        .env_remove("SMARTSITE_TOKEN")
        .env("SMARTSITE_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim_end();
    single_line(token);
    let out = Command::new(bin())
        .args(["admin", "--endpoints"])
        .arg(&endpoints)
        .args(["users", "list"])
        .env_remove("SMARTSITE_URL")
        .env("SMARTSITE_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "admin"),
        "{users}"
    );
}
