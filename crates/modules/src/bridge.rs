//! The L2 side of the BTC bridge: Bitcoin deposits credited on L2, and L2 withdrawals that burn
//! BTC and record a payment for the sequencer to make on Bitcoin.
//!
//! # Deposits
//! A user pays BTC to the bridge on Bitcoin. Once the sequencer has seen that output confirmed
//! deeply enough (the genesis's `deposit_confirmations`), it includes a **deposit transaction**
//! in an L2 block: [`BridgeMsg::Deposit`] naming the outpoint `txid:vout` (txid in
//! rust-bitcoin's internal byte order), the L2 recipient, the amount and the Bitcoin height
//! that confirmed it. A deposit is a system transaction signed by the sequencer: it is valid
//! only when its sender is the bridge's authority ([`BridgeConfig::authority`]) and its fee and
//! nonce are both 0, so a deposit has exactly one transaction id. The runtime neither checks
//! nor advances the authority's nonce for it and charges no fee. A valid deposit records the
//! outpoint, mints the amount of BTC to the recipient ([`bank::mint`]) and adds it to the
//! deposited total; anything wrong with it (no bridge, another sender, a fee or nonce, an
//! amount of 0 or below [`BridgeConfig::min_deposit`], an outpoint already credited, no mint
//! headroom) makes its receipt `Invalid` with no state change at all. The Bitcoin height is
//! carried in the transaction (and so in the batch posted to Bitcoin) for full nodes to check
//! against Bitcoin; the runtime does not read it.
//!
//! # Withdrawals
//! [`BridgeMsg::Withdraw`] is an ordinary user transaction (nonce and fee as usual): it burns
//! `amount` BTC from the sender ([`bank::burn`]) and records a [`Withdrawal`] under
//! `(sender, nonce)` that the sequencer later pays on Bitcoin to `script_pubkey`, which must be
//! one of the standard output types [`is_standard_script`] accepts. It fails (fee and nonce
//! kept, everything else rolled back) when the chain has no bridge, the amount is 0 or below
//! [`BridgeConfig::min_withdrawal`], the script is not standard, or the sender's BTC is short.
//!
//! # State (prefix bytes `0x60`–`0x63`; integers big-endian)
//! | key | bytes | value |
//! |---|---|---|
//! | [`BridgeKey::Deposit`]`(txid, vout)` | `60 ‖ txid(32) ‖ vout(4)` | `Num`: the amount credited |
//! | [`BridgeKey::Withdrawal`]`(sender, nonce)` | `61 ‖ sender(32) ‖ nonce(8)` | `Bytes`: borsh [`Withdrawal`] |
//! | [`BridgeKey::Deposited`] | `62` | `Num`: sum of all deposits credited |
//! | [`BridgeKey::Withdrawn`] | `63` | `Num`: sum of all withdrawals recorded |
//!
//! # Invariants
//! - (a) Every outpoint is credited at most once: a deposit reads its outpoint's key and is
//!   invalid if it is there; the key is never deleted.
//! - (b) `BTC supply == genesis BTC supply + Deposited − Withdrawn + other mints and burns of
//!   BTC`; no other module mints or burns BTC, so in practice the BTC the bridge has minted and
//!   not burnt is `Deposited − Withdrawn`.
//! - (c) A withdrawal burns exactly the amount it records, in the same transaction (a failure
//!   rolls back both).
//! - (d) Only the authority mints: a deposit from any other sender changes nothing.
//! - Parallelism: deposits touch only their outpoint's key exclusively; balances, the supply,
//!   the totals and the mint headroom move by `add` (the headroom of a mint by `try_sub`). A
//!   deposit does not touch its sender's nonce or balance, so many deposits, even to one
//!   recipient, run apart in the partitioned engine, and so do withdrawals of distinct senders
//!   ([`footprint`]).
//! - Every function returns a `Halt` from the state view as [`BridgeError::Halt`] at once; the
//!   runtime passes it to the engine, never into a receipt.

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{num_of, Footprint, Halt, Key, StateView, Storage, Value};
use parabit_primitives::{Address, Amount, AssetId};

use crate::bank::{self, balance_key, BankError, BankKey};
use crate::{declare, Touch};

