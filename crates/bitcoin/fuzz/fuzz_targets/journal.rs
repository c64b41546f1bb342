//! The regtest chain's journal with arbitrary bytes after its magic: opening must never panic
//! and must give the same chain when opened again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parabit_bitcoin::regtest::JOURNAL_FILE;
use parabit_bitcoin::RegtestChain;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let mut bytes = b"PBRTJRN1".to_vec();
    bytes.extend_from_slice(data);
    if std::fs::write(dir.path().join(JOURNAL_FILE), &bytes).is_err() {
        return;
    }
    let first = RegtestChain::open(dir.path()).map(|c| c.stats());
    let second = RegtestChain::open(dir.path()).map(|c| c.stats());
    match (first, second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("reopening changed the outcome"),
    }
});
