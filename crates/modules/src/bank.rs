//! The bank: assets, balances, transfers, asset creation, and mint/burn for the modules that
//! own an asset.
//!
//! # State (prefix byte, then fixed-size fields; integers big-endian)
//! | key | bytes | value |
//! |---|---|---|
//! | [`BankKey::Balance`]`(owner, asset)` | `01 ‖ owner(32) ‖ asset(8)` | `Num`: the balance |
//! | [`BankKey::Nonce`]`(account)` | `02 ‖ account(32)` | `Num`: the next nonce (missing = 0) |
//! | [`BankKey::AssetInfo`]`(asset)` | `03 ‖ asset(8)` | `Bytes`: borsh of [`AssetInfo`] |
//! | [`BankKey::Supply`]`(asset)` | `04 ‖ asset(8)` | `Num`: total supply |
//! | [`BankKey::MintHeadroom`]`(asset)` | `05 ‖ asset(8)` | `Num`: `u128::MAX - supply` |
//!
//! # Invariants
//! - For every asset: `Supply(asset)` == the sum of all `Balance(_, asset)`, and
//!   `Supply(asset) + MintHeadroom(asset) == u128::MAX`. Only [`mint`] and [`burn`] change a
//!   supply, and they change the balance by the same amount. Hence no balance and no sum of
//!   balances can exceed `u128::MAX`: credits never wrap.
//! - No balance goes below zero: every debit is a `try_sub`, which refuses to go below zero.
//! - Credits are `add`s and debits `try_sub`s, never a read-modify-write of a balance, so
//!   transactions touching the same account (a hot recipient, the fee account) do not
//!   conflict in the parallel engine. A plain read of a balance happens only on a failure path
//!   (to say how much there was) and in [`balance`].
//! - Minting takes room with `try_sub(MintHeadroom)` and adds the supply as a delta; burning
//!   gives it back with deltas: mints and burns of one asset do not conflict either.
//! - Asset ids are `SHA256(creator ‖ nonce_le)[..8]` read big-endian; 0 is BTC and never
//!   derived; an id that exists already is refused.
//! - Every function returns a `Halt` from the state view as [`BankError::Halt`] at once; the
//!   runtime passes it to the engine, never into a receipt.

use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{num_of, Halt, Key, StateView, Value};
use parabit_primitives::{Address, Amount, AssetId};

/// Prefix byte of balance keys.
pub const PREFIX_BALANCE: u8 = 0x01;
/// Prefix byte of nonce keys.
pub const PREFIX_NONCE: u8 = 0x02;
/// Prefix byte of asset-info keys.
pub const PREFIX_ASSET_INFO: u8 = 0x03;
/// Prefix byte of supply keys.
pub const PREFIX_SUPPLY: u8 = 0x04;
/// Prefix byte of mint-headroom keys.
pub const PREFIX_MINT_HEADROOM: u8 = 0x05;

/// Longest asset symbol.
pub const MAX_SYMBOL_LEN: usize = 12;
/// Most decimals an asset may have.
pub const MAX_DECIMALS: u8 = 18;

/// A state key owned by the bank.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BankKey {
    /// An account's balance of an asset.
    Balance(Address, AssetId),
    /// An account's next nonce.
    Nonce(Address),
    /// An asset's description.
    AssetInfo(AssetId),
    /// An asset's total supply.
    Supply(AssetId),
    /// How much more of an asset may be minted: `u128::MAX - supply`.
    MintHeadroom(AssetId),
}

impl BankKey {
    /// The engine key.
    pub fn key(&self) -> Key {
        match self {
            BankKey::Balance(owner, asset) => balance_key(owner, *asset),
            BankKey::Nonce(account) => nonce_key(account),
            BankKey::AssetInfo(asset) => asset_key(PREFIX_ASSET_INFO, *asset),
            BankKey::Supply(asset) => asset_key(PREFIX_SUPPLY, *asset),
            BankKey::MintHeadroom(asset) => asset_key(PREFIX_MINT_HEADROOM, *asset),
        }
    }

    /// Parses a key's bytes back; `None` if they are not a bank key.
    pub fn from_bytes(bytes: &[u8]) -> Option<BankKey> {
        let (&prefix, rest) = bytes.split_first()?;
        let asset =
            |b: &[u8]| -> Option<AssetId> { Some(AssetId(u64::from_be_bytes(b.try_into().ok()?))) };
        let address = |b: &[u8]| -> Option<Address> { Some(Address(b.try_into().ok()?)) };
        match (prefix, rest.len()) {
            (PREFIX_BALANCE, 40) => {
                Some(BankKey::Balance(address(&rest[..32])?, asset(&rest[32..])?))
            }
            (PREFIX_NONCE, 32) => Some(BankKey::Nonce(address(rest)?)),
            (PREFIX_ASSET_INFO, 8) => Some(BankKey::AssetInfo(asset(rest)?)),
            (PREFIX_SUPPLY, 8) => Some(BankKey::Supply(asset(rest)?)),
            (PREFIX_MINT_HEADROOM, 8) => Some(BankKey::MintHeadroom(asset(rest)?)),
            _ => None,
        }
    }
}

