//! A single-key taproot wallet: a BIP-86-style key-path output (`tr(K)` with no script tree),
//! coin selection and key-path signing. The batcher funds its commit transactions with it.
//!
//! Invariants:
//! - The output key is the internal key tweaked with an empty merkle root (BIP 341), so the
//!   address is the one `tr(<xonly>)` descriptors give. A wallet made by
//!   [`TaprootWallet::with_merkle_root`] with `Some(root)` tweaks both its output key and its
//!   signing key with that root instead (the bridge's output, `crate::bridge`); it still only
//!   spends by key path, so every method below works the same for it.
//! - A funded transaction's fee is exactly `fee_rate × vsize` (rounded up) of the signed
//!   transaction, or more by at most the dust limit when change would be dust. Fees are computed
//!   from the real weight of the transaction with placeholder 64-byte signatures, which have
//!   the signed transaction's size exactly (`SIGHASH_DEFAULT` signatures are 64 bytes).
//! - Only mature outputs of the wallet's own script are selected; the caller's `must_spend`
//!   outputs (for a replace-by-fee bump) always are.
//! - Errors change nothing; signing never panics on a mismatched prevout list.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak, TweakedPublicKey, UntweakedPublicKey};
use bitcoin::secp256k1::{Message, SecretKey, SECP256K1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, FeeRate, Network, ScriptBuf, Sequence, TapNodeHash, Transaction, TxIn, TxOut,
    Weight, Witness, XOnlyPublicKey,
};

use crate::client::Utxo;

/// Fee for `weight` at `rate`, rounding the rate up to whole sat/vB and the size up to whole
/// vbytes (how Bitcoin Core's `-minrelaytxfee` check rounds for whole-sat rates).
pub fn fee_for(rate: FeeRate, weight: Weight) -> Amount {
    Amount::from_sat(
        rate.to_sat_per_vb_ceil()
            .saturating_mul(weight.to_vbytes_ceil()),
    )
}

/// Wallet errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// Not enough spendable value for the outputs and the fee.
    #[error("insufficient funds: need {needed}, have {available} spendable")]
    InsufficientFunds {
        /// Outputs plus fee.
        needed: Amount,
        /// Sum of the spendable outputs offered.
        available: Amount,
    },
    /// An output below the dust limit of its script.
    #[error("output {index} of {value} is below the dust limit {dust}")]
    Dust {
        /// The output's index.
        index: usize,
        /// Its value.
        value: Amount,
        /// The smallest relayable value for its script.
        dust: Amount,
    },
    /// A must-spend output is not the wallet's or not mature.
    #[error("cannot spend {0}: not this wallet's mature output")]
    NotSpendable(bitcoin::OutPoint),
    /// The prevouts given to the signer do not match the transaction's inputs.
    #[error("signing: {0}")]
    Sign(String),
    /// Amounts overflowed.
    #[error("amount overflow")]
    Overflow,
}

/// A funded and signed transaction.
#[derive(Clone, Debug)]
pub struct Funded {
    /// The signed transaction.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Amount,
    /// The outputs it spends, in input order.
    pub spent: Vec<Utxo>,
    /// Index of the change output, if any (always the last output).
    pub change: Option<usize>,
}

/// A single-key taproot key-path wallet.
#[derive(Clone)]
pub struct TaprootWallet {
    keypair: Keypair,
    merkle_root: Option<TapNodeHash>,
    tweaked: Keypair,
    output_key: TweakedPublicKey,
    script_pubkey: ScriptBuf,
}

impl std::fmt::Debug for TaprootWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaprootWallet")
            .field("internal_key", &self.internal_key())
            .field("merkle_root", &self.merkle_root)
            .finish()
    }
}

impl TaprootWallet {
    /// The wallet of `secret`.
    pub fn new(secret: SecretKey) -> Self {
        Self::from_keypair(Keypair::from_secret_key(SECP256K1, &secret))
    }

    /// The wallet of `keypair` (BIP-86 style: no script tree).
    pub fn from_keypair(keypair: Keypair) -> Self {
        Self::with_merkle_root(keypair, None)
    }

    /// The key-path wallet of `keypair` whose output key (and so signing key) is tweaked with
    /// `merkle_root` (BIP 341: `Q = P + H_TapTweak(P ‖ root)·G`); `None` is [`Self::from_keypair`].
    pub fn with_merkle_root(keypair: Keypair, merkle_root: Option<TapNodeHash>) -> Self {
        let (internal, _) = keypair.x_only_public_key();
        let (output_key, _) = internal.tap_tweak(SECP256K1, merkle_root);
        let tweaked = keypair.tap_tweak(SECP256K1, merkle_root).to_keypair();
        let script_pubkey = ScriptBuf::new_p2tr_tweaked(output_key);
        TaprootWallet {
            keypair,
            merkle_root,
            tweaked,
            output_key,
            script_pubkey,
        }
    }

