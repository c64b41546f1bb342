//! Batch decoding on arbitrary bytes, as chunk envelope data, as compressed batch data and as
//! the compact encoding: must never panic; whatever decodes is a consistent batch that
//! re-encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parabit_node::batch::{Batch, BatchCodec, Chunk, BATCH_VERSION};
use parabit_primitives::Address;

fuzz_target!(|data: &[u8]| {
    // A small genesis dictionary so that references 1..=4 resolve.
    let codec = BatchCodec::new(7, (1u8..=4).map(|i| Address([i; 32])));
    let version = data.first().copied().unwrap_or(BATCH_VERSION);
    for v in [BATCH_VERSION, version] {
        if let Ok(chunk) = Chunk::from_envelope(v, data) {
            if let Ok(batch) = Batch::from_chunks(&codec, &[chunk]) {
                assert!(batch.check().is_ok());
            }
        }
    }
    let decoded = [
        Batch::decode(&codec, data),
        Batch::from_compact(&codec, data),
    ];
    for batch in decoded.into_iter().flatten().filter(|b| b.check().is_ok()) {
        let again = batch.encode(&codec).expect("a decoded batch encodes");
        assert_eq!(Batch::decode(&codec, &again).as_ref(), Ok(&batch));
    }
});
