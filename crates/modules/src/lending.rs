//! Lending: one market per asset, interest-bearing supply shares, borrows, a kinked (jump)
//! interest rate model, a health factor over all of an account's positions, liquidations, and
//! a price oracle written by an authorised account.
//!
//! # Model
//! - A market's tokens sit in the bank account [`vault_address`] (one vault for all markets).
//! - A supplier holds *shares*; one share is worth `supply_index / 1e18` of the asset.
//! - A borrower holds *scaled debt*; it is worth `borrow_index / 1e18` of the asset.
//! - Interest accrues only in the begin-block hook [`accrue`] (one [`Hook`] per market, so
//!   markets accrue in parallel), with Compound v2's `JumpRateModelV2` and `accrueInterest`
//!   formulas: per-block rates derived from yearly ones exactly as that contract's
//!   constructor does, utilisation `borrows / (cash + borrows - reserves)`, simple interest
//!   per block delta, `reserve_factor` of the interest to reserves, the rest to suppliers
//!   through the supply index. Within a block the indices are read-only for user transactions.
//! - Prices (1e18 fixed point: the value of one base unit) are written by the oracle account.
//! - Health factor `= Σ collateral value × liquidation threshold / Σ debt value` (1e18 fixed
//!   point; infinite without debt). A borrow or a withdrawal must leave the *borrow health*
//!   (the same sum with each market's collateral factor, which is at most its liquidation
//!   threshold) at 1 or above; an account whose health factor is below 1 can be liquidated.
//!
//! [`Hook`]: crate::Hook
//!
//! # State (prefix byte, then fixed-size fields; integers big-endian)
//! | key | value |
//! |---|---|
//! | `20` [`LendingKey::Config`] | `Bytes`: borsh of [`LendingConfig`] (admin, oracle) |
//! | `21 ‖ asset` [`LendingKey::Market`] | `Bytes`: borsh of [`Market`] (params, indices) |
//! | `22` [`LendingKey::MarketList`] | `Bytes`: borsh of `Vec<AssetId>` |
//! | `23 ‖ asset` [`LendingKey::Cash`] | `Num`: tokens of the market in the vault |
//! | `24 ‖ asset` [`LendingKey::TotalShares`] | `Num`: sum of all suppliers' shares |
//! | `25 ‖ asset` [`LendingKey::TotalScaledDebt`] | `Num`: sum of all scaled debts |
//! | `26 ‖ asset` [`LendingKey::Reserves`] | `Num`: the protocol's reserves |
//! | `27 ‖ asset` [`LendingKey::Price`] | `Num`: oracle price, 1e18 fixed point |
//! | `28 ‖ owner ‖ asset` [`LendingKey::Shares`] | `Num`: a supplier's shares |
//! | `29 ‖ owner ‖ asset` [`LendingKey::ScaledDebt`] | `Num`: a borrower's scaled debt |
//! | `2a ‖ owner` [`LendingKey::Entered`] | `Bytes`: borsh of the account's markets |
//!
//! # Invariants
//! - Value is conserved: tokens only move through bank transfers between accounts and the
//!   vault, and for every asset `bank balance(vault, asset) == Cash(asset)`.
//! - `TotalShares(a) == Σ Shares(_, a)` and `TotalScaledDebt(a) == Σ ScaledDebt(_, a)`.
//! - Solvency, per market: `total_shares × supply_index + reserves <= cash +
//!   total_scaled_debt × borrow_index` (exact products), hence `Σ floor(shares ×
//!   supply_index) + reserves <= cash + Σ ceil(scaled_debt × borrow_index)`: every rounding goes the protocol's way: shares minted and
//!   debt repaid round down, shares burned and debt created round up, a supplier's value and
//!   the interest credited to suppliers round down, a borrower's debt rounds up, seized
//!   collateral rounds down.
//! - No borrow or withdrawal leaves an account with borrow health below 1; hence it never
//!   leaves a health factor below 1 (collateral factor <= liquidation threshold).
//! - A liquidation only touches an account whose health factor is below 1, repays at most
//!   `close_factor` of one debt, and seizes collateral worth at most `repay × (1 + bonus)`.
//!   Every market has `liquidation_threshold × (1 + bonus) < 1`. With `h` the health factor
//!   and `lt_c` the seized market's threshold, a liquidation changes
//!   `h = A / D` to `(A - r (1 + b) lt_c) / (D - r)`, which is `>= h` exactly when
//!   `h >= (1 + b) lt_c`: a liquidation improves the health factor of every account not yet
//!   that deep under water (below that, the account holds bad debt).
//! - Parallelism: market totals (`TotalShares`, `TotalScaledDebt`) and credits move by `add`
//!   (commutative deltas; a total is lowered by adding the two's complement, which never
//!   wraps since the total is the sum of the parts, each lowered by a checked `try_sub`);
//!   cash, the vault and accounts' parts are debited by `try_sub`. User transactions read a
//!   market's indices and params (written only by the market's creation and its begin-block
//!   hook), prices, and their own account's keys (a liquidation: the borrower's too). Only
//!   [`accrue`] reads the totals. So every user message declares a footprint ([`footprint`])
//!   in which a market's totals are deltas and its cash and vault balance are only added to
//!   and `try_sub`ed from: the users of one market run apart in the partitioned engine. A
//!   price update joins every health check of the block (they read the price); a market
//!   whose cash a block drains beyond its value at the start of the block makes the engine
//!   re-run that block on its general path (same result, slower).
//! - Every failure is a typed [`LendingError`]; a `Halt` from the view is passed up at once as
//!   [`LendingError::Halt`].

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{num_of, Footprint, Halt, Key, StateView, Storage, Value};
use parabit_primitives::{Address, Amount, AssetId};

use crate::bank::{self, BankError};
use crate::{declare, Touch};

/// 1.0 in 1e18 fixed point.
pub const WAD: u128 = 1_000_000_000_000_000_000;

/// Prefix bytes of the lending keys.
pub const PREFIX_CONFIG: u8 = 0x20;
/// Market key prefix.
pub const PREFIX_MARKET: u8 = 0x21;
/// Market list key prefix.
pub const PREFIX_MARKET_LIST: u8 = 0x22;
/// Cash key prefix.
pub const PREFIX_CASH: u8 = 0x23;
/// Total shares key prefix.
pub const PREFIX_TOTAL_SHARES: u8 = 0x24;
/// Total scaled debt key prefix.
pub const PREFIX_TOTAL_SCALED_DEBT: u8 = 0x25;
/// Reserves key prefix.
pub const PREFIX_RESERVES: u8 = 0x26;
/// Price key prefix.
pub const PREFIX_PRICE: u8 = 0x27;
/// Shares key prefix.
pub const PREFIX_SHARES: u8 = 0x28;
/// Scaled debt key prefix.
pub const PREFIX_SCALED_DEBT: u8 = 0x29;
/// Entered markets key prefix.
pub const PREFIX_ENTERED: u8 = 0x2a;

/// Most markets one account may be in (bounds the work of a health check).
pub const MAX_ENTERED: usize = 16;

