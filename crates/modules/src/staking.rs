//! Staking: pools where accounts stake an asset, earn rewards funded by anyone, unbond with a
//! waiting period, and can be slashed by the pool's authority.
//!
//! # Pools
//! Any account creates a pool ([`StakingMsg::CreatePool`]) and is its **authority**: the only
//! account that may slash its stakers. A pool names its stake asset, its reward asset, its
//! unbonding period (in blocks) and where slashed tokens go. Its id is
//! [`derive_pool_id`]`(creator, nonce)`. The configuration never changes after creation, so
//! every transaction reads it without conflicting.
//!
//! # Rewards: a reward-per-share accumulator
//! `acc` ([`StakingKey::RewardPerShare`]) is the reward earned by one staked base unit since the
//! pool began, in 1e18 fixed point. Funding `r` with total stake `T` raises it by
//! `floor(r · 1e18 / T)`. A staker's pending reward is settled before every change of its stake
//! (stake, unbond, slash, claim): `pending += floor(stake · (acc − paid) / 1e18)`, then
//! `paid = acc`. Both floors favour the pool: the dust stays in [`StakingKey::RewardBalance`].
//!
//! # Unbonding and slashing
//! Unbonding moves stake into an entry released `unbonding_blocks` after the block it was made
//! in; [`StakingMsg::Withdraw`] pays out every released entry. Slashing by the authority takes
//! `ceil(fraction · x)` (fraction in parts per million, rounded up: against the slashed staker)
//! of the staker's stake and of each unbonding entry, and pays it from the vault to the pool's
//! slash destination.
//!
//! # State (prefix bytes `0x30`–`0x38`)
//! | key | value |
//! |---|---|
//! | `30 ‖ pool` [`StakingKey::Pool`] | `Bytes`: borsh [`PoolConfig`] |
//! | `31 ‖ pool` [`StakingKey::TotalStaked`] | `Num`: sum of stakes (moved by deltas) |
//! | `32 ‖ pool` [`StakingKey::RewardPerShare`] | `Num`: `acc`, 1e18 fixed point |
//! | `33 ‖ pool` [`StakingKey::TotalUnbonding`] | `Num`: sum of unbonding entries |
//! | `34 ‖ pool` [`StakingKey::RewardBalance`] | `Num`: funded minus claimed rewards |
//! | `35 ‖ pool ‖ owner` [`StakingKey::Stake`] | `Num`: the owner's stake |
//! | `36 ‖ pool ‖ owner` [`StakingKey::Paid`] | `Num`: `acc` at the owner's last settlement |
//! | `37 ‖ pool ‖ owner` [`StakingKey::Pending`] | `Num`: settled, unclaimed rewards |
//! | `38 ‖ pool ‖ owner` [`StakingKey::Unbonding`] | `Bytes`: borsh `Vec<(release height, amount)>` |
//!
//! # Invariants
//! - All tokens sit in the bank account [`vault_address`]; for every asset, the vault's balance
//!   equals the sum over pools of `TotalStaked + TotalUnbonding` (pools staking it) plus
//!   `RewardBalance` (pools rewarding in it).
//! - `TotalStaked` is the sum of the stakes and `TotalUnbonding` the sum of the entries.
//! - Rewards paid out plus pending never exceed rewards funded: `RewardBalance` ≥ the sum of
//!   `Pending` plus what the stakers would settle now.
//! - Parallelism: totals and the reward balance move only by `add` deltas (a decrease adds
//!   the two's complement; the invariants above keep them from wrapping), the vault's balances
//!   by `add` and `try_sub`; a stake, unbond, withdraw or claim reads only the pool's
//!   configuration, its accumulator (rewritten only by funding) and the sender's own keys. So
//!   every message declares a footprint ([`footprint`]) and the stakers of one pool run apart
//!   in the partitioned engine; funding rewards reads the total stake and rewrites the
//!   accumulator, so it joins every staker of its pool in its block.

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{num_of, Footprint, Halt, Key, StateView, Storage, Value};
use parabit_primitives::{Address, Amount, AssetId};

