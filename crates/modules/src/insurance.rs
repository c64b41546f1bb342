//! Insurance: cover pools funded by underwriters for shares, cover bought for a premium priced
//! by utilisation, claims decided by a stake-weighted vote of the pool's assessors.
//!
//! # Pools and underwriters
//! Any account creates a pool for one asset ([`InsuranceMsg::CreatePool`]); its id is
//! [`derive_id`]`(creator, nonce)` and its parameters ([`InsurancePool`]) never change, so
//! every transaction reads them without conflicting. Underwriters deposit the asset for shares ([`InsuranceMsg::Underwrite`]):
//! `shares = floor(amount · total_shares / capital)` (the first deposit gets `amount` shares).
//! A withdrawal is first requested ([`InsuranceMsg::RequestWithdrawal`]: the shares are set
//! aside, still earn premiums and still bear losses), then paid once `notice_blocks` have
//! passed, at the share price of that moment: `floor(shares · capital / total_shares)`.
//! Premiums raise `capital` (the underwriters' income) and paid claims lower it, so every
//! underwriter bears a loss pro rata to its shares through the share price.
//!
//! # Capacity and premiums
//! `capacity = floor(capital · max_cover_bps / 10_000)` with `1 ≤ max_cover_bps ≤ 10_000`.
//! Cover is sold only while `active_cover + amount ≤ capacity`, and a withdrawal that would
//! leave `active_cover > capacity` is refused (its request stays).
//!
//! The premium rate is linear in the utilisation **after** the purchase,
//! `u = ceil((active_cover + amount) · 10_000 / capacity)` (basis points):
//! `rate_bps = base_rate_bps + ceil(slope_bps · u / 10_000)` per [`RATE_PERIOD_BLOCKS`]
//! blocks, and `premium = max(1, ceil(amount · rate_bps · period_blocks / (10_000 ·
//! RATE_PERIOD_BLOCKS)))`. Every rounding raises the premium (the pool's favour).
//!
//! # Cover and claims
//! A cover names its holder, a risk (1 to [`MAX_RISK_LEN`] printable ASCII bytes), an amount
//! and the blocks `[start, end)`; its id is [`derive_id`]`(buyer, nonce)`. Its holder may file
//! **one** claim while it is active, for at most its amount; votes are taken while
//! `height < deadline = filing height + vote_blocks`. Assessors stake the pool's asset into the
//! pool ([`InsuranceMsg::StakeAssessor`]) and vote once per claim with their whole stake as
//! weight (the cover's holder may not vote on its own claim); a voter's stake is locked until
//! the claim's deadline. At or after the deadline anyone resolves the claim: it is approved
//! when `yes + no ≥ max(1, ceil(quorum_bps · total assessor stake / 10_000))` and `yes > no`
//! (a tie rejects). An approved claim pays `min(claim, cover, capital)` to the holder and
//! releases the cover. A cover past its end with no open claim is released by anyone
//! ([`InsuranceMsg::ReleaseCover`]); until then it counts in the active cover.
//!
//! # State (prefix bytes `0x40`–`0x4d`)
//! | key | value |
//! |---|---|
//! | `40 ‖ pool` [`InsuranceKey::Pool`] | `Bytes`: borsh [`InsurancePool`] |
//! | `41 ‖ pool` [`InsuranceKey::Capital`] | `Num`: capital |
//! | `42 ‖ pool` [`InsuranceKey::TotalShares`] | `Num`: total shares (held and set aside) |
//! | `43 ‖ pool` [`InsuranceKey::ActiveCover`] | `Num`: active cover |
//! | `44 ‖ pool` [`InsuranceKey::TotalAssessorStake`] | `Num`: total assessor stake |
//! | `45 ‖ pool ‖ owner` [`InsuranceKey::Shares`] | `Num`: an underwriter's shares |
//! | `46 ‖ pool ‖ owner` [`InsuranceKey::Withdrawal`] | `Bytes`: borsh `(shares, ready height)` |
//! | `47 ‖ pool ‖ owner` [`InsuranceKey::AssessorStake`] | `Num`: an assessor's stake |
//! | `48 ‖ pool ‖ owner` [`InsuranceKey::AssessorLock`] | `Num`: height until which it is locked |
//! | `49 ‖ cover` [`InsuranceKey::Cover`] | `Bytes`: borsh [`Cover`] |
//! | `4a ‖ cover` [`InsuranceKey::Claim`] | `Bytes`: borsh [`Claim`] |
//! | `4b ‖ cover` [`InsuranceKey::VotesYes`] | `Num`: weight voting yes |
//! | `4c ‖ cover` [`InsuranceKey::VotesNo`] | `Num`: weight voting no |
//! | `4d ‖ cover ‖ voter` [`InsuranceKey::Voted`] | `Num`: 1 once the voter has voted |
//!
//! # Invariants
//! - The bank account [`vault_address`] holds, per asset, the sum over the pools of that asset
//!   of capital plus total assessor stake.
//! - Shares held plus shares set aside equal total shares; assessor stakes sum to the total.
//! - Active cover equals the sum of the unreleased covers' amounts and never exceeds capacity:
//!   buying checks it, withdrawing checks it, and a paid claim lowers capital by at most the
//!   cover it releases (`floor((c − p) · b) ≥ floor(c · b) − p` for `b ≤ 1`).
//! - A claim pays at most its cover's amount and never more than the capital.
//! - Parallelism: votes, credits and totals that need no check move by `add`; buying cover,
//!   depositing and withdrawing read the pool's totals (they price shares or check capacity),
//!   so they order against each other on one pool, never across pools. Every message
//!   declares a footprint ([`footprint`]) on that basis: the engine runs each pool's
//!   underwriting, cover purchases and payouts in block order and the pools, votes and
//!   assessor stakes apart. Pricing cover from the utilisation at the start of the block would
//!   let one pool's buyers run apart too, at the cost of a premium that ignores the block's
//!   earlier purchases; it is not done: pools are many and their traffic light next to
//!   transfers and swaps, so keeping the exact premium costs no measurable parallelism.

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{num_of, Footprint, Halt, Key, StateView, Storage, Value};
use parabit_primitives::{Address, Amount, AssetId};

use crate::bank::{self, BankError};
use crate::dex::mul_div;
use crate::{declare, Touch};