/// A state key owned by lending.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LendingKey {
    /// Who administers markets and who writes prices.
    Config,
    /// A market's parameters and indices.
    Market(AssetId),
    /// Every market, in creation order.
    MarketList,
    /// Tokens of a market held by the vault.
    Cash(AssetId),
    /// Sum of suppliers' shares.
    TotalShares(AssetId),
    /// Sum of scaled debts.
    TotalScaledDebt(AssetId),
    /// Reserves of a market.
    Reserves(AssetId),
    /// Oracle price of an asset.
    Price(AssetId),
    /// A supplier's shares.
    Shares(Address, AssetId),
    /// A borrower's scaled debt.
    ScaledDebt(Address, AssetId),
    /// The markets an account has positions in.
    Entered(Address),
}

impl LendingKey {
    /// The engine key.
    pub fn key(&self) -> Key {
        let asset_key = |p: u8, a: &AssetId| {
            let mut k = [0u8; 9];
            k[0] = p;
            k[1..].copy_from_slice(&a.0.to_be_bytes());
            Key::from_array(k)
        };
        let owner_asset_key = |p: u8, o: &Address, a: &AssetId| {
            let mut k = [0u8; 41];
            k[0] = p;
            k[1..33].copy_from_slice(&o.0);
            k[33..].copy_from_slice(&a.0.to_be_bytes());
            Key::from_array(k)
        };
        match self {
            LendingKey::Config => Key::from_array([PREFIX_CONFIG]),
            LendingKey::Market(a) => asset_key(PREFIX_MARKET, a),
            LendingKey::MarketList => Key::from_array([PREFIX_MARKET_LIST]),
            LendingKey::Cash(a) => asset_key(PREFIX_CASH, a),
            LendingKey::TotalShares(a) => asset_key(PREFIX_TOTAL_SHARES, a),
            LendingKey::TotalScaledDebt(a) => asset_key(PREFIX_TOTAL_SCALED_DEBT, a),
            LendingKey::Reserves(a) => asset_key(PREFIX_RESERVES, a),
            LendingKey::Price(a) => asset_key(PREFIX_PRICE, a),
            LendingKey::Shares(o, a) => owner_asset_key(PREFIX_SHARES, o, a),
            LendingKey::ScaledDebt(o, a) => owner_asset_key(PREFIX_SCALED_DEBT, o, a),
            LendingKey::Entered(o) => {
                let mut k = [0u8; 33];
                k[0] = PREFIX_ENTERED;
                k[1..].copy_from_slice(&o.0);
                Key::from_array(k)
            }
        }
    }

    /// Parses a key's bytes back; `None` if they are not a lending key.
    pub fn from_bytes(bytes: &[u8]) -> Option<LendingKey> {
        let (&prefix, rest) = bytes.split_first()?;
        let asset = |b: &[u8]| Some(AssetId(u64::from_be_bytes(b.try_into().ok()?)));
        let address = |b: &[u8]| -> Option<Address> { Some(Address(b.try_into().ok()?)) };
        match (prefix, rest.len()) {
            (PREFIX_CONFIG, 0) => Some(LendingKey::Config),
            (PREFIX_MARKET, 8) => Some(LendingKey::Market(asset(rest)?)),
            (PREFIX_MARKET_LIST, 0) => Some(LendingKey::MarketList),
            (PREFIX_CASH, 8) => Some(LendingKey::Cash(asset(rest)?)),
            (PREFIX_TOTAL_SHARES, 8) => Some(LendingKey::TotalShares(asset(rest)?)),
            (PREFIX_TOTAL_SCALED_DEBT, 8) => Some(LendingKey::TotalScaledDebt(asset(rest)?)),
            (PREFIX_RESERVES, 8) => Some(LendingKey::Reserves(asset(rest)?)),
            (PREFIX_PRICE, 8) => Some(LendingKey::Price(asset(rest)?)),
            (PREFIX_SHARES, 40) => Some(LendingKey::Shares(
                address(&rest[..32])?,
                asset(&rest[32..])?,
            )),
            (PREFIX_SCALED_DEBT, 40) => Some(LendingKey::ScaledDebt(
                address(&rest[..32])?,
                asset(&rest[32..])?,
            )),
            (PREFIX_ENTERED, 32) => Some(LendingKey::Entered(address(rest)?)),
            _ => None,
        }
    }
}

/// The bank account holding every market's tokens: `SHA256("parabit/lending/vault")`.
pub fn vault_address() -> Address {
    // Hashed once: every call of the module names the vault.
    static VAULT: std::sync::LazyLock<Address> =
        std::sync::LazyLock::new(|| crate::module_account(b"parabit/lending/vault"));
    *VAULT
}

/// The home of a state key ([`parabit_exec::Vm::key_home`]): an account's positions (its
/// shares, its scaled debts, the markets it entered) belong to it ([`bank::home_of`]); the
/// markets' keys belong to no account.
pub fn key_home(key: &Key) -> Option<u64> {
    let bytes = key.as_bytes();
    let owned = match bytes.first() {
        Some(&PREFIX_SHARES | &PREFIX_SCALED_DEBT) => bytes.len() == 41,
        Some(&PREFIX_ENTERED) => bytes.len() == 33,
        _ => false,
    };
    let id: [u8; 8] = bytes.get(1..9)?.try_into().ok()?;
    owned.then(|| u64::from_le_bytes(id))
}

/// The lending vault's home ([`bank::home_of`]): every borrower and withdrawer takes from
/// its balances, so the runtime gives them no home ([`parabit_exec::Vm::key_home`]).
pub fn vault_home() -> u64 {
    static HOME: std::sync::LazyLock<u64> =
        std::sync::LazyLock::new(|| bank::home_of(&vault_address()));
    *HOME
}

/// Who may create markets and who writes prices. Set at genesis ([`config_entry`]).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LendingConfig {
    /// May create markets.
    pub admin: Address,
    /// May set prices.
    pub oracle: Address,
}

/// The genesis entry that configures lending.
pub fn config_entry(config: &LendingConfig) -> (Key, Value) {
    (
        LendingKey::Config.key(),
        Value::bytes(borsh::to_vec(config).unwrap_or_default()),
    )
}

/// A market's parameters; rates and factors are 1e18 fixed point.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct MarketParams {
    /// Borrow rate per year at zero utilisation.
    pub base_rate_per_year: u128,
    /// Added borrow rate per year at the kink (Compound's `multiplierPerYear`).
    pub multiplier_per_year: u128,
    /// Slope per year above the kink (Compound's `jumpMultiplierPerYear`).
    pub jump_multiplier_per_year: u128,
    /// Utilisation where the jump starts; in (0, 1].
    pub kink: u128,
    /// Blocks per year (Compound v2: 2,102,400).
    pub blocks_per_year: u64,
    /// Share of interest that goes to reserves; at most 1.
    pub reserve_factor: u128,
    /// Share of collateral value that may be borrowed against.
    pub collateral_factor: u128,
    /// Share of collateral value below which the account can be liquidated.
    pub liquidation_threshold: u128,
    /// Extra collateral a liquidator receives (0.08 = 8%).
    pub liquidation_bonus: u128,
    /// Share of one debt a liquidation may repay; in (0, 1].
    pub close_factor: u128,
}

