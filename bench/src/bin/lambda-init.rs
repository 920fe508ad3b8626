//! `lambda-init`: cold-init time of Lambda bootstrap binaries against a local
//! Runtime API stub, from process spawn to the first
//! `GET /2018-06-01/runtime/invocation/next`.
//!
//! ```text
//! lambda-init --runs 20 [--env KEY=VALUE ...] [--event FILE] BIN [BIN ...]
//! ```
//!
//! Binaries are interleaved within each run (and the starting binary rotates
//! from run to run) so they all see the same machine conditions. Prints a
//! markdown table ready for BENCHMARKS.md.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use smartsite_bench::{
    InvocationOutcome, MeasureOptions, NEXT_PATH, Row, machine_facts, markdown_table, measure_once,
    summarize,
};

#[derive(Debug, Parser)]
#[command(
    name = "lambda-init",
    about = "Measure Lambda cold init (spawn → first /runtime/invocation/next) against a local Runtime API stub"
)]
struct Args {
    /// Measured runs per binary.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Unmeasured runs per binary before the measured ones (e.g. to warm the page cache).
    #[arg(long, default_value_t = 0)]
    warmup: u32,
    /// Extra environment variable for the binaries (repeatable); overrides the defaults.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Per-run timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Also answer the first /next with this JSON event and time the function's
    /// result (a second table).
    #[arg(long, value_name = "FILE")]
    event: Option<PathBuf>,
    /// Lambda bootstrap binaries to measure.
    #[arg(required = true, value_name = "BIN")]
    bins: Vec<PathBuf>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();

    for bin in &args.bins {
        let meta = std::fs::metadata(bin).with_context(|| format!("{}", bin.display()))?;
        if !meta.is_file() {
            bail!("{} is not a file", bin.display());
        }
    }
    let event = match &args.event {
        Some(path) => {
            let body = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            serde_json::from_slice::<serde_json::Value>(&body)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            Some(Arc::<[u8]>::from(body))
        }
        None => None,
    };
    let opts = MeasureOptions {
        extra_env: args.env.clone(),
        args: Vec::new(),
        timeout: Duration::from_secs(args.timeout_secs),
        event,
    };

    let n = args.bins.len();
    let mut init: Vec<Vec<Duration>> = vec![Vec::new(); n];
    let mut invoke: Vec<Vec<Duration>> = vec![Vec::new(); n];
    let mut invoke_errors = vec![0usize; n];
    let total = args.warmup + args.runs;
    for run in 0..total {
        eprint!("\rrun {}/{total}", run + 1);
        let _ = std::io::stderr().flush();
        for k in 0..n {
            let i = (run as usize + k) % n;
            let sample = measure_once(&args.bins[i], &opts)
                .await
                .inspect_err(|_| eprintln!())?;
            if run < args.warmup {
                continue;
            }
            init[i].push(sample.init);
            if let Some((d, outcome)) = sample.first_invocation {
                invoke[i].push(d);
                if outcome == InvocationOutcome::Error {
                    invoke_errors[i] += 1;
                }
            }
        }
    }
    eprintln!();

    let rows = |samples: &[Vec<Duration>]| -> Vec<Row> {
        args.bins
            .iter()
            .zip(samples)
            .filter_map(|(bin, s)| {
                Some(Row {
                    label: bin.display().to_string(),
                    size_bytes: std::fs::metadata(bin).ok().map(|m| m.len()),
                    summary: summarize(s)?,
                })
            })
            .collect()
    };

    println!(
        "Cold init: process spawn → first `GET {NEXT_PATH}` at a local Runtime API stub; \
         {} runs per binary, interleaved{}.\n",
        args.runs,
        if args.warmup > 0 {
            format!(", after {} unmeasured warm-up run(s)", args.warmup)
        } else {
            String::new()
        }
    );
    print!("{}", markdown_table(&rows(&init)));
    if opts.event.is_some() {
        println!(
            "\nFirst invocation: process spawn → the function's result \
             (`POST .../invocation/{{id}}/response` or `/error`) for one event.\n"
        );
        print!("{}", markdown_table(&rows(&invoke)));
        for (bin, errors) in args.bins.iter().zip(&invoke_errors) {
            if *errors > 0 {
                println!(
                    "\n`{}`: {errors} of {} first invocations were reported as errors.",
                    bin.display(),
                    args.runs
                );
            }
        }
    }
    if !args.env.is_empty() {
        let env: Vec<String> = args.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("\nExtra environment: `{}`.", env.join(" "));
    }
    println!("\n{}", machine_facts());
    Ok(())
}
