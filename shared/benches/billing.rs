//! Rating usage into invoices (BENCHMARKS.md, "Billing"): N usage events over S subscriptions
//! (one month, 40 devices each, the event mix of the billing suite) are folded into per-
//! (subscription, period) aggregates — on every core, partial aggregates merged — and each
//! subscription is rated under its package (the three models in turn). Event generation is not
//! timed; folding, merging and rating are.
//!
//! `cargo bench -p smartsite-shared --bench billing -- [events] [subscriptions]`

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use smartsite_shared::domain::billing::{
    Aggregator, Metric, Model, Package, PausePolicy, Period, PriceLine, Tier, Timeline, Unit,
    UsageEvent, rate, total_fen,
};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn packages() -> Vec<Package> {
    let p = |model, prices| Package {
        id: format!("pkg-{model:?}").to_lowercase(),
        version: 1,
        name: format!("{model:?}"),
        model,
        prices,
        pause_on_suspend: PausePolicy::default(),
    };
    let mut overage = PriceLine::flat(Unit::MessageOveragePer1k, 50);
    overage.included = Some(100_000);
    let cat = |price, c: &str| PriceLine {
        category: Some(c.to_owned()),
        ..PriceLine::flat(Unit::DeviceDay, price)
    };
    vec![
        p(
            Model::FullSolution,
            vec![
                PriceLine::flat(Unit::ProjectMonth, 300_000),
                PriceLine::flat(Unit::OneOff, 1_200_000),
                overage,
            ],
        ),
        p(
            Model::TechService,
            vec![PriceLine {
                tiers: Some(vec![
                    Tier {
                        up_to: Some(3),
                        price_fen: 5_000,
                    },
                    Tier {
                        up_to: None,
                        price_fen: 4_000,
                    },
                ]),
                ..PriceLine::flat(Unit::DeviceMonth, 0)
            }],
        ),
        p(
            Model::Leasing,
            vec![
                cat(800, "tower_crane"),
                cat(300, "dust_noise"),
                PriceLine::flat(Unit::DeviceDay, 200),
            ],
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().map_or(Ok(10_000_000), |s| s.parse())?;
    let subs: usize = args.get(1).map_or(Ok(1_000), |s| s.parse())?;
    let m = Period::parse("2026-10")?;
    let cats = ["tower_crane", "dust_noise", "hoist", "camera"];
    let sub_ids: Vec<String> = (0..subs).map(|s| format!("sub-{s:08}")).collect();
    let devices: Vec<String> = (0..40).map(|d| format!("d{d}")).collect();
    let days = u64::from(m.days_in_month());
    let mut rng = Lcg(42);
    let t = Instant::now();
    let events: Vec<UsageEvent> = (0..n)
        .map(|k| {
            let s = (rng.next() % subs as u64) as usize;
            let d = (rng.next() % 40) as usize;
            let secs = rng.next() % (days * 86_400);
            let metric = match rng.next() % 100 {
                0..=89 => Metric::Messages,
                90..=94 => Metric::DeviceActive,
                95..=97 => Metric::DeviceBound,
                _ => Metric::DeviceUnbound,
            };
            UsageEvent {
                id: format!("e{k}"),
                subscription_id: sub_ids[s].clone(),
                metric,
                quantity: (rng.next() % 50) as i64,
                ts: m.start() + TimeDelta::seconds(secs as i64),
                device_id: Some(devices[d].clone()),
                category: Some(cats[d % 4].to_owned()),
            }
        })
        .collect();
    eprintln!("generated {n} events in {:.2?} (not timed)", t.elapsed());

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let parts: Vec<Aggregator> = std::thread::scope(|scope| {
        let handles: Vec<_> = events
            .chunks(n.div_ceil(threads).max(1))
            .map(|chunk| {
                scope.spawn(move || {
                    let mut agg = Aggregator::new();
                    for e in chunk {
                        // Generated events are valid; a refusal would be a bug worth seeing.
                        if let Err(err) = agg.add(e) {
                            eprintln!("refused {}: {err}", e.id);
                        }
                    }
                    agg
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let folded = started.elapsed();
    let mut all = Aggregator::new();
    for p in &parts {
        all.merge(p);
    }
    let merged = started.elapsed();
    let packages = packages();
    let mut invoices = 0usize;
    let mut lines = 0usize;
    let mut total = 0i64;
    for (k, s) in sub_ids.iter().enumerate() {
        let Some(usage) = all.get(s, m) else { continue };
        let package = &packages[k % 3];
        let l = rate(package, &Timeline::starting(m.first_day()), usage, m)?;
        invoices += 1;
        lines += l.len();
        total += total_fen(&l)?;
    }
    let rated = started.elapsed();
    println!(
        "{n} events, {subs} subscriptions, {threads} threads: fold {:.2?}, merge {:.2?}, rate {:.2?}; \
         total {:.2?} ({:.1} M events/s); {invoices} invoices, {lines} lines, {total} fen; {}",
        folded,
        merged - folded,
        rated - merged,
        rated,
        n as f64 / rated.as_secs_f64() / 1e6,
        Utc::now().to_rfc3339()
    );
    Ok(())
}
