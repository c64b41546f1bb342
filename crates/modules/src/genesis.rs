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
use crate::bridge::BridgeConfig;

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

/// A chain's genesis as a file describes it (`genesis.json`): the chain id, where fees go, the
/// initial balances and asset descriptions, the lending authorities, and setup calls run in
/// order at genesis (pools, markets, prices: anything a module's messages can create).
///
/// Every node that builds the state from the same spec gets the same state: [`Self::build`] is
/// deterministic, and the spec is part of what a full node must be given.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisSpec {
    /// The chain id every transaction must carry.
    pub chain_id: u64,
    /// The genesis block's timestamp, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The sequencer's account, credited with every fee.
    pub fee_account: Address,
    /// Initial balances (duplicates add up).
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
    /// Descriptions of the genesis assets other than BTC (those without one are shown as
    /// `GENESIS` with 0 decimals).
    #[serde(default)]
    pub assets: Vec<GenesisAsset>,
    /// Who may create lending markets and set prices; no lending without it.
    #[serde(default)]
    pub lending: Option<crate::lending::LendingConfig>,
    /// Calls run in order at genesis, without fees; each sender's nonces count from 0.
    #[serde(default)]
    pub setup: Vec<GenesisCall>,
    /// Where the chain settles on Bitcoin; a chain without it is not posted to Bitcoin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementSpec>,
}

/// How a chain settles on Bitcoin: whose envelopes count, from which Bitcoin block, and its
/// BTC bridge (whose authority is the sequencer's key). Not part of the state: it tells full
/// nodes what to read, and configures the runtime ([`GenesisSpec::runtime`]).
///
/// The bridge's fields have defaults, so genesis files written before the bridge still parse.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementSpec {
    /// The sequencer's x-only public key (64 hex digits): only envelopes signed by it count,
    /// and only transactions signed by it credit bridge deposits.
    pub sequencer_key: String,
    /// The first Bitcoin block that can hold the chain's batches.
    pub start_height: u64,
    /// How many confirmations a Bitcoin deposit needs before the sequencer includes it
    /// (1: in a block; default [`DEFAULT_DEPOSIT_CONFIRMATIONS`]).
    #[serde(default = "default_deposit_confirmations")]
    pub deposit_confirmations: u32,
    /// Smallest deposit credited, in satoshis (default [`DEFAULT_MIN_DEPOSIT`]).
    #[serde(default = "default_min_deposit")]
    pub min_deposit: u64,
    /// Smallest withdrawal accepted, in satoshis (default [`DEFAULT_MIN_WITHDRAWAL`]).
    #[serde(default = "default_min_withdrawal")]
    pub min_withdrawal: u64,
}

/// Default of [`SettlementSpec::deposit_confirmations`].
pub const DEFAULT_DEPOSIT_CONFIRMATIONS: u32 = 6;
/// Default of [`SettlementSpec::min_deposit`], in satoshis.
pub const DEFAULT_MIN_DEPOSIT: u64 = 10_000;
/// Default of [`SettlementSpec::min_withdrawal`], in satoshis.
pub const DEFAULT_MIN_WITHDRAWAL: u64 = 10_000;

fn default_deposit_confirmations() -> u32 {
    DEFAULT_DEPOSIT_CONFIRMATIONS
}

fn default_min_deposit() -> u64 {
    DEFAULT_MIN_DEPOSIT
}

fn default_min_withdrawal() -> u64 {
    DEFAULT_MIN_WITHDRAWAL
}

impl SettlementSpec {
    /// Settlement by `sequencer_key` (64 hex digits) from Bitcoin block `start_height`, with
    /// the bridge's default deposit depth and minimums.
    pub fn new(sequencer_key: String, start_height: u64) -> SettlementSpec {
        SettlementSpec {
            sequencer_key,
            start_height,
            deposit_confirmations: DEFAULT_DEPOSIT_CONFIRMATIONS,
            min_deposit: DEFAULT_MIN_DEPOSIT,
            min_withdrawal: DEFAULT_MIN_WITHDRAWAL,
        }
    }

    /// The sequencer's address: [`Self::sequencer_key`] as 64 hex digits (surrounding
    /// whitespace ignored) of a valid x-only public key; `None` otherwise.
    pub fn sequencer_address(&self) -> Option<Address> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(self.sequencer_key.trim(), &mut bytes).ok()?;
        let address = Address(bytes);
        address.is_valid_key().then_some(address)
    }

    /// The bridge this settlement configures; `None` if the sequencer key does not parse.
    pub fn bridge_config(&self) -> Option<BridgeConfig> {
        Some(BridgeConfig {
            authority: self.sequencer_address()?,
            min_deposit: self.min_deposit,
            min_withdrawal: self.min_withdrawal,
        })
    }
}