/// Basis points in one.
pub const BPS: u128 = 10_000;
/// The premium rate is quoted per this many blocks.
pub const RATE_PERIOD_BLOCKS: u128 = 100_000;
/// Longest risk name.
pub const MAX_RISK_LEN: usize = 32;

/// Prefix of [`InsuranceKey::Pool`].
pub const PREFIX_POOL: u8 = 0x40;
/// Prefix of [`InsuranceKey::Capital`].
pub const PREFIX_CAPITAL: u8 = 0x41;
/// Prefix of [`InsuranceKey::TotalShares`].
pub const PREFIX_TOTAL_SHARES: u8 = 0x42;
/// Prefix of [`InsuranceKey::ActiveCover`].
pub const PREFIX_ACTIVE_COVER: u8 = 0x43;
/// Prefix of [`InsuranceKey::TotalAssessorStake`].
pub const PREFIX_TOTAL_ASSESSOR_STAKE: u8 = 0x44;
/// Prefix of [`InsuranceKey::Shares`].
pub const PREFIX_SHARES: u8 = 0x45;
/// Prefix of [`InsuranceKey::Withdrawal`].
pub const PREFIX_WITHDRAWAL: u8 = 0x46;
/// Prefix of [`InsuranceKey::AssessorStake`].
pub const PREFIX_ASSESSOR_STAKE: u8 = 0x47;
/// Prefix of [`InsuranceKey::AssessorLock`].
pub const PREFIX_ASSESSOR_LOCK: u8 = 0x48;
/// Prefix of [`InsuranceKey::Cover`].
pub const PREFIX_COVER: u8 = 0x49;
/// Prefix of [`InsuranceKey::Claim`].
pub const PREFIX_CLAIM: u8 = 0x4a;
/// Prefix of [`InsuranceKey::VotesYes`].
pub const PREFIX_VOTES_YES: u8 = 0x4b;
/// Prefix of [`InsuranceKey::VotesNo`].
pub const PREFIX_VOTES_NO: u8 = 0x4c;
/// Prefix of [`InsuranceKey::Voted`].
pub const PREFIX_VOTED: u8 = 0x4d;

/// A pool's or a cover's id.
pub type InsuranceId = u64;

/// The state keys of the insurance module.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InsuranceKey {
    /// A pool's configuration.
    Pool(InsuranceId),
    /// A pool's capital.
    Capital(InsuranceId),
    /// A pool's total shares.
    TotalShares(InsuranceId),
    /// A pool's active cover.
    ActiveCover(InsuranceId),
    /// A pool's total assessor stake.
    TotalAssessorStake(InsuranceId),
    /// An underwriter's shares.
    Shares(InsuranceId, Address),
    /// An underwriter's withdrawal request.
    Withdrawal(InsuranceId, Address),
    /// An assessor's stake.
    AssessorStake(InsuranceId, Address),
    /// The height until which an assessor's stake is locked.
    AssessorLock(InsuranceId, Address),
    /// A cover.
    Cover(InsuranceId),
    /// The claim on a cover.
    Claim(InsuranceId),
    /// Weight voting yes on a claim.
    VotesYes(InsuranceId),
    /// Weight voting no on a claim.
    VotesNo(InsuranceId),
    /// Whether a voter voted on a claim.
    Voted(InsuranceId, Address),
}

impl InsuranceKey {
    /// The engine key.
    pub fn key(&self) -> Key {
        let id_key = crate::id_key;
        let owner_key = crate::id_owner_key;
        match self {
            InsuranceKey::Pool(p) => id_key(PREFIX_POOL, *p),
            InsuranceKey::Capital(p) => id_key(PREFIX_CAPITAL, *p),
            InsuranceKey::TotalShares(p) => id_key(PREFIX_TOTAL_SHARES, *p),
            InsuranceKey::ActiveCover(p) => id_key(PREFIX_ACTIVE_COVER, *p),
            InsuranceKey::TotalAssessorStake(p) => id_key(PREFIX_TOTAL_ASSESSOR_STAKE, *p),
            InsuranceKey::Shares(p, a) => owner_key(PREFIX_SHARES, *p, a),
            InsuranceKey::Withdrawal(p, a) => owner_key(PREFIX_WITHDRAWAL, *p, a),
            InsuranceKey::AssessorStake(p, a) => owner_key(PREFIX_ASSESSOR_STAKE, *p, a),
            InsuranceKey::AssessorLock(p, a) => owner_key(PREFIX_ASSESSOR_LOCK, *p, a),
            InsuranceKey::Cover(c) => id_key(PREFIX_COVER, *c),
            InsuranceKey::Claim(c) => id_key(PREFIX_CLAIM, *c),
            InsuranceKey::VotesYes(c) => id_key(PREFIX_VOTES_YES, *c),
            InsuranceKey::VotesNo(c) => id_key(PREFIX_VOTES_NO, *c),
            InsuranceKey::Voted(c, a) => owner_key(PREFIX_VOTED, *c, a),
        }
    }
}

/// The home of a state key ([`parabit_exec::Vm::key_home`]): a pool's keys belong to the
/// pool and a cover's (its claim and votes) to the cover, by their ids; an account's
/// entries in a pool (shares, withdrawal request, assessor stake and lock, votes cast) to
/// the account ([`bank::home_of`]).
pub fn key_home(key: &Key) -> Option<u64> {
    let bytes = key.as_bytes();
    crate::id_key_object(
        bytes,
        &[
            PREFIX_POOL,
            PREFIX_CAPITAL,
            PREFIX_TOTAL_SHARES,
            PREFIX_ACTIVE_COVER,
            PREFIX_TOTAL_ASSESSOR_STAKE,
            PREFIX_COVER,
            PREFIX_CLAIM,
            PREFIX_VOTES_YES,
            PREFIX_VOTES_NO,
        ],
    )
    .or_else(|| {
        crate::id_owner_key_home(
            bytes,
            &[
                PREFIX_SHARES,
                PREFIX_WITHDRAWAL,
                PREFIX_ASSESSOR_STAKE,
                PREFIX_ASSESSOR_LOCK,
                PREFIX_VOTED,
            ],
        )
    })
}

