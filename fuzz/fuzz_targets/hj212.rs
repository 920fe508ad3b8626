//! HJ 212 over TCP, as the listener (cli/src/hj212.rs) handles it: the stream cut into frames by
//! the splitter, fed in two reads; each frame's envelope and data segment decoded, classified,
//! mapped to telemetry with its time, and answered; what the splitter rejects gets its MN
//! sniffed for the quarantine record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartsite_shared::domain::hj212::{self, Kind, Splitter};

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut splitter = Splitter::new();
    for part in [&data[..cut], &data[cut..]] {
        splitter.extend(part);
        while let Some(item) = splitter.next_item() {
            match item {
                Ok(raw) => {
                    let Ok(frame) = hj212::decode(&raw) else {
                        let _ = hj212::sniff_mn(raw.segment());
                        continue;
                    };
                    if let Ok(Kind::Data) = hj212::classify(&frame) {
                        let _ = hj212::telemetry(&frame);
                    }
                    let _ = hj212::observed_at(&frame);
                    let reply = hj212::data_ack(&frame);
                    // The answer is a frame the splitter takes back whole.
                    let mut back = Splitter::new();
                    back.extend(&reply);
                    assert!(matches!(back.next_item(), Some(Ok(_))), "{reply:?}");
                }
                Err(rejected) => {
                    let _ = hj212::sniff_mn(&rejected.raw);
                }
            }
        }
        // The buffer holds at most about one frame after the items are taken.
        assert!(splitter.pending() <= 64 * 1024, "{}", splitter.pending());
    }
    let _ = splitter.finish();
    let _ = hj212::parse_segment(data);
});