/// The key of `owner`'s balance of `asset` (the same as `BankKey::Balance(..).key()`).
#[inline]
pub fn balance_key(owner: &Address, asset: AssetId) -> Key {
    let mut k = [0u8; 41];
    k[0] = PREFIX_BALANCE;
    k[1..33].copy_from_slice(&owner.0);
    k[33..].copy_from_slice(&asset.0.to_be_bytes());
    Key::from_array(k)
}

/// An account's home for the engine's home lanes ([`parabit_exec::Vm::homes`]): the first
/// eight bytes of its x-only key, evenly spread like any public key's.
pub fn home_of(account: &Address) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&account.0[..8]);
    u64::from_le_bytes(id)
}

/// The home of a state key: its owner's ([`home_of`]) for balance and nonce keys, `None`
/// for every other key.
pub fn key_home(key: &Key) -> Option<u64> {
    let bytes = key.as_bytes();
    let owned = match bytes.first() {
        Some(&PREFIX_BALANCE) => bytes.len() == 41,
        Some(&PREFIX_NONCE) => bytes.len() == 33,
        _ => false,
    };
    let id: [u8; 8] = bytes.get(1..9)?.try_into().ok()?;
    owned.then(|| u64::from_le_bytes(id))
}

/// The key of `account`'s nonce (the same as `BankKey::Nonce(..).key()`).
#[inline]
pub fn nonce_key(account: &Address) -> Key {
    let mut k = [0u8; 33];
    k[0] = PREFIX_NONCE;
    k[1..].copy_from_slice(&account.0);
    Key::from_array(k)
}

fn asset_key(prefix: u8, asset: AssetId) -> Key {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&asset.0.to_be_bytes());
    Key::from_array(k)
}

/// An asset's description, stored under [`BankKey::AssetInfo`].
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
pub struct AssetInfo {
    /// Ticker: 1 to 12 ASCII uppercase letters or digits.
    pub symbol: String,
    /// Decimals of the display unit (at most 18).
    pub decimals: u8,
    /// Who created it (the zero address for BTC and genesis assets).
    pub creator: Address,
}

/// Decodes a stored [`AssetInfo`]; `None` if the bytes are not one.
pub fn decode_asset_info(bytes: &[u8]) -> Option<AssetInfo> {
    borsh::from_slice(bytes).ok()
}

impl AssetInfo {
    /// The description of BTC.
    pub fn btc() -> AssetInfo {
        AssetInfo {
            symbol: "BTC".to_string(),
            decimals: 8,
            creator: Address([0; 32]),
        }
    }
}

/// A bank message: what a transaction asks the bank to do.
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
pub enum BankMsg {
    /// Moves `amount` of `asset` from the sender to `to`.
    Transfer {
        /// The recipient.
        to: Address,
        /// The asset moved.
        asset: AssetId,
        /// How much, in base units; must be positive.
        amount: Amount,
    },
    /// Creates an asset whose whole initial supply goes to the sender. Its id is
    /// [`derive_asset_id`]`(sender, nonce)`.
    CreateAsset {
        /// 1 to 12 ASCII uppercase letters or digits.
        symbol: String,
        /// At most 18.
        decimals: u8,
        /// Minted to the sender.
        initial_supply: Amount,
    },
}

/// Why a bank operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// The debited account holds less than the amount.
    #[error("insufficient balance: have {have}, need {need}")]
    InsufficientBalance {
        /// The asset.
        asset: AssetId,
        /// The balance.
        have: Amount,
        /// The amount asked.
        need: Amount,
    },
    /// A transfer of nothing.
    #[error("transfer amount must be positive")]
    ZeroAmount,
    /// A symbol that is not 1 to 12 ASCII uppercase letters or digits.
    #[error("invalid asset symbol {0:?}: use 1 to 12 ASCII uppercase letters or digits")]
    InvalidSymbol(String),
    /// Too many decimals.
    #[error("invalid decimals {0}: at most 18")]
    InvalidDecimals(u8),
    /// The derived asset id is taken.
    #[error("asset {0} already exists")]
    AssetExists(AssetId),
    /// The derived asset id is 0 (BTC's); astronomically unlikely.
    #[error("derived asset id 0 is reserved for BTC")]
    ReservedAssetId,
    /// A mint would take the supply past `u128::MAX`.
    #[error("minting {amount} of asset {asset} would overflow its supply")]
    SupplyOverflow {
        /// The asset.
        asset: AssetId,
        /// The amount asked.
        amount: Amount,
    },
    /// An asset-info value that does not decode: corrupt state.
    #[error("corrupt state: asset info of asset {0} does not decode")]
    CorruptAssetInfo(AssetId),
    /// The engine suspended the transaction on a dependency. Internal: the runtime returns it
    /// to the engine and it never appears in a receipt.
    #[error("execution suspended on a dependency (internal)")]
    Halt(Halt),
}