use crate::bank::{self, BankError};
use crate::dex::mul_div;
use crate::{declare, Touch};

/// Fixed-point scale of the accumulator.
pub const SCALE: u128 = 1_000_000_000_000_000_000;
/// Parts per million: the unit of slash fractions.
pub const PPM: u32 = 1_000_000;
/// Most unbonding entries an account may hold in one pool at once.
pub const MAX_UNBONDING_ENTRIES: usize = 32;

/// Prefix of [`StakingKey::Pool`].
pub const PREFIX_POOL: u8 = 0x30;
/// Prefix of [`StakingKey::TotalStaked`].
pub const PREFIX_TOTAL_STAKED: u8 = 0x31;
/// Prefix of [`StakingKey::RewardPerShare`].
pub const PREFIX_REWARD_PER_SHARE: u8 = 0x32;
/// Prefix of [`StakingKey::TotalUnbonding`].
pub const PREFIX_TOTAL_UNBONDING: u8 = 0x33;
/// Prefix of [`StakingKey::RewardBalance`].
pub const PREFIX_REWARD_BALANCE: u8 = 0x34;
/// Prefix of [`StakingKey::Stake`].
pub const PREFIX_STAKE: u8 = 0x35;
/// Prefix of [`StakingKey::Paid`].
pub const PREFIX_PAID: u8 = 0x36;
/// Prefix of [`StakingKey::Pending`].
pub const PREFIX_PENDING: u8 = 0x37;
/// Prefix of [`StakingKey::Unbonding`].
pub const PREFIX_UNBONDING: u8 = 0x38;

/// A staking pool's id.
pub type StakingPoolId = u64;

/// The state keys of the staking module.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StakingKey {
    /// A pool's configuration.
    Pool(StakingPoolId),
    /// Sum of a pool's stakes.
    TotalStaked(StakingPoolId),
    /// A pool's reward-per-share accumulator (1e18 fixed point).
    RewardPerShare(StakingPoolId),
    /// Sum of a pool's unbonding entries.
    TotalUnbonding(StakingPoolId),
    /// A pool's funded and not yet claimed rewards.
    RewardBalance(StakingPoolId),
    /// An owner's stake.
    Stake(StakingPoolId, Address),
    /// The accumulator at an owner's last settlement.
    Paid(StakingPoolId, Address),
    /// An owner's settled, unclaimed rewards.
    Pending(StakingPoolId, Address),
    /// An owner's unbonding entries.
    Unbonding(StakingPoolId, Address),
}

impl StakingKey {
    /// The engine key.
    pub fn key(&self) -> Key {
        let pool_key = crate::id_key;
        let owner_key = crate::id_owner_key;
        match self {
            StakingKey::Pool(p) => pool_key(PREFIX_POOL, *p),
            StakingKey::TotalStaked(p) => pool_key(PREFIX_TOTAL_STAKED, *p),
            StakingKey::RewardPerShare(p) => pool_key(PREFIX_REWARD_PER_SHARE, *p),
            StakingKey::TotalUnbonding(p) => pool_key(PREFIX_TOTAL_UNBONDING, *p),
            StakingKey::RewardBalance(p) => pool_key(PREFIX_REWARD_BALANCE, *p),
            StakingKey::Stake(p, a) => owner_key(PREFIX_STAKE, *p, a),
            StakingKey::Paid(p, a) => owner_key(PREFIX_PAID, *p, a),
            StakingKey::Pending(p, a) => owner_key(PREFIX_PENDING, *p, a),
            StakingKey::Unbonding(p, a) => owner_key(PREFIX_UNBONDING, *p, a),
        }
    }
}

/// The home of a state key ([`parabit_exec::Vm::key_home`]): a staker's entries (its
/// stake, its paid accumulator, its pending rewards, its unbonding) belong to it
/// ([`bank::home_of`]); a pool's keys to no account.
pub fn key_home(key: &Key) -> Option<u64> {
    crate::id_owner_key_home(
        key.as_bytes(),
        &[PREFIX_STAKE, PREFIX_PAID, PREFIX_PENDING, PREFIX_UNBONDING],
    )
}

