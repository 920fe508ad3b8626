//! CPU per message of the ingest hot path, without I/O (BENCHMARKS.md, issue 6 item 7a):
//! decode + validate a device's JSON telemetry, evaluate its category's alarm rules, and parse an
//! HJ 212 frame into telemetry.
//!
//! `cargo bench -p smartsite-alarms --bench ingest`

use std::collections::BTreeMap;

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smartsite_alarms::domain::{self as alarms, Input, RuleState};
use smartsite_shared::domain::devices::Category;
use smartsite_shared::domain::hj212::{self, Splitter};
use smartsite_shared::domain::telemetry;

fn crane_payload() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ts": Utc::now().to_rfc3339(), "moment_pct": 72.5, "load_pct": 65.0, "load_t": 4.85,
        "radius_m": 31.2, "height_m": 42.0, "slew_deg": 118.0, "wind_ms": 4.2, "tilt_deg": 0.3,
        "mode": "operating"
    }))
    .unwrap_or_default()
}

fn dust_payload() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ts": Utc::now().to_rfc3339(), "pm10_ugm3": 86.0, "pm25_ugm3": 41.0, "tsp_ugm3": 140.0,
        "noise_dba": 61.5, "temp_c": 3.5, "rh_pct": 38.0, "wind_ms": 2.1, "wind_dir_deg": 270.0
    }))
    .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let now = Utc::now();
    let crane = crane_payload();
    let dust = dust_payload();
    let rules = alarms::effective(&alarms::default_rules(), &[]);
    let crane_rules: Vec<_> = rules
        .iter()
        .filter(|r| r.applies_to(Category::TowerCrane))
        .cloned()
        .collect();
    let config = BTreeMap::from([
        ("rated_load_t".to_owned(), 8.0),
        ("rated_moment_tm".to_owned(), 125.0),
    ]);

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode+validate tower_crane", |b| {
        b.iter(|| telemetry::decode_telemetry(Category::TowerCrane, &crane, now))
    });
    g.bench_function("decode+validate dust_noise", |b| {
        b.iter(|| telemetry::decode_telemetry(Category::DustNoise, &dust, now))
    });
    g.bench_function("decode+validate+rules tower_crane", |b| {
        let mut states = vec![RuleState::default(); crane_rules.len()];
        b.iter(|| {
            let Ok(reading) = telemetry::decode_telemetry(Category::TowerCrane, &crane, now) else {
                return 0;
            };
            let input = Input::Reading {
                reading: &reading,
                config: &config,
            };
            let mut n = 0;
            for (rule, state) in crane_rules.iter().zip(states.iter_mut()) {
                // A fresh state each time keeps every evaluation on the full path.
                *state = RuleState::default();
                n += alarms::evaluate(rule, state, &input, now).len();
            }
            n
        })
    });
    let t = chrono::FixedOffset::east_opt(8 * 3600)
        .map(|tz| {
            Utc::now()
                .with_timezone(&tz)
                .format("%Y%m%d%H%M%S")
                .to_string()
        })
        .unwrap_or_default();
    let frame = hj212::encode(&format!(
        "QN={t}123;ST=39;CN=2011;PW=123456;MN=0A1B2C3D4E5F60718293A4B5;Flag=5;CP=&&DataTime={t};a34002-Rtd=56.0,a34002-Flag=N;a34004-Rtd=31.5,a34004-Flag=N;a34001-Rtd=90.1,a34001-Flag=N;LA-Rtd=58.3,LA-Flag=N;a01007-Rtd=2.4,a01007-Flag=N&&"
    ));
    g.bench_function("hj212 frame → telemetry", |b| {
        b.iter(|| {
            let mut sp = Splitter::new();
            sp.extend(&frame);
            match sp.next_item() {
                Some(Ok(raw)) => hj212::decode(&raw)
                    .ok()
                    .and_then(|f| hj212::telemetry(&f).ok())
                    .map(|t| t.values.len()),
                _ => None,
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
