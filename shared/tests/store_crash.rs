//! Crash safety of the embedded store: a child process writes and acknowledges items as fast as
//! it can (single puts and 2-item transactions from concurrent tasks, so group commit is in play)
//! and is killed with SIGKILL mid-stream. After reopening, every acknowledged write is present and
//! the store accepts new writes.
//!
//! The child is this same test binary, re-run with `SMARTSITE_CRASH_CHILD_DB` set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::embedded::EmbeddedStore;
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::{Condition, Item, Key, Store, TableDef, TxOp};

const CHILD_ENV: &str = "SMARTSITE_CRASH_CHILD_DB";
const TASKS: usize = 16;

fn key(task: usize, n: u64, part: &str) -> Key {
    let i = IntegratorId::parse("crash").unwrap();
    Key::new(
        keys::entity(&i, EntityKind::Test, &format!("t{task}")),
        format!("{}{part}", keys::seq_sk("W", n)),
    )
}

fn child(path: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(path, TableDef::main().unwrap()).unwrap();
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let payload = format!("task {task} write {n}");
                    if n % 2 == 0 {
                        let item = Item::new(key(task, n, "")).with("payload", payload);
                        store.put(item, Some(Condition::NotExists)).await.unwrap();
                    } else {
                        let ops = ["a", "b"]
                            .iter()
                            .map(|p| TxOp::Put {
                                item: Item::new(key(task, n, p)).with("payload", payload.clone()),
                                cond: Some(Condition::NotExists),
                            })
                            .collect();
                        store.transact(ops).await.unwrap();
                    }
                    // Acknowledged: the write returned Ok. Tell the parent.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {task} {n}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = dir.path().join("crash.redb");
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_writes_survive_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    let mut acked: Vec<(usize, u64)> = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ack") {
            continue;
        }
        let task = parts.next().unwrap().parse().unwrap();
        let n = parts.next().unwrap().parse().unwrap();
        acked.push((task, n));
        if acked.len() >= 3000 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    // SIGKILL while the writers are still running.
    proc.kill().unwrap();
    let status = proc.wait().unwrap();
    assert!(
        !status.success(),
        "the child must have been killed, not finished"
    );
    assert!(
        acked.len() >= 500,
        "the child acknowledged only {} writes",
        acked.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(&db, TableDef::main().unwrap())
            .expect("store reopens after SIGKILL");
        for &(task, n) in &acked {
            let parts: &[&str] = if n % 2 == 0 { &[""] } else { &["a", "b"] };
            for p in parts {
                let item = store.get(&key(task, n, p)).await.unwrap();
                let item =
                    item.unwrap_or_else(|| panic!("acknowledged write task {task} #{n}{p} lost"));
                assert_eq!(
                    item.s("payload"),
                    Some(format!("task {task} write {n}").as_str())
                );
            }
        }
        // Still writable, and a transaction's halves are never split.
        store
            .put(Item::new(key(999, 0, "")), Some(Condition::NotExists))
            .await
            .unwrap();
        for task in 0..TASKS {
            let page = store
                .query(smartsite_shared::store::Query::partition(
                    &key(task, 0, "").pk,
                ))
                .await
                .unwrap();
            let tx_halves = page
                .items
                .iter()
                .filter(|i| i.key.sk.ends_with('a') || i.key.sk.ends_with('b'))
                .count();
            assert_eq!(tx_halves % 2, 0, "task {task}: a transaction was torn");
        }
    });
    eprintln!("{} acknowledged writes survived SIGKILL", acked.len());
}
