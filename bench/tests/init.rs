//! End-to-end: the Runtime API stub and the measurement on the `lambda-hello`
//! baseline, plus the error paths (early exit, timeout).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smartsite_bench::{InvocationOutcome, MeasureOptions, measure_once, summarize};

fn hello() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lambda-hello"))
}

fn assert_reaped(pid: u32) {
    assert!(pid > 0);
    // Reaped (not a zombie): the /proc entry is gone.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still present"
    );
}

#[tokio::test]
async fn measures_hello_init_three_times_and_reaps_the_child() {
    let opts = MeasureOptions::default();
    let mut inits = Vec::new();
    for _ in 0..3 {
        let s = measure_once(hello(), &opts).await.unwrap();
        let ms = s.init.as_secs_f64() * 1e3;
        assert!(ms.is_finite() && ms > 0.0, "init {ms} ms");
        assert!(s.init < opts.timeout);
        assert!(s.first_invocation.is_none());
        assert_eq!(s.exit_status.signal(), Some(9), "{:?}", s.exit_status);
        assert_reaped(s.pid);
        inits.push(s.init);
    }
    let summary = summarize(&inits).unwrap();
    assert_eq!(summary.runs, 3);
    assert!(summary.min <= summary.median && summary.median <= summary.max);
}

#[tokio::test]
async fn answers_one_event_and_times_the_response() {
    let opts = MeasureOptions {
        event: Some(Arc::from(&br#"{"hello":"world"}"#[..])),
        ..MeasureOptions::default()
    };
    let s = measure_once(hello(), &opts).await.unwrap();
    let (first, outcome) = s.first_invocation.unwrap();
    assert_eq!(outcome, InvocationOutcome::Response);
    assert!(first > s.init);
    assert_reaped(s.pid);
}

#[tokio::test]
async fn early_exit_is_an_error_naming_the_binary_with_its_stderr() {
    let opts = MeasureOptions {
        args: vec!["-c".into(), "echo boom-on-stderr >&2; exit 3".into()],
        ..MeasureOptions::default()
    };
    let err = measure_once(Path::new("/bin/sh"), &opts)
        .await
        .expect_err("must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("/bin/sh"), "{msg}");
    assert!(msg.contains("boom-on-stderr"), "{msg}");
    assert!(msg.contains("exited"), "{msg}");
}

#[tokio::test]
async fn timeout_is_an_error_and_the_child_is_killed() {
    let opts = MeasureOptions {
        args: vec!["-c".into(), "echo waiting >&2; exec sleep 30".into()],
        timeout: Duration::from_millis(300),
        ..MeasureOptions::default()
    };
    let started = std::time::Instant::now();
    let err = measure_once(Path::new("/bin/sh"), &opts)
        .await
        .expect_err("must time out");
    assert!(started.elapsed() < Duration::from_secs(5));
    let msg = format!("{err:#}");
    assert!(msg.contains("timed out"), "{msg}");
    assert!(msg.contains("/bin/sh"), "{msg}");
    assert!(msg.contains("waiting"), "{msg}");
}
