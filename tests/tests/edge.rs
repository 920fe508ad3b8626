//! Black-box tests of the HTTP edge and sign-in against hostile clients (issue 13): throttled and
//! memory-bounded sign-in, the header timeout, the connection cap, the body limit, problem+json
//! for every error, the request timeout, and owner-only files in the data dir.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smartsite_tests::Server;
use smartsite_tests::world::Api;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

fn addr(server: &Server) -> String {
    server.endpoints["http"].as_str().unwrap().to_owned()
}

/// Resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

async fn sign_in(api: &Api, username: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/auth/token", api.base))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Reads until the peer closes; `true` if it closed within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], status);
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .starts_with("https://smartsite.dev/problems/")
    );
    p
}

#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_username_and_the_right_password_waits_too() {
    let (server, api, _admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let right = server.admin_password().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            sign_in(&api, "admin", "wrong-Password-1")
                .await
                .status()
                .as_u16(),
        );
    }
    // Five free failures, then blocked: 1 s, and doubling while it goes on.
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let res = sign_in(&api, "admin", &right).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    let p = problem(res, 429).await;
    assert!(p["detail"].as_str().unwrap().contains("try again"), "{p}");
    // An unknown username is throttled exactly like a known one (nothing to learn from it).
    let mut unknown = Vec::new();
    for _ in 0..8 {
        unknown.push(
            sign_in(&api, "nobody-here", "wrong-Password-1")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&unknown[..5], &[401; 5], "{unknown:?}");
    assert!(unknown[5..].contains(&429), "{unknown:?}");
    // Once the block has passed, the right password works again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = sign_in(&api, "admin", &right).await;
        match res.status().as_u16() {
            200 => break,
            429 => {
                let wait: u64 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(Instant::now() < deadline, "still locked after 60 s");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            s => panic!("unexpected {s}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_concurrent_failed_sign_ins_keeps_memory_bounded() {
    let (server, api, _admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let pid = server.pid();
    let before = rss_kib(pid);
    // 64 concurrent sign-ins under distinct usernames (so the username throttle does not stop
    // them early), three waves: each argon2id hash holds 19 MiB while it runs.
    let mut peak = before;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for wave in 0..3 {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let api = api.clone();
                tokio::spawn(async move {
                    sign_in(&api, &format!("flood-{wave}-{i}"), "wrong-Password-1")
                        .await
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let sampler = async {
            let mut peak = 0;
            for _ in 0..40 {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            peak
        };
        let (done, sampled) = tokio::join!(futures_join(tasks), sampler);
        peak = peak.max(sampled);
        for s in done {
            *statuses.entry(s).or_default() += 1;
        }
    }
    peak = peak.max(rss_kib(pid));
    // Every answer is a refusal: wrong password (401), the source throttled (429) or busy (503).
    assert!(
        statuses.keys().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    // At most one hash per core (four at most) runs at once, each reusing its memory: the peak
    // stays within a few hashes' worth above the start (it was +4 GB).
    let grew_mib = (peak.saturating_sub(before)) / 1024;
    assert!(
        grew_mib < 160,
        "RSS grew {grew_mib} MiB during the flood ({statuses:?})"
    );
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<u16>>) -> Vec<u16> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_after_the_header_timeout() {
    let temp = tempfile::tempdir().unwrap();
    let server =
        Server::spawn_in(bin(), temp.path(), &["--http-header-timeout-secs", "1"]).unwrap();
    let addr = addr(&server);
    // Opens and says nothing.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    // Sends a header one byte at a time, slower than the timeout allows for the whole.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                return slow;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        slow
    });
    assert!(
        closed_within(&mut idle, Duration::from_secs(15)).await,
        "an idle connection is closed"
    );
    let mut slow = trickle.await.unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(15)).await,
        "a byte-at-a-time header is closed"
    );
    // A normal request still works on a fresh connection.
    let res = reqwest::get(format!("{}/healthz", server.http()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::spawn_in(
        bin(),
        temp.path(),
        &[
            "--http-max-connections",
            "2",
            "--http-header-timeout-secs",
            "30",
        ],
    )
    .unwrap();
    let addr = addr(&server);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Give the server time to accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(&addr).await.unwrap();
    assert!(
        closed_within(&mut third, Duration::from_secs(10)).await,
        "the third connection is refused"
    );
    // The held ones are still served.
    let mut first = held.remove(0);
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    first.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn every_error_is_problem_json_the_body_limit_is_413_and_slow_bodies_time_out() {
    let temp = tempfile::tempdir().unwrap();
    let server =
        Server::spawn_in(bin(), temp.path(), &["--http-request-timeout-secs", "2"]).unwrap();
    let api = Api::new(&server.http());
    let token = api
        .login("admin", &server.admin_password().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.http());

    // 10 MB body: 413, problem+json, naming the limit.
    let big = vec![b' '; 10 * 1024 * 1024];
    let res = http
        .post(url("/v1/integrators"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let p = problem(res, 413).await;
    assert!(p["detail"].as_str().unwrap().contains("2097152"), "{p}");

    // Answers that axum gives below the handlers: method not allowed, a bad query string, a
    // body that is not JSON, an unknown route.
    let res = http
        .delete(url("/v1/integrators"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(res, 405).await;
    let res = http
        .get(url("/v1/projects?limit=many"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let p = problem(res, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("limit"), "{p}");
    let res = http
        .post(url("/v1/integrators"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(res, 400).await;
    // An unknown API path is a problem; any other path is the console's (its router decides).
    let res = http.get(url("/v1/nothing/here")).send().await.unwrap();
    problem(res, 404).await;
    let res = http.get(url("/nothing/here")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // A body that never finishes: the request times out as a problem, the server carries on.
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "POST /v1/integrators HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("application/problem+json"),
        "{answer}"
    );
    let res = reqwest::get(url("/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_secrets_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::spawn_in(bin(), &dir, &[]).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "data dir");
    for f in ["store.redb", "admin-password", "keys/jwt-es256.pk8"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // Nothing in the data dir is readable by group or others.
    for entry in walk(&dir) {
        let m = mode(&entry);
        assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.display());
    }
    drop(server);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