/// Prefix of [`BridgeKey::Deposit`].
pub const PREFIX_DEPOSIT: u8 = 0x60;
/// Prefix of [`BridgeKey::Withdrawal`].
pub const PREFIX_WITHDRAWAL: u8 = 0x61;
/// Prefix of [`BridgeKey::Deposited`].
pub const PREFIX_DEPOSITED: u8 = 0x62;
/// Prefix of [`BridgeKey::Withdrawn`].
pub const PREFIX_WITHDRAWN: u8 = 0x63;

/// The bridge of a chain: who credits deposits and the smallest amounts it moves.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct BridgeConfig {
    /// The sequencer's address (its x-only key): the only sender of deposits.
    pub authority: Address,
    /// Smallest deposit credited, in satoshis.
    pub min_deposit: u64,
    /// Smallest withdrawal accepted, in satoshis.
    pub min_withdrawal: u64,
}

/// A bridge message.
#[derive(
    Clone,
    PartialEq,
    Eq,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum BridgeMsg {
    /// Credits a Bitcoin deposit: a system transaction of the authority, fee 0 and nonce 0.
    Deposit {
        /// The deposit's Bitcoin transaction id, in rust-bitcoin's internal byte order (in
        /// JSON: hex as Bitcoin displays it, byte-reversed, as rust-bitcoin's `Txid` does).
        #[serde(with = "txid_hex")]
        txid: [u8; 32],
        /// The output index in that transaction.
        vout: u32,
        /// Who is credited on L2.
        recipient: Address,
        /// The output's value, in satoshis.
        amount: u64,
        /// The Bitcoin block that confirmed it.
        bitcoin_height: u32,
    },
    /// Burns `amount` BTC from the sender and records a payment of it on Bitcoin.
    Withdraw {
        /// In satoshis; at least the bridge's minimum.
        amount: u64,
        /// The Bitcoin output script to pay (in JSON: hex); must be standard
        /// ([`is_standard_script`]).
        #[serde(with = "script_hex")]
        script_pubkey: Vec<u8>,
    },
}

/// A withdrawal request, stored under [`BridgeKey::Withdrawal`]`(sender, nonce)`.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, serde::Serialize)]
pub struct Withdrawal {
    /// Satoshis to pay (burnt on L2).
    pub amount: u64,
    /// The output script to pay to.
    #[serde(serialize_with = "script_hex::serialize")]
    pub script_pubkey: Vec<u8>,
    /// The L2 block height the request was made at.
    pub height: u64,
}

/// The state keys of the bridge.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BridgeKey {
    /// A credited deposit's outpoint (txid in internal byte order, vout).
    Deposit([u8; 32], u32),
    /// A withdrawal request: its sender and transaction nonce.
    Withdrawal(Address, u64),
    /// Sum of all deposits credited.
    Deposited,
    /// Sum of all withdrawals recorded.
    Withdrawn,
}

impl BridgeKey {
    /// The engine key.
    pub fn key(&self) -> Key {
        match self {
            BridgeKey::Deposit(txid, vout) => {
                let mut k = [0u8; 37];
                k[0] = PREFIX_DEPOSIT;
                k[1..33].copy_from_slice(txid);
                k[33..].copy_from_slice(&vout.to_be_bytes());
                Key::from_array(k)
            }
            BridgeKey::Withdrawal(sender, nonce) => {
                let mut k = [0u8; 41];
                k[0] = PREFIX_WITHDRAWAL;
                k[1..33].copy_from_slice(&sender.0);
                k[33..].copy_from_slice(&nonce.to_be_bytes());
                Key::from_array(k)
            }
            BridgeKey::Deposited => Key::from_array([PREFIX_DEPOSITED]),
            BridgeKey::Withdrawn => Key::from_array([PREFIX_WITHDRAWN]),
        }
    }

