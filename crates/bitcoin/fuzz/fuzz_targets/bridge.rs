//! The bridge's Bitcoin parsers on arbitrary input: a deposit marker as a script, a payout
//! marker in an arbitrary transaction, and the deposit scan of an arbitrary block. Must never
//! panic; a marker that parses re-encodes to the same output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parabit_bitcoin::bitcoin::consensus::encode::deserialize;
use parabit_bitcoin::bitcoin::{Amount, Block, Script, Transaction};
use parabit_bitcoin::bridge::{
    deposit_marker, parse_deposit_marker, parse_payout, payout_marker, scan_deposits,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(recipient) = parse_deposit_marker(Script::from_bytes(data)) {
        // Parsing accepts any push opcode; the marker we write is the minimal one.
        let _ = deposit_marker(recipient);
    }
    if let Ok(tx) = deserialize::<Transaction>(data) {
        if let Some(through) = parse_payout(&tx) {
            let again = payout_marker(through);
            assert_eq!(
                parse_payout(&Transaction {
                    output: vec![again],
                    ..tx.clone()
                }),
                Some(through)
            );
        }
    }
    if let Ok(block) = deserialize::<Block>(data) {
        let split = data.len().min(64);
        let bridge = Script::from_bytes(&data[..split]);
        let (found, skipped) = scan_deposits(&block, bridge, Amount::from_sat(10_000));
        assert!(found.len() + skipped.len() <= block.txdata.iter().map(|t| t.output.len()).sum());
    }
});