/// The insurance vault's home ([`bank::home_of`]): every pool pays out of its balances, so
/// the runtime gives them no home.
pub fn vault_home() -> u64 {
    static HOME: std::sync::LazyLock<u64> =
        std::sync::LazyLock::new(|| bank::home_of(&vault_address()));
    *HOME
}

/// The bank account holding every insurance pool's tokens.
pub fn vault_address() -> Address {
    // Hashed once: every call of the module names the vault.
    static VAULT: std::sync::LazyLock<Address> =
        std::sync::LazyLock::new(|| crate::module_account(b"parabit/insurance/vault"));
    *VAULT
}

/// The id of the pool or cover created by `creator`'s transaction with nonce `nonce`: the
/// first 8 bytes of `SHA256("parabit/insurance" ‖ creator ‖ nonce_le)`, big-endian.
pub fn derive_id(creator: &Address, nonce: u64) -> InsuranceId {
    crate::derive_object_id(b"parabit/insurance", creator, nonce)
}

/// A pool's parameters, fixed at creation.
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
pub struct InsurancePool {
    /// The asset of capital, premiums, cover and assessor stake.
    pub asset: AssetId,
    /// Capacity as a fraction of capital, in basis points (1 to 10,000).
    pub max_cover_bps: u32,
    /// Premium rate at zero utilisation, basis points per [`RATE_PERIOD_BLOCKS`].
    pub base_rate_bps: u32,
    /// Added rate at full utilisation, basis points per [`RATE_PERIOD_BLOCKS`].
    pub slope_bps: u32,
    /// Blocks between a withdrawal request and its payment.
    pub notice_blocks: u64,
    /// Blocks a claim is open to votes.
    pub vote_blocks: u64,
    /// Share of the total assessor stake that must vote, in basis points (1 to 10,000).
    pub quorum_bps: u32,
}

/// A cover.
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
pub struct Cover {
    /// Its pool.
    pub pool: InsuranceId,
    /// Who may claim.
    pub holder: Address,
    /// The named risk.
    pub risk: String,
    /// The most a claim pays.
    pub amount: Amount,
    /// First block covered.
    pub start: u64,
    /// First block no longer covered.
    pub end: u64,
    /// Whether a claim was filed.
    pub claimed: bool,
    /// Whether it no longer counts in the pool's active cover.
    pub released: bool,
}

/// A claim's state.
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
pub enum ClaimStatus {
    /// Open to votes.
    Open,
    /// Approved and paid.
    Paid,
    /// Rejected.
    Rejected,
}

/// A claim on a cover.
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
pub struct Claim {
    /// The amount asked.
    pub amount: Amount,
    /// Votes are taken before this height; resolution at or after it.
    pub deadline: u64,
    /// Its state.
    pub status: ClaimStatus,
    /// What was paid.
    pub paid: Amount,
}

/// An insurance message.
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
pub enum InsuranceMsg {
    /// Creates a pool; its id is [`derive_id`]`(sender, nonce)`.
    CreatePool(InsurancePool),
    /// Underwrites the pool: deposits capital for shares.
    Underwrite {
        /// The pool.
        pool: InsuranceId,
        /// How much; positive.
        amount: Amount,
    },
    /// Sets `shares` aside for withdrawal after the notice period (adds to a standing request
    /// and restarts its notice).
    RequestWithdrawal {
        /// The pool.
        pool: InsuranceId,
        /// How many shares; positive.
        shares: u128,
    },
    /// Pays a withdrawal request whose notice has passed.
    Withdraw {
        /// The pool.
        pool: InsuranceId,
    },
    /// Buys cover; its id is [`derive_id`]`(sender, nonce)`.
    BuyCover {
        /// The pool.
        pool: InsuranceId,
        /// The named risk.
        risk: String,
        /// The cover amount; positive.
        amount: Amount,
        /// Blocks covered from this one; positive.
        period_blocks: u64,
        /// The most the buyer pays.
        max_premium: Amount,
    },
    /// Releases an expired cover with no open claim from the pool's active cover.
    ReleaseCover {
        /// The cover.
        cover: InsuranceId,
    },
    /// Stakes the pool's asset as an assessor.
    StakeAssessor {
        /// The pool.
        pool: InsuranceId,
        /// How much; positive.
        amount: Amount,
    },
    /// Takes assessor stake back once no vote locks it.
    UnstakeAssessor {
        /// The pool.
        pool: InsuranceId,
        /// How much; positive.
        amount: Amount,
    },
    /// Files the claim on the sender's active cover.
    FileClaim {
        /// The cover.
        cover: InsuranceId,
        /// How much; positive, at most the cover.
        amount: Amount,
    },
    /// Votes on a claim with the sender's assessor stake.
    Vote {
        /// The claim's cover.
        cover: InsuranceId,
        /// Approve or reject.
        approve: bool,
    },
    /// Resolves a claim whose deadline has passed.
    Resolve {
        /// The claim's cover.
        cover: InsuranceId,
    },
}