    /// Parses a key's bytes back; `None` if they are not a bridge key.
    pub fn from_bytes(bytes: &[u8]) -> Option<BridgeKey> {
        let (&prefix, rest) = bytes.split_first()?;
        match (prefix, rest.len()) {
            (PREFIX_DEPOSIT, 36) => {
                let txid = rest[..32].try_into().ok()?;
                let vout = u32::from_be_bytes(rest[32..].try_into().ok()?);
                Some(BridgeKey::Deposit(txid, vout))
            }
            (PREFIX_WITHDRAWAL, 40) => {
                let sender = Address(rest[..32].try_into().ok()?);
                let nonce = u64::from_be_bytes(rest[32..].try_into().ok()?);
                Some(BridgeKey::Withdrawal(sender, nonce))
            }
            (PREFIX_DEPOSITED, 0) => Some(BridgeKey::Deposited),
            (PREFIX_WITHDRAWN, 0) => Some(BridgeKey::Withdrawn),
            _ => None,
        }
    }
}

/// Why a bridge message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The chain was started without a bridge.
    #[error("the chain has no bridge")]
    NoBridge,
    /// A deposit from another sender than the authority.
    #[error("bridge deposits are made by the sequencer only")]
    NotAuthority,
    /// A deposit with a fee or a nonce.
    #[error("a bridge deposit has fee 0 and nonce 0, got fee {fee} and nonce {nonce}")]
    DepositFeeOrNonce {
        /// The transaction's fee.
        fee: Amount,
        /// The transaction's nonce.
        nonce: u64,
    },
    /// A deposit of nothing.
    #[error("deposit amount must be positive")]
    ZeroDeposit,
    /// A deposit under the minimum.
    #[error("deposit of {amount} sat is below the minimum {min} sat")]
    DepositBelowMinimum {
        /// The amount.
        amount: u64,
        /// The bridge's minimum.
        min: u64,
    },
    /// The outpoint was credited before.
    #[error("deposit {}:{vout} already credited", display_txid(.txid))]
    AlreadyCredited {
        /// The txid, internal byte order (shown as Bitcoin displays it).
        txid: [u8; 32],
        /// The output index.
        vout: u32,
    },
    /// A withdrawal of nothing.
    #[error("withdrawal amount must be positive")]
    ZeroWithdrawal,
    /// A withdrawal under the minimum.
    #[error("withdrawal of {amount} sat is below the minimum {min} sat")]
    WithdrawalBelowMinimum {
        /// The amount.
        amount: u64,
        /// The bridge's minimum.
        min: u64,
    },
    /// An output script the bridge does not pay.
    #[error("cannot pay to this script: not P2PKH, P2SH, P2WPKH, P2WSH or P2TR")]
    NonStandardScript,
    /// A bank failure (the sender's BTC is short, no mint headroom).
    #[error("{0}")]
    Bank(BankError),
    /// The engine suspended the transaction (internal; never in a receipt).
    #[error("execution suspended on a dependency (internal)")]
    Halt(Halt),
}

module_error_conversions!(BridgeError);

type Result<T> = std::result::Result<T, BridgeError>;

/// A txid in internal byte order as Bitcoin displays it: hex of the reversed bytes.
pub fn display_txid(txid: &[u8; 32]) -> String {
    let mut reversed = *txid;
    reversed.reverse();
    hex::encode(reversed)
}

/// Whether the bridge pays to `script`: exactly one of the standard output patterns P2PKH
/// (`76 a9 14 <20> 88 ac`), P2SH (`a9 14 <20> 87`), P2WPKH (`00 14 <20>`), P2WSH
/// (`00 20 <32>`) or P2TR (`51 20 <32>`).
pub fn is_standard_script(script: &[u8]) -> bool {
    match script {
        [0x76, 0xa9, 0x14, hash @ .., 0x88, 0xac] => hash.len() == 20,
        [0xa9, 0x14, hash @ .., 0x87] => hash.len() == 20,
        [0x00, 0x14, program @ ..] => program.len() == 20,
        [0x00, 0x20, program @ ..] | [0x51, 0x20, program @ ..] => program.len() == 32,
        _ => false,
    }
}

