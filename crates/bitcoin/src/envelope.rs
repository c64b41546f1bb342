//! Taproot envelopes: the leaf script that carries Parabit data on Bitcoin, and the
//! commit/reveal transactions that publish it (one commit, one reveal per envelope).
//!
//! The leaf is `<key> OP_CHECKSIG OP_FALSE OP_IF "pbt" <version> <data pushes ≤ 520 B> OP_ENDIF`
//! (`DESIGN.md`). The commit transaction pays to the taproot output whose internal key is `key`
//! and whose script tree is that single leaf; the reveal spends it by script path, so the data
//! sits in the reveal's witness and the spend carries a Schnorr signature by `key` that
//! Bitcoin itself has checked.
//!
//! Invariants:
//! - [`parse_envelope_script`] accepts exactly what [`envelope_script`] produces (same key,
//!   version and data back) and nothing else: any other opcode, a non-32-byte key, a version
//!   that is not one byte, a push over 520 bytes, or bytes after `OP_ENDIF` is an error.
//! - Parsing never panics, whatever the bytes (property-tested).
//! - Only [`verified_envelopes`] authenticates: it requires the spent output to be P2TR and to
//!   commit to the leaf, so consensus has run the leaf's `OP_CHECKSIG`. An envelope-shaped
//!   witness elsewhere (e.g. spending a future witness version, which consensus leaves
//!   unchecked) proves nothing and is not returned.
//! - A built reveal pays exactly `fee_rate × vsize` (rounded up) of its signed self.
//! - Data larger than one envelope is published by [`build_commit_reveals`]: one commit with
//!   one envelope output per piece and one reveal per piece, each spending its own output
//!   (the caller splits and labels the pieces; for batches see `parabit-node`'s `batch`).

use std::collections::HashMap;

use bitcoin::absolute::LockTime;
use bitcoin::blockdata::opcodes::all::{OP_CHECKSIG, OP_ENDIF, OP_IF};
use bitcoin::blockdata::opcodes::OP_FALSE;
use bitcoin::blockdata::script::{Builder, Instruction, PushBytesBuf};
use bitcoin::hashes::Hash;
use bitcoin::key::Keypair;
use bitcoin::secp256k1::{Message, SECP256K1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{ControlBlock, LeafVersion, TapLeafHash, TaprootBuilder, TaprootSpendInfo};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, FeeRate, OutPoint, Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness, XOnlyPublicKey,
};

use crate::client::Utxo;
use crate::wallet::{fee_for, TaprootWallet, WalletError};

/// The envelope's protocol tag.
pub const ENVELOPE_TAG: &[u8; 3] = b"pbt";
/// Largest data push (Bitcoin's `MAX_SCRIPT_ELEMENT_SIZE`).
pub const MAX_PUSH: usize = 520;
/// Most data one envelope carries, keeping the reveal under the 400,000 WU standard limit.
pub const MAX_ENVELOPE_DATA: usize = 390_000;

/// The contents of an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The key whose signature the leaf requires (the sequencer's).
    pub key: XOnlyPublicKey,
    /// Format version of `data`.
    pub version: u8,
    /// The data, the pushes concatenated.
    pub data: Vec<u8>,
}

/// Envelope errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The script is not an envelope; says where it departs from the form.
    #[error("not a Parabit envelope: {0}")]
    Malformed(&'static str),
    /// Too much data for one envelope.
    #[error("envelope data of {0} bytes exceeds {MAX_ENVELOPE_DATA}")]
    TooLarge(usize),
    /// Funding the commit failed.
    #[error("funding the commit: {0}")]
    Wallet(#[from] WalletError),
    /// Signing the reveal failed.
    #[error("signing the reveal: {0}")]
    Sign(String),
}

/// The envelope leaf script for `key`, `version` and `data`.
pub fn envelope_script(
    key: &XOnlyPublicKey,
    version: u8,
    data: &[u8],
) -> Result<ScriptBuf, EnvelopeError> {
    if data.len() > MAX_ENVELOPE_DATA {
        return Err(EnvelopeError::TooLarge(data.len()));
    }
    let mut b = Builder::new()
        .push_x_only_key(key)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_FALSE)
        .push_opcode(OP_IF)
        .push_slice(ENVELOPE_TAG)
        .push_slice([version]);
    for chunk in data.chunks(MAX_PUSH) {
        let push = PushBytesBuf::try_from(chunk.to_vec())
            .map_err(|_| EnvelopeError::Malformed("chunk too large"))?;
        b = b.push_slice(push);
    }
    Ok(b.push_opcode(OP_ENDIF).into_script())
}