    /// The merkle root the output key commits to (`None` for a BIP-86 wallet).
    pub fn merkle_root(&self) -> Option<TapNodeHash> {
        self.merkle_root
    }

    /// The untweaked (internal) x-only key.
    pub fn internal_key(&self) -> UntweakedPublicKey {
        self.keypair.x_only_public_key().0
    }

    /// The tweaked output key the script commits to.
    pub fn output_key(&self) -> XOnlyPublicKey {
        self.output_key.to_x_only_public_key()
    }

    /// The untweaked keypair (for script-path signatures with the same key).
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// `OP_1 <output key>`.
    pub fn script_pubkey(&self) -> &ScriptBuf {
        &self.script_pubkey
    }

    /// The bech32m address on `network`.
    pub fn address(&self, network: Network) -> Address {
        Address::p2tr_tweaked(self.output_key, network)
    }

    /// Whether `utxo` is this wallet's and may be spent now.
    pub fn can_spend(&self, utxo: &Utxo) -> bool {
        utxo.txout.script_pubkey == self.script_pubkey && utxo.is_spendable()
    }

    /// Builds and signs a transaction paying `outputs`, spending all of `must_spend` and as
    /// many of `available` as needed (confirmed before unconfirmed, larger first), with change
    /// back to the wallet when it is above dust.
    pub fn fund(
        &self,
        must_spend: &[Utxo],
        available: &[Utxo],
        outputs: Vec<TxOut>,
        fee_rate: FeeRate,
    ) -> Result<Funded, WalletError> {
        for (index, out) in outputs.iter().enumerate() {
            let dust = out.script_pubkey.minimal_non_dust();
            if out.value < dust && !out.script_pubkey.is_op_return() {
                return Err(WalletError::Dust {
                    index,
                    value: out.value,
                    dust,
                });
            }
        }
        let mut chosen = Vec::new();
        for u in must_spend {
            if !self.can_spend(u) {
                return Err(WalletError::NotSpendable(u.outpoint));
            }
            chosen.push(u.clone());
        }
        let mut candidates: Vec<&Utxo> = available
            .iter()
            .filter(|u| self.can_spend(u) && !chosen.iter().any(|c| c.outpoint == u.outpoint))
            .collect();
        candidates.sort_by(|a, b| {
            (b.confirmations > 0, b.txout.value, a.outpoint).cmp(&(
                a.confirmations > 0,
                a.txout.value,
                b.outpoint,
            ))
        });
        let pay = sum(outputs.iter().map(|o| o.value)).ok_or(WalletError::Overflow)?;
        let available_total = sum(chosen
            .iter()
            .chain(candidates.iter().copied())
            .map(|u| u.txout.value))
        .ok_or(WalletError::Overflow)?;
        let mut candidates = candidates.into_iter();
        loop {
            let have = sum(chosen.iter().map(|u| u.txout.value)).ok_or(WalletError::Overflow)?;
            let without_change = self.unsigned(&chosen, outputs.clone());
            let fee_without = fee_for(fee_rate, without_change.weight());
            let needed = pay.checked_add(fee_without).ok_or(WalletError::Overflow)?;
            if !chosen.is_empty() && have >= needed {
                let mut with_change_outputs = outputs.clone();
                with_change_outputs.push(TxOut {
                    value: Amount::ZERO,
                    script_pubkey: self.script_pubkey.clone(),
                });
                let with_change = self.unsigned(&chosen, with_change_outputs);
                let fee_with = fee_for(fee_rate, with_change.weight());
                let change_value = have.checked_sub(pay).and_then(|r| r.checked_sub(fee_with));
                let dust = self.script_pubkey.minimal_non_dust();
                let (mut tx, fee, change) = match change_value {
                    Some(v) if v >= dust => {
                        let mut tx = with_change;
                        let last = tx.output.len() - 1;
                        tx.output[last].value = v;
                        (tx, fee_with, Some(last))
                    }
                    _ => {
                        let fee = have.checked_sub(pay).ok_or(WalletError::Overflow)?;
                        (without_change, fee, None)
                    }
                };
                let prevouts: Vec<TxOut> = chosen.iter().map(|u| u.txout.clone()).collect();
                self.sign_key_spends(&mut tx, &prevouts)?;
                return Ok(Funded {
                    tx,
                    fee,
                    spent: chosen,
                    change,
                });
            }
            match candidates.next() {
                Some(u) => chosen.push(u.clone()),
                None => {
                    return Err(WalletError::InsufficientFunds {
                        needed,
                        available: available_total,
                    })
                }
            }
        }
    }