/// An initial balance.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    /// The owner.
    pub address: Address,
    /// The asset.
    pub asset: AssetId,
    /// In base units.
    pub amount: Amount,
}

/// The description of a genesis asset.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAsset {
    /// Its id (not BTC's 0).
    pub asset: AssetId,
    /// 1 to 12 ASCII uppercase letters or digits.
    pub symbol: String,
    /// At most 18.
    pub decimals: u8,
}

/// A call run at genesis on behalf of `sender`.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisCall {
    /// Whose call it is.
    pub sender: Address,
    /// The call.
    pub call: crate::runtime::Call,
}

/// Why a genesis spec cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisSpecError {
    /// The balances are invalid.
    #[error(transparent)]
    Balances(#[from] GenesisError),
    /// An asset description is invalid.
    #[error("genesis asset {asset}: {reason}")]
    Asset {
        /// The asset.
        asset: AssetId,
        /// Why.
        reason: String,
    },
    /// A setup call failed.
    #[error("genesis setup call {index} ({sender}) failed: {reason}")]
    Setup {
        /// Its position in `setup`.
        index: usize,
        /// Its sender.
        sender: Address,
        /// The receipt's reason.
        reason: String,
    },
}

impl GenesisSpec {
    /// The runtime of this chain: with the BTC bridge when it settles on Bitcoin with a
    /// sequencer key that parses ([`Self::bridge_config`]), without one otherwise.
    pub fn runtime(&self) -> crate::runtime::Runtime {
        let runtime = crate::runtime::Runtime::new(self.chain_id, self.fee_account);
        match self.bridge_config() {
            Some(config) => runtime.with_bridge(config),
            None => runtime,
        }
    }

    /// The chain's BTC bridge: its authority is the settlement's sequencer key; `None` without
    /// a settlement or when that key is not 64 hex digits of an x-only public key.
    pub fn bridge_config(&self) -> Option<BridgeConfig> {
        self.settlement.as_ref()?.bridge_config()
    }

    /// Builds the genesis state: balances, asset descriptions, lending authorities, then the
    /// setup calls, executed by the runtime at height 0.
    pub fn build(&self) -> Result<KeyMap<Value>, GenesisSpecError> {
        let balances: Vec<(Address, AssetId, Amount)> = self
            .balances
            .iter()
            .map(|b| (b.address, b.asset, b.amount))
            .collect();
        let mut state = try_genesis_state(&balances)?;
        for a in &self.assets {
            let fail = |reason: &str| GenesisSpecError::Asset {
                asset: a.asset,
                reason: reason.to_string(),
            };
            if a.asset == AssetId::BTC {
                return Err(fail("BTC's description is fixed"));
            }
            if !crate::bank::is_valid_symbol(&a.symbol) {
                return Err(fail(
                    "symbol must be 1 to 12 ASCII uppercase letters or digits",
                ));
            }
            if a.decimals > 18 {
                return Err(fail("at most 18 decimals"));
            }
            let info = AssetInfo {
                symbol: a.symbol.clone(),
                decimals: a.decimals,
                creator: Address([0; 32]),
            };
            state.insert(BankKey::AssetInfo(a.asset).key(), encode_asset_info(&info));
            if !state.contains_key(&BankKey::Supply(a.asset).key()) {
                state.insert(BankKey::Supply(a.asset).key(), Value::Num(0));
                state.insert(BankKey::MintHeadroom(a.asset).key(), Value::Num(u128::MAX));
            }
        }
        if let Some(config) = &self.lending {
            let (k, v) = crate::lending::config_entry(config);
            state.insert(k, v);
        }
        if self.setup.is_empty() {
            return Ok(state);
        }
        let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
        let txs: Vec<crate::runtime::Tx> = self
            .setup
            .iter()
            .map(|c| {
                let nonce = nonces.entry(c.sender).or_insert(0);
                let tx = crate::runtime::Tx {
                    chain_id: self.chain_id,
                    sender: c.sender,
                    nonce: *nonce,
                    fee: 0,
                    call: c.call.clone(),
                };
                *nonce += 1;
                tx
            })
            .collect();
        let block = crate::runtime::block_txs(Vec::new(), txs);
        let out = parabit_exec::execute_sequential(&self.runtime(), &block, &state);
        // The block is the setup calls, then the end-block hooks of any batch swaps.
        for (index, receipt) in out.outputs.iter().enumerate() {
            if !receipt.status.is_success() {
                let sender = self.setup.get(index).map_or(Address([0; 32]), |c| c.sender);
                return Err(GenesisSpecError::Setup {
                    index,
                    sender,
                    reason: receipt.status.to_string(),
                });
            }
        }
        out.writes.apply_to(&mut state);
        Ok(state)
    }
}
