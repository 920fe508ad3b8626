//! The broker's read path (cli/src/broker/mod.rs): the protocol level sniffed from the first
//! bytes, then packets decoded one after another from the receive buffer, in the two reads the
//! first input byte splits them into. The codec is the broker's own source file.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../cli/src/broker/codec.rs"]
mod codec;

use codec::{Version, read, sniff_connect_level};

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut inb = BytesMut::new();
    let mut version = None;
    for part in [&data[..cut], &data[cut..]] {
        inb.extend_from_slice(part);
        if version.is_none() {
            version = match sniff_connect_level(&inb) {
                Some(Ok(4)) => Some(Version::V4),
                Some(Ok(5)) => Some(Version::V5),
                Some(_) => return, // refused: the broker closes the connection
                None => continue,
            };
        }
        let Some(v) = version else { continue };
        loop {
            let before = inb.len();
            match read(v, &mut inb) {
                Ok(Some(_)) => assert!(inb.len() < before, "a packet consumed no bytes"),
                Ok(None) => break,
                Err(_) => return, // malformed: the broker closes the connection
            }
        }
    }
});
