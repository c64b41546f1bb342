//! The dex: constant-product pools between any two assets, liquidity with LP shares, instant
//! swaps (exact-in and exact-out, routes over up to [`MAX_HOPS`] pools, deadlines) and batch
//! swaps settled at end of block at one uniform clearing price per pool.
//!
//! # Pools
//! A pool is identified by its two assets sorted ([`PoolId`]: `a < b`). It is created by the
//! first [`DexMsg::AddLiquidity`] on the pair. Its tokens sit in the bank account
//! [`vault_address`]`(pool)` (a hash; nobody holds its key), its LP shares are the bank asset
//! [`lp_asset_id`]`(pool)`, minted and burned by the dex. The curve is Uniswap V2's: a swap
//! of `dx` pays `getAmountOut(dx) = floor(997·dx·y / (1000·x + 997·dx))` (0.30% fee, left in
//! the reserves for the LPs) and [`get_amount_in`] is Uniswap's `getAmountIn` (rounded up
//! and then `+ 1`). The first deposit mints `isqrt(dx·dy) - MINIMUM_LIQUIDITY` to the
//! depositor and [`MINIMUM_LIQUIDITY`] to the vault, locked forever; later deposits mint
//! `min(dx·S/x, dy·S/y)` (rounded down), after the router's optimal-amount rule; a withdrawal
//! of `s` shares pays `floor(s·x/S)` and `floor(s·y/S)`.
//!
//! # Batch swaps
//! A [`DexMsg::BatchSwap`] takes its input from the sender into the vault (bank `try_sub` +
//! `add`), `add`s it to the pool's per-block total of its direction, and writes its order
//! under a key of its own (pool, sender, nonce). It reads no shared pool state (only the
//! immutable pool-info key), so any number of batch swaps on one pool never conflict.
//! At end of block the block builder appends one [`SettleBatch`](crate::runtime::Hook) hook per
//! pool that received batch swaps, naming the orders in block order, then the
//! [`PayBatch`](crate::runtime::Hook) hooks that pay them out, [`PAY_CHUNK`] orders each
//! ([`end_block_hooks`](crate::runtime::end_block_hooks)). Settlement is split in two:
//! - clearing ([`settle_batch`], a barrier: it reads every order): reads the orders, clears
//!   them ([`clear_batch`]), lowers the per-block totals, writes the new reserves and a
//!   [`ClearingRecord`] (the height, the price, the refunded orders) under
//!   [`DexKey::Clearing`];
//! - payout ([`pay_batch`], one hook per chunk of orders): reads the record, pays each order of
//!   its chunk its fill at the price or its refund, deletes it, and takes the total from the
//!   vault. Chunks share only the record (read) and the vault (only paid out of, within what
//!   the clearing moved), so they run in parallel ([`pay_footprint`]); any chunking pays the
//!   same as one payout of the whole batch.
//!
//! Clearing ([`clear_batch`]) with `A` = total input selling `a`, `B` = total selling `b`
//! and reserves `(x, y)`:
//! - if `997·y·A >= 1000·x·B` (the `a` side is heavier) the clearing price in `b` per `a` is
//!   `p = 997·(y + B) / (1000·x + 997·A)`: the `b` sellers are matched against the `a`
//!   sellers and only the imbalance `A - B/p` goes through the curve, whose fee-charged price
//!   for that input is exactly `p`;
//! - symmetrically if `997·x·B >= 1000·y·A`;
//! - otherwise the two sides match each other within the fee band at `p = B / A` and the
//!   curve is not used.
//!
//! Every filled `a` seller receives `floor(in·num/den)` and every `b` seller
//! `floor(in·den/num)` for the same `p = num/den`. Orders whose output is below their
//! `min_out` (or zero) are refunded in full, and the batch is cleared again without them,
//! until every remaining order is satisfied (each round removes at least one order, so it
//! ends). The dust of rounding stays in the reserves.
//!
//! # State (prefix byte, then fixed-size fields; integers big-endian)
//! | key | bytes | value |
//! |---|---|---|
//! | [`DexKey::Pool`]`(pool)` | `10 ‖ a(8) ‖ b(8)` | `Bytes`: borsh of [`PoolInfo`]; written once |
//! | [`DexKey::Reserves`]`(pool)` | `11 ‖ a(8) ‖ b(8)` | `Bytes`: `reserve_a(16) ‖ reserve_b(16)` |
//! | [`DexKey::BatchTotal`]`(pool, dir)` | `12 ‖ a(8) ‖ b(8) ‖ dir(1)` | `Num`: pending batch input of a direction |
//! | [`DexKey::Order`]`(pool, owner, nonce)` | `13 ‖ a(8) ‖ b(8) ‖ owner(32) ‖ nonce(8)` | `Bytes`: borsh of [`BatchOrder`]; deleted when paid out |
//! | [`DexKey::Clearing`]`(pool)` | `14 ‖ a(8) ‖ b(8)` | `Bytes`: the [`ClearingRecord`] of the pool's last settled batch (its own fixed layout) |
//!
//! # Invariants
//! - Value is conserved: tokens only move through bank transfers, mints and burns. For every
//!   pool and asset, `vault balance >= reserve + pending batch input`; the difference is only
//!   what someone transferred to the vault directly.
//! - `reserve_a · reserve_b` never decreases across a swap, an instant one or a batch; both
//!   reserves stay positive and at most [`MAX_RESERVE`] (= 2^112 - 1, Uniswap's `uint112`),
//!   so no product of the arithmetic below overflows its 256-bit intermediate.
//! - LP shares are a bank asset: their supply is the sum of their balances, the locked
//!   [`MINIMUM_LIQUIDITY`] included, and never reaches zero once a pool exists.
//! - Every rounding favours the pool: outputs round down, required inputs round up, minted
//!   shares round down, withdrawals round down.
//! - A batch pays every filled order of a direction the same price, the opposite direction its
//!   inverse, and never pays out more than it took in plus what the curve gives for the
//!   imbalance; the pool's `k` does not decrease.
//! - A payout pays only orders still in place, at the record of its own block's settlement
//!   (an order in place with no such record fails the hook, changing nothing), and deletes
//!   what it pays: each order is paid once. The hooks are derived from the block's own
//!   transactions, so every order a payout names was cleared by the settlement before it;
//!   between the two, the block runs nothing else.
//! - Instant swaps and liquidity changes read the reserves (a chain per pool, by design);
//!   batch swaps only `add`, `try_sub` and write their own order key.
//! - Every failure is a typed [`DexError`]; a `Halt` is passed up at once as
//!   [`DexError::Halt`].

use std::collections::BTreeMap;
use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{num_of, Footprint, Halt, Key, StateView, Storage, Value};
use parabit_primitives::{Address, Amount, AssetId};
use sha2::{Digest, Sha256};

use crate::bank::{self, encode_asset_info, AssetInfo, BankError, BankKey};

/// Prefix byte of pool-info keys.
pub const PREFIX_POOL: u8 = 0x10;
/// Prefix byte of reserve keys.
pub const PREFIX_RESERVES: u8 = 0x11;
/// Prefix byte of per-block batch totals.
pub const PREFIX_BATCH_TOTAL: u8 = 0x12;
/// Prefix byte of batch orders.
pub const PREFIX_ORDER: u8 = 0x13;
/// Prefix byte of a pool's clearing record (its last settled batch).
pub const PREFIX_CLEARING: u8 = 0x14;

/// Orders per [`PayBatch`](crate::runtime::Hook) hook: a settled batch is paid out in chunks of
/// this many orders, which run in parallel. The engine checks every state operation against
/// the footprint by a scan of its keys (three per order here), so a chunk's checks grow with
/// its square, and it computes footprints in parallel only across groups of 256 hooks; a
/// hook also has a fixed cost (the vault's address, the record). Measured on `batchswap-hot`
/// (10,000 orders a block, 2 threads): chunks of 2 to 16 orders perform alike, 64 and 128
/// measurably worse. The engine runs fewer than 32 payout hooks sequentially, so a batch is
/// paid in parallel from 512 orders on.
pub const PAY_CHUNK: usize = 16;

/// Shares locked forever in the vault on a pool's first deposit (Uniswap V2's value).
pub const MINIMUM_LIQUIDITY: Amount = 1_000;
/// The largest reserve a pool may hold: 2^112 - 1, as Uniswap V2's `uint112` reserves.
pub const MAX_RESERVE: Amount = (1 << 112) - 1;
/// Most pools an instant swap may route through.
pub const MAX_HOPS: usize = 4;
/// Fee numerator: the input counts for 997/1000 (0.30% fee).
pub const FEE_NUM: u128 = 997;
/// Fee denominator.
pub const FEE_DEN: u128 = 1_000;