/// Why an insurance operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsuranceError {
    /// No pool with this id.
    #[error("unknown insurance pool {0}")]
    UnknownPool(InsuranceId),
    /// No cover with this id.
    #[error("unknown cover {0}")]
    UnknownCover(InsuranceId),
    /// No claim on this cover.
    #[error("no claim on cover {0}")]
    UnknownClaim(InsuranceId),
    /// An id that is taken.
    #[error("id {0} already exists")]
    Exists(InsuranceId),
    /// Parameters out of range.
    #[error("invalid pool parameters: {0}")]
    InvalidParams(&'static str),
    /// An amount of zero.
    #[error("amount must be positive")]
    ZeroAmount,
    /// A cover period of zero blocks.
    #[error("cover period must be positive")]
    ZeroPeriod,
    /// A risk name out of range (quoted up to its first 40 characters).
    #[error("invalid risk name {0:?}: use 1 to {MAX_RISK_LEN} printable ASCII characters")]
    InvalidRisk(String),
    /// Deposit into a pool whose capital was wiped out.
    #[error("pool {0} has shares but no capital: deposits are closed")]
    Insolvent(InsuranceId),
    /// A deposit too small for one share.
    #[error("deposit {0} too small: worth 0 shares")]
    DepositTooSmall(Amount),
    /// Not enough shares.
    #[error("insufficient shares: have {have}, need {need}")]
    InsufficientShares {
        /// Shares held.
        have: u128,
        /// Shares asked.
        need: u128,
    },
    /// No withdrawal request.
    #[error("no withdrawal requested")]
    NoWithdrawal,
    /// Notice not over.
    #[error("notice period: withdrawal ready at height {ready}, now {height}")]
    NoticePeriod {
        /// Ready height.
        ready: u64,
        /// Now.
        height: u64,
    },
    /// A withdrawal would uncover active cover.
    #[error("withdrawal would leave active cover {active} above capacity {capacity}")]
    WouldExceedCapacity {
        /// Active cover.
        active: Amount,
        /// Capacity after.
        capacity: Amount,
    },
    /// Not enough capacity.
    #[error("insufficient capacity: active cover {active} + {amount} > capacity {capacity}")]
    InsufficientCapacity {
        /// Active cover.
        active: Amount,
        /// Asked.
        amount: Amount,
        /// Capacity.
        capacity: Amount,
    },
    /// Premium above the buyer's limit.
    #[error("premium {premium} above max_premium {max}")]
    PremiumTooHigh {
        /// Quoted premium.
        premium: Amount,
        /// Buyer's limit.
        max: Amount,
    },
    /// Release of a cover still running or with an open claim.
    #[error("cover {0} cannot be released: {1}")]
    NotReleasable(InsuranceId, &'static str),
    /// Not the cover's holder.
    #[error("{0} does not hold cover {1}")]
    NotHolder(Address, InsuranceId),
    /// Claim outside the cover's period.
    #[error("cover {cover} is not active at height {height} (covers [{start}, {end}))")]
    CoverNotActive {
        /// The cover.
        cover: InsuranceId,
        /// Now.
        height: u64,
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// A second claim.
    #[error("cover {0} already has a claim")]
    AlreadyClaimed(InsuranceId),
    /// Claim above the cover.
    #[error("claim {amount} above cover {cover}")]
    ClaimAboveCover {
        /// Asked.
        amount: Amount,
        /// Cover amount.
        cover: Amount,
    },
    /// Vote or resolve at the wrong time.
    #[error("voting on cover {cover}'s claim {state} at height {height} (deadline {deadline})")]
    VotingWindow {
        /// The cover.
        cover: InsuranceId,
        /// "closed" or "still open".
        state: &'static str,
        /// Now.
        height: u64,
        /// Deadline.
        deadline: u64,
    },
    /// A claim already resolved.
    #[error("claim on cover {0} is already resolved")]
    Resolved(InsuranceId),
    /// A voter with no stake.
    #[error("{0} has no assessor stake in the pool")]
    NotAssessor(Address),
    /// The cover's holder voting on its own claim.
    #[error("{0} holds cover {1} and cannot vote on its claim")]
    HolderCannotVote(Address, InsuranceId),
    /// A second vote.
    #[error("{0} already voted on this claim")]
    AlreadyVoted(Address),
    /// Not enough assessor stake.
    #[error("insufficient assessor stake: have {have}, need {need}")]
    InsufficientStake {
        /// Held.
        have: Amount,
        /// Asked.
        need: Amount,
    },
    /// Stake locked by a vote.
    #[error("assessor stake locked until height {until}, now {height}")]
    StakeLocked {
        /// Lock end.
        until: u64,
        /// Now.
        height: u64,
    },
    /// Arithmetic out of range.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// State that does not decode or breaks an invariant.
    #[error("corrupt state: {0}")]
    Corrupt(&'static str),
    /// A bank failure.
    #[error("{0}")]
    Bank(BankError),
    /// The engine suspended the transaction (internal; never in a receipt).
    #[error("execution suspended on a dependency (internal)")]
    Halt(Halt),
}

module_error_conversions!(InsuranceError);

type Result<T> = std::result::Result<T, InsuranceError>;
use InsuranceError as E;
use InsuranceKey as K;

fn num<V: StateView>(view: &mut V, key: K) -> Result<u128> {
    Ok(num_of(&view.read(&key.key())?))
}

fn get<V: StateView, T: BorshDeserialize>(
    view: &mut V,
    key: K,
    what: &'static str,
) -> Result<Option<T>> {
    match view.read(&key.key())? {
        None => Ok(None),
        Some(Value::Bytes(b)) => T::try_from_slice(&b)
            .map(Some)
            .map_err(|_| E::Corrupt(what)),
        Some(Value::Num(_)) => Err(E::Corrupt(what)),
    }
}

fn put<V: StateView, T: BorshSerialize>(view: &mut V, key: K, t: &T) {
    view.write(
        key.key(),
        Some(Value::bytes(borsh::to_vec(t).unwrap_or_default())),
    );
}

fn pool<V: StateView>(view: &mut V, id: InsuranceId) -> Result<InsurancePool> {
    get(view, K::Pool(id), "insurance pool")?.ok_or(E::UnknownPool(id))
}

fn cover<V: StateView>(view: &mut V, id: InsuranceId) -> Result<Cover> {
    get(view, K::Cover(id), "cover")?.ok_or(E::UnknownCover(id))
}

/// `floor(capital · max_cover_bps / 10_000)`.
pub fn capacity(capital: Amount, max_cover_bps: u32) -> Result<Amount> {
    mul_div(capital, u128::from(max_cover_bps), BPS).ok_or(E::Overflow("capacity"))
}

/// `ceil(a · b / d)` (full 256-bit intermediate).
fn mul_div_up(a: u128, b: u128, d: u128) -> Result<u128> {
    crate::lending::mul_div(a, b, d, true).map_err(|_| E::Overflow("rounding up"))
}

/// The premium for `amount` of cover over `period_blocks` with `active` cover already sold
/// against `capacity` (the curve in the module doc); an error when the cover does not fit
/// or on overflow.
pub fn premium(
    p: &InsurancePool,
    active: Amount,
    capacity: Amount,
    amount: Amount,
    period_blocks: u64,
) -> Result<Amount> {
    let after = active
        .checked_add(amount)
        .ok_or(E::Overflow("active cover"))?;
    if after > capacity || capacity == 0 {
        return Err(E::InsufficientCapacity {
            active,
            amount,
            capacity,
        });
    }
    let util_bps = mul_div_up(after, BPS, capacity)?;
    let rate_bps =
        u128::from(p.base_rate_bps) + mul_div_up(u128::from(p.slope_bps), util_bps, BPS)?;
    let numer = rate_bps
        .checked_mul(u128::from(period_blocks))
        .ok_or(E::Overflow("premium"))?;
    Ok(mul_div_up(amount, numer, BPS * RATE_PERIOD_BLOCKS)?.max(1))
}

/// Executes an insurance message from `sender` (transaction nonce `nonce`) at `height`.
pub fn execute<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    height: u64,
    msg: &InsuranceMsg,
) -> Result<()> {
    match msg {
        InsuranceMsg::CreatePool(p) => create_pool(view, sender, nonce, p),
        InsuranceMsg::Underwrite { pool, amount } => deposit(view, sender, *pool, *amount),
        InsuranceMsg::RequestWithdrawal { pool, shares } => {
            request_withdrawal(view, sender, *pool, height, *shares)
        }
        InsuranceMsg::Withdraw { pool } => withdraw(view, sender, *pool, height),
        InsuranceMsg::BuyCover {
            pool,
            risk,
            amount,
            period_blocks,
            max_premium,
        } => buy_cover(
            view,
            sender,
            nonce,
            height,
            *pool,
            risk,
            *amount,
            *period_blocks,
            *max_premium,
        ),
        InsuranceMsg::ReleaseCover { cover } => release_cover(view, *cover, height),
        InsuranceMsg::StakeAssessor { pool, amount } => {
            stake_assessor(view, sender, *pool, *amount)
        }
        InsuranceMsg::UnstakeAssessor { pool, amount } => {
            unstake_assessor(view, sender, *pool, height, *amount)
        }
        InsuranceMsg::FileClaim { cover, amount } => {
            file_claim(view, sender, *cover, height, *amount)
        }
        InsuranceMsg::Vote { cover, approve } => vote(view, sender, *cover, height, *approve),
        InsuranceMsg::Resolve { cover } => resolve(view, *cover, height),
    }
}

fn create_pool<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    p: &InsurancePool,
) -> Result<()> {
    if p.max_cover_bps == 0 || u128::from(p.max_cover_bps) > BPS {
        return Err(E::InvalidParams("max_cover_bps must be 1 to 10000"));
    }
    if p.quorum_bps == 0 || u128::from(p.quorum_bps) > BPS {
        return Err(E::InvalidParams("quorum_bps must be 1 to 10000"));
    }
    if p.vote_blocks == 0 {
        return Err(E::InvalidParams("vote_blocks must be positive"));
    }
    let id = derive_id(sender, nonce);
    if view.read(&K::Pool(id).key())?.is_some() {
        return Err(E::Exists(id));
    }
    put(view, K::Pool(id), p);
    Ok(())
}

fn deposit<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: InsuranceId,
    amount: Amount,
) -> Result<()> {
    let p = pool(view, id)?;
    if amount == 0 {
        return Err(E::ZeroAmount);
    }
    let capital = num(view, K::Capital(id))?;
    let total = num(view, K::TotalShares(id))?;
    let shares = if total == 0 {
        amount
    } else if capital == 0 {
        return Err(E::Insolvent(id));
    } else {
        mul_div(amount, total, capital).ok_or(E::Overflow("shares"))?
    };
    if shares == 0 {
        return Err(E::DepositTooSmall(amount));
    }
    bank::transfer(view, sender, &vault_address(), p.asset, amount)?;
    view.add(K::Capital(id).key(), amount);
    view.add(K::TotalShares(id).key(), shares);
    view.add(K::Shares(id, *sender).key(), shares);
    Ok(())
}

