//! Device messages as the ingest pipeline decodes them (shared/src/domain/telemetry.rs): the first
//! byte picks the device category and the topic (telemetry or events), the rest is the payload.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use smartsite_shared::domain::devices::Category;
use smartsite_shared::domain::telemetry::{self, HourlyAcc};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let category = Category::ALL[usize::from(pick) % Category::ALL.len()];
    let now = DateTime::<Utc>::from_timestamp(1_796_630_400, 0).unwrap_or_default();
    if pick & 0x80 == 0 {
        if let Ok(r) = telemetry::decode_telemetry(category, payload, now) {
            let mut acc = HourlyAcc::default();
            acc.add(&r);
            let _ = telemetry::hour_bucket(r.ts);
        }
    } else {
        let _ = telemetry::decode_event(category, payload, now);
    }
});