impl From<Halt> for BankError {
    fn from(h: Halt) -> BankError {
        BankError::Halt(h)
    }
}

/// Executes a bank message sent by `sender` with transaction nonce `nonce`.
pub fn execute<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    msg: &BankMsg,
) -> Result<(), BankError> {
    match msg {
        BankMsg::Transfer { to, asset, amount } => transfer(view, sender, to, *asset, *amount),
        BankMsg::CreateAsset {
            symbol,
            decimals,
            initial_supply,
        } => create_asset(view, sender, nonce, symbol, *decimals, *initial_supply).map(|_| ()),
    }
}

/// Reads `owner`'s balance of `asset`. A plain read: in the parallel engine it depends on the
/// exact value (and resolves pending deltas), so keep it off hot paths.
pub fn balance<V: StateView>(
    view: &mut V,
    owner: &Address,
    asset: AssetId,
) -> Result<Amount, BankError> {
    Ok(num_of(&view.read(&balance_key(owner, asset))?))
}

/// Takes `amount` from the balance under `key` (of `asset`), or fails with the balance.
pub(crate) fn debit_key<V: StateView>(
    view: &mut V,
    key: Key,
    asset: AssetId,
    amount: Amount,
) -> Result<(), BankError> {
    if view.try_sub(key, amount)? {
        Ok(())
    } else {
        let have = num_of(&view.read(&key)?);
        Err(BankError::InsufficientBalance {
            asset,
            have,
            need: amount,
        })
    }
}

/// Moves `amount` of `asset` from `from` to `to` (conflict-free on the recipient).
pub fn transfer<V: StateView>(
    view: &mut V,
    from: &Address,
    to: &Address,
    asset: AssetId,
    amount: Amount,
) -> Result<(), BankError> {
    if amount == 0 {
        return Err(BankError::ZeroAmount);
    }
    debit_key(view, balance_key(from, asset), asset, amount)?;
    view.add(balance_key(to, asset), amount);
    Ok(())
}

/// Creates `amount` of `asset` in `to`'s balance, raising the supply by as much. For the
/// modules that own an asset (LP shares, the bridge). Does not check that the asset exists.
pub fn mint<V: StateView>(
    view: &mut V,
    to: &Address,
    asset: AssetId,
    amount: Amount,
) -> Result<(), BankError> {
    if amount == 0 {
        return Ok(());
    }
    if !view.try_sub(BankKey::MintHeadroom(asset).key(), amount)? {
        return Err(BankError::SupplyOverflow { asset, amount });
    }
    view.add(BankKey::Supply(asset).key(), amount);
    view.add(balance_key(to, asset), amount);
    Ok(())
}

/// Destroys `amount` of `asset` from `from`'s balance, lowering the supply by as much.
pub fn burn<V: StateView>(
    view: &mut V,
    from: &Address,
    asset: AssetId,
    amount: Amount,
) -> Result<(), BankError> {
    if amount == 0 {
        return Ok(());
    }
    debit_key(view, balance_key(from, asset), asset, amount)?;
    // Subtracting as a wrapping delta: the supply is at least the burnt balance, so it never
    // actually wraps, and deltas keep concurrent burns and mints conflict-free.
    view.add(BankKey::Supply(asset).key(), amount.wrapping_neg());
    view.add(BankKey::MintHeadroom(asset).key(), amount);
    Ok(())
}

/// The id of the asset created by `creator`'s transaction with nonce `nonce`: the first 8
/// bytes of `SHA256(creator ‖ nonce_le)`, big-endian. `None` if that is 0 (BTC's id).
pub fn derive_asset_id(creator: &Address, nonce: u64) -> Option<AssetId> {
    match crate::derive_object_id(b"", creator, nonce) {
        0 => None,
        id => Some(AssetId(id)),
    }
}

