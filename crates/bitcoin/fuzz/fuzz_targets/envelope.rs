//! Envelope decoding on arbitrary input: as a leaf script, as a witness, and inside an arbitrary
//! transaction. Must never panic; whatever parses re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parabit_bitcoin::bitcoin::consensus::encode::deserialize;
use parabit_bitcoin::bitcoin::{Script, Transaction, Witness};
use parabit_bitcoin::envelope::{
    envelope_from_witness, envelope_script, parse_envelope_script, unverified_envelopes_in,
    verified_envelopes,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = parse_envelope_script(Script::from_bytes(data)) {
        let again =
            envelope_script(&e.key, e.version, &e.data).expect("parsed envelopes re-encode");
        assert_eq!(again.as_bytes(), data);
    }
    let split = data.len() / 2;
    let w = Witness::from_slice(&[&data[..split], &data[split..]]);
    let _ = envelope_from_witness(&w);
    if let Ok(tx) = deserialize::<Transaction>(data) {
        let _ = unverified_envelopes_in(&tx);
        let _ = verified_envelopes(&tx, |_| None);
    }
});
