//! Payment channels: two parties lock deposits of one asset on the L2, pay each other off-chain
//! by signing new balance states, and close on-chain cooperatively at once or unilaterally after
//! a challenge period in which a newer state wins. Hashed time-locked payments (HTLCs) in a
//! state let payments be routed across channels.
//!
//! # Life of a channel
//! 1. **Open** ([`ChannelMsg::Open`]): the opener (party `a`) names the peer (party `b`), the
//!    asset, its deposit and the challenge period in blocks. The id is
//!    [`derive_channel_id`]`(opener, nonce)`. Either party may then [`ChannelMsg::Deposit`] more
//!    while the channel is open.
//! 2. **Off-chain states** ([`ChannelState`]): `(channel, nonce, deposits it was signed
//!    against, balance_a, balance_b, htlcs)`, signed by both parties with BIP-340 over
//!    [`state_digest`] (a tagged hash of the chain id and the state's borsh encoding). A state
//!    is valid when its balances plus its HTLC amounts equal the deposits it names, and those
//!    deposits do not exceed the channel's: deposits made after a state was signed go back to
//!    whoever made them ([`payout`]), so a deposit can never invalidate a signed state.
//! 3. **Cooperative close** ([`ChannelMsg::CloseCooperative`]): a state signed by both with no
//!    HTLCs pays out at once, whatever the channel's status (it also ends a dispute).
//! 4. **Unilateral close** ([`ChannelMsg::Close`]): a party submits the latest state it holds
//!    (or none: the deposits as they are, nonce 0); the channel is then `Closing` until
//!    `height + challenge_blocks`. Meanwhile either party may [`ChannelMsg::Challenge`] with a
//!    state of higher nonce, which replaces it. After the deadline anyone may
//!    [`ChannelMsg::Settle`]: the balances are paid, and HTLCs stay pending.
//! 5. **HTLCs** ([`ChannelMsg::ResolveHtlc`]): after settlement, a pending HTLC is paid to its
//!    receiver by revealing the preimage of its hash before its expiry height, or refunded to
//!    its sender after it. When none is pending the channel is `Closed`.
//!
//! DESIGN.md lists channel timeouts among the end-block hooks; here the end of a challenge
//! period and HTLC expiries are acted on by explicit transactions instead (as staking's
//! unbonding is), so no hook runs for idle channels and every channel call touches only its
//! own channel.
//!
//! # State (prefix byte `0x50`)
//! | key | value |
//! |---|---|
//! | `50 ‖ channel` [`channel_key`] | `Bytes`: borsh [`Channel`] |
//!
//! All deposits sit in the bank account [`vault_address`].
//!
//! # Invariants
//! - For every asset, the vault's balance equals the sum over channels in that asset of the
//!   deposits minus what was paid out; a channel never pays out more than its deposits
//!   (checked, not assumed: a payout over the deposits is an error, not a transfer).
//! - Payouts of a state: `balance_a + balance_b + htlcs = its deposits`, and each party also
//!   gets back what it deposited after the state was signed, so everything deposited is paid
//!   exactly once.
//! - A state replaces another only with a strictly higher nonce, and only with both parties'
//!   signatures over this chain's digest of it.
//! - Calls on one channel touch only that channel's record, the vault and the parties'
//!   balances; they never read another channel.

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{Footprint, Halt, Key, StateView, Storage, Value};
use parabit_primitives::{verify_digest, Address, Amount, AssetId};
use sha2::{Digest, Sha256};

use crate::bank::{self, balance_key, BankError};

/// Prefix of [`channel_key`].
pub const PREFIX_CHANNEL: u8 = 0x50;
/// Most HTLCs one state may carry.
pub const MAX_HTLCS: usize = 32;
/// Longest challenge period, in blocks.
pub const MAX_CHALLENGE_BLOCKS: u64 = 1_000_000;
/// The tag of the tagged hash that channel states are signed over.
pub const STATE_TAG: &[u8] = b"parabit/channel-state";

/// A channel's id.
pub type ChannelId = u64;

/// A BIP-340 signature.
pub type Signature = [u8; 64];

/// The state key of a channel.
pub fn channel_key(channel: ChannelId) -> Key {
    crate::id_key(PREFIX_CHANNEL, channel)
}

