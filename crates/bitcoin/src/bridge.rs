//! The Bitcoin side of the BTC bridge: the bridge output, deposits into it and payouts
//! (withdrawals) out of it.
//!
//! **Bridge output.** Deposited BTC sits at one P2TR script per sequencer key: internal key =
//! the sequencer's x-only key, tweaked (BIP 341) with the fixed merkle root
//! [`bridge_merkle_root`] = BIP-340 `tagged_hash("parabit/bridge", "")`. It differs from the
//! batcher's own BIP-86 output of the same key (`TaprootWallet::new`), so the batcher's coin
//! selection never touches deposits. The root is the hash of no script: finding a leaf or branch
//! hashing to it would need a preimage of SHA-256 under another tag, so the output can only be
//! spent by key path, with the sequencer key tweaked by the same root ([`bridge_wallet`]).
//! Anyone can compute [`bridge_script`] from the sequencer's public key.
//!
//! **Deposit** (a user moves BTC to L2): a non-coinbase transaction with one or more outputs
//! paying the bridge script and exactly one `OP_RETURN` output, whose script is `OP_RETURN`
//! followed by one data push (any push opcode) of exactly 35 bytes: [`DEPOSIT_TAG`] (`"pbd"`)
//! ‖ the 32-byte L2 recipient, which must be a valid x-only secp256k1 key (a Parabit address).
//! Every bridge-paying output of value ≥ the minimum is one [`BitcoinDeposit`] of its value to
//! that recipient. [`build_deposit`] makes one: output 0 pays the bridge, output 1 is the
//! marker, then the wallet's change.
//!
//! **Payout** (the bridge pays L2 withdrawals on Bitcoin): a transaction signed by the bridge
//! wallet spending bridge outputs, whose outputs are, in order: one per withdrawal (its gross
//! amount minus its fee share), then optionally one change output to the bridge script, then
//! last an `OP_RETURN` with one 15-byte push: [`PAYOUT_TAG`] (`"pbw"`) ‖ `through_height`
//! (u64 big-endian) ‖ `through_index` (u32 big-endian), the L2 position (block height,
//! transaction index) of the last withdrawal it pays. The cursor orders payouts: a payout pays
//! the withdrawals after the previous payout's cursor up to and including its own.
//!
//! Invariants:
//! - [`scan_deposits`] never panics, whatever the block. It ignores coinbase transactions and
//!   the bridge's own payouts (transactions whose last output is a well-formed payout marker:
//!   their bridge outputs are payout change, which the bridge may spend). Every other output
//!   paying the bridge script is in exactly one of its two lists, in block order (transaction,
//!   then output), with its full value: credited as a [`BitcoinDeposit`], or reported as a
//!   [`SkippedDeposit`] with the reason (no marker, several `OP_RETURN` outputs, a malformed
//!   marker, a recipient that is not an x-only key, below the minimum). Skipped funds are never
//!   credited, and the bridge must never spend them.
//! - A payout spends all its inputs, which are all mature outputs of the bridge script (each
//!   once). Its network fee is `fee_for(rate, weight)` of the signed transaction (computed with
//!   placeholder 64-byte signatures, which have the signed size exactly), split into `n` equal
//!   shares rounded up (`ceil(fee / n)`), so `Σ shares ≥ fee` and the rounding surplus stays in
//!   the bridge's change. Each withdrawal receives `amount − share`, at least its script's dust
//!   limit. `Σ outputs + fee = Σ inputs` exactly. Change below the bridge script's dust limit
//!   is left out and goes to the fee; then [`Payout::fee`] is what is actually paid (at most a
//!   dust limit plus `n` sat more than the weight's fee) and the shares are those of the
//!   smaller transaction without change.
//! - [`parse_deposit_marker`] and [`parse_payout`] accept exactly the formats above and never
//!   panic; [`deposit_marker`] and [`payout_marker`] produce what they accept.

use std::collections::HashSet;