/// The checks of a deposit that read no state: a bridge, sent by its authority with fee 0 and
/// nonce 0, a positive amount at least the minimum. Returns the bridge's configuration.
fn check_deposit<'c>(
    config: Option<&'c BridgeConfig>,
    sender: &Address,
    fee: Amount,
    nonce: u64,
    amount: u64,
) -> Result<&'c BridgeConfig> {
    let config = config.ok_or(BridgeError::NoBridge)?;
    if *sender != config.authority {
        return Err(BridgeError::NotAuthority);
    }
    if fee != 0 || nonce != 0 {
        return Err(BridgeError::DepositFeeOrNonce { fee, nonce });
    }
    if amount == 0 {
        return Err(BridgeError::ZeroDeposit);
    }
    if amount < config.min_deposit {
        return Err(BridgeError::DepositBelowMinimum {
            amount,
            min: config.min_deposit,
        });
    }
    Ok(config)
}

/// The checks of a withdrawal that read no state: a bridge, a positive amount at least the
/// minimum, a standard script.
fn check_withdraw(config: Option<&BridgeConfig>, amount: u64, script: &[u8]) -> Result<()> {
    let config = config.ok_or(BridgeError::NoBridge)?;
    if amount == 0 {
        return Err(BridgeError::ZeroWithdrawal);
    }
    if amount < config.min_withdrawal {
        return Err(BridgeError::WithdrawalBelowMinimum {
            amount,
            min: config.min_withdrawal,
        });
    }
    if !is_standard_script(script) {
        return Err(BridgeError::NonStandardScript);
    }
    Ok(())
}

/// Executes a bridge message from `sender` (transaction fee `fee`, nonce `nonce`) at block
/// `height`, on a chain whose bridge is `config` (`None`: no bridge).
///
/// For a deposit the runtime calls this before touching the sender's nonce or balance, and
/// turns any error into an `Invalid` receipt after rolling back; a withdrawal runs as any
/// module call, after the fee and nonce.
pub fn execute<V: StateView>(
    view: &mut V,
    config: Option<&BridgeConfig>,
    sender: &Address,
    fee: Amount,
    nonce: u64,
    height: u64,
    msg: &BridgeMsg,
) -> Result<()> {
    match msg {
        BridgeMsg::Deposit {
            txid,
            vout,
            recipient,
            amount,
            bitcoin_height: _,
        } => {
            check_deposit(config, sender, fee, nonce, *amount)?;
            deposit(view, txid, *vout, recipient, *amount)
        }
        BridgeMsg::Withdraw {
            amount,
            script_pubkey,
        } => {
            check_withdraw(config, *amount, script_pubkey)?;
            withdraw(view, sender, nonce, height, *amount, script_pubkey)
        }
    }
}

/// Credits the deposit `txid:vout` of `amount` to `recipient`: records the outpoint, mints the
/// BTC and adds it to [`BridgeKey::Deposited`]. Fails if the outpoint was credited before, or
/// the mint has no headroom (then the caller rolls back the record).
fn deposit<V: StateView>(
    view: &mut V,
    txid: &[u8; 32],
    vout: u32,
    recipient: &Address,
    amount: u64,
) -> Result<()> {
    let key = BridgeKey::Deposit(*txid, vout).key();
    if view.read(&key)?.is_some() {
        return Err(BridgeError::AlreadyCredited { txid: *txid, vout });
    }
    let amount = Amount::from(amount);
    view.write(key, Some(Value::Num(amount)));
    bank::mint(view, recipient, AssetId::BTC, amount)?;
    view.add(BridgeKey::Deposited.key(), amount);
    Ok(())
}

/// Burns `amount` BTC from `sender` and records the withdrawal under `(sender, nonce)`.
fn withdraw<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    height: u64,
    amount: u64,
    script_pubkey: &[u8],
) -> Result<()> {
    bank::burn(view, sender, AssetId::BTC, Amount::from(amount))?;
    let record = Withdrawal {
        amount,
        script_pubkey: script_pubkey.to_vec(),
        height,
    };
    view.write(
        BridgeKey::Withdrawal(*sender, nonce).key(),
        Some(encode_withdrawal(&record)),
    );
    view.add(BridgeKey::Withdrawn.key(), Amount::from(amount));
    Ok(())
}

/// The value stored under [`BridgeKey::Withdrawal`].
pub fn encode_withdrawal(w: &Withdrawal) -> Value {
    Value::bytes(borsh::to_vec(w).unwrap_or_default())
}

