//! Taproot envelopes on the embedded chain: a commit/reveal pair whose reveal spends the
//! `<key> OP_CHECKSIG OP_FALSE OP_IF "pbt" … OP_ENDIF` leaf by script path is accepted, mined
//! and read back; tampered reveals are refused by the script interpreter.

use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{Message, SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{Amount, Witness};
use parabit_bitcoin::envelope::{envelope_spend_info, envelopes_in, ENVELOPE_TAG};
use parabit_bitcoin::regtest::TxError;
use parabit_bitcoin::{build_commit_reveal, RegtestChain, RegtestError};

use crate::{fund, rate, utxos, wallet};

fn sequencer() -> Keypair {
    Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[42; 32]).unwrap())
}

fn script_failure(r: Result<impl std::fmt::Debug, RegtestError>) {
    match r {
        Err(RegtestError::Tx(TxError::Script(e))) => assert_eq!(e.input, 0),
        other => panic!("expected a script failure, got {other:?}"),
    }
}

#[test]
fn commit_reveal_is_accepted_mined_and_read_back() {
    let chain = RegtestChain::in_memory();
    let batcher = wallet(5);
    fund(&chain, &batcher);
    let data: Vec<u8> = (0..5_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let seq = sequencer();
    let cr = build_commit_reveal(
        &batcher,
        &seq,
        &[],
        &utxos(&chain, &batcher),
        1,
        &data,
        rate(3),
    )
    .unwrap();
    // The commit output is the taproot output of the envelope leaf under the sequencer key.
    let info = envelope_spend_info(&seq.x_only_public_key().0, &cr.leaf);
    assert_eq!(
        cr.commit.output[0].script_pubkey,
        parabit_bitcoin::bitcoin::ScriptBuf::new_p2tr_tweaked(info.output_key())
    );
    assert_eq!(
        cr.reveal.input[0].previous_output.txid,
        cr.commit.compute_txid()
    );
    assert!(cr.leaf.as_bytes().windows(3).any(|w| w == ENVELOPE_TAG));

    // The reveal may not come before its commit.
    assert!(matches!(
        chain.send_raw_transaction(&cr.reveal),
        Err(RegtestError::Tx(TxError::MissingOrSpent(_)))
    ));
    chain.send_raw_transaction(&cr.commit).unwrap();
    chain.send_raw_transaction(&cr.reveal).unwrap();
    let hash = chain.mine(1, batcher.script_pubkey()).unwrap()[0];
    let block = chain.block(&hash).unwrap();
    assert_eq!(block.txdata.len(), 3);

    // Read back from the block, as a full node would.
    let found: Vec<_> = block.txdata.iter().flat_map(envelopes_in).collect();
    assert_eq!(found.len(), 1);
    let (input, env) = &found[0];
    assert_eq!(*input, 0);
    assert_eq!(env.key, seq.x_only_public_key().0);
    assert_eq!(env.version, 1);
    assert_eq!(env.data, data);
    // Fees: exactly 3 sat/vB on the reveal; the postage came back to the batcher.
    assert_eq!(
        cr.reveal_fee,
        Amount::from_sat(3 * cr.reveal.vsize() as u64)
    );
    assert!(utxos(&chain, &batcher)
        .iter()
        .any(|u| u.outpoint.txid == cr.reveal.compute_txid() && u.confirmations == 1));
    // A witness discount: 5,000 data bytes cost about 1,250 vB, not 5,000.
    assert!(cr.reveal.vsize() < 1_400, "{}", cr.reveal.vsize());
}

#[test]
fn tampered_reveals_are_refused() {
    let chain = RegtestChain::in_memory();
    let batcher = wallet(5);
    fund(&chain, &batcher);
    let seq = sequencer();
    let cr = build_commit_reveal(
        &batcher,
        &seq,
        &[],
        &utxos(&chain, &batcher),
        1,
        b"batch #1",
        rate(2),
    )
    .unwrap();
    chain.send_raw_transaction(&cr.commit).unwrap();
    let elements = cr.reveal.input[0].witness.to_vec();
    assert_eq!(elements.len(), 3);

    // Different data in the leaf: the control block no longer commits to it.
    let mut data_changed = cr.reveal.clone();
    let mut e = elements.clone();
    let n = e[1].len();
    e[1][n - 2] ^= 1;
    data_changed.input[0].witness = Witness::from_slice(&e);
    script_failure(chain.send_raw_transaction(&data_changed));

    // A flipped signature.
    let mut bad_sig = cr.reveal.clone();
    let mut e = elements.clone();
    e[0][0] ^= 1;
    bad_sig.input[0].witness = Witness::from_slice(&e);
    script_failure(chain.send_raw_transaction(&bad_sig));

    // A signature by another key over the right message.
    let mut wrong_key = cr.reveal.clone();
    let other = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[43; 32]).unwrap());
    let mut e = elements.clone();
    let msg = Message::from_digest([9; 32]);
    e[0] = SECP256K1.sign_schnorr(&msg, &other).as_ref().to_vec();
    wrong_key.input[0].witness = Witness::from_slice(&e);
    script_failure(chain.send_raw_transaction(&wrong_key));

    // A control block with a flipped bit of the internal key.
    let mut bad_control = cr.reveal.clone();
    let mut e = elements.clone();
    e[2][5] ^= 1;
    bad_control.input[0].witness = Witness::from_slice(&e);
    script_failure(chain.send_raw_transaction(&bad_control));

    // A different output after signing.
    let mut redirected = cr.reveal.clone();
    redirected.output[0].value -= Amount::from_sat(1);
    script_failure(chain.send_raw_transaction(&redirected));

    assert_eq!(chain.mempool().len(), 1);
    chain.send_raw_transaction(&cr.reveal).unwrap();
}