/// A pool: its two assets, sorted (`a < b`).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct PoolId {
    /// The smaller asset id.
    pub a: AssetId,
    /// The larger asset id.
    pub b: AssetId,
}

impl PoolId {
    /// The pool of a pair, in either order; two equal assets make no pool.
    pub fn new(x: AssetId, y: AssetId) -> Result<PoolId, DexError> {
        match x.cmp(&y) {
            std::cmp::Ordering::Less => Ok(PoolId { a: x, b: y }),
            std::cmp::Ordering::Greater => Ok(PoolId { a: y, b: x }),
            std::cmp::Ordering::Equal => Err(DexError::IdenticalAssets(x)),
        }
    }

    /// The direction of a swap selling `asset_in`: `A_TO_B` or `B_TO_A`.
    fn dir_of(&self, asset_in: AssetId) -> u8 {
        if asset_in == self.a {
            A_TO_B
        } else {
            B_TO_A
        }
    }

    fn bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.a.0.to_be_bytes());
        out[8..].copy_from_slice(&self.b.0.to_be_bytes());
        out
    }
}

impl std::fmt::Display for PoolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.a, self.b)
    }
}

/// Direction of a batch order selling the pool's `a` asset.
pub const A_TO_B: u8 = 0;
/// Direction of a batch order selling the pool's `b` asset.
pub const B_TO_A: u8 = 1;

/// A state key owned by the dex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DexKey {
    /// A pool's immutable description (its existence).
    Pool(PoolId),
    /// A pool's reserves.
    Reserves(PoolId),
    /// Pending batch input of a pool in a direction ([`A_TO_B`] or [`B_TO_A`]).
    BatchTotal(PoolId, u8),
    /// A pending batch order, by owner and the nonce of the transaction that placed it.
    Order(PoolId, Address, u64),
    /// The clearing record of a pool's last settled batch ([`ClearingRecord`]).
    Clearing(PoolId),
}

impl DexKey {
    /// The engine key.
    pub fn key(&self) -> Key {
        match self {
            DexKey::Pool(p) => pool_key(PREFIX_POOL, p),
            DexKey::Reserves(p) => pool_key(PREFIX_RESERVES, p),
            DexKey::Clearing(p) => pool_key(PREFIX_CLEARING, p),
            DexKey::BatchTotal(p, dir) => {
                let mut k = [0u8; 18];
                k[0] = PREFIX_BATCH_TOTAL;
                k[1..17].copy_from_slice(&p.bytes());
                k[17] = *dir;
                Key::from_array(k)
            }
            DexKey::Order(p, owner, nonce) => {
                let mut k = [0u8; 57];
                k[0] = PREFIX_ORDER;
                k[1..17].copy_from_slice(&p.bytes());
                k[17..49].copy_from_slice(&owner.0);
                k[49..].copy_from_slice(&nonce.to_be_bytes());
                Key::from_array(k)
            }
        }
    }

    /// Parses a key's bytes back; `None` if they are not a dex key.
    pub fn from_bytes(bytes: &[u8]) -> Option<DexKey> {
        let (&prefix, rest) = bytes.split_first()?;
        if rest.len() < 16 {
            return None;
        }
        let a = AssetId(u64::from_be_bytes(rest[..8].try_into().ok()?));
        let b = AssetId(u64::from_be_bytes(rest[8..16].try_into().ok()?));
        let pool = PoolId { a, b };
        let rest = &rest[16..];
        match (prefix, rest.len()) {
            (PREFIX_POOL, 0) => Some(DexKey::Pool(pool)),
            (PREFIX_RESERVES, 0) => Some(DexKey::Reserves(pool)),
            (PREFIX_CLEARING, 0) => Some(DexKey::Clearing(pool)),
            (PREFIX_BATCH_TOTAL, 1) => Some(DexKey::BatchTotal(pool, rest[0])),
            (PREFIX_ORDER, 40) => Some(DexKey::Order(
                pool,
                Address(rest[..32].try_into().ok()?),
                u64::from_be_bytes(rest[32..].try_into().ok()?),
            )),
            _ => None,
        }
    }
}

fn pool_key(prefix: u8, pool: &PoolId) -> Key {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(&pool.bytes());
    Key::from_array(k)
}

/// The bank account holding a pool's tokens: `SHA256("parabit/dex/vault" ‖ a ‖ b)`.
pub fn vault_address(pool: &PoolId) -> Address {
    /// Slots of the per-thread memo (a power of two).
    const SLOTS: usize = 4096;
    type Memo = Box<[Option<(PoolId, Address)>; SLOTS]>;
    thread_local! {
        // A swap names its pool's vault in its footprint and again, once or twice, as it
        // runs; a memo (direct-mapped, so bounded) saves the SHA-256 each time after the
        // first. A pure function's memo: it cannot change a result.
        static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Box::new([None; SLOTS]));
    }
    let mix = (pool.a.0 ^ pool.b.0.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let slot = (mix >> 52) as usize % SLOTS;
    let hashed = || {
        let mut h = Sha256::new();
        h.update(b"parabit/dex/vault");
        h.update(pool.bytes());
        Address(h.finalize().into())
    };
    MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return hashed();
        };
        match memo.get(slot).copied().flatten() {
            Some((p, vault)) if p == *pool => vault,
            _ => {
                let vault = hashed();
                if let Some(s) = memo.get_mut(slot) {
                    *s = Some((*pool, vault));
                }
                vault
            }
        }
    })
}