use bitcoin::blockdata::script::Instruction;
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::key::Keypair;
use bitcoin::secp256k1::SECP256K1;
use bitcoin::{
    Address, Amount, Block, FeeRate, Network, OutPoint, Script, ScriptBuf, TapNodeHash,
    Transaction, TxOut, XOnlyPublicKey,
};

use crate::client::Utxo;
use crate::wallet::{fee_for, Funded, TaprootWallet, WalletError};

/// Tag at the start of a deposit marker's data.
pub const DEPOSIT_TAG: &[u8; 3] = b"pbd";
/// Tag at the start of a payout marker's data.
pub const PAYOUT_TAG: &[u8; 3] = b"pbw";
/// Length of a deposit marker's data: tag ‖ 32-byte recipient.
pub const DEPOSIT_MARKER_LEN: usize = 35;
/// Length of a payout marker's data: tag ‖ u64 height ‖ u32 index.
pub const PAYOUT_MARKER_LEN: usize = 15;
/// Most withdrawals one payout pays.
pub const MAX_PAYOUT_OUTPUTS: usize = 250;
/// The BIP-340 tag whose hash of the empty message is the bridge's merkle root.
pub const BRIDGE_TAG: &str = "parabit/bridge";

/// Bridge errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// A deposit's recipient is not a valid x-only public key (it would never be credited).
    #[error("recipient {0} is not a valid x-only public key")]
    InvalidRecipient(String),
    /// A payout with nothing to pay.
    #[error("a payout needs at least one withdrawal")]
    NoRequests,
    /// More withdrawals than one payout may pay.
    #[error("{0} withdrawals exceed the {MAX_PAYOUT_OUTPUTS} one payout may pay")]
    TooManyRequests(usize),
    /// An input that is not an output of the bridge script.
    #[error("input {0} is not an output of the bridge script")]
    ForeignInput(OutPoint),
    /// An input that is an immature coinbase output.
    #[error("input {0} is an immature coinbase output")]
    ImmatureInput(OutPoint),
    /// The same output given twice.
    #[error("input {0} is given twice")]
    DuplicateInput(OutPoint),
    /// A withdrawal too small to pay its fee share and stay above its script's dust limit.
    #[error(
        "withdrawal {index} of {} sat cannot pay its fee share {} sat \
         (at least {} sat must remain)",
        amount.to_sat(),
        share.to_sat(),
        dust.to_sat()
    )]
    WithdrawalTooSmall {
        /// The withdrawal's index in the request list (from 0).
        index: usize,
        /// Its gross amount.
        amount: Amount,
        /// The fee share it would pay.
        share: Amount,
        /// The dust limit of its script.
        dust: Amount,
    },
    /// The inputs do not cover the withdrawals (net of their shares) and the fee.
    #[error(
        "bridge holds {} sat, payouts need {} sat",
        held.to_sat(),
        needed.to_sat()
    )]
    Insufficient {
        /// Sum of the inputs.
        held: Amount,
        /// The least the payout needs: withdrawals net of their shares, plus the fee.
        needed: Amount,
    },
    /// Amounts overflowed.
    #[error("amount overflow")]
    Overflow,
    /// Funding or signing failed.
    #[error("{0}")]
    Wallet(#[from] WalletError),
}

/// A deposit credited on L2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitcoinDeposit {
    /// The bridge output holding it.
    pub outpoint: OutPoint,
    /// The L2 recipient (an x-only public key).
    pub recipient: [u8; 32],
    /// The output's value.
    pub amount: Amount,
}

/// A bridge-paying output that is not credited, and why. Its funds are never credited and
/// never spent by the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedDeposit {
    /// The output.
    pub outpoint: OutPoint,
    /// Its value.
    pub amount: Amount,
    /// Why it is not a deposit.
    pub reason: String,
}

/// One withdrawal to pay on Bitcoin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutRequest {
    /// Where to pay.
    pub script_pubkey: ScriptBuf,
    /// The gross amount burned on L2; the output pays this minus its fee share.
    pub amount: Amount,
}