/// Whether `symbol` is 1 to 12 ASCII uppercase letters or digits.
pub fn is_valid_symbol(symbol: &str) -> bool {
    (1..=MAX_SYMBOL_LEN).contains(&symbol.len())
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Reads an asset's description.
pub fn asset_info<V: StateView>(
    view: &mut V,
    asset: AssetId,
) -> Result<Option<AssetInfo>, BankError> {
    match view.read(&BankKey::AssetInfo(asset).key())? {
        None => Ok(None),
        Some(Value::Bytes(b)) => AssetInfo::try_from_slice(&b)
            .map(Some)
            .map_err(|_| BankError::CorruptAssetInfo(asset)),
        Some(Value::Num(_)) => Err(BankError::CorruptAssetInfo(asset)),
    }
}

/// The value stored under [`BankKey::AssetInfo`].
pub fn encode_asset_info(info: &AssetInfo) -> Value {
    let bytes: Arc<[u8]> = borsh::to_vec(info).unwrap_or_default().into();
    Value::Bytes(bytes)
}

/// Creates an asset and mints its initial supply to `creator`; returns its id.
pub fn create_asset<V: StateView>(
    view: &mut V,
    creator: &Address,
    nonce: u64,
    symbol: &str,
    decimals: u8,
    initial_supply: Amount,
) -> Result<AssetId, BankError> {
    if !is_valid_symbol(symbol) {
        return Err(BankError::InvalidSymbol(symbol.to_string()));
    }
    if decimals > MAX_DECIMALS {
        return Err(BankError::InvalidDecimals(decimals));
    }
    let asset = derive_asset_id(creator, nonce).ok_or(BankError::ReservedAssetId)?;
    let info_key = BankKey::AssetInfo(asset).key();
    if view.read(&info_key)?.is_some() {
        return Err(BankError::AssetExists(asset));
    }
    let info = AssetInfo {
        symbol: symbol.to_string(),
        decimals,
        creator: *creator,
    };
    view.write(info_key, Some(encode_asset_info(&info)));
    view.write(BankKey::Supply(asset).key(), Some(Value::Num(0)));
    view.write(
        BankKey::MintHeadroom(asset).key(),
        Some(Value::Num(u128::MAX)),
    );
    mint(view, creator, asset, initial_supply)?;
    Ok(asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_layout_and_parse_back() {
        let a = Address([7; 32]);
        let asset = AssetId(0x0102_0304_0506_0708);
        let k = BankKey::Balance(a, asset).key();
        assert_eq!(k.as_bytes().len(), 41);
        assert_eq!(k.as_bytes()[0], PREFIX_BALANCE);
        assert_eq!(&k.as_bytes()[33..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        for bk in [
            BankKey::Balance(a, asset),
            BankKey::Nonce(a),
            BankKey::AssetInfo(asset),
            BankKey::Supply(asset),
            BankKey::MintHeadroom(asset),
        ] {
            assert_eq!(BankKey::from_bytes(bk.key().as_bytes()), Some(bk));
        }
        assert_eq!(BankKey::from_bytes(&[]), None);
        assert_eq!(BankKey::from_bytes(&[PREFIX_NONCE, 1, 2]), None);
        assert_eq!(BankKey::from_bytes(&[0x77; 9]), None);
    }

    #[test]
    fn balances_and_nonces_are_at_home_with_their_owner_and_nothing_else_is() {
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        raw[8] = 9;
        let a = Address(raw);
        let b = Address([0xab; 32]);
        assert_eq!(home_of(&a), 0x1122_3344_5566_7788);
        assert_ne!(home_of(&a), home_of(&b));
        for owned in [
            balance_key(&a, AssetId::BTC),
            balance_key(&a, AssetId(7)),
            nonce_key(&a),
        ] {
            assert_eq!(key_home(&owned), Some(home_of(&a)));
        }
        assert_eq!(key_home(&nonce_key(&b)), Some(home_of(&b)));
        for unowned in [
            BankKey::AssetInfo(AssetId(7)).key(),
            BankKey::Supply(AssetId(7)).key(),
            BankKey::MintHeadroom(AssetId(7)).key(),
            Key::from_array([PREFIX_BALANCE; 9]),
            Key::from_array([PREFIX_NONCE; 41]),
        ] {
            assert_eq!(key_home(&unowned), None, "{unowned:?}");
        }
    }

    #[test]
    fn symbols() {
        for ok in ["A", "BTC", "USDT", "ABCDEFGHIJ12", "1INCH"] {
            assert!(is_valid_symbol(ok), "{ok}");
        }
        for bad in ["", "btc", "ABCDEFGHIJ123", "A-B", "É", "A B"] {
            assert!(!is_valid_symbol(bad), "{bad}");
        }
    }

    #[test]
    fn asset_ids_are_deterministic_and_distinct() {
        let a = Address([1; 32]);
        assert_eq!(derive_asset_id(&a, 3), derive_asset_id(&a, 3));
        assert_ne!(derive_asset_id(&a, 3), derive_asset_id(&a, 4));
        assert_ne!(
            derive_asset_id(&a, 3),
            derive_asset_id(&Address([2; 32]), 3)
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            BankError::InsufficientBalance {
                asset: AssetId::BTC,
                have: 40,
                need: 100
            }
            .to_string(),
            "insufficient balance: have 40, need 100"
        );
    }
}