/// The id of a pool's LP share asset: the first 8 bytes of `SHA256("parabit/dex/lp" ‖ a ‖
/// b)`, big-endian (never 0, BTC's id).
pub fn lp_asset_id(pool: &PoolId) -> AssetId {
    let mut h = Sha256::new();
    h.update(b"parabit/dex/lp");
    h.update(pool.bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    AssetId(u64::from_be_bytes(first).max(1))
}

/// A pool's immutable description, stored under [`DexKey::Pool`].
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
pub struct PoolInfo {
    /// The LP share asset.
    pub lp_asset: AssetId,
    /// The account holding the pool's tokens.
    pub vault: Address,
}

/// A pending batch order, stored under [`DexKey::Order`].
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
pub struct BatchOrder {
    /// [`A_TO_B`] or [`B_TO_A`].
    pub dir: u8,
    /// Input taken into the vault.
    pub amount_in: Amount,
    /// Least output accepted; below it the order is refunded.
    pub min_out: Amount,
}

/// A dex message.
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
pub enum DexMsg {
    /// Deposits both assets of a pair (creating its pool on the first deposit) for LP shares,
    /// after Uniswap V2's router rule: the desired amounts are scaled down to the pool's ratio.
    AddLiquidity {
        /// One asset of the pair.
        asset_x: AssetId,
        /// The other asset.
        asset_y: AssetId,
        /// Most of `asset_x` to deposit.
        amount_x_desired: Amount,
        /// Most of `asset_y` to deposit.
        amount_y_desired: Amount,
        /// Least of `asset_x` to deposit.
        amount_x_min: Amount,
        /// Least of `asset_y` to deposit.
        amount_y_min: Amount,
        /// Last block height at which it may execute.
        deadline: u64,
    },
    /// Burns LP shares for the pool's assets pro rata.
    RemoveLiquidity {
        /// One asset of the pair.
        asset_x: AssetId,
        /// The other asset.
        asset_y: AssetId,
        /// Shares burnt.
        liquidity: Amount,
        /// Least of `asset_x` to receive.
        amount_x_min: Amount,
        /// Least of `asset_y` to receive.
        amount_y_min: Amount,
        /// Last block height at which it may execute.
        deadline: u64,
    },
    /// Swaps exactly `amount_in` of `path[0]` along `path` for at least `min_out` of the last.
    SwapExactIn {
        /// Assets from input to output: 2 to `MAX_HOPS + 1`, one pool per consecutive pair.
        path: Vec<AssetId>,
        /// Input.
        amount_in: Amount,
        /// Least output accepted.
        min_out: Amount,
        /// Last block height at which it may execute.
        deadline: u64,
    },
    /// Swaps at most `max_in` of `path[0]` along `path` for exactly `amount_out` of the last.
    SwapExactOut {
        /// Assets from input to output: 2 to `MAX_HOPS + 1`, one pool per consecutive pair.
        path: Vec<AssetId>,
        /// Output wanted.
        amount_out: Amount,
        /// Most input accepted.
        max_in: Amount,
        /// Last block height at which it may execute.
        deadline: u64,
    },
    /// Places an order in the pool's end-of-block batch auction.
    BatchSwap {
        /// Asset sold.
        asset_in: AssetId,
        /// Asset bought.
        asset_out: AssetId,
        /// Input, taken now.
        amount_in: Amount,
        /// Least output accepted at the clearing price, or the order is refunded.
        min_out: Amount,
    },
}

/// Why a dex operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DexError {
    /// A pair of one asset.
    #[error("identical assets: {0} on both sides of the pair")]
    IdenticalAssets(AssetId),
    /// An asset the bank does not know.
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    /// No pool for a pair.
    #[error("pool {0} does not exist")]
    NoPool(PoolId),
    /// A route of the wrong length.
    #[error("route must name 2 to {max} assets, got {0}", max = MAX_HOPS + 1)]
    BadPathLength(usize),
    /// A route through one pool twice.
    #[error("route uses pool {0} twice")]
    RepeatedPool(PoolId),
    /// A zero amount where a positive one is needed.
    #[error("{0} must be positive")]
    ZeroAmount(&'static str),
    /// Executed after its deadline.
    #[error("deadline passed: height {height} > deadline {deadline}")]
    DeadlinePassed {
        /// The block height.
        height: u64,
        /// The transaction's deadline.
        deadline: u64,
    },
    /// Exact-in output below the minimum.
    #[error("slippage: min_out {min_out} > {out}")]
    SlippageOut {
        /// The minimum asked.
        min_out: Amount,
        /// What the swap gives.
        out: Amount,
    },
    /// Exact-out input above the maximum.
    #[error("slippage: max_in {max_in} < {needed}")]
    SlippageIn {
        /// The maximum allowed.
        max_in: Amount,
        /// What the swap needs.
        needed: Amount,
    },
    /// A liquidity amount below its minimum.
    #[error("slippage: amount of asset {asset} {amount} < min {min}")]
    SlippageLiquidity {
        /// The asset.
        asset: AssetId,
        /// The amount the operation would use or pay.
        amount: Amount,
        /// The minimum asked.
        min: Amount,
    },
    /// A swap output of zero.
    #[error("insufficient output amount: a swap of {amount_in} gives 0")]
    InsufficientOutput {
        /// The hop's input.
        amount_in: Amount,
    },
    /// An exact-out wants all of a reserve or more.
    #[error("insufficient liquidity: amount_out {amount_out} >= reserve {reserve}")]
    InsufficientLiquidity {
        /// The output asked.
        amount_out: Amount,
        /// The reserve.
        reserve: Amount,
    },
    /// A pool with an empty reserve (only reachable through corrupt state or pure math calls).
    #[error("empty reserves")]
    EmptyReserves,
    /// A reserve would pass [`MAX_RESERVE`].
    #[error("reserve overflow: {reserve} + {amount} > {max}", max = MAX_RESERVE)]
    ReserveOverflow {
        /// The reserve.
        reserve: Amount,
        /// What would be added.
        amount: Amount,
    },
    /// A deposit too small to mint shares.
    #[error("insufficient liquidity minted: deposit would mint {0} shares")]
    InsufficientLiquidityMinted(Amount),
    /// A withdrawal too small to pay anything.
    #[error("insufficient liquidity burned: {liquidity} shares pay {amount_x} and {amount_y}")]
    InsufficientLiquidityBurned {
        /// Shares.
        liquidity: Amount,
        /// Of `asset_x`.
        amount_x: Amount,
        /// Of `asset_y`.
        amount_y: Amount,
    },
    /// The LP asset id of a new pool is taken by another asset.
    #[error("LP asset id {0} of the new pool is already taken")]
    LpAssetTaken(AssetId),
    /// A payout of a batch that no settlement of this block cleared.
    #[error("batch of pool {pool} was not settled at height {height}")]
    NotSettled {
        /// The pool.
        pool: PoolId,
        /// The block's height.
        height: u64,
    },
    /// A dex value that does not decode.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// A bank failure (e.g. insufficient balance).
    #[error("{0}")]
    Bank(BankError),
    /// The engine suspended the transaction (internal; never in a receipt).
    #[error("execution suspended on a dependency (internal)")]
    Halt(Halt),
}

module_error_conversions!(DexError);

// ---------------------------------------------------------------------------------------
// Arithmetic: 256-bit intermediates, Uniswap V2's formulas.
// ---------------------------------------------------------------------------------------

/// `a · b` as a 256-bit number `(high, low)`.
pub fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const M: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & M);
    let (b1, b0) = (b >> 64, b & M);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & M) + (p10 & M);
    let lo = (p00 & M) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

/// `floor(a · b / d)` with a 256-bit intermediate; `None` if `d` is 0 or the quotient does
/// not fit in 128 bits.
pub fn mul_div(a: u128, b: u128, d: u128) -> Option<u128> {
    let (hi, lo) = mul_wide(a, b);
    if d == 0 || hi >= d {
        return None;
    }
    if hi == 0 {
        return Some(lo / d);
    }
    let mut rem = hi;
    let mut q = 0u128;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> i) & 1);
        q <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            q |= 1;
        }
    }
    Some(q)
}