fn request_withdrawal<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: InsuranceId,
    height: u64,
    shares: u128,
) -> Result<()> {
    let p = pool(view, id)?;
    if shares == 0 {
        return Err(E::ZeroAmount);
    }
    let have = num(view, K::Shares(id, *sender))?;
    if have < shares {
        return Err(E::InsufficientShares { have, need: shares });
    }
    let (pending, _): (u128, u64) =
        get(view, K::Withdrawal(id, *sender), "withdrawal")?.unwrap_or((0, 0));
    let ready = height
        .checked_add(p.notice_blocks)
        .ok_or(E::Overflow("notice"))?;
    view.write(
        K::Shares(id, *sender).key(),
        Some(Value::Num(have - shares)),
    );
    let pending = pending
        .checked_add(shares)
        .ok_or(E::Corrupt("withdrawal above total shares"))?;
    put(view, K::Withdrawal(id, *sender), &(pending, ready));
    Ok(())
}

fn withdraw<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: InsuranceId,
    height: u64,
) -> Result<()> {
    let p = pool(view, id)?;
    let (shares, ready): (u128, u64) =
        get(view, K::Withdrawal(id, *sender), "withdrawal")?.ok_or(E::NoWithdrawal)?;
    if height < ready {
        return Err(E::NoticePeriod { ready, height });
    }
    let capital = num(view, K::Capital(id))?;
    let total = num(view, K::TotalShares(id))?;
    let amount = mul_div(shares, capital, total).ok_or(E::Corrupt("total shares"))?;
    let active = num(view, K::ActiveCover(id))?;
    let cap_after = capacity(capital - amount.min(capital), p.max_cover_bps)?;
    if active > cap_after {
        return Err(E::WouldExceedCapacity {
            active,
            capacity: cap_after,
        });
    }
    view.write(K::Withdrawal(id, *sender).key(), None);
    view.add(K::TotalShares(id).key(), shares.wrapping_neg());
    if amount > 0 {
        if !view.try_sub(K::Capital(id).key(), amount)? {
            return Err(E::Corrupt("withdrawal above capital"));
        }
        bank::transfer(view, &vault_address(), sender, p.asset, amount)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn buy_cover<V: StateView>(
    view: &mut V,
    sender: &Address,
    nonce: u64,
    height: u64,
    id: InsuranceId,
    risk: &str,
    amount: Amount,
    period_blocks: u64,
    max_premium: Amount,
) -> Result<()> {
    let p = pool(view, id)?;
    if amount == 0 {
        return Err(E::ZeroAmount);
    }
    if period_blocks == 0 {
        return Err(E::ZeroPeriod);
    }
    if risk.is_empty()
        || risk.len() > MAX_RISK_LEN
        || !risk.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        // The receipt quotes at most 40 characters of it.
        return Err(E::InvalidRisk(risk.chars().take(40).collect()));
    }
    let capital = num(view, K::Capital(id))?;
    let active = num(view, K::ActiveCover(id))?;
    let cap = capacity(capital, p.max_cover_bps)?;
    let cost = premium(&p, active, cap, amount, period_blocks)?;
    if cost > max_premium {
        return Err(E::PremiumTooHigh {
            premium: cost,
            max: max_premium,
        });
    }
    let cover_id = derive_id(sender, nonce);
    if view.read(&K::Cover(cover_id).key())?.is_some() {
        return Err(E::Exists(cover_id));
    }
    let end = height
        .checked_add(period_blocks)
        .ok_or(E::Overflow("cover end"))?;
    bank::transfer(view, sender, &vault_address(), p.asset, cost)?;
    view.add(K::Capital(id).key(), cost);
    view.add(K::ActiveCover(id).key(), amount);
    put(
        view,
        K::Cover(cover_id),
        &Cover {
            pool: id,
            holder: *sender,
            risk: risk.to_string(),
            amount,
            start: height,
            end,
            claimed: false,
            released: false,
        },
    );
    Ok(())
}

fn release<V: StateView>(view: &mut V, id: InsuranceId, mut c: Cover) {
    view.add(K::ActiveCover(c.pool).key(), c.amount.wrapping_neg());
    c.released = true;
    put(view, K::Cover(id), &c);
}

fn release_cover<V: StateView>(view: &mut V, id: InsuranceId, height: u64) -> Result<()> {
    let c = cover(view, id)?;
    if c.released {
        return Err(E::NotReleasable(id, "already released"));
    }
    if height < c.end {
        return Err(E::NotReleasable(id, "still running"));
    }
    if c.claimed {
        let claim: Claim = get(view, K::Claim(id), "claim")?.ok_or(E::Corrupt("claim"))?;
        if claim.status == ClaimStatus::Open {
            return Err(E::NotReleasable(id, "its claim is open"));
        }
    }
    release(view, id, c);
    Ok(())
}

fn stake_assessor<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: InsuranceId,
    amount: Amount,
) -> Result<()> {
    let p = pool(view, id)?;
    if amount == 0 {
        return Err(E::ZeroAmount);
    }
    bank::transfer(view, sender, &vault_address(), p.asset, amount)?;
    view.add(K::AssessorStake(id, *sender).key(), amount);
    view.add(K::TotalAssessorStake(id).key(), amount);
    Ok(())
}