/// The bank account holding every channel's deposits.
pub fn vault_address() -> Address {
    // Hashed once: every call of the module names the vault.
    static VAULT: std::sync::LazyLock<Address> =
        std::sync::LazyLock::new(|| crate::module_account(b"parabit/channels/vault"));
    *VAULT
}

/// The id of the channel opened by `opener`'s transaction with nonce `nonce`.
pub fn derive_channel_id(opener: &Address, nonce: u64) -> ChannelId {
    crate::derive_object_id(b"parabit/channels/channel", opener, nonce)
}

/// A hashed time-locked payment inside a channel state.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Htlc {
    /// `true`: from `a` to `b`; `false`: from `b` to `a`.
    pub a_to_b: bool,
    /// The amount locked.
    pub amount: Amount,
    /// SHA-256 of the preimage that releases it to the receiver.
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
    /// Last L2 height at which the preimage releases it; after it, it goes back to the sender.
    pub expiry: u64,
}

/// An off-chain state of a channel, signed by both parties.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct ChannelState {
    /// The channel.
    pub channel: ChannelId,
    /// Strictly increasing with every new state; the implicit opening state is 0.
    pub nonce: u64,
    /// `a`'s on-chain deposits when the state was signed.
    pub deposit_a: Amount,
    /// `b`'s on-chain deposits when the state was signed.
    pub deposit_b: Amount,
    /// What `a` gets.
    pub balance_a: Amount,
    /// What `b` gets.
    pub balance_b: Amount,
    /// Payments in flight.
    pub htlcs: Vec<Htlc>,
}

/// A state with both parties' signatures.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct SignedState {
    /// The state.
    pub state: ChannelState,
    /// `a`'s signature over [`state_digest`].
    #[serde(with = "hex_bytes")]
    pub sig_a: Signature,
    /// `b`'s signature over [`state_digest`].
    #[serde(with = "hex_bytes")]
    pub sig_b: Signature,
}

/// Where a channel is in its life.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum ChannelStatus {
    /// Deposits accepted; states are exchanged off-chain.
    Open,
    /// A unilateral close is waiting out its challenge period with this state.
    Closing {
        /// The state that will be paid unless a newer one arrives.
        state: ChannelState,
        /// The last height at which a newer state is accepted.
        deadline: u64,
    },
    /// Balances paid; these HTLCs are still to be resolved (`None`: resolved).
    Settled {
        /// The state's HTLCs, by index.
        htlcs: Vec<Option<Htlc>>,
    },
    /// Everything paid out.
    Closed,
}

impl ChannelStatus {
    /// Its name in messages and in RPC: `open`, `closing`, `settled` or `closed`.
    pub fn name(&self) -> &'static str {
        match self {
            ChannelStatus::Open => "open",
            ChannelStatus::Closing { .. } => "closing",
            ChannelStatus::Settled { .. } => "settled",
            ChannelStatus::Closed => "closed",
        }
    }
}

/// A channel's on-chain record.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Channel {
    /// The opener.
    pub a: Address,
    /// The peer.
    pub b: Address,
    /// The asset of the deposits.
    pub asset: AssetId,
    /// Everything `a` deposited.
    pub deposit_a: Amount,
    /// Everything `b` deposited.
    pub deposit_b: Amount,
    /// Blocks a unilateral close waits for a challenge.
    pub challenge_blocks: u64,
    /// Where it is.
    pub status: ChannelStatus,
}