/// `floor(sqrt(a · b))`, as Uniswap V2's `Math.sqrt(amount0.mul(amount1))`.
pub fn isqrt_product(a: u128, b: u128) -> u128 {
    let target = mul_wide(a, b);
    // sqrt(a·b) < 2^128; search [0, 2^128 - 1].
    let (mut lo, mut hi) = (0u128, u128::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2 + 1;
        if mul_wide(mid, mid) <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

fn reserve_add(reserve: Amount, amount: Amount) -> Result<Amount, DexError> {
    match reserve.checked_add(amount) {
        Some(r) if r <= MAX_RESERVE => Ok(r),
        _ => Err(DexError::ReserveOverflow { reserve, amount }),
    }
}

/// Uniswap V2's `getAmountOut`: `floor(997·in·r_out / (1000·r_in + 997·in))`. Fails on a
/// zero input, empty reserves, or a reserve that would pass [`MAX_RESERVE`].
pub fn get_amount_out(
    amount_in: Amount,
    reserve_in: Amount,
    reserve_out: Amount,
) -> Result<Amount, DexError> {
    if amount_in == 0 {
        return Err(DexError::ZeroAmount("amount_in"));
    }
    if reserve_in == 0 || reserve_out == 0 || reserve_in > MAX_RESERVE || reserve_out > MAX_RESERVE
    {
        return Err(DexError::EmptyReserves);
    }
    reserve_add(reserve_in, amount_in)?;
    let in_with_fee = amount_in * FEE_NUM;
    let den = reserve_in * FEE_DEN + in_with_fee;
    mul_div(in_with_fee, reserve_out, den).ok_or(DexError::EmptyReserves)
}

/// Uniswap V2's `getAmountIn`: `floor(1000·r_in·out / (997·(r_out - out))) + 1`. Fails on a
/// zero output, empty reserves, an output of the whole reserve or more, or an input that
/// would take the reserve past [`MAX_RESERVE`].
pub fn get_amount_in(
    amount_out: Amount,
    reserve_in: Amount,
    reserve_out: Amount,
) -> Result<Amount, DexError> {
    if amount_out == 0 {
        return Err(DexError::ZeroAmount("amount_out"));
    }
    if reserve_in == 0 || reserve_out == 0 || reserve_in > MAX_RESERVE || reserve_out > MAX_RESERVE
    {
        return Err(DexError::EmptyReserves);
    }
    if amount_out >= reserve_out {
        return Err(DexError::InsufficientLiquidity {
            amount_out,
            reserve: reserve_out,
        });
    }
    let den = (reserve_out - amount_out) * FEE_NUM;
    let amount_in = mul_div(reserve_in, amount_out * FEE_DEN, den)
        .and_then(|q| q.checked_add(1))
        .ok_or(DexError::ReserveOverflow {
            reserve: reserve_in,
            amount: u128::MAX,
        })?;
    reserve_add(reserve_in, amount_in)?;
    Ok(amount_in)
}

/// Uniswap V2's `quote`: `floor(amount · r_b / r_a)`.
fn quote(amount: Amount, reserve_a: Amount, reserve_b: Amount) -> Result<Amount, DexError> {
    mul_div(amount, reserve_b, reserve_a).ok_or(DexError::EmptyReserves)
}

// ---------------------------------------------------------------------------------------
// State access.
// ---------------------------------------------------------------------------------------

fn encode_reserves(ra: Amount, rb: Amount) -> Value {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&ra.to_be_bytes());
    b[16..].copy_from_slice(&rb.to_be_bytes());
    Value::Bytes(Arc::from(&b[..]))
}

fn decode_reserves(pool: &PoolId, value: Option<Value>) -> Result<(Amount, Amount), DexError> {
    match value {
        None => Err(DexError::NoPool(*pool)),
        Some(Value::Bytes(b)) if b.len() == 32 => {
            let ra = u128::from_be_bytes(b[..16].try_into().unwrap_or([0; 16]));
            let rb = u128::from_be_bytes(b[16..].try_into().unwrap_or([0; 16]));
            Ok((ra, rb))
        }
        Some(_) => Err(DexError::Corrupt(format!(
            "reserves of pool {pool} do not decode"
        ))),
    }
}

fn read_reserves<V: StateView>(view: &mut V, pool: &PoolId) -> Result<(Amount, Amount), DexError> {
    let v = view.read(&DexKey::Reserves(*pool).key())?;
    decode_reserves(pool, v)
}

fn write_reserves<V: StateView>(view: &mut V, pool: &PoolId, ra: Amount, rb: Amount) {
    view.write(DexKey::Reserves(*pool).key(), Some(encode_reserves(ra, rb)));
}

fn pool_exists<V: StateView>(view: &mut V, pool: &PoolId) -> Result<bool, DexError> {
    Ok(view.read(&DexKey::Pool(*pool).key())?.is_some())
}

/// Reserves oriented `(r_in, r_out)` for a swap selling `asset_in` in `pool`.
fn oriented(pool: &PoolId, asset_in: AssetId, r: (Amount, Amount)) -> (Amount, Amount) {
    if asset_in == pool.a {
        r
    } else {
        (r.1, r.0)
    }
}

fn check_deadline(height: u64, deadline: u64) -> Result<(), DexError> {
    if height > deadline {
        return Err(DexError::DeadlinePassed { height, deadline });
    }
    Ok(())
}

/// The pools of a path, checked: 2 to `MAX_HOPS + 1` assets, no pool twice.
pub fn path_pools(path: &[AssetId]) -> Result<Vec<PoolId>, DexError> {
    if path.len() < 2 || path.len() > MAX_HOPS + 1 {
        return Err(DexError::BadPathLength(path.len()));
    }
    let mut pools = Vec::with_capacity(path.len() - 1);
    for w in path.windows(2) {
        let p = PoolId::new(w[0], w[1])?;
        if pools.contains(&p) {
            return Err(DexError::RepeatedPool(p));
        }
        pools.push(p);
    }
    Ok(pools)
}

// ---------------------------------------------------------------------------------------
// Messages.
// ---------------------------------------------------------------------------------------

/// Executes a dex message sent by `sender` in a transaction with nonce `nonce`, in the block
/// at `height`.
pub fn execute<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    height: u64,
    msg: &DexMsg,
) -> Result<(), DexError> {
    match msg {
        DexMsg::AddLiquidity {
            asset_x,
            asset_y,
            amount_x_desired,
            amount_y_desired,
            amount_x_min,
            amount_y_min,
            deadline,
        } => {
            check_deadline(height, *deadline)?;
            add_liquidity(
                view,
                sender,
                (*asset_x, *asset_y),
                (*amount_x_desired, *amount_y_desired),
                (*amount_x_min, *amount_y_min),
            )
            .map(|_| ())
        }
        DexMsg::RemoveLiquidity {
            asset_x,
            asset_y,
            liquidity,
            amount_x_min,
            amount_y_min,
            deadline,
        } => {
            check_deadline(height, *deadline)?;
            remove_liquidity(
                view,
                sender,
                (*asset_x, *asset_y),
                *liquidity,
                (*amount_x_min, *amount_y_min),
            )
            .map(|_| ())
        }
        DexMsg::SwapExactIn {
            path,
            amount_in,
            min_out,
            deadline,
        } => {
            check_deadline(height, *deadline)?;
            swap_exact_in(view, sender, path, *amount_in, *min_out).map(|_| ())
        }
        DexMsg::SwapExactOut {
            path,
            amount_out,
            max_in,
            deadline,
        } => {
            check_deadline(height, *deadline)?;
            swap_exact_out(view, sender, path, *amount_out, *max_in).map(|_| ())
        }
        DexMsg::BatchSwap {
            asset_in,
            asset_out,
            amount_in,
            min_out,
        } => batch_swap(
            view, sender, nonce, *asset_in, *asset_out, *amount_in, *min_out,
        ),
    }
}

/// Creates the pool of a pair: its info, empty reserves, and its LP asset in the bank.
fn create_pool<V: StateView>(view: &mut V, pool: &PoolId) -> Result<(), DexError> {
    for asset in [pool.a, pool.b] {
        if view.read(&BankKey::AssetInfo(asset).key())?.is_none() {
            return Err(DexError::UnknownAsset(asset));
        }
    }
    let lp = lp_asset_id(pool);
    let info_key = BankKey::AssetInfo(lp).key();
    if view.read(&info_key)?.is_some() {
        return Err(DexError::LpAssetTaken(lp));
    }
    let vault = vault_address(pool);
    view.write(
        info_key,
        Some(encode_asset_info(&AssetInfo {
            symbol: "LP".to_string(),
            decimals: 0,
            creator: vault,
        })),
    );
    view.write(BankKey::Supply(lp).key(), Some(Value::Num(0)));
    view.write(BankKey::MintHeadroom(lp).key(), Some(Value::Num(u128::MAX)));
    let info = PoolInfo {
        lp_asset: lp,
        vault,
    };
    let bytes: Arc<[u8]> = borsh::to_vec(&info).unwrap_or_default().into();
    view.write(DexKey::Pool(*pool).key(), Some(Value::Bytes(bytes)));
    write_reserves(view, pool, 0, 0);
    Ok(())
}

/// What an add or remove of liquidity did, in the caller's asset order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LiquidityChange {
    /// Of `asset_x`.
    pub amount_x: Amount,
    /// Of `asset_y`.
    pub amount_y: Amount,
    /// Shares minted or burnt.
    pub liquidity: Amount,
}

/// Adds liquidity (Uniswap V2 router `_addLiquidity` then pair `mint`); creates the pool on
/// the first deposit.
pub fn add_liquidity<V: StateView>(
    view: &mut V,
    sender: &Address,
    assets: (AssetId, AssetId),
    desired: (Amount, Amount),
    mins: (Amount, Amount),
) -> Result<LiquidityChange, DexError> {
    let pool = PoolId::new(assets.0, assets.1)?;
    if desired.0 == 0 {
        return Err(DexError::ZeroAmount("amount_x_desired"));
    }
    if desired.1 == 0 {
        return Err(DexError::ZeroAmount("amount_y_desired"));
    }
    let swapped = assets.0 != pool.a;
    let flip = |p: (Amount, Amount)| if swapped { (p.1, p.0) } else { p };
    let (want_a, want_b) = flip(desired);
    let (min_a, min_b) = flip(mins);

    let reserves = match view.read(&DexKey::Reserves(pool).key())? {
        None => {
            create_pool(view, &pool)?;
            (0, 0)
        }
        v => decode_reserves(&pool, v)?,
    };
    let (x, y) = reserves;
    let (amount_a, amount_b) = if x == 0 && y == 0 {
        (want_a, want_b)
    } else {
        let b_optimal = quote(want_a, x, y)?;
        if b_optimal <= want_b {
            if b_optimal < min_b {
                return Err(DexError::SlippageLiquidity {
                    asset: pool.b,
                    amount: b_optimal,
                    min: min_b,
                });
            }
            (want_a, b_optimal)
        } else {
            let a_optimal = quote(want_b, y, x)?;
            if a_optimal < min_a {
                return Err(DexError::SlippageLiquidity {
                    asset: pool.a,
                    amount: a_optimal,
                    min: min_a,
                });
            }
            (a_optimal, want_b)
        }
    };
    if amount_a < min_a {
        return Err(DexError::SlippageLiquidity {
            asset: pool.a,
            amount: amount_a,
            min: min_a,
        });
    }
    if amount_b < min_b {
        return Err(DexError::SlippageLiquidity {
            asset: pool.b,
            amount: amount_b,
            min: min_b,
        });
    }
    let new_x = reserve_add(x, amount_a)?;
    let new_y = reserve_add(y, amount_b)?;
    let lp = lp_asset_id(&pool);
    let vault = vault_address(&pool);
    let liquidity = if x == 0 && y == 0 {
        let root = isqrt_product(amount_a, amount_b);
        let liquidity = root.saturating_sub(MINIMUM_LIQUIDITY);
        if root <= MINIMUM_LIQUIDITY {
            return Err(DexError::InsufficientLiquidityMinted(0));
        }
        bank::mint(view, &vault, lp, MINIMUM_LIQUIDITY)?;
        liquidity
    } else {
        let supply = num_of(&view.read(&BankKey::Supply(lp).key())?);
        let by_a = mul_div(amount_a, supply, x).ok_or(DexError::EmptyReserves)?;
        let by_b = mul_div(amount_b, supply, y).ok_or(DexError::EmptyReserves)?;
        let liquidity = by_a.min(by_b);
        if liquidity == 0 {
            return Err(DexError::InsufficientLiquidityMinted(0));
        }
        liquidity
    };
    if amount_a == 0 || amount_b == 0 {
        return Err(DexError::InsufficientLiquidityMinted(liquidity));
    }
    bank::transfer(view, sender, &vault, pool.a, amount_a)?;
    bank::transfer(view, sender, &vault, pool.b, amount_b)?;
    bank::mint(view, sender, lp, liquidity)?;
    write_reserves(view, &pool, new_x, new_y);
    let (amount_x, amount_y) = flip((amount_a, amount_b));
    Ok(LiquidityChange {
        amount_x,
        amount_y,
        liquidity,
    })
}