fn unstake_assessor<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: InsuranceId,
    height: u64,
    amount: Amount,
) -> Result<()> {
    let p = pool(view, id)?;
    if amount == 0 {
        return Err(E::ZeroAmount);
    }
    let until = num(view, K::AssessorLock(id, *sender))?;
    if u128::from(height) < until {
        return Err(E::StakeLocked {
            until: u64::try_from(until).unwrap_or(u64::MAX),
            height,
        });
    }
    let key = K::AssessorStake(id, *sender).key();
    if !view.try_sub(key, amount)? {
        let have = num_of(&view.read(&key)?);
        return Err(E::InsufficientStake { have, need: amount });
    }
    view.add(K::TotalAssessorStake(id).key(), amount.wrapping_neg());
    bank::transfer(view, &vault_address(), sender, p.asset, amount)?;
    Ok(())
}

fn file_claim<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: InsuranceId,
    height: u64,
    amount: Amount,
) -> Result<()> {
    let mut c = cover(view, id)?;
    let p = pool(view, c.pool)?;
    if c.holder != *sender {
        return Err(E::NotHolder(*sender, id));
    }
    if c.claimed {
        return Err(E::AlreadyClaimed(id));
    }
    if height < c.start || height >= c.end || c.released {
        return Err(E::CoverNotActive {
            cover: id,
            height,
            start: c.start,
            end: c.end,
        });
    }
    if amount == 0 {
        return Err(E::ZeroAmount);
    }
    if amount > c.amount {
        return Err(E::ClaimAboveCover {
            amount,
            cover: c.amount,
        });
    }
    let deadline = height
        .checked_add(p.vote_blocks)
        .ok_or(E::Overflow("deadline"))?;
    c.claimed = true;
    put(view, K::Cover(id), &c);
    put(
        view,
        K::Claim(id),
        &Claim {
            amount,
            deadline,
            status: ClaimStatus::Open,
            paid: 0,
        },
    );
    Ok(())
}

fn claim_of<V: StateView>(view: &mut V, id: InsuranceId) -> Result<Claim> {
    get(view, K::Claim(id), "claim")?.ok_or(E::UnknownClaim(id))
}

fn vote<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: InsuranceId,
    height: u64,
    approve: bool,
) -> Result<()> {
    let claim = claim_of(view, id)?;
    if claim.status != ClaimStatus::Open {
        return Err(E::Resolved(id));
    }
    if height >= claim.deadline {
        return Err(E::VotingWindow {
            cover: id,
            state: "closed",
            height,
            deadline: claim.deadline,
        });
    }
    let c = cover(view, id)?;
    if c.holder == *sender {
        return Err(E::HolderCannotVote(*sender, id));
    }
    let weight = num(view, K::AssessorStake(c.pool, *sender))?;
    if weight == 0 {
        return Err(E::NotAssessor(*sender));
    }
    let voted = K::Voted(id, *sender).key();
    if view.read(&voted)?.is_some() {
        return Err(E::AlreadyVoted(*sender));
    }
    view.write(voted, Some(Value::Num(1)));
    let lock_key = K::AssessorLock(c.pool, *sender).key();
    let lock = num_of(&view.read(&lock_key)?);
    if u128::from(claim.deadline) > lock {
        view.write(lock_key, Some(Value::Num(u128::from(claim.deadline))));
    }
    let tally = if approve {
        K::VotesYes(id)
    } else {
        K::VotesNo(id)
    };
    view.add(tally.key(), weight);
    Ok(())
}