/// Payment-channel messages.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum ChannelMsg {
    /// Open a channel with `peer`, depositing `deposit` of `asset`.
    Open {
        /// The other party.
        peer: Address,
        /// The channel's asset.
        asset: AssetId,
        /// The opener's deposit (may be 0: a channel funded by the peer).
        deposit: Amount,
        /// Blocks a unilateral close waits for a challenge (1 to [`MAX_CHALLENGE_BLOCKS`]).
        challenge_blocks: u64,
    },
    /// Add to the sender's deposit of an open channel.
    Deposit {
        /// The channel.
        channel: ChannelId,
        /// The amount.
        amount: Amount,
    },
    /// Close at once with a state signed by both that carries no HTLC.
    CloseCooperative {
        /// The final state.
        state: Box<SignedState>,
    },
    /// Start a unilateral close with the latest state the sender holds (none: the deposits).
    Close {
        /// The channel.
        channel: ChannelId,
        /// The state to pay unless a newer one arrives.
        state: Option<Box<SignedState>>,
    },
    /// Replace a closing channel's state with a newer one during the challenge period.
    Challenge {
        /// The newer state.
        state: Box<SignedState>,
    },
    /// Pay a closing channel's state once the challenge period is over.
    Settle {
        /// The channel.
        channel: ChannelId,
    },
    /// Pay a settled channel's pending HTLC: to its receiver with the preimage (up to its
    /// expiry), or back to its sender (after its expiry).
    ResolveHtlc {
        /// The channel.
        channel: ChannelId,
        /// The HTLC's index in the settled state.
        index: u32,
        /// Its preimage, when claiming it for the receiver.
        #[serde(with = "hex_opt")]
        preimage: Option<[u8; 32]>,
    },
}

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// No channel with this id.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// A channel with the derived id exists.
    #[error("channel {0} already exists")]
    ChannelExists(ChannelId),
    /// Opening a channel with oneself.
    #[error("a channel needs two different parties")]
    SameParty,
    /// A challenge period outside the allowed range.
    #[error("invalid challenge period {0} blocks: must be 1 to {MAX_CHALLENGE_BLOCKS}")]
    InvalidChallengePeriod(u64),
    /// An amount of zero.
    #[error("amount must be positive")]
    ZeroAmount,
    /// The sender is not a party to the channel.
    #[error("unauthorized: {0} is not a party to the channel")]
    NotAParty(Address),
    /// The channel is not in the status the call needs.
    #[error("channel {channel} is {status}, expected {expected}")]
    WrongStatus {
        /// The channel.
        channel: ChannelId,
        /// Its status.
        status: &'static str,
        /// The status the call needs.
        expected: &'static str,
    },
    /// A signature that does not verify.
    #[error("bad signature by party {0} on channel state")]
    BadSignature(char),
    /// A state whose amounts do not add up or exceed the deposits.
    #[error("invalid channel state: {0}")]
    InvalidState(String),
    /// A state that is not newer than the one it would replace.
    #[error("stale state: nonce {got} is not above {current}")]
    StaleState {
        /// The submitted nonce.
        got: u64,
        /// The nonce held.
        current: u64,
    },
    /// Challenging after the challenge period.
    #[error("challenge period over at height {deadline}, now {height}: settle instead")]
    ChallengeOver {
        /// The last height of the period.
        deadline: u64,
        /// The current height.
        height: u64,
    },
    /// Settling before the challenge period is over.
    #[error("challenge period not over: settles after height {deadline}, now {height}")]
    ChallengePeriod {
        /// The last height of the period.
        deadline: u64,
        /// The current height.
        height: u64,
    },
    /// A cooperative close with HTLCs in flight.
    #[error("a cooperative close cannot carry HTLCs ({0} in the state)")]
    HtlcsInCooperativeClose(usize),
    /// No pending HTLC at this index.
    #[error("no pending HTLC at index {0}")]
    NoSuchHtlc(u32),
    /// A preimage that does not hash to the HTLC's hash.
    #[error("preimage does not match the HTLC's hash")]
    WrongPreimage,
    /// Claiming with a preimage after the expiry.
    #[error("HTLC expired at height {expiry}, now {height}: it can only be refunded")]
    HtlcExpired {
        /// The HTLC's expiry.
        expiry: u64,
        /// The current height.
        height: u64,
    },
    /// Refunding before the expiry.
    #[error("HTLC not expired: refundable after height {expiry}, now {height}")]
    HtlcNotExpired {
        /// The HTLC's expiry.
        expiry: u64,
        /// The current height.
        height: u64,
    },
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

module_error_conversions!(ChannelError);

type Result<T> = std::result::Result<T, ChannelError>;

/// The digest both parties sign: `SHA256(SHA256(tag) ‖ SHA256(tag) ‖ chain_id_le ‖ borsh(state))`.
pub fn state_digest(chain_id: u64, state: &ChannelState) -> [u8; 32] {
    let tag = Sha256::digest(STATE_TAG);
    let mut h = Sha256::new();
    h.update(tag);
    h.update(tag);
    h.update(chain_id.to_le_bytes());
    h.update(borsh::to_vec(state).unwrap_or_default());
    h.finalize().into()
}

