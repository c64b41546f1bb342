//! Taproot envelopes on the embedded chain: a commit/reveal pair whose reveal spends the
//! `<key> OP_CHECKSIG OP_FALSE OP_IF "pbt" … OP_ENDIF` leaf by script path is accepted, mined
//! and read back; tampered reveals are refused by the script interpreter.

use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{Message, SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{Amount, Witness};
use parabit_bitcoin::envelope::{
    envelope_script, envelope_spend_info, unverified_envelopes_in, verified_envelopes,
    verified_envelopes_in_block, ENVELOPE_TAG,
};
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
    let found = verified_envelopes_in_block(&block, |_| None);
    assert_eq!(found.len(), 1);
    let (t, input, env) = &found[0];
    assert_eq!((*t, *input), (2, 0));
    // Without the commit's output the reveal proves nothing.
    assert!(verified_envelopes(&block.txdata[2], |_| None).is_empty());
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

#[test]
fn envelope_shaped_witness_without_taproot_is_not_authenticated() {
    use parabit_bitcoin::bitcoin::absolute::LockTime;
    use parabit_bitcoin::bitcoin::transaction::Version;
    use parabit_bitcoin::bitcoin::{
        OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, WitnessProgram, WitnessVersion,
    };

    let chain = RegtestChain::in_memory();
    let attacker = wallet(6);
    fund(&chain, &attacker);
    let seq = sequencer();
    // An output to a future witness version: consensus does not check how it is spent.
    let program = WitnessProgram::new(WitnessVersion::V2, &[1u8; 32]).unwrap();
    let v2 = ScriptBuf::new_witness_program(&program);
    let out = TxOut {
        value: Amount::from_sat(10_000),
        script_pubkey: v2,
    };
    let f = attacker
        .build_payment(&utxos(&chain, &attacker), vec![out], rate(2))
        .unwrap();
    chain.send_raw_transaction(&f.tx).unwrap();
    chain.mine(1, attacker.script_pubkey()).unwrap();
    // Spend it with a witness that looks like a reveal by the sequencer, with no signature.
    let leaf = envelope_script(&seq.x_only_public_key().0, 1, b"forged batch").unwrap();
    let mut control = vec![0xc0];
    control.extend_from_slice(&seq.x_only_public_key().0.serialize());
    let forged = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: f.tx.compute_txid(),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[leaf.to_bytes(), control]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(9_000),
            script_pubkey: attacker.script_pubkey().clone(),
        }],
    };
    chain.send_raw_transaction(&forged).unwrap();
    let hash = chain.mine(1, attacker.script_pubkey()).unwrap()[0];
    let block = chain.block(&hash).unwrap();
    // The shape is there, with the sequencer's key...
    let shaped = unverified_envelopes_in(&block.txdata[1]);
    assert_eq!(shaped.len(), 1);
    assert_eq!(shaped[0].1.key, seq.x_only_public_key().0);
    // ...but nothing is authenticated, even knowing the spent output.
    let spent = f.tx.output[0].clone();
    assert!(verified_envelopes(&block.txdata[1], |_| Some(spent.clone())).is_empty());
    assert!(verified_envelopes_in_block(&block, |_| Some(spent.clone())).is_empty());
}