fn resolve<V: StateView>(view: &mut V, id: InsuranceId, height: u64) -> Result<()> {
    let mut claim = claim_of(view, id)?;
    if claim.status != ClaimStatus::Open {
        return Err(E::Resolved(id));
    }
    if height < claim.deadline {
        return Err(E::VotingWindow {
            cover: id,
            state: "still open",
            height,
            deadline: claim.deadline,
        });
    }
    let c = cover(view, id)?;
    let p = pool(view, c.pool)?;
    let yes = num(view, K::VotesYes(id))?;
    let no = num(view, K::VotesNo(id))?;
    let total_stake = num(view, K::TotalAssessorStake(c.pool))?;
    let quorum = mul_div_up(total_stake, u128::from(p.quorum_bps), BPS)?.max(1);
    let turnout = yes.checked_add(no).ok_or(E::Overflow("votes"))?;
    if turnout >= quorum && yes > no {
        let capital = num(view, K::Capital(c.pool))?;
        let pay = claim.amount.min(c.amount).min(capital);
        if pay > 0 {
            if !view.try_sub(K::Capital(c.pool).key(), pay)? {
                return Err(E::Corrupt("payout above capital"));
            }
            bank::transfer(view, &vault_address(), &c.holder, p.asset, pay)?;
        }
        claim.status = ClaimStatus::Paid;
        claim.paid = pay;
        if !c.released {
            release(view, id, c);
        }
    } else {
        claim.status = ClaimStatus::Rejected;
    }
    put(view, K::Claim(id), &claim);
    Ok(())
}

/// Reads a cover from committed state.
pub fn query_cover<S: Storage>(state: &S, id: InsuranceId) -> Option<Cover> {
    match state.get(&K::Cover(id).key()) {
        Some(Value::Bytes(b)) => Cover::try_from_slice(&b).ok(),
        _ => None,
    }
}

/// Reads a claim from committed state.
pub fn query_claim<S: Storage>(state: &S, id: InsuranceId) -> Option<Claim> {
    match state.get(&K::Claim(id).key()) {
        Some(Value::Bytes(b)) => Claim::try_from_slice(&b).ok(),
        _ => None,
    }
}

/// Reads a pool's parameters from committed state.
pub fn query_pool<S: Storage>(state: &S, id: InsuranceId) -> Option<InsurancePool> {
    match state.get(&K::Pool(id).key()) {
        Some(Value::Bytes(b)) => InsurancePool::try_from_slice(&b).ok(),
        _ => None,
    }
}

/// The premium that [`InsuranceMsg::BuyCover`] would charge now for `amount` of cover over
/// `period_blocks`, from committed state (read-only).
pub fn quote_premium<S: Storage>(
    state: &S,
    id: InsuranceId,
    amount: Amount,
    period_blocks: u64,
) -> Result<Amount> {
    let p = query_pool(state, id).ok_or(E::UnknownPool(id))?;
    let capital = num_of(&state.get(&K::Capital(id).key()));
    let active = num_of(&state.get(&K::ActiveCover(id).key()));
    premium(
        &p,
        active,
        capacity(capital, p.max_cover_bps)?,
        amount,
        period_blocks,
    )
}