/// Reads an envelope leaf script.
pub fn parse_envelope_script(script: &Script) -> Result<Envelope, EnvelopeError> {
    use EnvelopeError::Malformed;
    let mut it = script.instructions();
    let mut next = || -> Result<Option<Instruction<'_>>, EnvelopeError> {
        it.next()
            .transpose()
            .map_err(|_| Malformed("unreadable push"))
    };
    let key = match next()? {
        Some(Instruction::PushBytes(p)) if p.len() == 32 => {
            XOnlyPublicKey::from_slice(p.as_bytes()).map_err(|_| Malformed("invalid key"))?
        }
        _ => return Err(Malformed("expected a 32-byte key")),
    };
    if next()? != Some(Instruction::Op(OP_CHECKSIG)) {
        return Err(Malformed("expected OP_CHECKSIG"));
    }
    match next()? {
        Some(Instruction::PushBytes(p)) if p.is_empty() => {}
        _ => return Err(Malformed("expected OP_FALSE")),
    }
    if next()? != Some(Instruction::Op(OP_IF)) {
        return Err(Malformed("expected OP_IF"));
    }
    match next()? {
        Some(Instruction::PushBytes(p)) if p.as_bytes() == ENVELOPE_TAG => {}
        _ => return Err(Malformed("expected the \"pbt\" tag")),
    }
    let version = match next()? {
        Some(Instruction::PushBytes(p)) if p.len() == 1 => p.as_bytes()[0],
        _ => return Err(Malformed("expected a one-byte version")),
    };
    let mut data = Vec::new();
    loop {
        match next()? {
            Some(Instruction::PushBytes(p)) => {
                if p.len() > MAX_PUSH {
                    return Err(Malformed("push over 520 bytes"));
                }
                data.extend_from_slice(p.as_bytes());
            }
            Some(Instruction::Op(op)) if op == OP_ENDIF => break,
            Some(Instruction::Op(_)) => return Err(Malformed("unexpected opcode in the data")),
            None => return Err(Malformed("missing OP_ENDIF")),
        }
    }
    if next()?.is_some() {
        return Err(Malformed("bytes after OP_ENDIF"));
    }
    // One encoding per envelope: pushes of exactly 520 bytes but the last, each with the
    // opcode `envelope_script` uses.
    if envelope_script(&key, version, &data)?.as_bytes() != script.as_bytes() {
        return Err(Malformed("non-canonical pushes"));
    }
    Ok(Envelope { key, version, data })
}

/// The envelope in a transaction input's witness, if that input is a tapscript spend of an
/// envelope leaf. `Ok(None)`: not a script-path spend at all.
pub fn envelope_from_witness(witness: &Witness) -> Result<Option<Envelope>, EnvelopeError> {
    let Some(leaf) = witness.taproot_leaf_script() else {
        return Ok(None);
    };
    if leaf.version != LeafVersion::TapScript {
        return Ok(None);
    }
    parse_envelope_script(leaf.script).map(Some)
}

/// Envelope-shaped witnesses in `tx`'s inputs, in input order, with the input index. **Not
/// proof of anything**: a witness only counts as a tapscript spend if the output it spends is
/// P2TR, which the transaction alone does not say. A spend of a future witness version (which
/// consensus leaves unchecked) can carry any envelope with any key and no signature. Use
/// [`verified_envelopes`] to read batches.
pub fn unverified_envelopes_in(tx: &Transaction) -> Vec<(usize, Envelope)> {
    tx.input
        .iter()
        .enumerate()
        .filter_map(|(i, input)| match envelope_from_witness(&input.witness) {
            Ok(Some(e)) => Some((i, e)),
            _ => None,
        })
        .collect()
}

