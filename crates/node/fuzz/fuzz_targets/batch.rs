//! Batch decoding on arbitrary envelope data: must never panic; whatever decodes is a
//! consistent batch that re-encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parabit_node::batch::{Batch, BATCH_VERSION};

fuzz_target!(|data: &[u8]| {
    let version = data.first().copied().unwrap_or(BATCH_VERSION);
    for v in [BATCH_VERSION, version] {
        if let Ok(batch) = Batch::decode(v, data) {
            assert!(batch.check().is_ok());
            let again = batch.encode().expect("a decoded batch encodes");
            assert_eq!(Batch::decode(BATCH_VERSION, &again).as_ref(), Ok(&batch));
        }
    }
});