/// The staking vault's home ([`bank::home_of`]): every staker's withdrawal takes from its
/// balances, so the runtime gives them no home.
pub fn vault_home() -> u64 {
    static HOME: std::sync::LazyLock<u64> =
        std::sync::LazyLock::new(|| bank::home_of(&vault_address()));
    *HOME
}

/// The bank account holding every staking pool's tokens.
pub fn vault_address() -> Address {
    // Hashed once: every call of the module names the vault.
    static VAULT: std::sync::LazyLock<Address> =
        std::sync::LazyLock::new(|| crate::module_account(b"parabit/staking/vault"));
    *VAULT
}

/// The id of the pool created by `creator`'s transaction with nonce `nonce`: the first 8
/// bytes of `SHA256("parabit/staking/pool" ‖ creator ‖ nonce_le)`, big-endian.
pub fn derive_pool_id(creator: &Address, nonce: u64) -> StakingPoolId {
    crate::derive_object_id(b"parabit/staking/pool", creator, nonce)
}

/// A pool's configuration, fixed at creation.
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
pub struct PoolConfig {
    /// May slash stakers (the creator).
    pub authority: Address,
    /// The staked asset.
    pub stake_asset: AssetId,
    /// The asset rewards are paid in.
    pub reward_asset: AssetId,
    /// Blocks an unbonding entry waits before it can be withdrawn.
    pub unbonding_blocks: u64,
    /// Receives slashed tokens.
    pub slash_destination: Address,
}

/// A staking message.
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
pub enum StakingMsg {
    /// Creates a pool whose authority is the sender; its id is
    /// [`derive_pool_id`]`(sender, nonce)`.
    CreatePool {
        /// The staked asset.
        stake_asset: AssetId,
        /// The reward asset.
        reward_asset: AssetId,
        /// The unbonding period in blocks.
        unbonding_blocks: u64,
        /// Where slashed tokens go.
        slash_destination: Address,
    },
    /// Stakes `amount` of the pool's stake asset.
    Stake {
        /// The pool.
        pool: StakingPoolId,
        /// How much; positive.
        amount: Amount,
    },
    /// Moves `amount` of the sender's stake into an unbonding entry.
    Unbond {
        /// The pool.
        pool: StakingPoolId,
        /// How much; positive, at most the stake.
        amount: Amount,
    },
    /// Pays out every released unbonding entry.
    Withdraw {
        /// The pool.
        pool: StakingPoolId,
    },
    /// Adds `amount` of the reward asset to the pool, shared by the current stakers.
    FundRewards {
        /// The pool.
        pool: StakingPoolId,
        /// How much; positive.
        amount: Amount,
    },
    /// Pays the sender's pending rewards.
    Claim {
        /// The pool.
        pool: StakingPoolId,
    },
    /// Slashes `fraction_ppm` parts per million of `staker`'s stake and unbonding entries
    /// (authority only).
    Slash {
        /// The pool.
        pool: StakingPoolId,
        /// The slashed account.
        staker: Address,
        /// 1 to 1,000,000.
        fraction_ppm: u32,
    },
}

