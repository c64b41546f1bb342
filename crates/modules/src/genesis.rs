//! Genesis state and conservation checks over an in-memory state, for tests, benchmarks and
//! the devnet.
//!
//! Invariants:
//! - [`try_genesis_state`] yields a state that passes [`check_conservation`]: for every asset
//!   it mentions (and always BTC) there is an `AssetInfo`, a `Supply` equal to the sum of its
//!   balances, and a `MintHeadroom` of `u128::MAX - supply`.
//! - The checks never panic, whatever the state holds.

use std::collections::BTreeMap;

use parabit_exec::{key_map_with_capacity, KeyMap, Value};
use parabit_primitives::{Address, Amount, AssetId};

use crate::bank::{encode_asset_info, AssetInfo, BankKey};

/// Why a genesis allocation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// The allocations of one asset sum past `u128::MAX`.
    #[error("genesis supply of asset {0} overflows u128")]
    SupplyOverflow(AssetId),
}

/// A state violating the bank's conservation invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConservationError {
    /// The balances of an asset do not sum to its supply.
    #[error("asset {asset}: balances sum to {balances} but supply is {supply}")]
    SupplyMismatch {
        /// The asset.
        asset: AssetId,
        /// Sum of balances.
        balances: u128,
        /// Recorded supply.
        supply: u128,
    },
    /// The balances of an asset sum past `u128::MAX`.
    #[error("asset {0}: balances overflow u128")]
    BalanceOverflow(AssetId),
    /// Supply and headroom do not add up to `u128::MAX`.
    #[error("asset {asset}: supply {supply} + mint headroom {headroom} != u128::MAX")]
    HeadroomMismatch {
        /// The asset.
        asset: AssetId,
        /// Recorded supply.
        supply: u128,
        /// Recorded headroom.
        headroom: u128,
    },
    /// Balances or a supply of an asset that was never created.
    #[error("asset {0} has balances or a supply but no asset info")]
    UnknownAsset(AssetId),
    /// A numeric bank key holds bytes, or the asset info holds a number.
    #[error("bank key {0:?} holds a value of the wrong kind")]
    WrongValueKind(BankKey),
}

/// The genesis state with these balances (duplicates add up), their supplies, and BTC's
/// asset info. Assets other than BTC get the placeholder info `{symbol: "GENESIS",
/// decimals: 0}`.
pub fn try_genesis_state(
    balances: &[(Address, AssetId, Amount)],
) -> Result<KeyMap<Value>, GenesisError> {
    let mut state = key_map_with_capacity(balances.len() + 8);
    let mut supplies: BTreeMap<AssetId, Amount> = BTreeMap::new();
    supplies.insert(AssetId::BTC, 0);
    let mut per_account: BTreeMap<(Address, AssetId), Amount> = BTreeMap::new();
    for &(owner, asset, amount) in balances {
        let supply = supplies.entry(asset).or_insert(0);
        *supply = supply
            .checked_add(amount)
            .ok_or(GenesisError::SupplyOverflow(asset))?;
        // Cannot overflow: bounded by the supply just checked.
        *per_account.entry((owner, asset)).or_insert(0) += amount;
    }
    for ((owner, asset), amount) in per_account {
        if amount > 0 {
            state.insert(BankKey::Balance(owner, asset).key(), Value::Num(amount));
        }
    }
    for (asset, supply) in supplies {
        let info = if asset == AssetId::BTC {
            AssetInfo::btc()
        } else {
            AssetInfo {
                symbol: "GENESIS".to_string(),
                decimals: 0,
                creator: Address([0; 32]),
            }
        };
        state.insert(BankKey::AssetInfo(asset).key(), encode_asset_info(&info));
        state.insert(BankKey::Supply(asset).key(), Value::Num(supply));
        state.insert(
            BankKey::MintHeadroom(asset).key(),
            Value::Num(u128::MAX - supply),
        );
    }
    Ok(state)
}

/// [`try_genesis_state`] for tests and benchmarks.
///
/// # Panics
/// If an asset's allocations sum past `u128::MAX`; use [`try_genesis_state`] on untrusted
/// input.
pub fn genesis_state(balances: &[(Address, AssetId, Amount)]) -> KeyMap<Value> {
    match try_genesis_state(balances) {
        Ok(state) => state,
        Err(e) => panic!("invalid genesis: {e}"),
    }
}

/// Per asset, the recorded supply (from the `Supply` keys).
pub fn supplies(state: &KeyMap<Value>) -> BTreeMap<AssetId, Amount> {
    state
        .iter()
        .filter_map(|(k, v)| match BankKey::from_bytes(k.as_bytes()) {
            Some(BankKey::Supply(asset)) => Some((asset, v.as_num())),
            _ => None,
        })
        .collect()
}

/// The recorded supply of one asset (0 if none).
pub fn total_supply(state: &KeyMap<Value>, asset: AssetId) -> Amount {
    state
        .get(&BankKey::Supply(asset).key())
        .map_or(0, Value::as_num)
}

/// One account's balance in an in-memory state.
pub fn balance_of(state: &KeyMap<Value>, owner: &Address, asset: AssetId) -> Amount {
    state
        .get(&BankKey::Balance(*owner, asset).key())
        .map_or(0, Value::as_num)
}

/// Checks the bank's invariants over a whole in-memory state: for every asset, balances sum
/// to the supply, supply plus headroom is `u128::MAX`, and the asset has an info.
pub fn check_conservation(state: &KeyMap<Value>) -> Result<(), ConservationError> {
    #[derive(Default)]
    struct Totals {
        balances: u128,
        supply: Option<u128>,
        headroom: Option<u128>,
        info: bool,
    }
    let mut assets: BTreeMap<AssetId, Totals> = BTreeMap::new();
    for (k, v) in state {
        let Some(bk) = BankKey::from_bytes(k.as_bytes()) else {
            continue;
        };
        let num = match (bk, v) {
            (BankKey::AssetInfo(_), Value::Bytes(_)) | (_, Value::Num(_)) => v.as_num(),
            _ => return Err(ConservationError::WrongValueKind(bk)),
        };
        match bk {
            BankKey::Balance(_, asset) => {
                let t = assets.entry(asset).or_default();
                t.balances = t
                    .balances
                    .checked_add(num)
                    .ok_or(ConservationError::BalanceOverflow(asset))?;
            }
            BankKey::Supply(asset) => assets.entry(asset).or_default().supply = Some(num),
            BankKey::MintHeadroom(asset) => assets.entry(asset).or_default().headroom = Some(num),
            BankKey::AssetInfo(asset) => assets.entry(asset).or_default().info = true,
            BankKey::Nonce(_) => {}
        }
    }
    for (asset, t) in assets {
        let supply = t.supply.unwrap_or(0);
        if t.balances != supply {
            return Err(ConservationError::SupplyMismatch {
                asset,
                balances: t.balances,
                supply,
            });
        }
        if !t.info && (supply > 0 || t.supply.is_some()) {
            return Err(ConservationError::UnknownAsset(asset));
        }
        let headroom = t.headroom.unwrap_or(0);
        if t.info && supply.checked_add(headroom) != Some(u128::MAX) {
            return Err(ConservationError::HeadroomMismatch {
                asset,
                supply,
                headroom,
            });
        }
    }
    Ok(())
}
