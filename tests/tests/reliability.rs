//! The standing reliability suite's short version (issue 13): `smartsite serve` killed with
//! SIGKILL three times under QoS 1 load and a ledger writer; every acknowledged message and
//! every acknowledged expenditure must be found, one by one, and every ledger must verify.
//! The long version is the `kill9` bench command (20 rounds, BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use smartsite_tests::load::{KillRun, kill_run, summary_lines};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_three_kill_9_under_load() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let r = kill_run(&KillRun {
        bin: bin().to_owned(),
        rounds: 3,
        devices: 8,
        inflight: 32,
        // A few thousand messages in all, whatever the machine's speed.
        rate: Some(800.0),
        min_up: Duration::from_millis(1_000),
        max_up: Duration::from_millis(2_500),
        seed,
        env: vec![("RUST_LOG".into(), "error".into())],
    })
    .await
    .unwrap();
    eprintln!("{}", summary_lines(&r));
    assert!(
        r.missing.is_empty(),
        "acknowledged but lost: {:?}",
        r.missing
    );
    assert!(
        r.mismatched.is_empty(),
        "stored with other values: {:?}",
        r.mismatched
    );
    assert!(
        r.missing_expenditures.is_empty(),
        "expenditures answered 201 but not in the statement: {:?}",
        r.missing_expenditures
    );
    assert!(r.broken_ledgers.is_empty(), "{:?}", r.broken_ledgers);
    assert_eq!(r.ledgers_verified, 2, "both ledgers of the project");
    // The kills came under load: acknowledgements grew in every round, and some expenditures
    // were booked, so the identities above are a real sample.
    let mut before = 0;
    for (round, &acked) in r.acked_by_round.iter().enumerate() {
        assert!(
            acked > before,
            "no message acknowledged in round {}",
            round + 1
        );
        before = acked;
    }
    assert!(r.expenditures_acked > 0);
    assert_eq!(r.found, r.acked);
}