/// Why a staking operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StakingError {
    /// No pool with this id.
    #[error("unknown staking pool {0}")]
    UnknownPool(StakingPoolId),
    /// A pool with the derived id exists.
    #[error("staking pool {0} already exists")]
    PoolExists(StakingPoolId),
    /// An amount of zero.
    #[error("amount must be positive")]
    ZeroAmount,
    /// Unbonding more than the stake.
    #[error("insufficient stake: have {have}, need {need}")]
    InsufficientStake {
        /// The stake.
        have: Amount,
        /// The amount asked.
        need: Amount,
    },
    /// Too many unbonding entries.
    #[error("too many unbonding entries: at most {MAX_UNBONDING_ENTRIES}")]
    TooManyUnbondingEntries,
    /// Nothing to withdraw yet.
    #[error("nothing to withdraw at height {height}: next release at {next:?}")]
    NothingToWithdraw {
        /// The current height.
        height: u64,
        /// The earliest release height, if any entry.
        next: Option<u64>,
    },
    /// Nothing to claim.
    #[error("no rewards to claim")]
    NothingToClaim,
    /// Funding a pool with no stake.
    #[error("cannot fund rewards: pool {0} has no stake")]
    NoStake(StakingPoolId),
    /// The funding is too small to raise the accumulator by one unit.
    #[error("reward {amount} too small for total stake {total}: raises reward per share by 0")]
    RewardTooSmall {
        /// The reward.
        amount: Amount,
        /// The total stake.
        total: Amount,
    },
    /// Not the pool's authority.
    #[error("unauthorized: {0} is not the pool's authority")]
    Unauthorized(Address),
    /// A slash fraction outside 1..=1,000,000 ppm.
    #[error("invalid slash fraction {0} ppm: must be 1 to 1000000")]
    InvalidFraction(u32),
    /// Slashing an account with no stake and no unbonding.
    #[error("nothing to slash: {0} has no stake or unbonding in the pool")]
    NothingToSlash(Address),
    /// Arithmetic out of range.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// State that does not decode or breaks an invariant.
    #[error("corrupt state: {0}")]
    Corrupt(&'static str),
    /// A bank failure (e.g. insufficient balance).
    #[error("{0}")]
    Bank(BankError),
    /// The engine suspended the transaction (internal; never in a receipt).
    #[error("execution suspended on a dependency (internal)")]
    Halt(Halt),
}

module_error_conversions!(StakingError);

type Result<T> = std::result::Result<T, StakingError>;

/// Executes a staking message from `sender` (transaction nonce `nonce`) at block `height`.
pub fn execute<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    height: u64,
    msg: &StakingMsg,
) -> Result<()> {
    match msg {
        StakingMsg::CreatePool {
            stake_asset,
            reward_asset,
            unbonding_blocks,
            slash_destination,
        } => create_pool(
            view,
            sender,
            nonce,
            PoolConfig {
                authority: *sender,
                stake_asset: *stake_asset,
                reward_asset: *reward_asset,
                unbonding_blocks: *unbonding_blocks,
                slash_destination: *slash_destination,
            },
        )
        .map(|_| ()),
        StakingMsg::Stake { pool, amount } => stake(view, sender, *pool, *amount),
        StakingMsg::Unbond { pool, amount } => unbond(view, sender, *pool, height, *amount),
        StakingMsg::Withdraw { pool } => withdraw(view, sender, *pool, height).map(|_| ()),
        StakingMsg::FundRewards { pool, amount } => fund_rewards(view, sender, *pool, *amount),
        StakingMsg::Claim { pool } => claim(view, sender, *pool).map(|_| ()),
        StakingMsg::Slash {
            pool,
            staker,
            fraction_ppm,
        } => slash(view, sender, *pool, staker, *fraction_ppm).map(|_| ()),
    }
}

/// Reads a pool's configuration.
pub fn pool_config<V: StateView>(view: &mut V, pool: StakingPoolId) -> Result<PoolConfig> {
    match view.read(&StakingKey::Pool(pool).key())? {
        Some(Value::Bytes(b)) => {
            PoolConfig::try_from_slice(&b).map_err(|_| StakingError::Corrupt("pool config"))
        }
        _ => Err(StakingError::UnknownPool(pool)),
    }
}

/// A pool's configuration from committed storage; `None` if there is no such pool.
pub fn query_pool<S: parabit_exec::Storage>(state: &S, pool: StakingPoolId) -> Option<PoolConfig> {
    match state.get(&StakingKey::Pool(pool).key()) {
        Some(Value::Bytes(b)) => PoolConfig::try_from_slice(&b).ok(),
        _ => None,
    }
}