    /// [`Self::fund`] with nothing that must be spent.
    pub fn build_payment(
        &self,
        available: &[Utxo],
        outputs: Vec<TxOut>,
        fee_rate: FeeRate,
    ) -> Result<Funded, WalletError> {
        self.fund(&[], available, outputs, fee_rate)
    }

    /// An unsigned transaction with placeholder 64-byte witnesses (the signed size).
    pub(crate) fn unsigned(&self, inputs: &[Utxo], outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: inputs
                .iter()
                .map(|u| TxIn {
                    previous_output: u.outpoint,
                    script_sig: ScriptBuf::new(),
                    // Signals replaceability (BIP 125) so the batcher can bump the fee.
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::from_slice(&[[0u8; 64]]),
                })
                .collect(),
            output: outputs,
        }
    }

    /// Signs, by key path with `SIGHASH_DEFAULT`, every input of `tx` whose prevout (in
    /// `prevouts`, one per input, in order) is this wallet's script; other inputs are left as
    /// they are (for the caller to sign, e.g. a script-path input).
    pub fn sign_key_spends(
        &self,
        tx: &mut Transaction,
        prevouts: &[TxOut],
    ) -> Result<(), WalletError> {
        if prevouts.len() != tx.input.len() {
            return Err(WalletError::Sign(format!(
                "{} prevouts for {} inputs",
                prevouts.len(),
                tx.input.len()
            )));
        }
        let mut signatures = Vec::new();
        {
            let mut cache = SighashCache::new(&*tx);
            for (index, prevout) in prevouts.iter().enumerate() {
                if prevout.script_pubkey != self.script_pubkey {
                    continue;
                }
                let sighash = cache
                    .taproot_key_spend_signature_hash(
                        index,
                        &Prevouts::All(prevouts),
                        TapSighashType::Default,
                    )
                    .map_err(|e| WalletError::Sign(e.to_string()))?;
                let msg = Message::from_digest(sighash.to_byte_array());
                let sig = SECP256K1.sign_schnorr(&msg, &self.tweaked);
                signatures.push((index, sig));
            }
        }
        for (index, sig) in signatures {
            let signature = bitcoin::taproot::Signature {
                signature: sig,
                sighash_type: TapSighashType::Default,
            };
            if let Some(input) = tx.input.get_mut(index) {
                input.witness = Witness::p2tr_key_spend(&signature);
            }
        }
        Ok(())
    }
}