/// Declares in `fp` every key an insurance message from `sender` (transaction nonce `nonce`)
/// may touch, on every path (failures included), given the state at the start of the block.
///
/// A pool's parameters and a cover's pool and holder never change once created, so they are
/// read from `state`; a message naming a pool or a cover that does not exist there declares
/// only that key (it fails on reading it, unless it is created earlier in the block: then the
/// engine re-runs the block). Underwriting and buying cover read and change the pool's capital
/// and shares or active cover, so they run in block order per pool (pools apart); the vault
/// is only added to and `try_sub`ed from, votes only add to a claim's tally.
pub fn footprint(
    msg: &InsuranceMsg,
    sender: &Address,
    nonce: u64,
    state: &dyn Storage,
    fp: &mut Footprint,
) {
    let vault = vault_address();
    let pool_of = |fp: &mut Footprint, id: InsuranceId| {
        declare(fp, K::Pool(id).key(), Touch::Read);
        query_pool(&state, id)
    };
    match msg {
        InsuranceMsg::CreatePool(_) => {
            declare(fp, K::Pool(derive_id(sender, nonce)).key(), Touch::Write);
        }
        InsuranceMsg::Underwrite { pool, .. } => {
            let Some(p) = pool_of(fp, *pool) else { return };
            declare(fp, K::Capital(*pool).key(), Touch::Write);
            declare(fp, K::TotalShares(*pool).key(), Touch::Write);
            declare(fp, K::Shares(*pool, *sender).key(), Touch::Write);
            declare(fp, bank::balance_key(sender, p.asset), Touch::Write);
            declare(fp, bank::balance_key(&vault, p.asset), Touch::Sub);
        }
        InsuranceMsg::RequestWithdrawal { pool, .. } => {
            if pool_of(fp, *pool).is_none() {
                return;
            }
            declare(fp, K::Shares(*pool, *sender).key(), Touch::Write);
            declare(fp, K::Withdrawal(*pool, *sender).key(), Touch::Write);
        }
        InsuranceMsg::Withdraw { pool } => {
            let Some(p) = pool_of(fp, *pool) else { return };
            declare(fp, K::Withdrawal(*pool, *sender).key(), Touch::Write);
            declare(fp, K::Capital(*pool).key(), Touch::Write);
            declare(fp, K::TotalShares(*pool).key(), Touch::Write);
            declare(fp, K::ActiveCover(*pool).key(), Touch::Read);
            declare(fp, bank::balance_key(&vault, p.asset), Touch::Sub);
            declare(fp, bank::balance_key(sender, p.asset), Touch::Add);
        }
        InsuranceMsg::BuyCover { pool, .. } => {
            let Some(p) = pool_of(fp, *pool) else { return };
            declare(fp, K::Capital(*pool).key(), Touch::Write);
            declare(fp, K::ActiveCover(*pool).key(), Touch::Write);
            declare(fp, K::Cover(derive_id(sender, nonce)).key(), Touch::Write);
            declare(fp, bank::balance_key(sender, p.asset), Touch::Write);
            declare(fp, bank::balance_key(&vault, p.asset), Touch::Sub);
        }
        InsuranceMsg::ReleaseCover { cover } => {
            declare(fp, K::Cover(*cover).key(), Touch::Write);
            let Some(c) = query_cover(&state, *cover) else {
                return;
            };
            declare(fp, K::Claim(*cover).key(), Touch::Read);
            declare(fp, K::ActiveCover(c.pool).key(), Touch::Add);
        }
        InsuranceMsg::StakeAssessor { pool, .. } => {
            let Some(p) = pool_of(fp, *pool) else { return };
            declare(fp, bank::balance_key(sender, p.asset), Touch::Write);
            declare(fp, bank::balance_key(&vault, p.asset), Touch::Sub);
            declare(fp, K::AssessorStake(*pool, *sender).key(), Touch::Write);
            declare(fp, K::TotalAssessorStake(*pool).key(), Touch::Add);
        }
        InsuranceMsg::UnstakeAssessor { pool, .. } => {
            let Some(p) = pool_of(fp, *pool) else { return };
            declare(fp, K::AssessorLock(*pool, *sender).key(), Touch::Read);
            declare(fp, K::AssessorStake(*pool, *sender).key(), Touch::Write);
            declare(fp, K::TotalAssessorStake(*pool).key(), Touch::Add);
            declare(fp, bank::balance_key(&vault, p.asset), Touch::Sub);
            declare(fp, bank::balance_key(sender, p.asset), Touch::Add);
        }
        InsuranceMsg::FileClaim { cover, .. } => {
            declare(fp, K::Cover(*cover).key(), Touch::Write);
            let Some(c) = query_cover(&state, *cover) else {
                return;
            };
            declare(fp, K::Pool(c.pool).key(), Touch::Read);
            declare(fp, K::Claim(*cover).key(), Touch::Write);
        }
        InsuranceMsg::Vote { cover, approve } => {
            declare(fp, K::Claim(*cover).key(), Touch::Read);
            declare(fp, K::Cover(*cover).key(), Touch::Read);
            let Some(c) = query_cover(&state, *cover) else {
                return;
            };
            declare(fp, K::AssessorStake(c.pool, *sender).key(), Touch::Read);
            declare(fp, K::Voted(*cover, *sender).key(), Touch::Write);
            declare(fp, K::AssessorLock(c.pool, *sender).key(), Touch::Write);
            let tally = if *approve {
                K::VotesYes(*cover)
            } else {
                K::VotesNo(*cover)
            };
            declare(fp, tally.key(), Touch::Add);
        }
        InsuranceMsg::Resolve { cover } => {
            declare(fp, K::Claim(*cover).key(), Touch::Write);
            declare(fp, K::Cover(*cover).key(), Touch::Write);
            let Some(c) = query_cover(&state, *cover) else {
                return;
            };
            let Some(p) = pool_of(fp, c.pool) else { return };
            declare(fp, K::VotesYes(*cover).key(), Touch::Read);
            declare(fp, K::VotesNo(*cover).key(), Touch::Read);
            declare(fp, K::TotalAssessorStake(c.pool).key(), Touch::Read);
            declare(fp, K::Capital(c.pool).key(), Touch::Write);
            declare(fp, K::ActiveCover(c.pool).key(), Touch::Add);
            declare(fp, bank::balance_key(&vault, p.asset), Touch::Sub);
            declare(fp, bank::balance_key(&c.holder, p.asset), Touch::Add);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_params() -> InsurancePool {
        InsurancePool {
            asset: AssetId::BTC,
            max_cover_bps: 5_000,
            base_rate_bps: 200,
            slope_bps: 800,
            notice_blocks: 10,
            vote_blocks: 5,
            quorum_bps: 5_000,
        }
    }

    #[test]
    fn capacity_rounds_down() {
        assert_eq!(capacity(1_001, 5_000), Ok(500));
        assert_eq!(capacity(1_000, 10_000), Ok(1_000));
        assert_eq!(capacity(u128::MAX, 10_000), Ok(u128::MAX));
    }

    #[test]
    fn premium_follows_the_curve_and_rounds_up() {
        let p = pool_params();
        // Utilisation 40% after: 200 + 320 = 520 bps per 100,000 blocks, for 50,000 blocks.
        assert_eq!(premium(&p, 0, 750_000, 300_000, 50_000), Ok(7_800));
        // Higher utilisation costs more per unit of cover.
        let low = premium(&p, 0, 1_000_000, 100_000, 100_000).unwrap();
        let high = premium(&p, 800_000, 1_000_000, 100_000, 100_000).unwrap();
        assert_eq!((low, high), (2_800, 9_200));
        // 336.4 → 337; the minimum is 1.
        assert_eq!(premium(&p, 1, 501, 400, 1_000_000), Ok(337));
        assert_eq!(premium(&p, 0, 1_000, 1, 1), Ok(1));
        // Capacity is a hard bound; none at all refuses every cover.
        assert!(matches!(
            premium(&p, 10, 100, 91, 1),
            Err(InsuranceError::InsufficientCapacity { .. })
        ));
        assert!(matches!(
            premium(&p, 0, 0, 1, 1),
            Err(InsuranceError::InsufficientCapacity { .. })
        ));
        // Huge inputs overflow cleanly instead of wrapping.
        assert!(matches!(
            premium(&p, 0, u128::MAX, u128::MAX, u64::MAX),
            Err(InsuranceError::Overflow(_))
        ));
    }

    #[test]
    fn keys_are_prefixed_and_distinct() {
        let a = Address([7; 32]);
        let keys = [
            K::Pool(1).key(),
            K::Capital(1).key(),
            K::TotalShares(1).key(),
            K::ActiveCover(1).key(),
            K::TotalAssessorStake(1).key(),
            K::Shares(1, a).key(),
            K::Withdrawal(1, a).key(),
            K::AssessorStake(1, a).key(),
            K::AssessorLock(1, a).key(),
            K::Cover(1).key(),
            K::Claim(1).key(),
            K::VotesYes(1).key(),
            K::VotesNo(1).key(),
            K::Voted(1, a).key(),
        ];
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.as_bytes()[0], PREFIX_POOL + i as u8);
            assert_eq!(&k.as_bytes()[1..9], &1u64.to_be_bytes());
        }
        assert_ne!(K::Shares(1, a).key(), K::Shares(2, a).key());
        assert_ne!(derive_id(&a, 0), derive_id(&a, 1));
    }
}