fn num<V: StateView>(view: &mut V, key: StakingKey) -> Result<u128> {
    Ok(num_of(&view.read(&key.key())?))
}

/// Creates a pool; returns its id.
pub fn create_pool<V: StateView>(
    view: &mut V,
    creator: &Address,
    nonce: u64,
    config: PoolConfig,
) -> Result<StakingPoolId> {
    let id = derive_pool_id(creator, nonce);
    let key = StakingKey::Pool(id).key();
    if view.read(&key)?.is_some() {
        return Err(StakingError::PoolExists(id));
    }
    view.write(
        key,
        Some(Value::bytes(borsh::to_vec(&config).unwrap_or_default())),
    );
    Ok(id)
}

/// Settles `owner`'s pending rewards up to the current accumulator; returns its stake.
fn settle<V: StateView>(view: &mut V, pool: StakingPoolId, owner: &Address) -> Result<u128> {
    let acc = num(view, StakingKey::RewardPerShare(pool))?;
    let stake = num(view, StakingKey::Stake(pool, *owner))?;
    let paid_key = StakingKey::Paid(pool, *owner);
    let paid = num(view, paid_key)?;
    if paid == acc {
        return Ok(stake);
    }
    let delta = acc
        .checked_sub(paid)
        .ok_or(StakingError::Corrupt("paid index above accumulator"))?;
    let earned = mul_div(stake, delta, SCALE).ok_or(StakingError::Overflow("settle"))?;
    if earned > 0 {
        view.add(StakingKey::Pending(pool, *owner).key(), earned);
    }
    view.write(paid_key.key(), Some(Value::Num(acc)));
    Ok(stake)
}

/// Stakes `amount` of the pool's stake asset from `owner`.
pub fn stake<V: StateView>(
    view: &mut V,
    owner: &Address,
    pool: StakingPoolId,
    amount: Amount,
) -> Result<()> {
    let cfg = pool_config(view, pool)?;
    if amount == 0 {
        return Err(StakingError::ZeroAmount);
    }
    settle(view, pool, owner)?;
    bank::transfer(view, owner, &vault_address(), cfg.stake_asset, amount)?;
    view.add(StakingKey::Stake(pool, *owner).key(), amount);
    view.add(StakingKey::TotalStaked(pool).key(), amount);
    Ok(())
}

/// Reads `owner`'s unbonding entries.
pub fn unbonding_entries<V: StateView>(
    view: &mut V,
    pool: StakingPoolId,
    owner: &Address,
) -> Result<Vec<(u64, Amount)>> {
    match view.read(&StakingKey::Unbonding(pool, *owner).key())? {
        Some(Value::Bytes(b)) => Vec::<(u64, Amount)>::try_from_slice(&b)
            .map_err(|_| StakingError::Corrupt("unbonding entries")),
        _ => Ok(Vec::new()),
    }
}

fn write_entries<V: StateView>(
    view: &mut V,
    pool: StakingPoolId,
    owner: &Address,
    entries: &[(u64, Amount)],
) {
    let value = if entries.is_empty() {
        None
    } else {
        Some(Value::bytes(borsh::to_vec(entries).unwrap_or_default()))
    };
    view.write(StakingKey::Unbonding(pool, *owner).key(), value);
}

/// Moves `amount` of `owner`'s stake into an entry released at `height + unbonding_blocks`.
pub fn unbond<V: StateView>(
    view: &mut V,
    owner: &Address,
    pool: StakingPoolId,
    height: u64,
    amount: Amount,
) -> Result<()> {
    let cfg = pool_config(view, pool)?;
    if amount == 0 {
        return Err(StakingError::ZeroAmount);
    }
    let have = settle(view, pool, owner)?;
    if have < amount {
        return Err(StakingError::InsufficientStake { have, need: amount });
    }
    let mut entries = unbonding_entries(view, pool, owner)?;
    if entries.len() >= MAX_UNBONDING_ENTRIES {
        return Err(StakingError::TooManyUnbondingEntries);
    }
    let release = height
        .checked_add(cfg.unbonding_blocks)
        .ok_or(StakingError::Overflow("release height"))?;
    entries.push((release, amount));
    write_entries(view, pool, owner, &entries);
    view.write(
        StakingKey::Stake(pool, *owner).key(),
        Some(Value::Num(have - amount)),
    );
    view.add(StakingKey::TotalStaked(pool).key(), amount.wrapping_neg());
    view.add(StakingKey::TotalUnbonding(pool).key(), amount);
    Ok(())
}