/// The envelopes of `tx` that Bitcoin itself authenticated: the input spends a P2TR output
/// (found by `prevout`) whose output key commits, through the witness' control block, to the
/// envelope leaf. For a transaction in a valid block that means the leaf ran, so its
/// `OP_CHECKSIG` accepted a signature by `Envelope::key`. Inputs whose prevout is unknown or
/// not such an output are skipped.
pub fn verified_envelopes(
    tx: &Transaction,
    prevout: impl Fn(&OutPoint) -> Option<TxOut>,
) -> Vec<(usize, Envelope)> {
    let mut out = Vec::new();
    for (i, input) in tx.input.iter().enumerate() {
        let Ok(Some(envelope)) = envelope_from_witness(&input.witness) else {
            continue;
        };
        let Some(spent) = prevout(&input.previous_output) else {
            continue;
        };
        if !spent.script_pubkey.is_p2tr() {
            continue;
        }
        let Some(key_bytes) = spent.script_pubkey.as_bytes().get(2..34) else {
            continue;
        };
        let Ok(output_key) = XOnlyPublicKey::from_slice(key_bytes) else {
            continue;
        };
        let (Some(leaf), Some(control)) = (
            input.witness.taproot_leaf_script(),
            input.witness.taproot_control_block(),
        ) else {
            continue;
        };
        let Ok(control) = ControlBlock::decode(control) else {
            continue;
        };
        if control.verify_taproot_commitment(SECP256K1, output_key, leaf.script) {
            out.push((i, envelope));
        }
    }
    out
}

/// [`verified_envelopes`] for every transaction of `block`, in block order, as
/// `(tx index, input index, envelope)`. Prevouts are looked up among the block's own
/// transactions first (a commit confirmed with its reveal), then with `outside` (e.g. earlier
/// blocks the caller indexed, or `getrawtransaction`).
pub fn verified_envelopes_in_block(
    block: &Block,
    outside: impl Fn(&OutPoint) -> Option<TxOut>,
) -> Vec<(usize, usize, Envelope)> {
    let mut created: HashMap<OutPoint, TxOut> = HashMap::new();
    let mut out = Vec::new();
    for (t, tx) in block.txdata.iter().enumerate() {
        let found = verified_envelopes(tx, |op| created.get(op).cloned().or_else(|| outside(op)));
        out.extend(found.into_iter().map(|(i, e)| (t, i, e)));
        let txid = tx.compute_txid();
        for (vout, o) in tx.output.iter().enumerate() {
            if o.script_pubkey.is_p2tr() {
                created.insert(
                    OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    o.clone(),
                );
            }
        }
    }
    out
}

/// The taproot output committing to the envelope leaf: internal key `key`, one leaf.
pub fn envelope_spend_info(key: &XOnlyPublicKey, leaf: &ScriptBuf) -> TaprootSpendInfo {
    // A single leaf at depth 0 always finalizes.
    let builder = TaprootBuilder::new()
        .add_leaf(0, leaf.clone())
        .unwrap_or_else(|_| TaprootBuilder::new());
    match builder.finalize(SECP256K1, *key) {
        Ok(info) => info,
        Err(_) => TaprootSpendInfo::new_key_spend(SECP256K1, *key, None),
    }
}

/// A commit/reveal pair ready to broadcast (commit first).
#[derive(Clone, Debug)]
pub struct CommitReveal {
    /// Pays the envelope output (output 0), funded and signed by the wallet.
    pub commit: Transaction,
    /// Spends the envelope output by script path, paying `postage` back to the wallet.
    pub reveal: Transaction,
    /// The commit's fee.
    pub commit_fee: Amount,
    /// The reveal's fee.
    pub reveal_fee: Amount,
    /// The envelope leaf script.
    pub leaf: ScriptBuf,
    /// The wallet outputs the commit spends.
    pub spent: Vec<Utxo>,
}

impl CommitReveal {
    /// Virtual size of both transactions together.
    pub fn vsize(&self) -> usize {
        self.commit.vsize() + self.reveal.vsize()
    }
}

/// One commit and several reveals ready to broadcast (commit first, then the reveals in any
/// order): reveal `k` spends the commit's output `k` by script path and carries envelope `k`.
#[derive(Clone, Debug)]
pub struct CommitReveals {
    /// Pays one envelope output per reveal (outputs `0..n`), funded and signed by the wallet.
    pub commit: Transaction,
    /// Reveal `k` spends commit output `k`, paying `postage` back to the wallet (output 0).
    pub reveals: Vec<Transaction>,
    /// The commit's fee.
    pub commit_fee: Amount,
    /// Each reveal's fee.
    pub reveal_fees: Vec<Amount>,
    /// The envelope leaf scripts, one per reveal.
    pub leaves: Vec<ScriptBuf>,
    /// The wallet outputs the commit spends.
    pub spent: Vec<Utxo>,
}