/// A market: its parameters and indices, written only at creation and by [`accrue`].
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Market {
    /// The parameters.
    pub params: MarketParams,
    /// Value of one share, 1e18 fixed point (starts at 1).
    pub supply_index: u128,
    /// Value of one unit of scaled debt, 1e18 fixed point (starts at 1).
    pub borrow_index: u128,
    /// The height interest was last accrued at.
    pub accrued_height: u64,
}

/// A lending message.
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
pub enum LendingMsg {
    /// Creates the market of `asset` (the admin only).
    CreateMarket {
        /// The asset lent and borrowed.
        asset: AssetId,
        /// Its parameters.
        params: MarketParams,
    },
    /// Sets the price of `asset` (the oracle only).
    SetPrice {
        /// The asset.
        asset: AssetId,
        /// Value of one base unit, 1e18 fixed point; positive.
        price: u128,
    },
    /// Supplies `amount` for shares.
    Supply {
        /// The market.
        asset: AssetId,
        /// Base units.
        amount: Amount,
    },
    /// Withdraws `amount` (burning the shares it is worth, rounded up).
    Withdraw {
        /// The market.
        asset: AssetId,
        /// Base units.
        amount: Amount,
    },
    /// Borrows `amount`.
    Borrow {
        /// The market.
        asset: AssetId,
        /// Base units.
        amount: Amount,
    },
    /// Repays up to `amount` of the sender's debt (any excess is not taken).
    Repay {
        /// The market.
        asset: AssetId,
        /// Base units.
        amount: Amount,
    },
    /// Repays `amount` of `borrower`'s debt in `debt_asset` and takes their
    /// `collateral_asset` shares worth `amount × (1 + bonus)`.
    Liquidate {
        /// The unhealthy account.
        borrower: Address,
        /// The debt repaid.
        debt_asset: AssetId,
        /// The collateral seized.
        collateral_asset: AssetId,
        /// Base units of `debt_asset` repaid.
        amount: Amount,
    },
}

/// A 1e18 fixed-point number shown with two decimals (rounded down).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Wad(pub u128);

impl fmt::Display for Wad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u128::MAX {
            return f.write_str("inf");
        }
        let hundredths = self.0 / (WAD / 100);
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

/// Why a lending operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LendingError {
    /// No lending config in the state.
    #[error("lending is not configured")]
    NotConfigured,
    /// The sender is not the admin or the oracle.
    #[error("unauthorized: {0} is not the lending {1}")]
    Unauthorized(Address, &'static str),
    /// The market exists already.
    #[error("market {0} already exists")]
    MarketExists(AssetId),
    /// No such market.
    #[error("no market for asset {0}")]
    NoMarket(AssetId),
    /// The asset does not exist in the bank.
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    /// Out-of-range parameters.
    #[error("invalid market parameters: {0}")]
    InvalidParams(&'static str),
    /// An amount (or a price) of zero.
    #[error("amount must be positive")]
    ZeroAmount,
    /// The amount is worth less than one share or one unit of scaled debt.
    #[error("amount {0} is too small for the market's index")]
    DustAmount(Amount),
    /// Fewer shares than a withdrawal burns.
    #[error("insufficient supply: have {have} shares, need {need}")]
    InsufficientShares {
        /// Shares held.
        have: u128,
        /// Shares needed.
        need: u128,
    },
    /// The market lacks the cash.
    #[error("insufficient cash in market {asset}: have {have}, need {need}")]
    InsufficientCash {
        /// The market.
        asset: AssetId,
        /// Cash.
        have: Amount,
        /// Asked.
        need: Amount,
    },
    /// A borrow or a withdrawal would leave the account under-collateralised.
    #[error("insufficient collateral: health factor {0} < 1.00")]
    InsufficientCollateral(Wad),
    /// The account is healthy.
    #[error("account is not liquidatable: health factor {0} >= 1.00")]
    NotLiquidatable(Wad),
    /// Nothing to repay.
    #[error("no debt in market {0}")]
    NoDebt(AssetId),
    /// A liquidation above the close factor.
    #[error("repay {amount} exceeds the close factor limit {max}")]
    AboveCloseFactor {
        /// Asked.
        amount: Amount,
        /// The limit.
        max: Amount,
    },
    /// The borrower has too little of the collateral.
    #[error("insufficient collateral to seize: need {need} shares, borrower has {have}")]
    InsufficientSeizable {
        /// Shares held.
        have: u128,
        /// Shares to seize.
        need: u128,
    },
    /// A liquidator naming themselves.
    #[error("cannot liquidate oneself")]
    SelfLiquidation,
    /// A needed price is not set.
    #[error("no price for asset {0}")]
    NoPrice(AssetId),
    /// Too many markets in one account.
    #[error("account is in {MAX_ENTERED} markets already")]
    TooManyMarkets,
    /// Arithmetic past `u128`.
    #[error("arithmetic overflow")]
    Overflow,
    /// A value that does not decode.
    #[error("corrupt state: {0}")]
    Corrupt(&'static str),
    /// A bank failure (a balance too low).
    #[error(transparent)]
    Bank(BankError),
    /// The engine suspended the transaction (internal; never in a receipt).
    #[error("execution suspended on a dependency (internal)")]
    Halt(Halt),
}

module_error_conversions!(LendingError);

type Result<T> = std::result::Result<T, LendingError>;

// ---------------------------------------------------------------------------------------
// Fixed-point arithmetic

/// `a × b / d`, rounded down (`up == false`) or up, with a 256-bit intermediate.
pub fn mul_div(a: u128, b: u128, d: u128, up: bool) -> Result<u128> {
    if d == 0 {
        return Err(LendingError::Overflow);
    }
    if let Some(p) = a.checked_mul(b) {
        let q = p / d;
        return Ok(if up && p % d != 0 { q + 1 } else { q });
    }
    // 256-bit product as (hi, lo).
    let (a1, a0) = (a >> 64, a & u64::MAX as u128);
    let (b1, b0) = (b >> 64, b & u64::MAX as u128);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & u64::MAX as u128) + (p10 & u64::MAX as u128);
    let lo = (p00 & u64::MAX as u128) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    if hi >= d {
        return Err(LendingError::Overflow);
    }
    // Long division, one bit at a time: remainder stays below d.
    let (mut q, mut r) = (0u128, hi);
    for i in (0..128).rev() {
        let carry = r >> 127;
        r = (r << 1) | ((lo >> i) & 1);
        q <<= 1;
        if carry == 1 || r >= d {
            r = r.wrapping_sub(d);
            q |= 1;
        }
    }
    if up && r != 0 {
        q = q.checked_add(1).ok_or(LendingError::Overflow)?;
    }
    Ok(q)
}

fn add(a: u128, b: u128) -> Result<u128> {
    a.checked_add(b).ok_or(LendingError::Overflow)
}

/// Compound v2 `JumpRateModelV2` per-block rates derived from yearly ones (its constructor):
/// `(base, multiplier, jump)` per block.
pub fn per_block_rates(p: &MarketParams) -> Result<(u128, u128, u128)> {
    let bpy = u128::from(p.blocks_per_year);
    let base = p.base_rate_per_year / bpy.max(1);
    let mult = mul_div(
        p.multiplier_per_year,
        WAD,
        bpy.checked_mul(p.kink).ok_or(LendingError::Overflow)?,
        false,
    )?;
    let jump = p.jump_multiplier_per_year / bpy.max(1);
    Ok((base, mult, jump))
}

/// Compound's `utilizationRate`: `borrows × 1e18 / (cash + borrows - reserves)`, 0 without
/// borrows.
pub fn utilization(cash: u128, borrows: u128, reserves: u128) -> Result<u128> {
    if borrows == 0 {
        return Ok(0);
    }
    let denom = add(cash, borrows)?.saturating_sub(reserves);
    if denom == 0 {
        return Ok(0);
    }
    mul_div(borrows, WAD, denom, false)
}

/// Compound `JumpRateModelV2.getBorrowRate`: the borrow rate per block at `util`.
pub fn borrow_rate_per_block(p: &MarketParams, util: u128) -> Result<u128> {
    let (base, mult, jump) = per_block_rates(p)?;
    if util <= p.kink {
        add(mul_div(util, mult, WAD, false)?, base)
    } else {
        let normal = add(mul_div(p.kink, mult, WAD, false)?, base)?;
        add(mul_div(util - p.kink, jump, WAD, false)?, normal)
    }
}

/// Compound `getSupplyRate`: `util × borrow_rate × (1 - reserve_factor)`, per block.
pub fn supply_rate_per_block(p: &MarketParams, util: u128) -> Result<u128> {
    let rate = borrow_rate_per_block(p, util)?;
    let to_suppliers = mul_div(rate, WAD - p.reserve_factor.min(WAD), WAD, false)?;
    mul_div(util, to_suppliers, WAD, false)
}

fn validate(p: &MarketParams) -> Result<()> {
    let bad = LendingError::InvalidParams;
    if p.blocks_per_year == 0 {
        return Err(bad("blocks_per_year must be positive"));
    }
    if p.kink == 0 || p.kink > WAD {
        return Err(bad("kink must be in (0, 1]"));
    }
    if p.reserve_factor > WAD {
        return Err(bad("reserve_factor must be at most 1"));
    }
    if p.close_factor == 0 || p.close_factor > WAD {
        return Err(bad("close_factor must be in (0, 1]"));
    }
    if p.collateral_factor > p.liquidation_threshold {
        return Err(bad(
            "collateral_factor must not exceed liquidation_threshold",
        ));
    }
    if p.liquidation_threshold >= WAD {
        return Err(bad("liquidation_threshold must be below 1"));
    }
    if p.liquidation_bonus > WAD {
        return Err(bad("liquidation_bonus must be at most 1"));
    }
    let lt_bonus = mul_div(
        p.liquidation_threshold,
        WAD + p.liquidation_bonus,
        WAD,
        true,
    )?;
    if lt_bonus >= WAD {
        return Err(bad(
            "liquidation_threshold x (1 + liquidation_bonus) must be below 1",
        ));
    }
    // Rates must be computable at 100% utilisation for any block delta we will see.
    borrow_rate_per_block(p, WAD)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// State helpers

/// Read access to state: a transaction's view, or committed storage (queries).
pub trait Reader {
    /// Reads a key.
    fn get_value(&mut self, key: &Key) -> Result<Option<Value>>;
}

impl<V: StateView> Reader for V {
    fn get_value(&mut self, key: &Key) -> Result<Option<Value>> {
        Ok(self.read(key)?)
    }
}

/// Committed storage seen through [`Reader`] (for read-only queries).
pub struct StorageReader<'a, S: Storage>(pub &'a S);

impl<S: Storage> Reader for StorageReader<'_, S> {
    fn get_value(&mut self, key: &Key) -> Result<Option<Value>> {
        Ok(self.0.get(key))
    }
}