/// Executes a channel message from `sender`.
pub fn execute<V: StateView>(
    view: &mut V,
    chain_id: u64,
    sender: &Address,
    nonce: u64,
    height: u64,
    msg: &ChannelMsg,
) -> Result<()> {
    match msg {
        ChannelMsg::Open {
            peer,
            asset,
            deposit,
            challenge_blocks,
        } => open(
            view,
            sender,
            nonce,
            *peer,
            *asset,
            *deposit,
            *challenge_blocks,
        )
        .map(|_| ()),
        ChannelMsg::Deposit { channel, amount } => deposit(view, sender, *channel, *amount),
        ChannelMsg::CloseCooperative { state } => close_cooperative(view, chain_id, state),
        ChannelMsg::Close { channel, state } => {
            close(view, chain_id, sender, *channel, height, state.as_deref())
        }
        ChannelMsg::Challenge { state } => challenge(view, chain_id, sender, height, state),
        ChannelMsg::Settle { channel } => settle(view, *channel, height),
        ChannelMsg::ResolveHtlc {
            channel,
            index,
            preimage,
        } => resolve_htlc(view, *channel, *index, preimage.as_ref(), height),
    }
}

/// Reads a channel's record.
pub fn channel<V: StateView>(view: &mut V, id: ChannelId) -> Result<Channel> {
    match view.read(&channel_key(id))? {
        Some(Value::Bytes(b)) => {
            Channel::try_from_slice(&b).map_err(|_| ChannelError::Corrupt("channel record"))
        }
        Some(Value::Num(_)) => Err(ChannelError::Corrupt("channel record")),
        None => Err(ChannelError::UnknownChannel(id)),
    }
}

/// Decodes a channel record read outside execution (queries).
pub fn decode_channel(bytes: &[u8]) -> Option<Channel> {
    Channel::try_from_slice(bytes).ok()
}

fn store<V: StateView>(view: &mut V, id: ChannelId, channel: &Channel) {
    let bytes = borsh::to_vec(channel).unwrap_or_default();
    view.write(channel_key(id), Some(Value::bytes(bytes)));
}

fn wrong_status(id: ChannelId, status: &ChannelStatus, expected: &'static str) -> ChannelError {
    ChannelError::WrongStatus {
        channel: id,
        status: status.name(),
        expected,
    }
}

/// Opens a channel; returns its id.
pub fn open<V: StateView>(
    view: &mut V,
    opener: &Address,
    nonce: u64,
    peer: Address,
    asset: AssetId,
    deposit: Amount,
    challenge_blocks: u64,
) -> Result<ChannelId> {
    if peer == *opener {
        return Err(ChannelError::SameParty);
    }
    if challenge_blocks == 0 || challenge_blocks > MAX_CHALLENGE_BLOCKS {
        return Err(ChannelError::InvalidChallengePeriod(challenge_blocks));
    }
    let id = derive_channel_id(opener, nonce);
    if view.read(&channel_key(id))?.is_some() {
        return Err(ChannelError::ChannelExists(id));
    }
    if deposit > 0 {
        bank::transfer(view, opener, &vault_address(), asset, deposit)?;
    }
    store(
        view,
        id,
        &Channel {
            a: *opener,
            b: peer,
            asset,
            deposit_a: deposit,
            deposit_b: 0,
            challenge_blocks,
            status: ChannelStatus::Open,
        },
    );
    Ok(id)
}

/// Adds to `sender`'s deposit of an open channel.
pub fn deposit<V: StateView>(
    view: &mut V,
    sender: &Address,
    id: ChannelId,
    amount: Amount,
) -> Result<()> {
    let mut ch = channel(view, id)?;
    if amount == 0 {
        return Err(ChannelError::ZeroAmount);
    }
    if ch.status != ChannelStatus::Open {
        return Err(wrong_status(id, &ch.status, "open"));
    }
    let slot = if *sender == ch.a {
        &mut ch.deposit_a
    } else if *sender == ch.b {
        &mut ch.deposit_b
    } else {
        return Err(ChannelError::NotAParty(*sender));
    };
    *slot = slot
        .checked_add(amount)
        .ok_or(ChannelError::Overflow("deposit"))?;
    ch.deposit_a
        .checked_add(ch.deposit_b)
        .ok_or(ChannelError::Overflow("deposits"))?;
    bank::transfer(view, sender, &vault_address(), ch.asset, amount)?;
    store(view, id, &ch);
    Ok(())
}