/// A signed payout transaction.
#[derive(Clone, Debug)]
pub struct Payout {
    /// The signed transaction.
    pub tx: Transaction,
    /// The fee it pays.
    pub fee: Amount,
    /// The fee share deducted from each withdrawal, in request order (all equal).
    pub shares: Vec<Amount>,
    /// The change output back to the bridge script: its vout and value.
    pub change: Option<(u32, Amount)>,
    /// The outputs it spends, in input order.
    pub spent: Vec<Utxo>,
}

/// BIP-340 tagged hash: `SHA256(SHA256(tag) ‖ SHA256(tag) ‖ msg)`.
fn tagged_hash(tag: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag_hash = sha256::Hash::hash(tag);
    let mut engine = sha256::Hash::engine();
    engine.input(tag_hash.as_byte_array());
    engine.input(tag_hash.as_byte_array());
    engine.input(msg);
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// The merkle root the bridge output's key is tweaked with: `tagged_hash("parabit/bridge", "")`.
pub fn bridge_merkle_root() -> TapNodeHash {
    TapNodeHash::from_byte_array(tagged_hash(BRIDGE_TAG.as_bytes(), &[]))
}

/// The bridge's P2TR script for the sequencer key `sequencer`.
pub fn bridge_script(sequencer: XOnlyPublicKey) -> ScriptBuf {
    ScriptBuf::new_p2tr(SECP256K1, sequencer, Some(bridge_merkle_root()))
}

/// The bridge's address on `network`.
pub fn bridge_address(sequencer: XOnlyPublicKey, network: Network) -> Address {
    Address::p2tr(SECP256K1, sequencer, Some(bridge_merkle_root()), network)
}

/// The wallet that spends the bridge's outputs (by key path), from the sequencer's keypair.
pub fn bridge_wallet(keypair: Keypair) -> TaprootWallet {
    TaprootWallet::with_merkle_root(keypair, Some(bridge_merkle_root()))
}

/// The deposit marker output for `recipient`: value 0, `OP_RETURN <"pbd" ‖ recipient>`.
pub fn deposit_marker(recipient: [u8; 32]) -> TxOut {
    let mut data = [0u8; DEPOSIT_MARKER_LEN];
    data[..3].copy_from_slice(DEPOSIT_TAG);
    data[3..].copy_from_slice(&recipient);
    TxOut {
        value: Amount::ZERO,
        script_pubkey: ScriptBuf::new_op_return(data),
    }
}

/// The payout marker output for the cursor `through` = (L2 height, transaction index):
/// value 0, `OP_RETURN <"pbw" ‖ height u64 BE ‖ index u32 BE>`.
pub fn payout_marker(through: (u64, u32)) -> TxOut {
    let mut data = [0u8; PAYOUT_MARKER_LEN];
    data[..3].copy_from_slice(PAYOUT_TAG);
    data[3..11].copy_from_slice(&through.0.to_be_bytes());
    data[11..].copy_from_slice(&through.1.to_be_bytes());
    TxOut {
        value: Amount::ZERO,
        script_pubkey: ScriptBuf::new_op_return(data),
    }
}

/// The data of `OP_RETURN <one push>`, or why `script` is not of that form.
fn op_return_data(script: &Script) -> Result<&[u8], String> {
    if !script.is_op_return() {
        return Err("not an OP_RETURN script".into());
    }
    let mut instructions = script.instructions();
    // The first instruction is the OP_RETURN itself.
    let _ = instructions.next();
    let data = match instructions.next() {
        None => return Err("OP_RETURN without data".into()),
        Some(Ok(Instruction::PushBytes(bytes))) => bytes.as_bytes(),
        Some(Ok(Instruction::Op(op))) => return Err(format!("{op} where a data push must be")),
        Some(Err(e)) => return Err(format!("unparsable script: {e}")),
    };
    if instructions.next().is_some() {
        return Err("more than one item after OP_RETURN".into());
    }
    Ok(data)
}

/// The recipient of a deposit marker script, or why it is not one.
pub fn parse_deposit_marker(script: &Script) -> Result<[u8; 32], String> {
    let data = op_return_data(script)?;
    if data.len() != DEPOSIT_MARKER_LEN {
        return Err(format!(
            "marker data is {} bytes, expected {DEPOSIT_MARKER_LEN}",
            data.len()
        ));
    }
    let (tag, rest) = data.split_at(3);
    if tag != DEPOSIT_TAG {
        return Err(format!(
            "marker tag is {}, expected {} (\"pbd\")",
            hex::encode(tag),
            hex::encode(DEPOSIT_TAG)
        ));
    }
    let mut recipient = [0u8; 32];
    recipient.copy_from_slice(rest);
    check_recipient(&recipient).map_err(|e| e.to_string())?;
    Ok(recipient)
}

fn check_recipient(recipient: &[u8; 32]) -> Result<(), BridgeError> {
    XOnlyPublicKey::from_slice(recipient)
        .map(|_| ())
        .map_err(|_| BridgeError::InvalidRecipient(hex::encode(recipient)))
}

/// The cursor of a payout marker script, if it is one.
fn parse_payout_marker(script: &Script) -> Option<(u64, u32)> {
    let data = op_return_data(script).ok()?;
    if data.len() != PAYOUT_MARKER_LEN || &data[..3] != PAYOUT_TAG {
        return None;
    }
    let height = u64::from_be_bytes(data[3..11].try_into().ok()?);
    let index = u32::from_be_bytes(data[11..15].try_into().ok()?);
    Some((height, index))
}

/// The cursor `(through_height, through_index)` of `tx` if its last output is a well-formed
/// payout marker.
pub fn parse_payout(tx: &Transaction) -> Option<(u64, u32)> {
    parse_payout_marker(&tx.output.last()?.script_pubkey)
}

/// The deposits to `bridge` in `block`, and the bridge-paying outputs that are not credited,
/// both in block order. Outputs below `min_deposit` are skipped. Never panics.
pub fn scan_deposits(
    block: &Block,
    bridge: &Script,
    min_deposit: Amount,
) -> (Vec<BitcoinDeposit>, Vec<SkippedDeposit>) {
    let mut deposits = Vec::new();
    let mut skipped = Vec::new();
    for tx in &block.txdata {
        if tx.is_coinbase() {
            continue;
        }
        let paying: Vec<(u32, Amount)> = tx
            .output
            .iter()
            .enumerate()
            .filter(|(_, out)| out.script_pubkey.as_script() == bridge)
            .filter_map(|(vout, out)| Some((u32::try_from(vout).ok()?, out.value)))
            .collect();
        if paying.is_empty() || parse_payout(tx).is_some() {
            continue;
        }
        let txid = tx.compute_txid();
        let markers: Vec<&TxOut> = tx
            .output
            .iter()
            .filter(|out| out.script_pubkey.is_op_return())
            .collect();
        let recipient = match markers.as_slice() {
            [] => Err("no OP_RETURN deposit marker".to_string()),
            [marker] => parse_deposit_marker(&marker.script_pubkey)
                .map_err(|e| format!("invalid deposit marker: {e}")),
            several => Err(format!(
                "{} OP_RETURN outputs; a deposit has exactly one marker",
                several.len()
            )),
        };
        for (vout, amount) in paying {
            let outpoint = OutPoint { txid, vout };
            let reason = match &recipient {
                Err(reason) => reason.clone(),
                Ok(_) if amount < min_deposit => format!(
                    "deposit of {} sat is below the minimum {} sat",
                    amount.to_sat(),
                    min_deposit.to_sat()
                ),
                Ok(recipient) => {
                    deposits.push(BitcoinDeposit {
                        outpoint,
                        recipient: *recipient,
                        amount,
                    });
                    continue;
                }
            };
            skipped.push(SkippedDeposit {
                outpoint,
                amount,
                reason,
            });
        }
    }
    (deposits, skipped)
}

/// A signed deposit of `amount` to `bridge` for `recipient`, funded from `wallet`'s `utxos`:
/// output 0 pays the bridge, output 1 is the marker, then change.
pub fn build_deposit(
    wallet: &TaprootWallet,
    utxos: &[Utxo],
    bridge: &Script,
    recipient: [u8; 32],
    amount: Amount,
    fee_rate: FeeRate,
) -> Result<Funded, BridgeError> {
    check_recipient(&recipient)?;
    let outputs = vec![
        TxOut {
            value: amount,
            script_pubkey: bridge.to_owned(),
        },
        deposit_marker(recipient),
    ];
    Ok(wallet.build_payment(utxos, outputs, fee_rate)?)
}

/// `ceil(fee / n)` for `n ≥ 1`.
fn fee_share(fee: Amount, n: usize) -> Amount {
    let n = u64::try_from(n).unwrap_or(u64::MAX).max(1);
    Amount::from_sat(fee.to_sat().div_ceil(n))
}

fn sum(values: impl Iterator<Item = Amount>) -> Result<Amount, BridgeError> {
    values
        .into_iter()
        .try_fold(Amount::ZERO, |acc, v| acc.checked_add(v))
        .ok_or(BridgeError::Overflow)
}

/// `Σ (amount − share)` over `requests`.
fn net_total(requests: &[PayoutRequest], share: Amount) -> Result<Amount, BridgeError> {
    let mut total = Amount::ZERO;
    for r in requests {
        let net = r.amount.checked_sub(share).ok_or(BridgeError::Overflow)?;
        total = total.checked_add(net).ok_or(BridgeError::Overflow)?;
    }
    Ok(total)
}

/// A signed payout spending all of `inputs` (the bridge's outputs) to pay every request, each
/// net of an equal share of the fee, with change back to the bridge and the cursor `through`
/// in the final marker. See the module doc for the fee and change rules.
pub fn build_payout(
    bridge: &TaprootWallet,
    inputs: &[Utxo],
    requests: &[PayoutRequest],
    through: (u64, u32),
    fee_rate: FeeRate,
) -> Result<Payout, BridgeError> {
    let n = requests.len();
    if n == 0 {
        return Err(BridgeError::NoRequests);
    }
    if n > MAX_PAYOUT_OUTPUTS {
        return Err(BridgeError::TooManyRequests(n));
    }
    let bridge_script = bridge.script_pubkey();
    let mut seen = HashSet::new();
    for u in inputs {
        if &u.txout.script_pubkey != bridge_script {
            return Err(BridgeError::ForeignInput(u.outpoint));
        }
        if !u.is_spendable() {
            return Err(BridgeError::ImmatureInput(u.outpoint));
        }
        if !seen.insert(u.outpoint) {
            return Err(BridgeError::DuplicateInput(u.outpoint));
        }
    }
    let held = sum(inputs.iter().map(|u| u.txout.value))?;

    // Output values do not change the weight (always 8 bytes), so the gross amounts stand in.
    let pay: Vec<TxOut> = requests
        .iter()
        .map(|r| TxOut {
            value: r.amount,
            script_pubkey: r.script_pubkey.clone(),
        })
        .collect();
    let marker = payout_marker(through);
    let change_out = TxOut {
        value: Amount::ZERO,
        script_pubkey: bridge_script.clone(),
    };
    let mut with_change = pay.clone();
    with_change.push(change_out);
    with_change.push(marker.clone());
    let mut with_change = bridge.unsigned(inputs, with_change);
    let mut without_change = pay;
    without_change.push(marker);
    let mut without_change = bridge.unsigned(inputs, without_change);

    let fee_with = fee_for(fee_rate, with_change.weight());
    let share_with = fee_share(fee_with, n);
    // Every withdrawal must afford the larger share (that of the transaction with change).
    for (index, r) in requests.iter().enumerate() {
        let dust = r.script_pubkey.minimal_non_dust();
        let enough = share_with
            .checked_add(dust)
            .is_some_and(|least| r.amount >= least);
        if !enough {
            return Err(BridgeError::WithdrawalTooSmall {
                index,
                amount: r.amount,
                share: share_with,
                dust,
            });
        }
    }

    let net_with = net_total(requests, share_with)?;
    let change = held
        .checked_sub(net_with)
        .and_then(|rest| rest.checked_sub(fee_with))
        .filter(|change| *change >= bridge_script.minimal_non_dust());
    let (mut tx, fee, share, change) = match change {
        Some(change) => {
            for (out, r) in with_change.output.iter_mut().zip(requests) {
                out.value = r
                    .amount
                    .checked_sub(share_with)
                    .ok_or(BridgeError::Overflow)?;
            }
            let vout = n;
            if let Some(out) = with_change.output.get_mut(vout) {
                out.value = change;
            }
            let vout = u32::try_from(vout).map_err(|_| BridgeError::Overflow)?;
            (with_change, fee_with, share_with, Some((vout, change)))
        }
        None => {
            let fee_without = fee_for(fee_rate, without_change.weight());
            let share = fee_share(fee_without, n);
            let net = net_total(requests, share)?;
            let needed = net.checked_add(fee_without).ok_or(BridgeError::Overflow)?;
            if held < needed {
                return Err(BridgeError::Insufficient { held, needed });
            }
            for (out, r) in without_change.output.iter_mut().zip(requests) {
                out.value = r.amount.checked_sub(share).ok_or(BridgeError::Overflow)?;
            }
            let fee = held.checked_sub(net).ok_or(BridgeError::Overflow)?;
            (without_change, fee, share, None)
        }
    };
    let prevouts: Vec<TxOut> = inputs.iter().map(|u| u.txout.clone()).collect();
    bridge.sign_key_spends(&mut tx, &prevouts)?;
    Ok(Payout {
        tx,
        fee,
        shares: vec![share; n],
        change,
        spent: inputs.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::taproot::{LeafVersion, TapLeafHash};

    fn keypair(b: u8) -> Keypair {
        Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[b; 32]).unwrap())
    }

    #[test]
    fn tagged_hash_matches_bip340_taproot_hashes() {
        // TapLeaf hashes are tagged hashes of `leaf version ‖ compact size ‖ script`.
        let script = ScriptBuf::from_bytes(vec![0x51, 0x52, 0x93]);
        let mut msg = vec![0xc0, 3];
        msg.extend_from_slice(script.as_bytes());
        let leaf = TapLeafHash::from_script(&script, LeafVersion::TapScript);
        assert_eq!(tagged_hash(b"TapLeaf", &msg), leaf.to_byte_array());
        assert_eq!(
            bridge_merkle_root().to_byte_array(),
            tagged_hash(b"parabit/bridge", b"")
        );
    }

    #[test]
    fn bridge_script_is_tweaked_by_the_root_and_matches_the_wallet() {
        let kp = keypair(3);
        let (x, _) = kp.x_only_public_key();
        let w = bridge_wallet(kp);
        assert_eq!(w.script_pubkey(), &bridge_script(x));
        assert_eq!(w.merkle_root(), Some(bridge_merkle_root()));
        assert_eq!(
            bridge_address(x, Network::Regtest).script_pubkey(),
            bridge_script(x)
        );
        assert_ne!(
            &bridge_script(x),
            TaprootWallet::from_keypair(kp).script_pubkey()
        );
    }

    #[test]
    fn deposit_marker_round_trips() {
        let (x, _) = keypair(9).x_only_public_key();
        let recipient = x.serialize();
        let out = deposit_marker(recipient);
        assert_eq!(out.value, Amount::ZERO);
        assert_eq!(out.script_pubkey.len(), 2 + DEPOSIT_MARKER_LEN);
        assert_eq!(parse_deposit_marker(&out.script_pubkey), Ok(recipient));
    }

    #[test]
    fn deposit_marker_refusals_say_why() {
        let (x, _) = keypair(9).x_only_public_key();
        let good = deposit_marker(x.serialize()).script_pubkey;
        let cases: Vec<(ScriptBuf, &str)> = vec![
            (ScriptBuf::new(), "not an OP_RETURN script"),
            (ScriptBuf::from_bytes(vec![0x6a]), "OP_RETURN without data"),
            (
                ScriptBuf::new_op_return([1u8; 34]),
                "marker data is 34 bytes",
            ),
            (
                {
                    let mut d = [7u8; 35];
                    d[..3].copy_from_slice(b"pbx");
                    ScriptBuf::new_op_return(d)
                },
                "marker tag is 706278",
            ),
            (
                {
                    let mut d = [0xffu8; 35];
                    d[..3].copy_from_slice(DEPOSIT_TAG);
                    ScriptBuf::new_op_return(d)
                },
                "is not a valid x-only public key",
            ),
            (
                {
                    let mut b = good.to_bytes();
                    b.push(0x51);
                    ScriptBuf::from_bytes(b)
                },
                "more than one item after OP_RETURN",
            ),
            (ScriptBuf::from_bytes(vec![0x6a, 0x51]), "OP_PUSHNUM_1"),
            // Declares 35 bytes, has 2.
            (ScriptBuf::from_bytes(vec![0x6a, 35, 1, 2]), "unparsable"),
        ];
        for (script, want) in cases {
            let err = parse_deposit_marker(&script).unwrap_err();
            assert!(err.contains(want), "{script:?}: {err}");
        }
        // A non-minimal push of the same 35 bytes is the same marker.
        let mut b = vec![0x6a, 0x4c, 35];
        b.extend_from_slice(&good.as_bytes()[2..]);
        assert_eq!(
            parse_deposit_marker(&ScriptBuf::from_bytes(b)),
            Ok(x.serialize())
        );
    }

    #[test]
    fn payout_marker_round_trips_and_must_be_last() {
        let through = (0x0102_0304_0506_0708, 0x090a_0b0c);
        let marker = payout_marker(through);
        assert_eq!(
            &marker.script_pubkey.as_bytes()[2..],
            &[b'p', b'b', b'w', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        let other = TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: bridge_script(keypair(1).x_only_public_key().0),
        };
        let mut tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![],
            output: vec![other.clone(), marker],
        };
        assert_eq!(parse_payout(&tx), Some(through));
        tx.output.reverse();
        assert_eq!(parse_payout(&tx), None);
        tx.output.clear();
        assert_eq!(parse_payout(&tx), None);
        tx.output.push(deposit_marker([2; 32]));
        assert_eq!(parse_payout(&tx), None);
    }

    #[test]
    fn fee_shares_round_up() {
        assert_eq!(fee_share(Amount::from_sat(10), 3), Amount::from_sat(4));
        assert_eq!(fee_share(Amount::from_sat(9), 3), Amount::from_sat(3));
        assert_eq!(fee_share(Amount::ZERO, 3), Amount::ZERO);
        assert_eq!(fee_share(Amount::from_sat(7), 0), Amount::from_sat(7));
    }

    #[test]
    fn error_messages() {
        let e = BridgeError::WithdrawalTooSmall {
            index: 3,
            amount: Amount::from_sat(1_000),
            share: Amount::from_sat(1_410),
            dust: Amount::from_sat(330),
        };
        assert!(e
            .to_string()
            .starts_with("withdrawal 3 of 1000 sat cannot pay its fee share 1410 sat"));
        let e = BridgeError::Insufficient {
            held: Amount::from_sat(5_000),
            needed: Amount::from_sat(9_000),
        };
        assert_eq!(
            e.to_string(),
            "bridge holds 5000 sat, payouts need 9000 sat"
        );
    }
}