/// Decodes a stored [`Withdrawal`]; `None` if the bytes are not one.
pub fn decode_withdrawal(bytes: &[u8]) -> Option<Withdrawal> {
    borsh::from_slice(bytes).ok()
}

/// Whether `msg` is a deposit: a system transaction the runtime runs without nonce or fee.
pub fn is_deposit(msg: &BridgeMsg) -> bool {
    matches!(msg, BridgeMsg::Deposit { .. })
}

/// Declares in `fp` every key a bridge message may touch, on every path.
///
/// A deposit that passes the checks which read no state declares its outpoint's key
/// (exclusive: read, then written), the recipient's BTC balance, the BTC supply and
/// [`BridgeKey::Deposited`] (added to) and the BTC mint headroom (`try_sub`); one that fails
/// them touches nothing and declares nothing. The runtime declares no nonce, balance or fee
/// key for a deposit, so deposits never join each other unless they name one outpoint.
///
/// A withdrawal that passes those checks declares the sender's BTC balance (exclusive, as the
/// runtime does for its fee), its record `(sender, nonce)` (written), and the BTC supply, the
/// BTC mint headroom and [`BridgeKey::Withdrawn`] (a burn only adds to them: the supply by a
/// wrapping negative delta).
///
/// One case costs a re-run, never a wrong result: the engine sums the mint headroom's adds
/// (burns) and subtractions (mints) apart, and refuses the sum when `headroom + adds` would
/// overflow, which happens when a block burns more BTC than the supply it started with (BTC
/// deposited and withdrawn in the same block, on a young chain); it then runs the block on its
/// general path.
pub fn footprint(
    msg: &BridgeMsg,
    config: Option<&BridgeConfig>,
    sender: &Address,
    fee: Amount,
    nonce: u64,
    fp: &mut Footprint,
) {
    match msg {
        BridgeMsg::Deposit {
            txid,
            vout,
            recipient,
            amount,
            ..
        } => {
            if check_deposit(config, sender, fee, nonce, *amount).is_err() {
                return;
            }
            declare(fp, BridgeKey::Deposit(*txid, *vout).key(), Touch::Write);
            declare(fp, balance_key(recipient, AssetId::BTC), Touch::Add);
            declare(fp, BankKey::Supply(AssetId::BTC).key(), Touch::Add);
            declare(fp, BridgeKey::Deposited.key(), Touch::Add);
            declare(fp, BankKey::MintHeadroom(AssetId::BTC).key(), Touch::Sub);
        }
        BridgeMsg::Withdraw {
            amount,
            script_pubkey,
        } => {
            if check_withdraw(config, *amount, script_pubkey).is_err() {
                return;
            }
            declare(fp, balance_key(sender, AssetId::BTC), Touch::Write);
            declare(
                fp,
                BridgeKey::Withdrawal(*sender, nonce).key(),
                Touch::Write,
            );
            declare(fp, BankKey::Supply(AssetId::BTC).key(), Touch::Add);
            declare(fp, BankKey::MintHeadroom(AssetId::BTC).key(), Touch::Add);
            declare(fp, BridgeKey::Withdrawn.key(), Touch::Add);
        }
    }
}