/// Checks a signed state against the channel: both signatures, the channel id, and amounts
/// that add up to deposits the channel holds.
pub fn check_state(chain_id: u64, id: ChannelId, ch: &Channel, signed: &SignedState) -> Result<()> {
    let s = &signed.state;
    if s.channel != id {
        return Err(ChannelError::InvalidState(format!(
            "state is for channel {}, not {id}",
            s.channel
        )));
    }
    if s.nonce == 0 {
        return Err(ChannelError::InvalidState(
            "nonce 0 is the opening state; signed states start at 1".into(),
        ));
    }
    if s.htlcs.len() > MAX_HTLCS {
        return Err(ChannelError::InvalidState(format!(
            "{} HTLCs, at most {MAX_HTLCS}",
            s.htlcs.len()
        )));
    }
    if s.deposit_a > ch.deposit_a || s.deposit_b > ch.deposit_b {
        return Err(ChannelError::InvalidState(format!(
            "signed against deposits {}/{} above the channel's {}/{}",
            s.deposit_a, s.deposit_b, ch.deposit_a, ch.deposit_b
        )));
    }
    let locked = s
        .htlcs
        .iter()
        .try_fold(0u128, |t, h| t.checked_add(h.amount))
        .ok_or(ChannelError::Overflow("htlcs"))?;
    let out = s
        .balance_a
        .checked_add(s.balance_b)
        .and_then(|b| b.checked_add(locked))
        .ok_or(ChannelError::Overflow("balances"))?;
    let deposits = s
        .deposit_a
        .checked_add(s.deposit_b)
        .ok_or(ChannelError::Overflow("deposits"))?;
    if out != deposits {
        return Err(ChannelError::InvalidState(format!(
            "balances {} + {} + HTLCs {locked} = {out}, deposits {deposits}",
            s.balance_a, s.balance_b
        )));
    }
    let digest = state_digest(chain_id, s);
    verify_digest(&ch.a, &digest, &signed.sig_a).map_err(|_| ChannelError::BadSignature('a'))?;
    verify_digest(&ch.b, &digest, &signed.sig_b).map_err(|_| ChannelError::BadSignature('b'))?;
    Ok(())
}

/// The opening state: the deposits as they are, nonce 0.
fn opening_state(id: ChannelId, ch: &Channel) -> ChannelState {
    ChannelState {
        channel: id,
        nonce: 0,
        deposit_a: ch.deposit_a,
        deposit_b: ch.deposit_b,
        balance_a: ch.deposit_a,
        balance_b: ch.deposit_b,
        htlcs: Vec::new(),
    }
}

/// What `(a, b)` are paid for `state` on channel `ch`: the state's balances plus what each
/// deposited after it was signed.
pub fn payout(ch: &Channel, state: &ChannelState) -> Result<(Amount, Amount)> {
    let late_a = ch
        .deposit_a
        .checked_sub(state.deposit_a)
        .ok_or(ChannelError::Corrupt("state above deposits"))?;
    let late_b = ch
        .deposit_b
        .checked_sub(state.deposit_b)
        .ok_or(ChannelError::Corrupt("state above deposits"))?;
    Ok((
        state
            .balance_a
            .checked_add(late_a)
            .ok_or(ChannelError::Overflow("payout"))?,
        state
            .balance_b
            .checked_add(late_b)
            .ok_or(ChannelError::Overflow("payout"))?,
    ))
}

/// Pays `amount` of the channel's asset from the vault to `to`.
fn pay<V: StateView>(view: &mut V, asset: AssetId, to: &Address, amount: Amount) -> Result<()> {
    if amount > 0 {
        bank::debit_key(view, balance_key(&vault_address(), asset), asset, amount)?;
        view.add(balance_key(to, asset), amount);
    }
    Ok(())
}