/// Burns `liquidity` shares for `floor(liquidity·reserve/supply)` of each asset.
pub fn remove_liquidity<V: StateView>(
    view: &mut V,
    sender: &Address,
    assets: (AssetId, AssetId),
    liquidity: Amount,
    mins: (Amount, Amount),
) -> Result<LiquidityChange, DexError> {
    let pool = PoolId::new(assets.0, assets.1)?;
    if liquidity == 0 {
        return Err(DexError::ZeroAmount("liquidity"));
    }
    let swapped = assets.0 != pool.a;
    let flip = |p: (Amount, Amount)| if swapped { (p.1, p.0) } else { p };
    let (x, y) = read_reserves(view, &pool)?;
    let lp = lp_asset_id(&pool);
    let supply = num_of(&view.read(&BankKey::Supply(lp).key())?);
    if liquidity > supply {
        return Err(DexError::Bank(BankError::InsufficientBalance {
            asset: lp,
            have: bank::balance(view, sender, lp)?,
            need: liquidity,
        }));
    }
    let amount_a = mul_div(liquidity, x, supply).ok_or(DexError::EmptyReserves)?;
    let amount_b = mul_div(liquidity, y, supply).ok_or(DexError::EmptyReserves)?;
    let (amount_x, amount_y) = flip((amount_a, amount_b));
    if amount_a == 0 || amount_b == 0 {
        return Err(DexError::InsufficientLiquidityBurned {
            liquidity,
            amount_x,
            amount_y,
        });
    }
    let (min_x, min_y) = mins;
    let (asset_x, asset_y) = assets;
    if amount_x < min_x {
        return Err(DexError::SlippageLiquidity {
            asset: asset_x,
            amount: amount_x,
            min: min_x,
        });
    }
    if amount_y < min_y {
        return Err(DexError::SlippageLiquidity {
            asset: asset_y,
            amount: amount_y,
            min: min_y,
        });
    }
    bank::burn(view, sender, lp, liquidity)?;
    let vault = vault_address(&pool);
    bank::transfer(view, &vault, sender, pool.a, amount_a)?;
    bank::transfer(view, &vault, sender, pool.b, amount_b)?;
    write_reserves(view, &pool, x - amount_a, y - amount_b);
    Ok(LiquidityChange {
        amount_x,
        amount_y,
        liquidity,
    })
}

/// Moves the tokens of a computed route and writes the new reserves. `amounts[i]` is the
/// input of hop `i`, `amounts[i + 1]` its output.
fn settle_route<V: StateView>(
    view: &mut V,
    sender: &Address,
    path: &[AssetId],
    pools: &[PoolId],
    reserves: &[(Amount, Amount)],
    amounts: &[Amount],
) -> Result<(), DexError> {
    let mut from = *sender;
    for (i, pool) in pools.iter().enumerate() {
        let vault = vault_address(pool);
        bank::transfer(view, &from, &vault, path[i], amounts[i])?;
        let (r_in, r_out) = oriented(pool, path[i], reserves[i]);
        let new_in = reserve_add(r_in, amounts[i])?;
        let new_out = r_out - amounts[i + 1];
        if path[i] == pool.a {
            write_reserves(view, pool, new_in, new_out);
        } else {
            write_reserves(view, pool, new_out, new_in);
        }
        from = vault;
    }
    let last = pools.len();
    bank::transfer(view, &from, sender, path[last], amounts[last])?;
    Ok(())
}

/// Swaps exactly `amount_in` along `path`; returns the amounts of every step (Uniswap's
/// `getAmountsOut`).
pub fn swap_exact_in<V: StateView>(
    view: &mut V,
    sender: &Address,
    path: &[AssetId],
    amount_in: Amount,
    min_out: Amount,
) -> Result<Vec<Amount>, DexError> {
    let pools = path_pools(path)?;
    if amount_in == 0 {
        return Err(DexError::ZeroAmount("amount_in"));
    }
    let mut reserves = Vec::with_capacity(pools.len());
    for p in &pools {
        reserves.push(read_reserves(view, p)?);
    }
    let amounts = amounts_out(path, &pools, &reserves, amount_in)?;
    let out = amounts[amounts.len() - 1];
    if out < min_out {
        return Err(DexError::SlippageOut { min_out, out });
    }
    settle_route(view, sender, path, &pools, &reserves, &amounts)?;
    Ok(amounts)
}

/// Swaps at most `max_in` along `path` for exactly `amount_out`; returns the amounts of every
/// step (Uniswap's `getAmountsIn`).
pub fn swap_exact_out<V: StateView>(
    view: &mut V,
    sender: &Address,
    path: &[AssetId],
    amount_out: Amount,
    max_in: Amount,
) -> Result<Vec<Amount>, DexError> {
    let pools = path_pools(path)?;
    if amount_out == 0 {
        return Err(DexError::ZeroAmount("amount_out"));
    }
    let mut reserves = Vec::with_capacity(pools.len());
    for p in &pools {
        reserves.push(read_reserves(view, p)?);
    }
    let amounts = amounts_in(path, &pools, &reserves, amount_out)?;
    if amounts[0] > max_in {
        return Err(DexError::SlippageIn {
            max_in,
            needed: amounts[0],
        });
    }
    settle_route(view, sender, path, &pools, &reserves, &amounts)?;
    Ok(amounts)
}

fn amounts_out(
    path: &[AssetId],
    pools: &[PoolId],
    reserves: &[(Amount, Amount)],
    amount_in: Amount,
) -> Result<Vec<Amount>, DexError> {
    let mut amounts = Vec::with_capacity(path.len());
    amounts.push(amount_in);
    for (i, pool) in pools.iter().enumerate() {
        let (r_in, r_out) = oriented(pool, path[i], reserves[i]);
        let out = get_amount_out(amounts[i], r_in, r_out)?;
        if out == 0 {
            return Err(DexError::InsufficientOutput {
                amount_in: amounts[i],
            });
        }
        amounts.push(out);
    }
    Ok(amounts)
}

fn amounts_in(
    path: &[AssetId],
    pools: &[PoolId],
    reserves: &[(Amount, Amount)],
    amount_out: Amount,
) -> Result<Vec<Amount>, DexError> {
    let mut amounts = vec![0; path.len()];
    amounts[path.len() - 1] = amount_out;
    for i in (0..pools.len()).rev() {
        let (r_in, r_out) = oriented(&pools[i], path[i], reserves[i]);
        amounts[i] = get_amount_in(amounts[i + 1], r_in, r_out)?;
    }
    Ok(amounts)
}

/// The home of a pool ([`parabit_exec::Vm::homes`]): its vault's ([`bank::home_of`]), so
/// that its reserves and its vault's balances belong to one home.
pub fn pool_home(pool: &PoolId) -> u64 {
    bank::home_of(&vault_address(pool))
}