fn read_num<V: Reader>(view: &mut V, key: LendingKey) -> Result<u128> {
    Ok(num_of(&view.get_value(&key.key())?))
}

fn decode<T: BorshDeserialize>(value: Option<Value>, what: &'static str) -> Result<Option<T>> {
    match value {
        None => Ok(None),
        Some(Value::Bytes(b)) => T::try_from_slice(&b)
            .map(Some)
            .map_err(|_| LendingError::Corrupt(what)),
        Some(Value::Num(_)) => Err(LendingError::Corrupt(what)),
    }
}

fn encode<T: BorshSerialize>(t: &T) -> Value {
    Value::bytes(borsh::to_vec(t).unwrap_or_default())
}

fn config<V: StateView>(view: &mut V) -> Result<LendingConfig> {
    decode(view.read(&LendingKey::Config.key())?, "lending config")?
        .ok_or(LendingError::NotConfigured)
}

/// Reads a market (its params and indices).
pub fn market<V: Reader>(view: &mut V, asset: AssetId) -> Result<Market> {
    decode(view.get_value(&LendingKey::Market(asset).key())?, "market")?
        .ok_or(LendingError::NoMarket(asset))
}

/// Every market, in creation order.
pub fn market_list<V: Reader>(view: &mut V) -> Result<Vec<AssetId>> {
    Ok(decode(
        view.get_value(&LendingKey::MarketList.key())?,
        "market list",
    )?
    .unwrap_or_default())
}

fn entered<V: Reader>(view: &mut V, owner: &Address) -> Result<Vec<AssetId>> {
    Ok(decode(
        view.get_value(&LendingKey::Entered(*owner).key())?,
        "entered markets",
    )?
    .unwrap_or_default())
}

fn enter<V: StateView>(view: &mut V, owner: &Address, asset: AssetId) -> Result<()> {
    let mut list = entered(view, owner)?;
    if list.contains(&asset) {
        return Ok(());
    }
    if list.len() >= MAX_ENTERED {
        return Err(LendingError::TooManyMarkets);
    }
    list.push(asset);
    view.write(LendingKey::Entered(*owner).key(), Some(encode(&list)));
    Ok(())
}

/// Lowers a market total by `amount` with a wrapping `add` (of its two's complement): the
/// account's part was just taken with a checked `try_sub`, and the total is the sum of the
/// parts, so it never wraps. A delta, unlike a `try_sub`, needs no check against the value
/// at the start of the block, so the block's users of one market never join on it.
fn lower_total<V: StateView>(view: &mut V, key: LendingKey, amount: u128) {
    if amount > 0 {
        view.add(key.key(), amount.wrapping_neg());
    }
}

/// `try_sub` on an account's part of a total that must hold; else corrupt state.
fn sub_total<V: StateView>(view: &mut V, key: LendingKey, amount: u128) -> Result<()> {
    if amount == 0 || view.try_sub(key.key(), amount)? {
        Ok(())
    } else {
        Err(LendingError::Corrupt(
            "an account's part is below what it repays",
        ))
    }
}