impl CommitReveals {
    /// Virtual size of the commit and all reveals together.
    pub fn vsize(&self) -> usize {
        self.commit.vsize() + self.reveals.iter().map(Transaction::vsize).sum::<usize>()
    }

    /// Fees of the commit and all reveals together.
    pub fn fee(&self) -> Amount {
        self.reveal_fees.iter().fold(self.commit_fee, |a, f| {
            a.checked_add(*f).unwrap_or(Amount::MAX_MONEY)
        })
    }
}

/// Builds a commit/reveal pair publishing `data`: the commit (funded from `available`, plus all
/// of `must_spend`, by `wallet`) pays the envelope output; the reveal, signed by `signer` along
/// the leaf, returns the dust-limit postage to the wallet. Both pay `fee_rate`.
pub fn build_commit_reveal(
    wallet: &TaprootWallet,
    signer: &Keypair,
    must_spend: &[Utxo],
    available: &[Utxo],
    version: u8,
    data: &[u8],
    fee_rate: FeeRate,
) -> Result<CommitReveal, EnvelopeError> {
    let mut set = build_commit_reveals(
        wallet,
        signer,
        must_spend,
        available,
        version,
        &[data.to_vec()],
        fee_rate,
    )?;
    let (Some(reveal), Some(reveal_fee), Some(leaf)) =
        (set.reveals.pop(), set.reveal_fees.pop(), set.leaves.pop())
    else {
        return Err(EnvelopeError::Sign("no reveal built".into()));
    };
    Ok(CommitReveal {
        commit: set.commit,
        reveal,
        commit_fee: set.commit_fee,
        reveal_fee,
        leaf,
        spent: set.spent,
    })
}