/// Pays `owner` every unbonding entry released at `height`; returns the amount.
pub fn withdraw<V: StateView>(
    view: &mut V,
    owner: &Address,
    pool: StakingPoolId,
    height: u64,
) -> Result<Amount> {
    let cfg = pool_config(view, pool)?;
    let entries = unbonding_entries(view, pool, owner)?;
    let (ready, waiting): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.0 <= height);
    let total = ready
        .iter()
        .try_fold(0u128, |s, e| s.checked_add(e.1))
        .ok_or(StakingError::Overflow("withdraw"))?;
    if total == 0 {
        return Err(StakingError::NothingToWithdraw {
            height,
            next: waiting.iter().map(|e| e.0).min(),
        });
    }
    write_entries(view, pool, owner, &waiting);
    view.add(StakingKey::TotalUnbonding(pool).key(), total.wrapping_neg());
    bank::transfer(view, &vault_address(), owner, cfg.stake_asset, total)?;
    Ok(total)
}

/// Adds `amount` of rewards from `funder`: `acc += floor(amount · 1e18 / total staked)`.
pub fn fund_rewards<V: StateView>(
    view: &mut V,
    funder: &Address,
    pool: StakingPoolId,
    amount: Amount,
) -> Result<()> {
    let cfg = pool_config(view, pool)?;
    if amount == 0 {
        return Err(StakingError::ZeroAmount);
    }
    let total = num(view, StakingKey::TotalStaked(pool))?;
    if total == 0 {
        return Err(StakingError::NoStake(pool));
    }
    let inc = mul_div(amount, SCALE, total).ok_or(StakingError::Overflow("reward per share"))?;
    if inc == 0 {
        return Err(StakingError::RewardTooSmall { amount, total });
    }
    let acc = num(view, StakingKey::RewardPerShare(pool))?;
    let acc = acc
        .checked_add(inc)
        .ok_or(StakingError::Overflow("reward per share"))?;
    bank::transfer(view, funder, &vault_address(), cfg.reward_asset, amount)?;
    view.write(
        StakingKey::RewardPerShare(pool).key(),
        Some(Value::Num(acc)),
    );
    view.add(StakingKey::RewardBalance(pool).key(), amount);
    Ok(())
}

/// Pays `owner` its pending rewards; returns the amount.
pub fn claim<V: StateView>(view: &mut V, owner: &Address, pool: StakingPoolId) -> Result<Amount> {
    let cfg = pool_config(view, pool)?;
    settle(view, pool, owner)?;
    let key = StakingKey::Pending(pool, *owner);
    let pending = num(view, key)?;
    if pending == 0 {
        return Err(StakingError::NothingToClaim);
    }
    // A wrapping delta, not a `try_sub`: the balance covers every pending reward (an
    // invariant), and a delta needs no check against the balance at the start of the block.
    view.add(
        StakingKey::RewardBalance(pool).key(),
        pending.wrapping_neg(),
    );
    view.write(key.key(), None);
    bank::transfer(view, &vault_address(), owner, cfg.reward_asset, pending)?;
    Ok(pending)
}