/// A debt in base units from a scaled debt: rounded up.
pub fn debt_of(scaled: u128, borrow_index: u128) -> Result<u128> {
    mul_div(scaled, borrow_index, WAD, true)
}

/// A supply in base units from shares: rounded down.
pub fn supply_of(shares: u128, supply_index: u128) -> Result<u128> {
    mul_div(shares, supply_index, WAD, false)
}

// ---------------------------------------------------------------------------------------
// Health

/// An account's position in one market.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The market.
    pub asset: AssetId,
    /// Supply shares.
    pub shares: u128,
    /// Their value in base units (rounded down).
    pub supplied: Amount,
    /// Scaled debt.
    pub scaled_debt: u128,
    /// The debt in base units (rounded up).
    pub debt: Amount,
    /// The oracle price (0: none).
    pub price: u128,
}

/// An account's positions and health.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct AccountHealth {
    /// Every position.
    pub positions: Vec<Position>,
    /// Σ supplied × price (rounded down), in value units (1e18 = one unit of value).
    pub collateral_value: u128,
    /// Σ supplied × price × collateral factor (rounded down).
    pub borrow_limit: u128,
    /// Σ supplied × price × liquidation threshold (rounded down).
    pub liquidation_value: u128,
    /// Σ debt × price (rounded up).
    pub debt_value: u128,
    /// `liquidation_value / debt_value` (rounded down); `u128::MAX` without debt.
    pub health_factor: u128,
    /// `borrow_limit / debt_value` (rounded down); `u128::MAX` without debt.
    pub borrow_health: u128,
}

fn ratio(num: u128, den: u128) -> Result<u128> {
    if den == 0 {
        Ok(u128::MAX)
    } else {
        mul_div(num, WAD, den, false).or(Ok(u128::MAX))
    }
}

/// An account's positions and health factor, from the current indices and prices. A debt
/// without a price is an error ([`LendingError::NoPrice`]); collateral without one counts 0.
pub fn account_health<V: Reader>(view: &mut V, owner: &Address) -> Result<AccountHealth> {
    let mut h = AccountHealth {
        positions: Vec::new(),
        collateral_value: 0,
        borrow_limit: 0,
        liquidation_value: 0,
        debt_value: 0,
        health_factor: u128::MAX,
        borrow_health: u128::MAX,
    };
    for asset in entered(view, owner)? {
        let m = market(view, asset)?;
        let shares = read_num(view, LendingKey::Shares(*owner, asset))?;
        let scaled = read_num(view, LendingKey::ScaledDebt(*owner, asset))?;
        let price = read_num(view, LendingKey::Price(asset))?;
        let supplied = supply_of(shares, m.supply_index)?;
        let debt = debt_of(scaled, m.borrow_index)?;
        if supplied > 0 && price > 0 {
            let value = mul_div(supplied, price, WAD, false)?;
            h.collateral_value = add(h.collateral_value, value)?;
            h.borrow_limit = add(
                h.borrow_limit,
                mul_div(value, m.params.collateral_factor, WAD, false)?,
            )?;
            h.liquidation_value = add(
                h.liquidation_value,
                mul_div(value, m.params.liquidation_threshold, WAD, false)?,
            )?;
        }
        if debt > 0 {
            if price == 0 {
                return Err(LendingError::NoPrice(asset));
            }
            h.debt_value = add(h.debt_value, mul_div(debt, price, WAD, true)?)?;
        }
        h.positions.push(Position {
            asset,
            shares,
            supplied,
            scaled_debt: scaled,
            debt,
            price,
        });
    }
    h.health_factor = ratio(h.liquidation_value, h.debt_value)?;
    h.borrow_health = ratio(h.borrow_limit, h.debt_value)?;
    Ok(h)
}

