//! The bulk device CSV (`POST /v1/projects/{id}/devices:bulk`), parsed as the handler does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartsite_shared::domain::bulk_csv;

fuzz_target!(|data: &[u8]| {
    if let Ok(csv) = bulk_csv::parse(data, 5_000) {
        assert!(csv.rows.len() <= 5_000);
        for row in &csv.rows {
            if let Ok(body) = &row.body {
                // Only header columns become fields.
                assert!(body.keys().all(|k| csv.header.contains(k)));
            }
        }
    }
});