/// The home of a state key ([`parabit_exec::Vm::key_home`]): a batch order belongs to its
/// owner ([`bank::home_of`]), every other key of a pool to the pool ([`pool_home`]).
pub fn key_home(key: &Key) -> Option<u64> {
    let bytes = key.as_bytes();
    if bytes.len() == 57 && bytes.first() == Some(&PREFIX_ORDER) {
        let id: [u8; 8] = bytes.get(17..25)?.try_into().ok()?;
        return Some(u64::from_le_bytes(id));
    }
    match DexKey::from_bytes(bytes)? {
        DexKey::Order(..) => None,
        DexKey::Pool(p) | DexKey::Reserves(p) | DexKey::Clearing(p) | DexKey::BatchTotal(p, _) => {
            Some(pool_home(&p))
        }
    }
}

/// Places a batch order: takes the input into the vault, adds it to the pool's per-block
/// total, records the order. Reads only the pool's immutable info key.
pub fn batch_swap<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    asset_in: AssetId,
    asset_out: AssetId,
    amount_in: Amount,
    min_out: Amount,
) -> Result<(), DexError> {
    let pool = PoolId::new(asset_in, asset_out)?;
    if amount_in == 0 {
        return Err(DexError::ZeroAmount("amount_in"));
    }
    if amount_in > MAX_RESERVE {
        return Err(DexError::ReserveOverflow {
            reserve: 0,
            amount: amount_in,
        });
    }
    if !pool_exists(view, &pool)? {
        return Err(DexError::NoPool(pool));
    }
    let dir = pool.dir_of(asset_in);
    bank::transfer(view, sender, &vault_address(&pool), asset_in, amount_in)?;
    view.add(DexKey::BatchTotal(pool, dir).key(), amount_in);
    let order = BatchOrder {
        dir,
        amount_in,
        min_out,
    };
    let bytes: Arc<[u8]> = borsh::to_vec(&order).unwrap_or_default().into();
    view.write(
        DexKey::Order(pool, *sender, nonce).key(),
        Some(Value::Bytes(bytes)),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Batch clearing.
// ---------------------------------------------------------------------------------------

/// A clearing price: `num / den` units of `b` per unit of `a`. An `a` seller of `x` gets
/// `floor(x·num/den)` of `b`; a `b` seller of `y` gets `floor(y·den/num)` of `a`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Price {
    /// Numerator (`b`).
    pub num: u128,
    /// Denominator (`a`).
    pub den: u128,
}

impl Price {
    /// What an order of `amount_in` in direction `dir` receives at this price.
    pub fn out(&self, dir: u8, amount_in: Amount) -> Amount {
        let r = if dir == A_TO_B {
            mul_div(amount_in, self.num, self.den)
        } else {
            mul_div(amount_in, self.den, self.num)
        };
        r.unwrap_or(0)
    }
}

/// The result of clearing a batch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Clearing {
    /// The uniform price, if any order filled.
    pub price: Option<Price>,
    /// Per order, in the given order: what it receives, or `None` if refunded.
    pub fills: Vec<Option<Amount>>,
    /// Reserves after settlement.
    pub reserve_a: Amount,
    /// Reserves after settlement.
    pub reserve_b: Amount,
}

/// The uniform price for totals `A` (selling `a`) and `B` (selling `b`) against reserves
/// `(x, y)`; `None` if both totals are zero. Inputs must keep `x + A` and `y + B` within
/// [`MAX_RESERVE`].
pub fn clearing_price(x: Amount, y: Amount, total_a: Amount, total_b: Amount) -> Option<Price> {
    if total_a == 0 && total_b == 0 {
        return None;
    }
    // a side heavier: 997·y·A >= 1000·x·B.
    if mul_wide(FEE_NUM * y, total_a) >= mul_wide(FEE_DEN * x, total_b) {
        return Some(Price {
            num: FEE_NUM * (y + total_b),
            den: FEE_DEN * x + FEE_NUM * total_a,
        });
    }
    if mul_wide(FEE_NUM * x, total_b) >= mul_wide(FEE_DEN * y, total_a) {
        return Some(Price {
            num: FEE_DEN * y + FEE_NUM * total_b,
            den: FEE_NUM * (x + total_a),
        });
    }
    Some(Price {
        num: total_b,
        den: total_a,
    })
}

/// Clears a batch of orders against reserves `(x, y)`: one uniform price, orders below their
/// limit (or receiving nothing) refunded and the rest re-cleared until all are satisfied.
/// If the totals would take a reserve past [`MAX_RESERVE`], or the reserves are empty, every
/// order is refunded.
pub fn clear_batch(x: Amount, y: Amount, orders: &[BatchOrder]) -> Clearing {
    let refund_all = Clearing {
        price: None,
        fills: vec![None; orders.len()],
        reserve_a: x,
        reserve_b: y,
    };
    if x == 0 || y == 0 {
        return refund_all;
    }
    let mut active: Vec<bool> = orders.iter().map(|o| o.amount_in > 0).collect();
    loop {
        let (mut ta, mut tb) = (0u128, 0u128);
        for (o, _) in orders.iter().zip(&active).filter(|(_, a)| **a) {
            let t = if o.dir == A_TO_B { &mut ta } else { &mut tb };
            *t = t.saturating_add(o.amount_in);
        }
        if reserve_add(x, ta).is_err() || reserve_add(y, tb).is_err() {
            return refund_all;
        }
        let Some(price) = clearing_price(x, y, ta, tb) else {
            return refund_all;
        };
        let mut removed = false;
        let mut fills = vec![None; orders.len()];
        let (mut paid_a, mut paid_b) = (0u128, 0u128);
        for (i, o) in orders.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let out = price.out(o.dir, o.amount_in);
            if out == 0 || out < o.min_out {
                active[i] = false;
                removed = true;
                continue;
            }
            fills[i] = Some(out);
            if o.dir == A_TO_B {
                paid_b += out;
            } else {
                paid_a += out;
            }
        }
        if !removed {
            return Clearing {
                price: Some(price),
                fills,
                reserve_a: x + ta - paid_a,
                reserve_b: y + tb - paid_b,
            };
        }
    }
}

/// Settles a pool's batch, the clearing step (a barrier: it reads every order of the block):
/// reads the named orders (missing ones, of failed transactions, are skipped; duplicates
/// count once), clears them, lowers the per-block totals by what was read, writes the
/// reserves and the [`ClearingRecord`] of `height`. The orders stay in place: the
/// [`pay_batch`] hooks that follow pay and delete them.
pub fn settle_batch<V: StateView>(
    view: &mut V,
    pool: &PoolId,
    orders: &[(Address, u64)],
    height: u64,
) -> Result<Option<Clearing>, DexError> {
    // Duplicates are found by the order keys' 64-bit hashes (a small table), with an exact
    // check when two different orders share a hash.
    let mut seen: std::collections::HashMap<
        u64,
        usize,
        std::hash::BuildHasherDefault<parabit_exec::KeyHasher>,
    > = std::collections::HashMap::with_capacity_and_hasher(orders.len(), Default::default());
    let mut clashing = std::collections::HashSet::new();
    let mut found: Vec<(Address, BatchOrder, u64)> = Vec::with_capacity(orders.len());
    for (i, &(owner, nonce)) in orders.iter().enumerate() {
        let key = DexKey::Order(*pool, owner, nonce).key();
        match seen.entry(key.hash64()) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
            }
            std::collections::hash_map::Entry::Occupied(e) => {
                if orders.get(*e.get()) == Some(&(owner, nonce)) || !clashing.insert((owner, nonce))
                {
                    continue;
                }
            }
        }
        if let Some(order) = read_order(view, pool, &key)? {
            found.push((owner, order, nonce));
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let (x, y) = read_reserves(view, pool)?;
    let list: Vec<BatchOrder> = found.iter().map(|(_, o, _)| o.clone()).collect();
    let clearing = clear_batch(x, y, &list);
    let mut totals = [0u128; 2];
    let mut refunds = Vec::new();
    for ((owner, order, nonce), fill) in found.iter().zip(&clearing.fills) {
        let side_in = usize::from(order.dir == B_TO_A);
        totals[side_in] = totals[side_in].wrapping_add(order.amount_in);
        if fill.is_none() && clearing.price.is_some() {
            refunds.push((*owner, *nonce));
        }
    }
    for (dir, total) in [(A_TO_B, totals[0]), (B_TO_A, totals[1])] {
        if total > 0 {
            view.add(DexKey::BatchTotal(*pool, dir).key(), total.wrapping_neg());
        }
    }
    write_reserves(view, pool, clearing.reserve_a, clearing.reserve_b);
    let record = ClearingRecord {
        height,
        price: clearing.price,
        refunds,
    };
    view.write(
        DexKey::Clearing(*pool).key(),
        Some(Value::Bytes(record.encode().into())),
    );
    Ok(Some(clearing))
}