/// Pays a state's balances and moves the channel on: `Closed`, or `Settled` with its HTLCs.
fn pay_state<V: StateView>(
    view: &mut V,
    id: ChannelId,
    mut ch: Channel,
    state: ChannelState,
) -> Result<()> {
    let (to_a, to_b) = payout(&ch, &state)?;
    pay(view, ch.asset, &ch.a, to_a)?;
    pay(view, ch.asset, &ch.b, to_b)?;
    ch.status = if state.htlcs.is_empty() {
        ChannelStatus::Closed
    } else {
        ChannelStatus::Settled {
            htlcs: state.htlcs.into_iter().map(Some).collect(),
        }
    };
    store(view, id, &ch);
    Ok(())
}

/// Closes at once with a state signed by both and no HTLCs.
pub fn close_cooperative<V: StateView>(
    view: &mut V,
    chain_id: u64,
    signed: &SignedState,
) -> Result<()> {
    let id = signed.state.channel;
    let ch = channel(view, id)?;
    if !matches!(
        ch.status,
        ChannelStatus::Open | ChannelStatus::Closing { .. }
    ) {
        return Err(wrong_status(id, &ch.status, "open or closing"));
    }
    if !signed.state.htlcs.is_empty() {
        return Err(ChannelError::HtlcsInCooperativeClose(
            signed.state.htlcs.len(),
        ));
    }
    check_state(chain_id, id, &ch, signed)?;
    pay_state(view, id, ch, signed.state.clone())
}

/// Starts a unilateral close.
pub fn close<V: StateView>(
    view: &mut V,
    chain_id: u64,
    sender: &Address,
    id: ChannelId,
    height: u64,
    signed: Option<&SignedState>,
) -> Result<()> {
    let mut ch = channel(view, id)?;
    if *sender != ch.a && *sender != ch.b {
        return Err(ChannelError::NotAParty(*sender));
    }
    if ch.status != ChannelStatus::Open {
        return Err(wrong_status(id, &ch.status, "open"));
    }
    let state = match signed {
        Some(signed) => {
            check_state(chain_id, id, &ch, signed)?;
            signed.state.clone()
        }
        None => opening_state(id, &ch),
    };
    let deadline = height
        .checked_add(ch.challenge_blocks)
        .ok_or(ChannelError::Overflow("deadline"))?;
    ch.status = ChannelStatus::Closing { state, deadline };
    store(view, id, &ch);
    Ok(())
}

/// Replaces a closing channel's state with a newer one.
pub fn challenge<V: StateView>(
    view: &mut V,
    chain_id: u64,
    sender: &Address,
    height: u64,
    signed: &SignedState,
) -> Result<()> {
    let id = signed.state.channel;
    let mut ch = channel(view, id)?;
    if *sender != ch.a && *sender != ch.b {
        return Err(ChannelError::NotAParty(*sender));
    }
    let ChannelStatus::Closing { state, deadline } = &ch.status else {
        return Err(wrong_status(id, &ch.status, "closing"));
    };
    let deadline = *deadline;
    if height > deadline {
        return Err(ChannelError::ChallengeOver { deadline, height });
    }
    if signed.state.nonce <= state.nonce {
        return Err(ChannelError::StaleState {
            got: signed.state.nonce,
            current: state.nonce,
        });
    }
    check_state(chain_id, id, &ch, signed)?;
    ch.status = ChannelStatus::Closing {
        state: signed.state.clone(),
        deadline,
    };
    store(view, id, &ch);
    Ok(())
}

/// Pays a closing channel's state after its challenge period.
pub fn settle<V: StateView>(view: &mut V, id: ChannelId, height: u64) -> Result<()> {
    let ch = channel(view, id)?;
    let ChannelStatus::Closing { state, deadline } = &ch.status else {
        return Err(wrong_status(id, &ch.status, "closing"));
    };
    if height <= *deadline {
        return Err(ChannelError::ChallengePeriod {
            deadline: *deadline,
            height,
        });
    }
    let state = state.clone();
    pay_state(view, id, ch, state)
}