fn require_borrow_health<V: StateView>(view: &mut V, owner: &Address) -> Result<()> {
    let h = account_health(view, owner)?;
    if h.borrow_health < WAD {
        return Err(LendingError::InsufficientCollateral(Wad(h.borrow_health)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Messages

/// Executes a lending message sent by `sender` in the block at `height`.
pub fn execute<V: StateView>(
    view: &mut V,
    sender: &Address,
    height: u64,
    msg: &LendingMsg,
) -> Result<()> {
    match msg {
        LendingMsg::CreateMarket { asset, params } => {
            create_market(view, sender, height, *asset, params)
        }
        LendingMsg::SetPrice { asset, price } => set_price(view, sender, *asset, *price),
        LendingMsg::Supply { asset, amount } => supply(view, sender, *asset, *amount),
        LendingMsg::Withdraw { asset, amount } => withdraw(view, sender, *asset, *amount),
        LendingMsg::Borrow { asset, amount } => borrow(view, sender, *asset, *amount),
        LendingMsg::Repay { asset, amount } => repay(view, sender, *asset, *amount).map(|_| ()),
        LendingMsg::Liquidate {
            borrower,
            debt_asset,
            collateral_asset,
            amount,
        } => liquidate(
            view,
            sender,
            borrower,
            *debt_asset,
            *collateral_asset,
            *amount,
        )
        .map(|_| ()),
    }
}

/// Creates a market (the admin only).
pub fn create_market<V: StateView>(
    view: &mut V,
    sender: &Address,
    height: u64,
    asset: AssetId,
    params: &MarketParams,
) -> Result<()> {
    let cfg = config(view)?;
    if *sender != cfg.admin {
        return Err(LendingError::Unauthorized(*sender, "admin"));
    }
    validate(params)?;
    if bank::asset_info(view, asset)?.is_none() {
        return Err(LendingError::UnknownAsset(asset));
    }
    if view.read(&LendingKey::Market(asset).key())?.is_some() {
        return Err(LendingError::MarketExists(asset));
    }
    let m = Market {
        params: *params,
        supply_index: WAD,
        borrow_index: WAD,
        accrued_height: height,
    };
    view.write(LendingKey::Market(asset).key(), Some(encode(&m)));
    let mut list = market_list(view)?;
    list.push(asset);
    view.write(LendingKey::MarketList.key(), Some(encode(&list)));
    Ok(())
}

/// Sets a price (the oracle only).
pub fn set_price<V: StateView>(
    view: &mut V,
    sender: &Address,
    asset: AssetId,
    price: u128,
) -> Result<()> {
    let cfg = config(view)?;
    if *sender != cfg.oracle {
        return Err(LendingError::Unauthorized(*sender, "oracle"));
    }
    if price == 0 {
        return Err(LendingError::ZeroAmount);
    }
    view.write(LendingKey::Price(asset).key(), Some(Value::Num(price)));
    Ok(())
}

/// Supplies `amount` for `floor(amount / supply_index)` shares (refused if that is 0).
pub fn supply<V: StateView>(
    view: &mut V,
    sender: &Address,
    asset: AssetId,
    amount: Amount,
) -> Result<()> {
    if amount == 0 {
        return Err(LendingError::ZeroAmount);
    }
    let m = market(view, asset)?;
    let shares = mul_div(amount, WAD, m.supply_index, false)?;
    if shares == 0 {
        return Err(LendingError::DustAmount(amount));
    }
    bank::transfer(view, sender, &vault_address(), asset, amount)?;
    view.add(LendingKey::Cash(asset).key(), amount);
    view.add(LendingKey::TotalShares(asset).key(), shares);
    view.add(LendingKey::Shares(*sender, asset).key(), shares);
    enter(view, sender, asset)
}

fn take_cash<V: StateView>(view: &mut V, asset: AssetId, amount: Amount) -> Result<()> {
    let key = LendingKey::Cash(asset).key();
    if view.try_sub(key, amount)? {
        Ok(())
    } else {
        Err(LendingError::InsufficientCash {
            asset,
            have: num_of(&view.read(&key)?),
            need: amount,
        })
    }
}

/// Withdraws `amount`, burning `ceil(amount / supply_index)` shares.
pub fn withdraw<V: StateView>(
    view: &mut V,
    sender: &Address,
    asset: AssetId,
    amount: Amount,
) -> Result<()> {
    if amount == 0 {
        return Err(LendingError::ZeroAmount);
    }
    let m = market(view, asset)?;
    let burn = mul_div(amount, WAD, m.supply_index, true)?;
    let key = LendingKey::Shares(*sender, asset).key();
    if !view.try_sub(key, burn)? {
        return Err(LendingError::InsufficientShares {
            have: num_of(&view.read(&key)?),
            need: burn,
        });
    }
    lower_total(view, LendingKey::TotalShares(asset), burn);
    take_cash(view, asset, amount)?;
    bank::transfer(view, &vault_address(), sender, asset, amount)?;
    require_borrow_health(view, sender)
}

/// Borrows `amount`, adding `ceil(amount / borrow_index)` scaled debt.
pub fn borrow<V: StateView>(
    view: &mut V,
    sender: &Address,
    asset: AssetId,
    amount: Amount,
) -> Result<()> {
    if amount == 0 {
        return Err(LendingError::ZeroAmount);
    }
    let m = market(view, asset)?;
    let scaled = mul_div(amount, WAD, m.borrow_index, true)?;
    enter(view, sender, asset)?;
    view.add(LendingKey::ScaledDebt(*sender, asset).key(), scaled);
    view.add(LendingKey::TotalScaledDebt(asset).key(), scaled);
    take_cash(view, asset, amount)?;
    bank::transfer(view, &vault_address(), sender, asset, amount)?;
    require_borrow_health(view, sender)
}

/// Reduces `owner`'s debt by `amount` paid by `payer`; returns what was paid (at most the
/// debt). Paying the whole debt clears the scaled debt; a part clears
/// `floor(amount / borrow_index)`.
fn pay_debt<V: StateView>(
    view: &mut V,
    payer: &Address,
    owner: &Address,
    asset: AssetId,
    m: &Market,
    amount: Amount,
    cap: bool,
) -> Result<Amount> {
    let scaled = read_num(view, LendingKey::ScaledDebt(*owner, asset))?;
    let debt = debt_of(scaled, m.borrow_index)?;
    if debt == 0 {
        return Err(LendingError::NoDebt(asset));
    }
    let paid = if cap { amount.min(debt) } else { amount };
    let reduce = if paid >= debt {
        scaled
    } else {
        mul_div(paid, WAD, m.borrow_index, false)?
    };
    if reduce == 0 {
        return Err(LendingError::DustAmount(paid));
    }
    bank::transfer(view, payer, &vault_address(), asset, paid)?;
    view.add(LendingKey::Cash(asset).key(), paid);
    sub_total(view, LendingKey::ScaledDebt(*owner, asset), reduce)?;
    lower_total(view, LendingKey::TotalScaledDebt(asset), reduce);
    Ok(paid)
}

/// Repays up to `amount` of the sender's debt; returns what was repaid.
pub fn repay<V: StateView>(
    view: &mut V,
    sender: &Address,
    asset: AssetId,
    amount: Amount,
) -> Result<Amount> {
    if amount == 0 {
        return Err(LendingError::ZeroAmount);
    }
    let m = market(view, asset)?;
    pay_debt(view, sender, sender, asset, &m, amount, true)
}

/// What a liquidation did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Liquidation {
    /// Debt repaid, base units of the debt asset.
    pub repaid: Amount,
    /// Collateral taken, base units of the collateral asset (rounded down).
    pub seized: Amount,
    /// Shares of the collateral market moved to the liquidator.
    pub seized_shares: u128,
}

/// The collateral (base units) seized for repaying `amount`:
/// `floor(floor(amount × price_debt / price_collateral) × (1 + bonus))` (Compound's
/// `liquidateCalculateSeizeTokens` before the exchange rate).
pub fn seize_amount(
    amount: Amount,
    price_debt: u128,
    price_collateral: u128,
    bonus: u128,
) -> Result<Amount> {
    let base = mul_div(amount, price_debt, price_collateral, false)?;
    mul_div(base, add(WAD, bonus)?, WAD, false)
}

/// Liquidates `borrower`: the sender repays `amount` of their `debt_asset` debt and takes
/// their `collateral_asset` shares worth `amount × (1 + bonus)` (bonus of the collateral
/// market).
pub fn liquidate<V: StateView>(
    view: &mut V,
    sender: &Address,
    borrower: &Address,
    debt_asset: AssetId,
    collateral_asset: AssetId,
    amount: Amount,
) -> Result<Liquidation> {
    if amount == 0 {
        return Err(LendingError::ZeroAmount);
    }
    if sender == borrower {
        return Err(LendingError::SelfLiquidation);
    }
    let dm = market(view, debt_asset)?;
    let cm = market(view, collateral_asset)?;
    let h = account_health(view, borrower)?;
    if h.health_factor >= WAD {
        return Err(LendingError::NotLiquidatable(Wad(h.health_factor)));
    }
    let scaled = read_num(view, LendingKey::ScaledDebt(*borrower, debt_asset))?;
    let debt = debt_of(scaled, dm.borrow_index)?;
    if debt == 0 {
        return Err(LendingError::NoDebt(debt_asset));
    }
    let max = mul_div(debt, dm.params.close_factor, WAD, false)?.max(1);
    if amount > max {
        return Err(LendingError::AboveCloseFactor { amount, max });
    }
    let price_debt = read_num(view, LendingKey::Price(debt_asset))?;
    let price_coll = read_num(view, LendingKey::Price(collateral_asset))?;
    if price_debt == 0 {
        return Err(LendingError::NoPrice(debt_asset));
    }
    if price_coll == 0 {
        return Err(LendingError::NoPrice(collateral_asset));
    }
    let seized = seize_amount(amount, price_debt, price_coll, cm.params.liquidation_bonus)?;
    let seized_shares = mul_div(seized, WAD, cm.supply_index, false)?;
    if seized_shares == 0 {
        return Err(LendingError::DustAmount(amount));
    }
    let from = LendingKey::Shares(*borrower, collateral_asset).key();
    if !view.try_sub(from, seized_shares)? {
        return Err(LendingError::InsufficientSeizable {
            have: num_of(&view.read(&from)?),
            need: seized_shares,
        });
    }
    view.add(
        LendingKey::Shares(*sender, collateral_asset).key(),
        seized_shares,
    );
    enter(view, sender, collateral_asset)?;
    let repaid = pay_debt(view, sender, borrower, debt_asset, &dm, amount, false)?;
    Ok(Liquidation {
        repaid,
        seized,
        seized_shares,
    })
}

// ---------------------------------------------------------------------------------------
// Begin-block hook

/// What one accrual did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Accrual {
    /// Blocks since the last accrual.
    pub blocks: u64,
    /// Utilisation before it, 1e18.
    pub utilization: u128,
    /// Borrow rate per block, 1e18.
    pub borrow_rate: u128,
    /// Interest added to borrows.
    pub interest: Amount,
    /// Of which to reserves.
    pub to_reserves: Amount,
}

/// Begin-block hook: accrues a market's interest up to `height` (a no-op when already
/// there), following Compound v2's `accrueInterest`: `factor = rate × blocks`,
/// `borrow_index += factor × borrow_index` (rounded down), interest = the rise of the
/// (rounded-up) total debt, `reserve_factor` of it (rounded up) to reserves, the rest to
/// suppliers by raising the supply index (rounded down; all of it to reserves when there are
/// no shares).
pub fn accrue<V: StateView>(view: &mut V, asset: AssetId, height: u64) -> Result<Accrual> {
    let mut m = market(view, asset)?;
    if height <= m.accrued_height {
        return Ok(Accrual::default());
    }
    let blocks = height - m.accrued_height;
    let cash = read_num(view, LendingKey::Cash(asset))?;
    let scaled = read_num(view, LendingKey::TotalScaledDebt(asset))?;
    let reserves = read_num(view, LendingKey::Reserves(asset))?;
    let shares = read_num(view, LendingKey::TotalShares(asset))?;
    let borrows = debt_of(scaled, m.borrow_index)?;
    let util = utilization(cash, borrows, reserves)?;
    let rate = borrow_rate_per_block(&m.params, util)?;
    let factor = rate
        .checked_mul(u128::from(blocks))
        .ok_or(LendingError::Overflow)?;
    let new_index = add(m.borrow_index, mul_div(factor, m.borrow_index, WAD, false)?)?;
    let new_borrows = debt_of(scaled, new_index)?;
    let interest = new_borrows - borrows;
    let mut to_reserves = mul_div(interest, m.params.reserve_factor, WAD, true)?;
    let to_suppliers = interest - to_reserves;
    if shares > 0 {
        let rise = mul_div(to_suppliers, WAD, shares, false)?;
        m.supply_index = add(m.supply_index, rise)?;
        // What the rounding of the rise left over stays with the protocol. Suppliers are
        // counted as credited the rounded-up `shares × rise`: their claims are
        // `shares × supply_index` before any per-account rounding, so reserves never take
        // what a supplier can withdraw.
        let credited = mul_div(rise, shares, WAD, true)?;
        to_reserves = add(to_reserves, to_suppliers - credited.min(to_suppliers))?;
    } else {
        to_reserves = interest;
    }
    m.borrow_index = new_index;
    m.accrued_height = height;
    view.write(LendingKey::Market(asset).key(), Some(encode(&m)));
    if to_reserves > 0 {
        view.add(LendingKey::Reserves(asset).key(), to_reserves);
    }
    Ok(Accrual {
        blocks,
        utilization: util,
        borrow_rate: rate,
        interest,
        to_reserves,
    })
}

// ---------------------------------------------------------------------------------------
// Footprints

/// The markets whose keys a health check of `owner` may read: every market while there are at
/// most [`MAX_ENTERED`] (so that markets the owner enters earlier in the block are covered),
/// else the markets `owner` is in at the start of the block plus `also`.
fn health_markets(state: &dyn Storage, owner: &Address, also: &[AssetId]) -> Vec<AssetId> {
    let mut reader = StorageReader(&state);
    let mut markets = match market_list(&mut reader) {
        Ok(list) if list.len() <= MAX_ENTERED => list,
        _ => entered(&mut reader, owner).unwrap_or_default(),
    };
    for a in also {
        if !markets.contains(a) {
            markets.push(*a);
        }
    }
    markets
}

/// Declares the keys a health check of `owner` reads: the markets it is in, and for each market
/// its params, its price and `owner`'s position (`position` says how those are touched).
fn declare_health(
    fp: &mut Footprint,
    state: &dyn Storage,
    owner: &Address,
    also: &[AssetId],
    position: Touch,
) {
    declare(fp, LendingKey::Entered(*owner).key(), position);
    for a in health_markets(state, owner, also) {
        declare(fp, LendingKey::Market(a).key(), Touch::Read);
        declare(fp, LendingKey::Price(a).key(), Touch::Read);
        declare(fp, LendingKey::Shares(*owner, a).key(), position);
        declare(fp, LendingKey::ScaledDebt(*owner, a).key(), position);
    }
}

/// Declares the keys of moving `asset` between `owner` and the vault and the market's cash:
/// the vault's balance and the cash are only added to and `try_sub`ed from (many users of one
/// market do not join), `owner`'s balance is exclusive when it pays, a credit when it receives.
fn declare_cash_flow(fp: &mut Footprint, owner: &Address, asset: AssetId, owner_pays: bool) {
    declare(
        fp,
        bank::balance_key(owner, asset),
        if owner_pays { Touch::Write } else { Touch::Add },
    );
    declare(fp, bank::balance_key(&vault_address(), asset), Touch::Sub);
    declare(fp, LendingKey::Cash(asset).key(), Touch::Sub);
}

/// The lending configuration in `state` (set at genesis, never changed).
fn config_in(state: &dyn Storage) -> Option<LendingConfig> {
    decode(state.get(&LendingKey::Config.key()), "lending config")
        .ok()
        .flatten()
}

/// Declares in `fp` every key a lending message from `sender` may touch, on every path
/// (failures included), given the state at the start of the block `state`.
///
/// Market params and indices and prices are read (written only by market creation, the
/// begin-block accrual and the oracle); market totals are deltas, cash and the vault are only
/// added to and `try_sub`ed from, so users of one market do not join; the sender's own
/// positions are exclusive. Creating a market that exists, or a call by an account other than
/// the admin or the oracle, only reads. A health check reads every market's keys while there
/// are at most [`MAX_ENTERED`] markets, else the markets the account is in at the start of the
/// block and the one the message names: entering yet another market earlier in the block
/// costs a re-run. A `try_sub` of cash that fails, or a block's withdrawals and borrows above a
/// market's cash at its start, also make the engine re-run the block: correct, only slower.
pub fn footprint(msg: &LendingMsg, sender: &Address, state: &dyn Storage, fp: &mut Footprint) {
    match msg {
        LendingMsg::CreateMarket { asset, .. } => {
            declare(fp, LendingKey::Config.key(), Touch::Read);
            if config_in(state).is_none_or(|c| c.admin != *sender) {
                return;
            }
            declare(fp, bank::BankKey::AssetInfo(*asset).key(), Touch::Read);
            // A market is never removed: creating one that exists only reads it.
            let market = LendingKey::Market(*asset).key();
            if state.get(&market).is_some() {
                declare(fp, market, Touch::Read);
                return;
            }
            declare(fp, market, Touch::Write);
            declare(fp, LendingKey::MarketList.key(), Touch::Write);
        }
        LendingMsg::SetPrice { asset, .. } => {
            declare(fp, LendingKey::Config.key(), Touch::Read);
            if config_in(state).is_none_or(|c| c.oracle != *sender) {
                return;
            }
            declare(fp, LendingKey::Price(*asset).key(), Touch::Write);
        }
        LendingMsg::Supply { asset, .. } => {
            declare(fp, LendingKey::Market(*asset).key(), Touch::Read);
            declare_cash_flow(fp, sender, *asset, true);
            declare(fp, LendingKey::TotalShares(*asset).key(), Touch::Add);
            declare(fp, LendingKey::Shares(*sender, *asset).key(), Touch::Write);
            declare(fp, LendingKey::Entered(*sender).key(), Touch::Write);
        }
        LendingMsg::Withdraw { asset, .. } => {
            declare(fp, LendingKey::Market(*asset).key(), Touch::Read);
            declare(fp, LendingKey::TotalShares(*asset).key(), Touch::Add);
            declare_cash_flow(fp, sender, *asset, false);
            declare_health(fp, state, sender, &[*asset], Touch::Write);
        }
        LendingMsg::Borrow { asset, .. } => {
            declare(fp, LendingKey::Market(*asset).key(), Touch::Read);
            declare(fp, LendingKey::TotalScaledDebt(*asset).key(), Touch::Add);
            declare_cash_flow(fp, sender, *asset, false);
            declare_health(fp, state, sender, &[*asset], Touch::Write);
        }
        LendingMsg::Repay { asset, .. } => {
            declare(fp, LendingKey::Market(*asset).key(), Touch::Read);
            declare(
                fp,
                LendingKey::ScaledDebt(*sender, *asset).key(),
                Touch::Write,
            );
            declare(fp, LendingKey::TotalScaledDebt(*asset).key(), Touch::Add);
            declare_cash_flow(fp, sender, *asset, true);
        }
        LendingMsg::Liquidate {
            borrower,
            debt_asset,
            collateral_asset,
            ..
        } => {
            if sender == borrower {
                return;
            }
            declare(fp, LendingKey::Market(*debt_asset).key(), Touch::Read);
            declare(fp, LendingKey::Market(*collateral_asset).key(), Touch::Read);
            declare(fp, LendingKey::Price(*debt_asset).key(), Touch::Read);
            declare(fp, LendingKey::Price(*collateral_asset).key(), Touch::Read);
            // The borrower's health is read; its debt and its collateral are taken.
            let named = [*debt_asset, *collateral_asset];
            declare_health(fp, state, borrower, &named, Touch::Read);
            let debt = LendingKey::ScaledDebt(*borrower, *debt_asset).key();
            declare(fp, debt, Touch::Write);
            let seized = LendingKey::Shares(*borrower, *collateral_asset).key();
            declare(fp, seized, Touch::Write);
            declare(
                fp,
                LendingKey::Shares(*sender, *collateral_asset).key(),
                Touch::Write,
            );
            declare(fp, LendingKey::Entered(*sender).key(), Touch::Write);
            declare(
                fp,
                LendingKey::TotalScaledDebt(*debt_asset).key(),
                Touch::Add,
            );
            declare_cash_flow(fp, sender, *debt_asset, true);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Read-only queries (for RPC)

/// A market as the RPC shows it.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct MarketInfo {
    /// The asset.
    pub asset: AssetId,
    /// Params and indices.
    pub market: Market,
    /// Cash in the vault.
    pub cash: Amount,
    /// Total debt (rounded up).
    pub total_borrows: Amount,
    /// Total shares.
    pub total_shares: u128,
    /// Reserves.
    pub reserves: Amount,
    /// Oracle price (0: none).
    pub price: u128,
    /// Utilisation, 1e18.
    pub utilization: u128,
    /// Borrow rate per block, 1e18.
    pub borrow_rate_per_block: u128,
    /// Supply rate per block, 1e18.
    pub supply_rate_per_block: u128,
}

/// A market's state, rates and price from committed storage.
pub fn query_market<S: Storage>(storage: &S, asset: AssetId) -> Result<MarketInfo> {
    let mut v = StorageReader(storage);
    let m = market(&mut v, asset)?;
    let cash = read_num(&mut v, LendingKey::Cash(asset))?;
    let total_borrows = debt_of(
        read_num(&mut v, LendingKey::TotalScaledDebt(asset))?,
        m.borrow_index,
    )?;
    let reserves = read_num(&mut v, LendingKey::Reserves(asset))?;
    let util = utilization(cash, total_borrows, reserves)?;
    Ok(MarketInfo {
        asset,
        cash,
        total_borrows,
        total_shares: read_num(&mut v, LendingKey::TotalShares(asset))?,
        reserves,
        price: read_num(&mut v, LendingKey::Price(asset))?,
        utilization: util,
        borrow_rate_per_block: borrow_rate_per_block(&m.params, util)?,
        supply_rate_per_block: supply_rate_per_block(&m.params, util)?,
        market: m,
    })
}

/// The assets of every market in committed storage, in creation order: the block builder's
/// interest-accrual hooks.
pub fn query_market_list<S: Storage>(storage: &S) -> Result<Vec<AssetId>> {
    market_list(&mut StorageReader(storage))
}

/// Every market in committed storage.
pub fn query_markets<S: Storage>(storage: &S) -> Result<Vec<MarketInfo>> {
    let list = market_list(&mut StorageReader(storage))?;
    list.into_iter().map(|a| query_market(storage, a)).collect()
}

/// An account's positions and health factor from committed storage.
pub fn query_account<S: Storage>(storage: &S, owner: &Address) -> Result<AccountHealth> {
    account_health(&mut StorageReader(storage), owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An account's positions belong to it; the markets' keys to no account.
    #[test]
    fn positions_belong_to_their_owner() {
        let owner = Address([0x3c; 32]);
        let home = Some(bank::home_of(&owner));
        for owned in [
            LendingKey::Shares(owner, AssetId(1)),
            LendingKey::ScaledDebt(owner, AssetId::BTC),
            LendingKey::Entered(owner),
        ] {
            assert_eq!(key_home(&owned.key()), home, "{owned:?}");
        }
        for market in [
            LendingKey::Config,
            LendingKey::Market(AssetId(1)),
            LendingKey::MarketList,
            LendingKey::Cash(AssetId(1)),
            LendingKey::TotalShares(AssetId(1)),
            LendingKey::TotalScaledDebt(AssetId(1)),
            LendingKey::Reserves(AssetId(1)),
            LendingKey::Price(AssetId(1)),
        ] {
            assert_eq!(key_home(&market.key()), None, "{market:?}");
        }
        assert_eq!(vault_home(), bank::home_of(&vault_address()));
    }
}