/// Reads a batch order; `None` if there is none under `key`.
fn read_order<V: StateView>(
    view: &mut V,
    pool: &PoolId,
    key: &Key,
) -> Result<Option<BatchOrder>, DexError> {
    match view.read(key)? {
        None => Ok(None),
        Some(Value::Bytes(b)) => BatchOrder::try_from_slice(&b)
            .map(Some)
            .map_err(|_| DexError::Corrupt(format!("batch order of pool {pool} does not decode"))),
        Some(Value::Num(_)) => Err(DexError::Corrupt(format!(
            "batch order of pool {pool} is a number"
        ))),
    }
}

/// Bytes of a stored [`ClearingRecord`] before its list of refunded orders.
const RECORD_HEAD: usize = 8 + 16 + 16;
/// Bytes of one refunded order in a stored record: owner and nonce.
const REFUND_ENTRY: usize = 32 + 8;

/// What a settlement leaves for its payouts under [`DexKey::Clearing`]: the block's height,
/// the uniform price (`None`: every order is refunded) and the orders refunded at it.
///
/// Stored as `height(8) ‖ num(16) ‖ den(16) ‖ (owner(32) ‖ nonce(8))*`, big-endian, the
/// refunded orders sorted by their bytes (`num = den = 0`: no price, and no list), so that a
/// payout finds an order by a binary search in the stored bytes without decoding the list.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClearingRecord {
    /// The height of the block that settled the batch.
    pub height: u64,
    /// The uniform price of the filled orders; `None` if every order is refunded.
    pub price: Option<Price>,
    /// The orders refunded although the batch has a price (below their limit or receiving
    /// nothing), as `(owner, nonce)`.
    pub refunds: Vec<(Address, u64)>,
}

impl ClearingRecord {
    /// The stored bytes (the layout above; the refunds sorted, and dropped if there is no
    /// price).
    pub fn encode(&self) -> Vec<u8> {
        let (num, den) = self.price.map_or((0, 0), |p| (p.num, p.den));
        let mut entries: Vec<[u8; REFUND_ENTRY]> = if self.price.is_some() {
            self.refunds
                .iter()
                .map(|(owner, nonce)| refund_entry(owner, *nonce))
                .collect()
        } else {
            Vec::new()
        };
        entries.sort_unstable();
        entries.dedup();
        let mut out = Vec::with_capacity(RECORD_HEAD + entries.len() * REFUND_ENTRY);
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&num.to_be_bytes());
        out.extend_from_slice(&den.to_be_bytes());
        for e in &entries {
            out.extend_from_slice(e);
        }
        out
    }

    /// Parses stored bytes back (refunds in their sorted order); `None` if they are not a
    /// record.
    pub fn decode(bytes: &[u8]) -> Option<ClearingRecord> {
        let head = RecordHead::parse(bytes)?;
        let refunds = bytes
            .get(RECORD_HEAD..)?
            .chunks_exact(REFUND_ENTRY)
            .map(|e| {
                let owner = Address(e.get(..32)?.try_into().ok()?);
                let nonce = u64::from_be_bytes(e.get(32..)?.try_into().ok()?);
                Some((owner, nonce))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ClearingRecord {
            height: head.height,
            price: head.price,
            refunds,
        })
    }
}

fn refund_entry(owner: &Address, nonce: u64) -> [u8; REFUND_ENTRY] {
    let mut e = [0u8; REFUND_ENTRY];
    e[..32].copy_from_slice(&owner.0);
    e[32..].copy_from_slice(&nonce.to_be_bytes());
    e
}

/// The fixed part of a stored record.
struct RecordHead {
    height: u64,
    price: Option<Price>,
}

impl RecordHead {
    /// `None` unless `bytes` is a head and whole refund entries (and no entries without a
    /// price).
    fn parse(bytes: &[u8]) -> Option<RecordHead> {
        let list = bytes.get(RECORD_HEAD..)?;
        if list.len() % REFUND_ENTRY != 0 {
            return None;
        }
        let height = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let num = u128::from_be_bytes(bytes.get(8..24)?.try_into().ok()?);
        let den = u128::from_be_bytes(bytes.get(24..RECORD_HEAD)?.try_into().ok()?);
        let price = match (num, den) {
            (0, 0) if list.is_empty() => None,
            (0, _) | (_, 0) => return None,
            (num, den) => Some(Price { num, den }),
        };
        Some(RecordHead { height, price })
    }
}

/// A stored clearing record, read in place.
struct StoredRecord {
    bytes: Arc<[u8]>,
    price: Option<Price>,
}

impl StoredRecord {
    /// The record of `pool` settled at `height`; `None` if there is none of that height.
    fn read<V: StateView>(
        view: &mut V,
        pool: &PoolId,
        height: u64,
    ) -> Result<Option<StoredRecord>, DexError> {
        let corrupt =
            || DexError::Corrupt(format!("clearing record of pool {pool} does not decode"));
        let bytes = match view.read(&DexKey::Clearing(*pool).key())? {
            None => return Ok(None),
            Some(Value::Bytes(b)) => b,
            Some(Value::Num(_)) => return Err(corrupt()),
        };
        let head = RecordHead::parse(&bytes).ok_or_else(corrupt)?;
        if head.height != height {
            return Ok(None);
        }
        Ok(Some(StoredRecord {
            bytes,
            price: head.price,
        }))
    }

    /// What an order receives: `Some(out)` filled at the price, `None` refunded.
    fn fill(&self, owner: &Address, nonce: u64, order: &BatchOrder) -> Option<Amount> {
        let price = self.price?;
        if self.refunded(&refund_entry(owner, nonce)) {
            return None;
        }
        Some(price.out(order.dir, order.amount_in))
    }