/// Builds one commit and one reveal per entry of `datas` (at least one): the commit (funded
/// from `available`, plus all of `must_spend`, by `wallet`) pays envelope output `k` for
/// `datas[k]`; reveal `k`, signed by `signer` along its leaf, spends it and returns the
/// dust-limit postage to the wallet. Every transaction pays exactly `fee_rate` × its vsize
/// (rounded up).
pub fn build_commit_reveals(
    wallet: &TaprootWallet,
    signer: &Keypair,
    must_spend: &[Utxo],
    available: &[Utxo],
    version: u8,
    datas: &[Vec<u8>],
    fee_rate: FeeRate,
) -> Result<CommitReveals, EnvelopeError> {
    if datas.is_empty() {
        return Err(EnvelopeError::Malformed("no envelope data to publish"));
    }
    let key = signer.x_only_public_key().0;
    let postage = wallet.script_pubkey().minimal_non_dust();
    let postage_out = TxOut {
        value: postage,
        script_pubkey: wallet.script_pubkey().clone(),
    };
    let mut leaves = Vec::with_capacity(datas.len());
    let mut controls = Vec::with_capacity(datas.len());
    let mut reveals = Vec::with_capacity(datas.len());
    let mut reveal_fees = Vec::with_capacity(datas.len());
    let mut envelope_outs = Vec::with_capacity(datas.len());
    for data in datas {
        let leaf = envelope_script(&key, version, data)?;
        let info = envelope_spend_info(&key, &leaf);
        let control = info
            .control_block(&(leaf.clone(), LeafVersion::TapScript))
            .ok_or_else(|| EnvelopeError::Sign("no control block for the leaf".into()))?;
        // The reveal's size does not depend on the commit's txid or value: size it with a
        // placeholder signature, then fund the commit to cover it.
        let reveal = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::all_zeros(),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::from_slice(&[
                    vec![0u8; 64],
                    leaf.to_bytes(),
                    control.serialize(),
                ]),
            }],
            output: vec![postage_out.clone()],
        };
        let reveal_fee = fee_for(fee_rate, reveal.weight());
        let envelope_value = postage
            .checked_add(reveal_fee)
            .ok_or(WalletError::Overflow)?;
        envelope_outs.push(TxOut {
            value: envelope_value,
            script_pubkey: ScriptBuf::new_p2tr_tweaked(info.output_key()),
        });
        leaves.push(leaf);
        controls.push(control);
        reveals.push(reveal);
        reveal_fees.push(reveal_fee);
    }
    let funded = wallet.fund(must_spend, available, envelope_outs, fee_rate)?;
    let commit_txid = funded.tx.compute_txid();
    for (k, reveal) in reveals.iter_mut().enumerate() {
        let vout = u32::try_from(k).map_err(|_| EnvelopeError::Malformed("too many envelopes"))?;
        let (Some(prevout), Some(leaf), Some(control)) = (
            funded.tx.output.get(k).cloned(),
            leaves.get(k),
            controls.get(k),
        ) else {
            return Err(EnvelopeError::Sign(
                "the commit lacks an envelope output".into(),
            ));
        };
        if let Some(input) = reveal.input.first_mut() {
            input.previous_output = OutPoint {
                txid: commit_txid,
                vout,
            };
        }
        let leaf_hash = TapLeafHash::from_script(leaf, LeafVersion::TapScript);
        let sighash = SighashCache::new(&*reveal)
            .taproot_script_spend_signature_hash(
                0,
                &Prevouts::All(&[prevout]),
                leaf_hash,
                TapSighashType::Default,
            )
            .map_err(|e| EnvelopeError::Sign(e.to_string()))?;
        let sig = SECP256K1.sign_schnorr(&Message::from_digest(sighash.to_byte_array()), signer);
        if let Some(input) = reveal.input.first_mut() {
            input.witness =
                Witness::from_slice(&[sig.as_ref().to_vec(), leaf.to_bytes(), control.serialize()]);
        }
    }
    Ok(CommitReveals {
        commit: funded.tx,
        reveals,
        commit_fee: funded.fee,
        reveal_fees,
        leaves,
        spent: funded.spent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;
    use proptest::prelude::*;

    fn key() -> XOnlyPublicKey {
        let kp = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[3; 32]).unwrap());
        kp.x_only_public_key().0
    }

    #[test]
    fn layout_matches_design() {
        let s = envelope_script(&key(), 1, &[0xab; 600]).unwrap();
        let b = s.as_bytes();
        assert_eq!(b[0], 32);
        assert_eq!(b[33], 0xac); // OP_CHECKSIG
        assert_eq!(b[34], 0x00); // OP_FALSE
        assert_eq!(b[35], 0x63); // OP_IF
        assert_eq!(&b[36..40], &[3, b'p', b'b', b't']);
        assert_eq!(&b[40..42], &[1, 1]); // version push
        assert_eq!(&b[42..45], &[0x4d, 0x08, 0x02]); // OP_PUSHDATA2 520
        assert_eq!(*b.last().unwrap(), 0x68); // OP_ENDIF
        let e = parse_envelope_script(&s).unwrap();
        assert_eq!(
            e,
            Envelope {
                key: key(),
                version: 1,
                data: vec![0xab; 600]
            }
        );
    }

    #[test]
    fn empty_data_and_limits() {
        let s = envelope_script(&key(), 0, &[]).unwrap();
        assert_eq!(parse_envelope_script(&s).unwrap().data, Vec::<u8>::new());
        assert_eq!(
            envelope_script(&key(), 0, &vec![0; MAX_ENVELOPE_DATA + 1]),
            Err(EnvelopeError::TooLarge(MAX_ENVELOPE_DATA + 1))
        );
    }

    #[test]
    fn departures_are_named() {
        let good = envelope_script(&key(), 1, b"hello").unwrap();
        let mut trailing = good.to_bytes();
        trailing.push(0x51);
        assert_eq!(
            parse_envelope_script(Script::from_bytes(&trailing)),
            Err(EnvelopeError::Malformed("bytes after OP_ENDIF"))
        );
        let mut no_endif = good.to_bytes();
        no_endif.pop();
        assert_eq!(
            parse_envelope_script(Script::from_bytes(&no_endif)),
            Err(EnvelopeError::Malformed("missing OP_ENDIF"))
        );
        let mut wrong_tag = good.to_bytes();
        wrong_tag[39] = b'x';
        assert_eq!(
            parse_envelope_script(Script::from_bytes(&wrong_tag)),
            Err(EnvelopeError::Malformed("expected the \"pbt\" tag"))
        );
        let mut op_in_data = good.to_bytes();
        let n = op_in_data.len();
        op_in_data.insert(n - 1, 0x75); // OP_DROP before OP_ENDIF
        assert_eq!(
            parse_envelope_script(Script::from_bytes(&op_in_data)),
            Err(EnvelopeError::Malformed("unexpected opcode in the data"))
        );
        assert!(parse_envelope_script(Script::from_bytes(&[])).is_err());
        // The same data split differently is refused: one encoding per envelope.
        let split = Builder::new()
            .push_x_only_key(&key())
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_FALSE)
            .push_opcode(OP_IF)
            .push_slice(ENVELOPE_TAG)
            .push_slice([1u8])
            .push_slice(b"hel")
            .push_slice(b"lo")
            .push_opcode(OP_ENDIF)
            .into_script();
        assert_eq!(
            parse_envelope_script(&split),
            Err(EnvelopeError::Malformed("non-canonical pushes"))
        );
    }

    #[test]
    fn one_commit_funds_one_reveal_per_envelope_at_the_exact_fee() {
        let kp = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[4; 32]).unwrap());
        let wallet = TaprootWallet::from_keypair(kp);
        let coin = Utxo {
            outpoint: OutPoint {
                txid: Txid::all_zeros(),
                vout: 3,
            },
            txout: TxOut {
                value: Amount::from_sat(10_000_000),
                script_pubkey: wallet.script_pubkey().clone(),
            },
            confirmations: 6,
            coinbase: false,
        };
        let datas = vec![vec![1u8; 700], vec![2u8; 10], vec![3u8; 1500]];
        let rate = FeeRate::from_sat_per_vb_u32(3);
        let set = build_commit_reveals(
            &wallet,
            &kp,
            &[],
            std::slice::from_ref(&coin),
            2,
            &datas,
            rate,
        )
        .expect("built");
        let commit_txid = set.commit.compute_txid();
        assert_eq!(set.reveals.len(), 3);
        assert_eq!(set.commit.input[0].previous_output, coin.outpoint);
        let mut created = HashMap::new();
        for (k, o) in set.commit.output.iter().enumerate() {
            created.insert(
                OutPoint {
                    txid: commit_txid,
                    vout: k as u32,
                },
                o.clone(),
            );
        }
        for (k, reveal) in set.reveals.iter().enumerate() {
            let spent = OutPoint {
                txid: commit_txid,
                vout: k as u32,
            };
            assert_eq!(reveal.input[0].previous_output, spent);
            // The reveal pays exactly its fee out of its envelope output.
            let fee = created[&spent].value - reveal.output[0].value;
            assert_eq!(fee, set.reveal_fees[k]);
            assert_eq!(fee, fee_for(rate, reveal.weight()));
            let found = verified_envelopes(reveal, |op| created.get(op).cloned());
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].1.data, datas[k]);
            assert_eq!(found[0].1.version, 2);
        }
        let paid: Amount = set.commit.output.iter().map(|o| o.value).sum();
        assert_eq!(coin.txout.value - paid, set.commit_fee);
        assert_eq!(set.commit_fee, fee_for(rate, set.commit.weight()));
        assert_eq!(
            set.vsize(),
            set.commit.vsize() + set.reveals.iter().map(Transaction::vsize).sum::<usize>()
        );
        assert!(build_commit_reveals(&wallet, &kp, &[], &[coin], 2, &[], rate).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(version: u8, data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let s = envelope_script(&key(), version, &data).unwrap();
            let e = parse_envelope_script(&s).unwrap();
            prop_assert_eq!(e.version, version);
            prop_assert_eq!(e.data, data);
            prop_assert_eq!(e.key, key());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_envelope_script(Script::from_bytes(&bytes));
            let w = Witness::from_slice(&[bytes.clone(), bytes.clone(), vec![0xc0; 33]]);
            let _ = envelope_from_witness(&w);
        }

        #[test]
        fn mutated_envelopes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1200), pos: usize, byte: u8) {
            let mut s = envelope_script(&key(), 1, &data).unwrap().to_bytes();
            let i = pos % s.len();
            s[i] = byte;
            if let Ok(e) = parse_envelope_script(Script::from_bytes(&s)) {
                // Whatever still parses is canonical: it re-encodes to exactly these bytes.
                let again = envelope_script(&e.key, e.version, &e.data).unwrap();
                prop_assert_eq!(again.as_bytes(), &s[..]);
            }
        }
    }
}