/// `ceil(x · ppm / 1e6)`, at most `x`.
fn slash_part(x: u128, ppm: u32) -> Result<u128> {
    let ppm = u128::from(ppm);
    let floor = mul_div(x, ppm, u128::from(PPM)).ok_or(StakingError::Overflow("slash"))?;
    let exact = x.checked_mul(ppm).map(|p| p % u128::from(PPM) == 0);
    let up = match exact {
        Some(true) => floor,
        // Not a multiple (or too large to tell cheaply): round up against the staker.
        _ if floor < x => floor + 1,
        _ => floor,
    };
    Ok(up.min(x))
}

/// Slashes `fraction_ppm` of `staker`'s stake and unbonding entries (rounded up) to the pool's
/// slash destination; `sender` must be the authority. Returns the amount slashed.
pub fn slash<V: StateView>(
    view: &mut V,
    sender: &Address,
    pool: StakingPoolId,
    staker: &Address,
    fraction_ppm: u32,
) -> Result<Amount> {
    let cfg = pool_config(view, pool)?;
    if *sender != cfg.authority {
        return Err(StakingError::Unauthorized(*sender));
    }
    if fraction_ppm == 0 || fraction_ppm > PPM {
        return Err(StakingError::InvalidFraction(fraction_ppm));
    }
    let stake = settle(view, pool, staker)?;
    let mut entries = unbonding_entries(view, pool, staker)?;
    if stake == 0 && entries.is_empty() {
        return Err(StakingError::NothingToSlash(*staker));
    }
    let from_stake = slash_part(stake, fraction_ppm)?;
    let mut from_unbonding = 0u128;
    for e in entries.iter_mut() {
        let cut = slash_part(e.1, fraction_ppm)?;
        e.1 -= cut;
        from_unbonding += cut;
    }
    entries.retain(|e| e.1 > 0);
    write_entries(view, pool, staker, &entries);
    view.write(
        StakingKey::Stake(pool, *staker).key(),
        Some(Value::Num(stake - from_stake)),
    );
    view.add(
        StakingKey::TotalStaked(pool).key(),
        from_stake.wrapping_neg(),
    );
    view.add(
        StakingKey::TotalUnbonding(pool).key(),
        from_unbonding.wrapping_neg(),
    );
    let total = from_stake + from_unbonding;
    if total > 0 {
        bank::transfer(
            view,
            &vault_address(),
            &cfg.slash_destination,
            cfg.stake_asset,
            total,
        )?;
    }
    Ok(total)
}

/// Declares the keys of settling `owner`'s rewards: the accumulator is read (only funding
/// writes it), the owner's stake and reward keys are exclusive.
fn declare_settle(fp: &mut Footprint, pool: StakingPoolId, owner: &Address) {
    declare(fp, StakingKey::RewardPerShare(pool).key(), Touch::Read);
    declare(fp, StakingKey::Stake(pool, *owner).key(), Touch::Write);
    declare(fp, StakingKey::Paid(pool, *owner).key(), Touch::Write);
    declare(fp, StakingKey::Pending(pool, *owner).key(), Touch::Write);
}