fn sum(values: impl Iterator<Item = Amount>) -> Option<Amount> {
    values
        .into_iter()
        .try_fold(Amount::ZERO, |acc, v| acc.checked_add(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{OutPoint, Txid};

    fn wallet(b: u8) -> TaprootWallet {
        TaprootWallet::new(SecretKey::from_slice(&[b; 32]).unwrap())
    }

    fn utxo(w: &TaprootWallet, n: u8, sats: u64, confirmations: u32) -> Utxo {
        Utxo {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([n; 32]),
                vout: 0,
            },
            txout: TxOut {
                value: Amount::from_sat(sats),
                script_pubkey: w.script_pubkey().clone(),
            },
            confirmations,
            coinbase: false,
        }
    }

    #[test]
    fn address_is_bip86_style_p2tr() {
        let w = wallet(7);
        let addr = w.address(Network::Regtest);
        assert!(addr.to_string().starts_with("bcrt1p"));
        assert_eq!(addr.script_pubkey(), *w.script_pubkey());
        let expected = ScriptBuf::new_p2tr(SECP256K1, w.internal_key(), None);
        assert_eq!(&expected, w.script_pubkey());
    }

    #[test]
    fn funds_with_exact_fee_and_change() {
        let w = wallet(1);
        let dest = wallet(2);
        let utxos = vec![
            utxo(&w, 1, 10_000, 3),
            utxo(&w, 2, 50_000, 1),
            utxo(&w, 3, 5_000, 0),
        ];
        let rate = FeeRate::from_sat_per_vb_u32(3);
        let out = TxOut {
            value: Amount::from_sat(30_000),
            script_pubkey: dest.script_pubkey().clone(),
        };
        let f = w.build_payment(&utxos, vec![out], rate).unwrap();
        // Largest confirmed first: one input suffices.
        assert_eq!(f.spent.len(), 1);
        assert_eq!(f.spent[0].txout.value, Amount::from_sat(50_000));
        assert_eq!(f.change, Some(1));
        assert_eq!(f.fee, fee_for(rate, f.tx.weight()));
        let total_out: u64 = f.tx.output.iter().map(|o| o.value.to_sat()).sum();
        assert_eq!(total_out + f.fee.to_sat(), 50_000);
        // 1 key-path input, 2 P2TR outputs: 154 vB (10.5 + 57.5 + 2 × 43).
        assert_eq!(f.tx.vsize(), 154);
        assert_eq!(f.tx.input[0].witness.len(), 1);
        assert_eq!(
            f.tx.input[0].witness.iter().next().map(|s| s.len()),
            Some(64)
        );
    }

    #[test]
    fn dust_change_goes_to_fee_and_shortfall_is_an_error() {
        let w = wallet(1);
        let rate = FeeRate::from_sat_per_vb_u32(1);
        let utxos = vec![utxo(&w, 1, 10_000, 1)];
        // 10_000 - 9_800 = 200 left: change (43 vB more) would be dust, so no change output.
        let out = TxOut {
            value: Amount::from_sat(9_800),
            script_pubkey: w.script_pubkey().clone(),
        };
        let f = w.build_payment(&utxos, vec![out.clone()], rate).unwrap();
        assert_eq!(f.change, None);
        assert_eq!(f.fee, Amount::from_sat(200));
        let big = TxOut {
            value: Amount::from_sat(9_950),
            ..out
        };
        let err = w.build_payment(&utxos, vec![big], rate).unwrap_err();
        assert!(
            matches!(err, WalletError::InsufficientFunds { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_dust_outputs_foreign_and_immature_coins() {
        let w = wallet(1);
        let other = wallet(9);
        let rate = FeeRate::from_sat_per_vb_u32(1);
        let dust = TxOut {
            value: Amount::from_sat(100),
            script_pubkey: w.script_pubkey().clone(),
        };
        let err = w
            .build_payment(&[utxo(&w, 1, 10_000, 1)], vec![dust], rate)
            .unwrap_err();
        assert!(matches!(err, WalletError::Dust { index: 0, .. }));
        let pay = TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: w.script_pubkey().clone(),
        };
        let foreign = utxo(&other, 1, 10_000, 1);
        let err = w
            .build_payment(std::slice::from_ref(&foreign), vec![pay.clone()], rate)
            .unwrap_err();
        assert!(matches!(err, WalletError::InsufficientFunds { .. }));
        assert_eq!(
            w.fund(std::slice::from_ref(&foreign), &[], vec![pay.clone()], rate)
                .unwrap_err(),
            WalletError::NotSpendable(foreign.outpoint)
        );
        let mut immature = utxo(&w, 2, 10_000, 99);
        immature.coinbase = true;
        assert!(w
            .build_payment(&[immature.clone()], vec![pay.clone()], rate)
            .is_err());
        immature.confirmations = 100;
        assert!(w.build_payment(&[immature], vec![pay], rate).is_ok());
    }

    #[test]
    fn merkle_root_tweaks_output_and_signing_key() {
        let kp = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[4; 32]).unwrap());
        let root = TapNodeHash::from_byte_array([0x5a; 32]);
        let plain = TaprootWallet::from_keypair(kp);
        let rooted = TaprootWallet::with_merkle_root(kp, Some(root));
        assert_eq!(
            plain.script_pubkey(),
            TaprootWallet::with_merkle_root(kp, None).script_pubkey()
        );
        assert_eq!(plain.merkle_root(), None);
        assert_eq!(rooted.merkle_root(), Some(root));
        assert_eq!(rooted.internal_key(), plain.internal_key());
        assert_ne!(rooted.script_pubkey(), plain.script_pubkey());
        assert_eq!(
            rooted.script_pubkey(),
            &ScriptBuf::new_p2tr(SECP256K1, rooted.internal_key(), Some(root))
        );
        // Its key-path signatures pass Bitcoin Core's interpreter; the plain wallet's do not.
        let coin = utxo(&rooted, 1, 10_000, 1);
        let f = rooted
            .build_payment(
                std::slice::from_ref(&coin),
                vec![TxOut {
                    value: Amount::from_sat(5_000),
                    script_pubkey: plain.script_pubkey().clone(),
                }],
                FeeRate::from_sat_per_vb_u32(1),
            )
            .unwrap();
        assert!(crate::verify::verify_scripts(&f.tx, std::slice::from_ref(&coin.txout)).is_ok());
        let mut forged = f.tx.clone();
        let mut as_plain = TaprootWallet::from_keypair(kp);
        as_plain.script_pubkey = rooted.script_pubkey().clone();
        as_plain
            .sign_key_spends(&mut forged, std::slice::from_ref(&coin.txout))
            .unwrap();
        assert!(crate::verify::verify_scripts(&forged, &[coin.txout]).is_err());
    }

    #[test]
    fn sign_rejects_mismatched_prevouts() {
        let w = wallet(1);
        let rate = FeeRate::from_sat_per_vb_u32(1);
        let pay = TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: w.script_pubkey().clone(),
        };
        let mut f = w
            .build_payment(&[utxo(&w, 1, 10_000, 1)], vec![pay], rate)
            .unwrap();
        assert!(matches!(
            w.sign_key_spends(&mut f.tx, &[]),
            Err(WalletError::Sign(_))
        ));
    }
}