    /// Whether the sorted list holds `entry` (binary search over the stored bytes).
    fn refunded(&self, entry: &[u8; REFUND_ENTRY]) -> bool {
        let list = self.bytes.get(RECORD_HEAD..).unwrap_or_default();
        let (mut lo, mut hi) = (0, list.len() / REFUND_ENTRY);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(e) = list.get(mid * REFUND_ENTRY..(mid + 1) * REFUND_ENTRY) else {
                return false;
            };
            match e.cmp(&entry[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

/// What a payout hook paid out of the vault, fills and refunds together.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Payout {
    /// Orders paid (fills and refunds).
    pub orders: usize,
    /// Of the pool's `a` asset.
    pub paid_a: Amount,
    /// Of the pool's `b` asset.
    pub paid_b: Amount,
}

/// Pays a chunk of a settled batch's orders (the payout step, after [`settle_batch`] of the
/// same block): each named order still in place is paid its fill at the recorded price
/// (`floor`, as [`clear_batch`]) or refunded in full if the record lists it (or has no
/// price), and deleted; missing orders (failed, or paid by an earlier chunk) are skipped. The
/// vault is debited once per asset, every owner credited by a delta. An order in place with no
/// record of this block fails the hook ([`DexError::NotSettled`]), which changes nothing.
pub fn pay_batch<V: StateView>(
    view: &mut V,
    pool: &PoolId,
    orders: &[(Address, u64)],
    height: u64,
) -> Result<Payout, DexError> {
    let record = StoredRecord::read(view, pool, height)?;
    let mut paid = [0u128; 2];
    let mut credits = Vec::with_capacity(orders.len());
    for &(owner, nonce) in orders {
        let key = DexKey::Order(*pool, owner, nonce).key();
        let Some(order) = read_order(view, pool, &key)? else {
            continue;
        };
        let Some(record) = &record else {
            return Err(DexError::NotSettled {
                pool: *pool,
                height,
            });
        };
        // Deleted at once: the same order named again in the chunk reads nothing.
        view.write(key, None);
        let side_in = usize::from(order.dir == B_TO_A);
        let (side, amount) = match record.fill(&owner, nonce, &order) {
            Some(out) => (1 - side_in, out),
            None => (side_in, order.amount_in),
        };
        paid[side] = paid[side]
            .checked_add(amount)
            .ok_or_else(|| DexError::Corrupt(format!("payout of pool {pool} overflows")))?;
        credits.push((owner, [pool.a, pool.b][side], amount));
    }
    let vault = vault_address(pool);
    for (asset, total) in [(pool.a, paid[0]), (pool.b, paid[1])] {
        if total > 0 {
            bank::debit_key(view, bank::balance_key(&vault, asset), asset, total)?;
        }
    }
    for (owner, asset, amount) in &credits {
        view.add(bank::balance_key(owner, *asset), *amount);
    }
    Ok(Payout {
        orders: credits.len(),
        paid_a: paid[0],
        paid_b: paid[1],
    })
}

/// The footprint of a payout hook over `orders` of `pool` ([`pay_batch`]): it reads the
/// clearing record (written by the settlement barrier before it, so payouts share it without
/// joining), deletes its orders (exclusive), credits each owner in either asset (deltas: a
/// fill or a refund) and pays out of the pool's vault (subs: every payout of the pool takes
/// from it, and together they take what the settlement cleared, within the vault's balance).
pub fn pay_footprint(pool: &PoolId, orders: &[(Address, u64)]) -> Footprint {
    let vault = vault_address(pool);
    let mut fp = Footprint::default();
    fp.reads.push(DexKey::Clearing(*pool).key());
    fp.subs.push(bank::balance_key(&vault, pool.a));
    fp.subs.push(bank::balance_key(&vault, pool.b));
    fp.exclusive.reserve(orders.len());
    fp.deltas.reserve(2 * orders.len());
    for (owner, nonce) in orders {
        fp.exclusive
            .push(DexKey::Order(*pool, *owner, *nonce).key());
        fp.deltas.push(bank::balance_key(owner, pool.a));
        fp.deltas.push(bank::balance_key(owner, pool.b));
    }
    fp
}

/// The pools of a block's batch swaps and their orders `(sender, nonce)` in block order:
/// what the block builder turns into end-of-block settlement hooks (sorted by pool).
pub fn batch_orders<'a>(
    txs: impl IntoIterator<Item = (&'a Address, u64, &'a DexMsg)>,
) -> BTreeMap<PoolId, Vec<(Address, u64)>> {
    let mut out: BTreeMap<PoolId, Vec<(Address, u64)>> = BTreeMap::new();
    for (sender, nonce, msg) in txs {
        if let DexMsg::BatchSwap {
            asset_in,
            asset_out,
            ..
        } = msg
        {
            if let Ok(pool) = PoolId::new(*asset_in, *asset_out) {
                out.entry(pool).or_default().push((*sender, nonce));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Read-only quotes over committed state.
// ---------------------------------------------------------------------------------------

fn stored_reserves<S: Storage>(state: &S, pool: &PoolId) -> Result<(Amount, Amount), DexError> {
    decode_reserves(pool, state.get(&DexKey::Reserves(*pool).key()))
}

/// The reserves of a pair's pool in committed state, in the pool's order `(a, b)`.
pub fn reserves<S: Storage>(state: &S, pool: &PoolId) -> Result<(Amount, Amount), DexError> {
    stored_reserves(state, pool)
}

/// What an exact-in swap along `path` would give now: the amount at every step.
pub fn quote_exact_in<S: Storage>(
    state: &S,
    path: &[AssetId],
    amount_in: Amount,
) -> Result<Vec<Amount>, DexError> {
    let pools = path_pools(path)?;
    let reserves: Result<Vec<_>, _> = pools.iter().map(|p| stored_reserves(state, p)).collect();
    amounts_out(path, &pools, &reserves?, amount_in)
}

/// What an exact-out swap along `path` would need now: the amount at every step.
pub fn quote_exact_out<S: Storage>(
    state: &S,
    path: &[AssetId],
    amount_out: Amount,
) -> Result<Vec<Amount>, DexError> {
    let pools = path_pools(path)?;
    if amount_out == 0 {
        return Err(DexError::ZeroAmount("amount_out"));
    }
    let reserves: Result<Vec<_>, _> = pools.iter().map(|p| stored_reserves(state, p)).collect();
    amounts_in(path, &pools, &reserves?, amount_out)
}

/// A quote for a batch order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BatchQuote {
    /// The clearing price with this order added to the pending ones.
    pub price: Price,
    /// What this order would receive at it.
    pub amount_out: Amount,
}

/// What a batch order would receive if the batch cleared now with it added to the pending
/// totals of the current block (assuming every pending order fills; refunds of others can
/// move the final price).
pub fn quote_batch<S: Storage>(
    state: &S,
    asset_in: AssetId,
    asset_out: AssetId,
    amount_in: Amount,
) -> Result<BatchQuote, DexError> {
    let pool = PoolId::new(asset_in, asset_out)?;
    if amount_in == 0 {
        return Err(DexError::ZeroAmount("amount_in"));
    }
    let (x, y) = stored_reserves(state, &pool)?;
    let dir = pool.dir_of(asset_in);
    let mut ta = num_of(&state.get(&DexKey::BatchTotal(pool, A_TO_B).key()));
    let mut tb = num_of(&state.get(&DexKey::BatchTotal(pool, B_TO_A).key()));
    if dir == A_TO_B {
        ta = ta.saturating_add(amount_in);
    } else {
        tb = tb.saturating_add(amount_in);
    }
    reserve_add(x, ta)?;
    reserve_add(y, tb)?;
    let price = clearing_price(x, y, ta, tb).ok_or(DexError::ZeroAmount("amount_in"))?;
    Ok(BatchQuote {
        price,
        amount_out: price.out(dir, amount_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch order belongs to its owner, every other key of a pool to the pool's vault.
    #[test]
    fn orders_belong_to_their_owner_and_pool_keys_to_the_vault() {
        let pool = PoolId::new(AssetId(1), AssetId(2)).expect("a pool");
        let other_pool = PoolId::new(AssetId(1), AssetId(3)).expect("a pool");
        let owner = Address([0x5a; 32]);
        let order = DexKey::Order(pool, owner, 9).key();
        assert_eq!(key_home(&order), Some(bank::home_of(&owner)));
        let vault = bank::home_of(&vault_address(&pool));
        assert_eq!(pool_home(&pool), vault);
        assert_ne!(pool_home(&other_pool), vault);
        for other in [
            DexKey::Pool(pool),
            DexKey::Reserves(pool),
            DexKey::Clearing(pool),
            DexKey::BatchTotal(pool, A_TO_B),
        ] {
            assert_eq!(key_home(&other.key()), Some(vault), "{other:?}");
        }
        assert_eq!(key_home(&bank::balance_key(&owner, AssetId(1))), None);
        assert_eq!(key_home(&Key::from_array([PREFIX_ORDER; 20])), None);
    }

    /// The memo gives the hash, for more pools than it has slots (so slots are shared and
    /// overwritten), asked for in two different orders.
    #[test]
    fn vault_memo_gives_the_hash() {
        let hashed = |p: &PoolId| {
            let mut h = Sha256::new();
            h.update(b"parabit/dex/vault");
            h.update(p.bytes());
            Address(h.finalize().into())
        };
        let pools: Vec<PoolId> = (1..6000u64)
            .map(|i| PoolId::new(AssetId(i % 7), AssetId(i * 31 + 7)).expect("pool"))
            .collect();
        for p in pools.iter().chain(pools.iter().rev()) {
            assert_eq!(vault_address(p), hashed(p), "{p:?}");
        }
    }

    #[test]
    fn keys_parse_back() {
        let p = PoolId::new(AssetId(9), AssetId(3)).expect("pool");
        assert_eq!((p.a, p.b), (AssetId(3), AssetId(9)));
        for k in [
            DexKey::Pool(p),
            DexKey::Reserves(p),
            DexKey::BatchTotal(p, B_TO_A),
            DexKey::Order(p, Address([5; 32]), 77),
            DexKey::Clearing(p),
        ] {
            assert_eq!(DexKey::from_bytes(k.key().as_bytes()), Some(k));
        }
        assert_eq!(DexKey::from_bytes(&[PREFIX_POOL, 1]), None);
    }

    #[test]
    fn wide_arithmetic() {
        assert_eq!(mul_wide(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div(1 << 100, 1 << 100, 1 << 90), Some(1 << 110));
        assert_eq!(mul_div(1 << 100, 1 << 100, 1 << 60), None);
        assert_eq!(mul_div(7, 3, 0), None);
        assert_eq!(
            mul_div((1 << 127) + 5, 6, 4),
            Some(((1u128 << 127) + 5) / 2 * 3 + 1)
        );
        assert_eq!(isqrt_product(1 << 112, 1 << 112), 1 << 112);
        assert_eq!(isqrt_product(u128::MAX, u128::MAX), u128::MAX);
        assert_eq!(isqrt_product(15, 1), 3);
        assert_eq!(isqrt_product(16, 1), 4);
        assert_eq!(isqrt_product(0, 5), 0);
    }
}