/// Declares in `fp` every key a staking message from `sender` (transaction nonce `nonce`) may
/// touch, on every path (failures included), given the state at the start of the block.
///
/// A pool's configuration never changes after creation, so the assets and the slash
/// destination are read from `state`; a message naming a pool that does not exist there
/// declares only the pool's key (it fails on reading it, unless the pool is created earlier in
/// the block: then the engine re-runs the block). Totals move by `add` (stakes, unbonding:
/// many stakers of one pool do not join), the vault and the reward balance only by `add` and
/// `try_sub`; funding rewards reads the total stake and rewrites the accumulator, so it joins
/// every staker of its pool in the block.
pub fn footprint(
    msg: &StakingMsg,
    sender: &Address,
    nonce: u64,
    state: &dyn Storage,
    fp: &mut Footprint,
) {
    let pool = match msg {
        StakingMsg::CreatePool { .. } => {
            declare(
                fp,
                StakingKey::Pool(derive_pool_id(sender, nonce)).key(),
                Touch::Write,
            );
            return;
        }
        StakingMsg::Stake { pool, .. }
        | StakingMsg::Unbond { pool, .. }
        | StakingMsg::Withdraw { pool }
        | StakingMsg::FundRewards { pool, .. }
        | StakingMsg::Claim { pool }
        | StakingMsg::Slash { pool, .. } => *pool,
    };
    declare(fp, StakingKey::Pool(pool).key(), Touch::Read);
    let Some(cfg) = query_pool(&state, pool) else {
        return;
    };
    let vault = vault_address();
    match msg {
        StakingMsg::CreatePool { .. } => {}
        StakingMsg::Stake { .. } => {
            declare_settle(fp, pool, sender);
            declare(fp, bank::balance_key(sender, cfg.stake_asset), Touch::Write);
            declare(fp, bank::balance_key(&vault, cfg.stake_asset), Touch::Sub);
            declare(fp, StakingKey::TotalStaked(pool).key(), Touch::Add);
        }
        StakingMsg::Unbond { .. } => {
            declare_settle(fp, pool, sender);
            declare(fp, StakingKey::Unbonding(pool, *sender).key(), Touch::Write);
            declare(fp, StakingKey::TotalStaked(pool).key(), Touch::Add);
            declare(fp, StakingKey::TotalUnbonding(pool).key(), Touch::Add);
        }
        StakingMsg::Withdraw { .. } => {
            declare(fp, StakingKey::Unbonding(pool, *sender).key(), Touch::Write);
            declare(fp, StakingKey::TotalUnbonding(pool).key(), Touch::Add);
            declare(fp, bank::balance_key(&vault, cfg.stake_asset), Touch::Sub);
            declare(fp, bank::balance_key(sender, cfg.stake_asset), Touch::Add);
        }
        StakingMsg::FundRewards { .. } => {
            declare(fp, StakingKey::TotalStaked(pool).key(), Touch::Read);
            declare(fp, StakingKey::RewardPerShare(pool).key(), Touch::Write);
            declare(
                fp,
                bank::balance_key(sender, cfg.reward_asset),
                Touch::Write,
            );
            declare(fp, bank::balance_key(&vault, cfg.reward_asset), Touch::Sub);
            declare(fp, StakingKey::RewardBalance(pool).key(), Touch::Add);
        }
        StakingMsg::Claim { .. } => {
            declare_settle(fp, pool, sender);
            declare(fp, StakingKey::RewardBalance(pool).key(), Touch::Add);
            declare(fp, bank::balance_key(&vault, cfg.reward_asset), Touch::Sub);
            declare(fp, bank::balance_key(sender, cfg.reward_asset), Touch::Add);
        }
        StakingMsg::Slash { staker, .. } => {
            if *sender != cfg.authority {
                return;
            }
            declare_settle(fp, pool, staker);
            declare(fp, StakingKey::Unbonding(pool, *staker).key(), Touch::Write);
            declare(fp, StakingKey::TotalStaked(pool).key(), Touch::Add);
            declare(fp, StakingKey::TotalUnbonding(pool).key(), Touch::Add);
            declare(fp, bank::balance_key(&vault, cfg.stake_asset), Touch::Sub);
            declare(
                fp,
                bank::balance_key(&cfg.slash_destination, cfg.stake_asset),
                Touch::Add,
            );
        }
    }
}

/// The reward `owner` could claim now from committed state (settled plus unsettled).
pub fn claimable<S: Storage>(state: &S, owner: &Address, pool: StakingPoolId) -> Result<Amount> {
    let get = |k: StakingKey| num_of(&state.get(&k.key()));
    let acc = get(StakingKey::RewardPerShare(pool));
    let stake = get(StakingKey::Stake(pool, *owner));
    let paid = get(StakingKey::Paid(pool, *owner));
    let pending = get(StakingKey::Pending(pool, *owner));
    let earned = mul_div(stake, acc.saturating_sub(paid), SCALE)
        .ok_or(StakingError::Overflow("claimable"))?;
    pending
        .checked_add(earned)
        .ok_or(StakingError::Overflow("claimable"))
}