/// Pays a settled channel's pending HTLC to its receiver (with the preimage, up to the expiry)
/// or back to its sender (after the expiry).
pub fn resolve_htlc<V: StateView>(
    view: &mut V,
    id: ChannelId,
    index: u32,
    preimage: Option<&[u8; 32]>,
    height: u64,
) -> Result<()> {
    let mut ch = channel(view, id)?;
    let ChannelStatus::Settled { htlcs } = &mut ch.status else {
        return Err(wrong_status(id, &ch.status, "settled"));
    };
    let Some(slot) = htlcs.get_mut(index as usize) else {
        return Err(ChannelError::NoSuchHtlc(index));
    };
    let Some(htlc) = slot.take() else {
        return Err(ChannelError::NoSuchHtlc(index));
    };
    let (sender, receiver) = if htlc.a_to_b {
        (ch.a, ch.b)
    } else {
        (ch.b, ch.a)
    };
    let to = match preimage {
        Some(p) => {
            if <[u8; 32]>::from(Sha256::digest(p)) != htlc.hash {
                return Err(ChannelError::WrongPreimage);
            }
            if height > htlc.expiry {
                return Err(ChannelError::HtlcExpired {
                    expiry: htlc.expiry,
                    height,
                });
            }
            receiver
        }
        None => {
            if height <= htlc.expiry {
                return Err(ChannelError::HtlcNotExpired {
                    expiry: htlc.expiry,
                    height,
                });
            }
            sender
        }
    };
    if htlcs.iter().all(Option::is_none) {
        ch.status = ChannelStatus::Closed;
    }
    let asset = ch.asset;
    store(view, id, &ch);
    pay(view, asset, &to, htlc.amount)
}

/// The keys a channel call may touch besides the fee and nonce keys the runtime declares: the
/// channel's record and the sender's balance are exclusive; the vault is paid into and out of
/// (`subs`); the parties are credited (`deltas`). The parties come from the channel's record
/// in `state`; a channel opened earlier in the same block is not there yet, and its calls
/// then stray outside this footprint, which costs a re-run, never a wrong result.
pub fn footprint(
    msg: &ChannelMsg,
    sender: &Address,
    nonce: u64,
    state: &dyn Storage,
    fp: &mut Footprint,
) {
    let id = match msg {
        ChannelMsg::Open { .. } => derive_channel_id(sender, nonce),
        ChannelMsg::Deposit { channel, .. }
        | ChannelMsg::Close { channel, .. }
        | ChannelMsg::Settle { channel }
        | ChannelMsg::ResolveHtlc { channel, .. } => *channel,
        ChannelMsg::CloseCooperative { state } | ChannelMsg::Challenge { state } => {
            state.state.channel
        }
    };
    fp.exclusive.push(channel_key(id));
    let (asset, parties) = match msg {
        ChannelMsg::Open { asset, .. } => (*asset, None),
        _ => match state.get(&channel_key(id)) {
            Some(Value::Bytes(b)) => match decode_channel(&b) {
                Some(ch) => (ch.asset, Some((ch.a, ch.b))),
                None => return,
            },
            _ => return,
        },
    };
    let sender_balance = balance_key(sender, asset);
    if !fp.exclusive.contains(&sender_balance) {
        fp.exclusive.push(sender_balance);
    }
    fp.subs.push(balance_key(&vault_address(), asset));
    if let Some((a, b)) = parties {
        for party in [a, b] {
            let k = balance_key(&party, asset);
            if !fp.exclusive.contains(&k) && !fp.deltas.contains(&k) {
                fp.deltas.push(k);
            }
        }
    }
}

/// Serde of fixed-size byte arrays as hex strings.
mod hex_bytes {
    pub fn serialize<const N: usize, S: serde::Serializer>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, const N: usize, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&text, &mut out).map_err(|_| {
            serde::de::Error::custom(format!("expected {N} bytes as {} hex digits", 2 * N))
        })?;
        Ok(out)
    }
}

/// Serde of an optional 32-byte value as a hex string or null.
mod hex_opt {
    pub fn serialize<S: serde::Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        match <Option<String> as serde::Deserialize>::deserialize(d)? {
            None => Ok(None),
            Some(text) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(&text, &mut out).map_err(|_| {
                    serde::de::Error::custom("expected a 32-byte preimage as 64 hex digits")
                })?;
                Ok(Some(out))
            }
        }
    }
}