/// The amount credited for the deposit `txid:vout` in committed state; `None` if it was not.
pub fn query_deposit<S: Storage>(state: &S, txid: &[u8; 32], vout: u32) -> Option<u64> {
    match state.get(&BridgeKey::Deposit(*txid, vout).key()) {
        Some(Value::Num(n)) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// The withdrawal `sender` requested with its transaction of nonce `nonce`, from committed
/// state; `None` if there is none.
pub fn query_withdrawal<S: Storage>(state: &S, sender: &Address, nonce: u64) -> Option<Withdrawal> {
    match state.get(&BridgeKey::Withdrawal(*sender, nonce).key()) {
        Some(Value::Bytes(b)) => decode_withdrawal(&b),
        _ => None,
    }
}

/// The totals `(deposited, withdrawn)` in committed state, in satoshis.
pub fn query_totals<S: Storage>(state: &S) -> (u128, u128) {
    (
        num_of(&state.get(&BridgeKey::Deposited.key())),
        num_of(&state.get(&BridgeKey::Withdrawn.key())),
    )
}

/// Serde of a txid (internal byte order) as the hex Bitcoin displays (byte-reversed).
mod txid_hex {
    pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::display_txid(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|_| serde::de::Error::custom("expected a txid as 64 hex digits"))?;
        out.reverse();
        Ok(out)
    }
}

/// Serde of an output script as hex.
mod script_hex {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        hex::decode(&text)
            .map_err(|_| serde::de::Error::custom("expected an output script as hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_layout_and_parse_back() {
        let txid = [9u8; 32];
        let k = BridgeKey::Deposit(txid, 0x0102_0304).key();
        assert_eq!(k.as_bytes().len(), 37);
        assert_eq!(k.as_bytes()[0], PREFIX_DEPOSIT);
        assert_eq!(&k.as_bytes()[33..], &[1, 2, 3, 4]);
        let w = BridgeKey::Withdrawal(Address([7; 32]), 5).key();
        assert_eq!(w.as_bytes().len(), 41);
        assert_eq!(&w.as_bytes()[33..], &[0, 0, 0, 0, 0, 0, 0, 5]);
        for bk in [
            BridgeKey::Deposit(txid, 3),
            BridgeKey::Withdrawal(Address([7; 32]), u64::MAX),
            BridgeKey::Deposited,
            BridgeKey::Withdrawn,
        ] {
            assert_eq!(BridgeKey::from_bytes(bk.key().as_bytes()), Some(bk));
        }
        assert_eq!(BridgeKey::from_bytes(&[]), None);
        assert_eq!(BridgeKey::from_bytes(&[PREFIX_DEPOSIT, 1, 2]), None);
        assert_eq!(BridgeKey::from_bytes(&[PREFIX_DEPOSITED, 0]), None);
        assert_eq!(BridgeKey::from_bytes(&[0x50; 9]), None);
    }

    #[test]
    fn standard_scripts_are_exactly_the_five_patterns() {
        let mut p2pkh = vec![0x76, 0xa9, 0x14];
        p2pkh.extend([1; 20]);
        p2pkh.extend([0x88, 0xac]);
        let mut p2sh = vec![0xa9, 0x14];
        p2sh.extend([2; 20]);
        p2sh.push(0x87);
        let with = |head: &[u8], n: usize| [head, &vec![3u8; n][..]].concat();
        for ok in [
            p2pkh.clone(),
            p2sh.clone(),
            with(&[0x00, 0x14], 20),
            with(&[0x00, 0x20], 32),
            with(&[0x51, 0x20], 32),
        ] {
            assert!(is_standard_script(&ok), "{}", hex::encode(&ok));
        }
        let mut long_p2pkh = p2pkh.clone();
        long_p2pkh.insert(3, 0);
        for bad in [
            vec![],
            p2pkh[..p2pkh.len() - 1].to_vec(),
            long_p2pkh,
            p2sh[..p2sh.len() - 1].to_vec(),
            with(&[0x00, 0x14], 21),
            with(&[0x00, 0x14], 19),
            with(&[0x00, 0x20], 31),
            with(&[0x51, 0x20], 33),
            with(&[0x52, 0x20], 32),
            with(&[0x51, 0x14], 20),
            with(&[0x6a], 20),
        ] {
            assert!(!is_standard_script(&bad), "{}", hex::encode(&bad));
        }
    }

    #[test]
    fn txids_show_and_parse_as_bitcoin_displays_them() {
        let mut txid = [0u8; 32];
        txid[0] = 0xab;
        txid[31] = 0x01;
        let shown = display_txid(&txid);
        assert!(shown.starts_with("01") && shown.ends_with("ab"), "{shown}");
        let msg = BridgeMsg::Deposit {
            txid,
            vout: 1,
            recipient: parabit_primitives::SigningKey::from_seed(b"bridge").address(),
            amount: 5,
            bitcoin_height: 7,
        };
        let json = serde_json::to_value(&msg).expect("json");
        assert_eq!(json["Deposit"]["txid"], shown);
        assert_eq!(serde_json::from_value::<BridgeMsg>(json).ok(), Some(msg));
        assert_eq!(
            BridgeError::AlreadyCredited { txid, vout: 4 }.to_string(),
            format!("deposit {shown}:4 already credited")
        );
    }
}
