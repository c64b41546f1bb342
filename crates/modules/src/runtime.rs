//! The runtime: the [`Vm`] that charges a transaction (chain id, nonce, fee) and dispatches
//! its call to a module.
//!
//! # Per transaction
//! 1. Wrong chain id → `Invalid`, no state touched.
//! 2. Read the sender's nonce; a mismatch → `Invalid("wrong nonce: expected N, got M")`, no
//!    state change.
//! 3. `try_sub` the fee from the sender's BTC balance; if it cannot → `Invalid("cannot pay
//!    fee …")`, no state change.
//! 4. Write nonce + 1, `add` the fee to the fee account, take a checkpoint, run the call.
//! 5. The call fails → roll back to the checkpoint: `Failed(reason)`, fee and nonce kept.
//!
//! A bridge deposit ([`BridgeMsg::Deposit`]) is the exception: a system transaction of the
//! bridge's authority with fee 0 and nonce 0. After the chain id check it skips steps 2–4 (no
//! nonce is read or advanced, no fee charged) and runs at once; it is `Success` with
//! `fee_paid == 0`, or `Invalid(reason)` with everything it did rolled back ([`bridge`]).
//!
//! # Blocks and hooks
//! The engine runs [`BlockTx`]s: a block is its begin-block hooks, its user transactions,
//! then its end-block hooks ([`block_txs`]). A hook is a system transaction: no fee, no
//! nonce, a `Success` or `Failed` receipt with `fee_paid == 0` (a failure rolls back all it
//! did). End-block hooks: one [`Hook::SettleBatch`] per pool that received batch swaps (the
//! clearing: a barrier, since it reads every order of the block), then [`Hook::PayBatch`]
//! hooks paying each batch in chunks of [`dex::PAY_CHUNK`] orders, which declare footprints
//! and run in parallel across chunks and pools. The block's height is [`Runtime::height`]
//! (deadlines, and the clearing record a payout must find).
//!
//! # Invariants
//! - `Invalid` and `Panicked` receipts come with no state change and `fee_paid == 0`;
//!   `Success` and `Failed` receipts with `fee_paid == tx.fee`, moved from the sender to the
//!   fee account, and the nonce advanced by one; except a successful bridge deposit, whose fee
//!   is 0 and whose sender's nonce stays as it was.
//! - The fee credit is an `add` and the fee debit a `try_sub`: a block of transactions that
//!   all pay the same fee account does not conflict on it.
//! - A `Halt` from the state view is returned as `Err(halt)` at once, never turned into a
//!   receipt; apart from it, `execute` is a pure function of the transaction and the values
//!   its state operations return.
//! - Value is conserved: the runtime itself only moves the fee. (The bridge mints BTC for a
//!   deposit and burns it for a withdrawal, through the bank: supply equals balances.)

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{
    num_of, Footprint, Halt, Homes, Key, StateResult, StateView, Storage, Value, Vm,
};
use parabit_primitives::{Address, AssetId, Receipt, SignedTransaction, Transaction, TxStatus};

use crate::bank::{self, balance_key, nonce_key, BankError, BankMsg};
use crate::bridge::{self, BridgeConfig, BridgeError, BridgeMsg};
use crate::channels::{self, ChannelError, ChannelMsg};
use crate::dex::{self, DexError, DexKey, DexMsg, PoolId};
use crate::insurance::{self, InsuranceError, InsuranceMsg};
use crate::lending::{self, LendingError, LendingMsg};
use crate::staking::{self, StakingError, StakingMsg};

/// A transaction's call: one module's message.
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
pub enum Call {
    /// A bank message.
    Bank(BankMsg),
    /// A dex message.
    Dex(DexMsg),
    /// A lending message.
    Lending(LendingMsg),
    /// A staking message.
    Staking(StakingMsg),
    /// An insurance message.
    Insurance(InsuranceMsg),
    /// A payment-channel message.
    Channel(ChannelMsg),
    /// A BTC bridge message (last, so that the other variants keep their encodings). A
    /// deposit is a system transaction of the bridge's authority: see [`bridge`].
    Bridge(BridgeMsg),
}

/// A Parabit transaction.
pub type Tx = Transaction<Call>;
/// A signed Parabit transaction.
pub type SignedTx = SignedTransaction<Call>;

/// The runtime of a chain: its id, where fees go, and its bridge.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Runtime {
    /// Transactions for another chain are invalid.
    pub chain_id: u64,
    /// The sequencer's account, credited with every fee (in BTC).
    fee_account: Address,
    /// Its BTC balance key, built once (every transaction credits it).
    fee_key: Key,
    /// The height of the block being executed (deadlines are checked against it).
    pub height: u64,
    /// The BTC bridge: who credits deposits, and the minimum amounts. `None`: deposits are
    /// invalid and withdrawals fail.
    bridge: Option<BridgeConfig>,
}

impl Runtime {
    /// A runtime for `chain_id` paying fees to `fee_account`.
    pub fn new(chain_id: u64, fee_account: Address) -> Runtime {
        Runtime {
            chain_id,
            fee_account,
            fee_key: balance_key(&fee_account, AssetId::BTC),
            height: 0,
            bridge: None,
        }
    }

    /// The same runtime with the BTC bridge `config`.
    pub fn with_bridge(self, config: BridgeConfig) -> Runtime {
        Runtime {
            bridge: Some(config),
            ..self
        }
    }

    /// The chain's BTC bridge, if it has one.
    pub fn bridge(&self) -> Option<BridgeConfig> {
        self.bridge
    }

    /// The sequencer's account, credited with every fee.
    pub fn fee_account(&self) -> Address {
        self.fee_account
    }

    /// The same runtime executing the block at `height`.
    pub fn at_height(self, height: u64) -> Runtime {
        Runtime { height, ..self }
    }
}

/// A system transaction the block builder inserts: no sender, no fee, no nonce.
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
pub enum Hook {
    /// Begin of block: accrues a lending market's interest up to the block's height (one hook
    /// per market, so markets accrue in parallel; afterwards its indices are read-only).
    AccrueInterest {
        /// The market's asset.
        market: AssetId,
    },
    /// End of block: clears a pool's batch auction over the named orders (sender, nonce of
    /// each batch swap on the pool, in block order; those whose transaction failed are
    /// skipped): the uniform price, the refunds, the reserves, and the clearing record its
    /// [`Hook::PayBatch`] hooks read ([`dex::settle_batch`]). A barrier.
    SettleBatch {
        /// The pool.
        pool: PoolId,
        /// The orders placed in this block.
        orders: Vec<(Address, u64)>,
    },
    /// End of block, after every [`Hook::SettleBatch`]: pays a chunk of a settled batch's
    /// orders (fills at the recorded price, refunds in full) and deletes them
    /// ([`dex::pay_batch`]). Chunks of one batch share no key but the vault they pay out of
    /// and the record they read, so they run in parallel.
    PayBatch {
        /// The pool.
        pool: PoolId,
        /// A chunk of the orders its settlement named, in block order.
        orders: Vec<(Address, u64)>,
    },
}

/// One entry of a block as the engine executes it: a user transaction or a hook.
/// A block is its begin-block hooks, then its user transactions, then its end-block hooks
/// ([`block_txs`]).
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub enum BlockTx {
    /// A signed (already verified) user transaction.
    User(Tx),
    /// A system hook.
    Hook(Hook),
}

impl From<Tx> for BlockTx {
    fn from(tx: Tx) -> BlockTx {
        BlockTx::User(tx)
    }
}

impl From<Hook> for BlockTx {
    fn from(hook: Hook) -> BlockTx {
        BlockTx::Hook(hook)
    }
}

/// The end-block hooks of a block's user transactions: one [`Hook::SettleBatch`] per pool
/// that received batch swaps, sorted by pool, naming its orders in block order; then, pool
/// by pool, one [`Hook::PayBatch`] per [`dex::PAY_CHUNK`] of those orders.
pub fn end_block_hooks(user_txs: &[Tx]) -> Vec<Hook> {
    end_block_hooks_chunked(user_txs, dex::PAY_CHUNK)
}

/// [`end_block_hooks`] with payouts of `chunk` orders each (at least 1): any chunk size pays
/// the same.
pub fn end_block_hooks_chunked(user_txs: &[Tx], chunk: usize) -> Vec<Hook> {
    let batches = dex::batch_orders(user_txs.iter().filter_map(|tx| match &tx.call {
        Call::Dex(msg) => Some((&tx.sender, tx.nonce, msg)),
        _ => None,
    }));
    let chunk = chunk.max(1);
    let payouts: usize = batches.values().map(|o| o.len().div_ceil(chunk)).sum();
    let mut hooks = Vec::with_capacity(batches.len() + payouts);
    hooks.extend(batches.iter().map(|(pool, orders)| Hook::SettleBatch {
        pool: *pool,
        orders: orders.clone(),
    }));
    for (pool, orders) in &batches {
        hooks.extend(orders.chunks(chunk).map(|c| Hook::PayBatch {
            pool: *pool,
            orders: c.to_vec(),
        }));
    }
    hooks
}

/// The begin-block hooks of lending: one [`Hook::AccrueInterest`] per market, in the order
/// given (the market list, [`lending::market_list`]).
pub fn begin_block_hooks(markets: &[AssetId]) -> Vec<Hook> {
    markets
        .iter()
        .map(|&market| Hook::AccrueInterest { market })
        .collect()
}

/// A block as the engine runs it: `begin` hooks, the user transactions, then the end-block
/// hooks of [`end_block_hooks`].
pub fn block_txs(begin: Vec<Hook>, user_txs: Vec<Tx>) -> Vec<BlockTx> {
    let end = end_block_hooks(&user_txs);
    let mut out = Vec::with_capacity(begin.len() + user_txs.len() + end.len());
    out.extend(begin.into_iter().map(BlockTx::Hook));
    out.extend(user_txs.into_iter().map(BlockTx::User));
    out.extend(end.into_iter().map(BlockTx::Hook));
    out
}

/// A module error that may carry the engine's `Halt`.
trait ModuleError: std::fmt::Display {
    fn halt(&self) -> Option<Halt>;
}

impl ModuleError for ChannelError {
    fn halt(&self) -> Option<Halt> {
        match self {
            ChannelError::Halt(h) => Some(*h),
            _ => None,
        }
    }
}

impl ModuleError for BankError {
    fn halt(&self) -> Option<Halt> {
        match self {
            BankError::Halt(h) => Some(*h),
            _ => None,
        }
    }
}

impl ModuleError for LendingError {
    fn halt(&self) -> Option<Halt> {
        match self {
            LendingError::Halt(h) => Some(*h),
            _ => None,
        }
    }
}

impl ModuleError for StakingError {
    fn halt(&self) -> Option<Halt> {
        match self {
            StakingError::Halt(h) => Some(*h),
            _ => None,
        }
    }
}

impl ModuleError for InsuranceError {
    fn halt(&self) -> Option<Halt> {
        match self {
            InsuranceError::Halt(h) => Some(*h),
            _ => None,
        }
    }
}

impl ModuleError for BridgeError {
    fn halt(&self) -> Option<Halt> {
        match self {
            BridgeError::Halt(h) => Some(*h),
            _ => None,
        }
    }
}

impl ModuleError for DexError {
    fn halt(&self) -> Option<Halt> {
        match self {
            DexError::Halt(h) => Some(*h),
            _ => None,
        }
    }
}

/// The outcome of a module call, with the engine's `Halt` split off.
fn call_status<E: ModuleError>(result: Result<(), E>) -> StateResult<Result<(), String>> {
    match result {
        Ok(()) => Ok(Ok(())),
        Err(e) => match e.halt() {
            Some(h) => Err(h),
            None => Ok(Err(e.to_string())),
        },
    }
}

impl Vm for Runtime {
    type Txn = BlockTx;
    type Output = Receipt;

    fn execute<V: StateView>(&self, txn: &BlockTx, view: &mut V) -> StateResult<Receipt> {
        match txn {
            BlockTx::User(tx) => self.execute_user(tx, view),
            BlockTx::Hook(hook) => self.execute_hook(hook, view),
        }
    }

    fn panic_output(&self, _txn: &BlockTx, message: &str) -> Receipt {
        Receipt::panicked(message)
    }

    /// A batch settlement reads every order the block placed: the engine holds it until the
    /// user transactions before it have executed rather than run it early and again. The
    /// payouts after the settlements are not barriers: they run as a block of their own.
    fn is_barrier(&self, txn: &BlockTx) -> bool {
        matches!(txn, BlockTx::Hook(Hook::SettleBatch { .. }))
    }

    /// Interest accrual rewrites the indices that every lending transaction of the block reads:
    /// the engine runs the accrual hooks first, then the block on top of them.
    fn is_prologue(&self, txn: &BlockTx) -> bool {
        matches!(txn, BlockTx::Hook(Hook::AccrueInterest { .. }))
    }

    /// A bank transfer's home is its sender: it reads and writes only the sender's nonce and
    /// balances, and only adds to anything else (the recipient, the fee account). So is a
    /// batch swap's: it also writes its order (the sender's, [`dex::key_home`]), adds to the
    /// vault and the pool's batch total, and reads the pool's description. An instant swap
    /// acts for its sender and for each pool on its route (a pool's keys and its vault's
    /// balances belong to the vault, [`dex::pool_home`]). A lending call acts for its sender
    /// (a liquidation also for the borrower): it changes the account's positions, reads the
    /// markets and prices, moves the totals by deltas and takes from the shared cash and
    /// vault. A staking call acts for its staker. Underwriting acts for the underwriter and
    /// the pool (whose capital and shares it changes), buying cover also for the new cover.
    /// So a block of transfers, swaps, lending, staking and insurance runs in home lanes, up
    /// to its settlements. Other calls have no home.
    fn homes(&self, txn: &BlockTx) -> Homes {
        let BlockTx::User(tx) = txn else {
            return Homes::default();
        };
        match &tx.call {
            Call::Bank(BankMsg::Transfer { .. })
            | Call::Dex(DexMsg::BatchSwap { .. })
            | Call::Lending(
                LendingMsg::Supply { .. }
                | LendingMsg::Withdraw { .. }
                | LendingMsg::Borrow { .. }
                | LendingMsg::Repay { .. },
            ) => Homes::one(bank::home_of(&tx.sender)),
            Call::Staking(
                StakingMsg::Stake { .. }
                | StakingMsg::Unbond { .. }
                | StakingMsg::Withdraw { .. }
                | StakingMsg::Claim { .. },
            ) => Homes::one(bank::home_of(&tx.sender)),
            Call::Insurance(InsuranceMsg::Underwrite { pool, .. }) => {
                let mut homes = Homes::one(bank::home_of(&tx.sender));
                homes.push(*pool);
                homes
            }
            Call::Insurance(InsuranceMsg::BuyCover { pool, .. }) => {
                let mut homes = Homes::one(bank::home_of(&tx.sender));
                homes.push(*pool);
                homes.push(insurance::derive_id(&tx.sender, tx.nonce));
                homes
            }
            Call::Lending(LendingMsg::Liquidate { borrower, .. }) => {
                let mut homes = Homes::one(bank::home_of(&tx.sender));
                homes.push(bank::home_of(borrower));
                homes
            }
            Call::Dex(DexMsg::SwapExactIn { path, .. } | DexMsg::SwapExactOut { path, .. }) => {
                let mut homes = Homes::one(bank::home_of(&tx.sender));
                // A route too long fails before touching any pool; so does one naming a pool
                // twice or an invalid pair, whose other pools are named all the same (more
                // homes than needed only group more).
                if path.len() <= dex::MAX_HOPS + 1 {
                    for w in path.windows(2) {
                        if let Ok(pool) = PoolId::new(w[0], w[1]) {
                            homes.push(dex::pool_home(&pool));
                        }
                    }
                }
                homes
            }
            _ => Homes::default(),
        }
    }

    /// Balances and nonces belong to their account ([`bank::key_home`]), batch orders to
    /// their owner and a pool's keys to its vault ([`dex::key_home`]), lending positions to
    /// their owner ([`lending::key_home`]), stakes to their staker ([`staking::key_home`]),
    /// insurance pools and covers to themselves and underwriters' entries to the underwriter
    /// ([`insurance::key_home`]). The lending, staking and insurance vaults' balances belong
    /// to no home: every borrower, staker and pool takes from them, within what they hold
    /// together.
    fn key_home(&self, key: &Key) -> Option<u64> {
        match bank::key_home(key) {
            Some(h)
                if h == lending::vault_home()
                    || h == staking::vault_home()
                    || h == insurance::vault_home() =>
            {
                None
            }
            Some(h) => Some(h),
            None => dex::key_home(key)
                .or_else(|| lending::key_home(key))
                .or_else(|| staking::key_home(key))
                .or_else(|| insurance::key_home(key)),
        }
    }

    /// Declared for bank transfers, instant swaps and batch swaps (the bulk of a busy block):
    /// the sender's nonce and the balances it pays from are exclusive, as are a swapped pool's
    /// reserves and the vault balances it pays out of; credits (recipients, vault inputs, the fee
    /// account, batch totals) are only added to. Every lending, staking and insurance message
    /// declares one too ([`lending::footprint`], [`staking::footprint`],
    /// [`insurance::footprint`]; they read `state` for a pool's assets or an account's
    /// markets), and so do channel and bridge messages ([`channels::footprint`],
    /// [`bridge::footprint`]; a deposit declares no nonce, balance or fee key of its sender,
    /// since it touches none). Other calls declare nothing, and their blocks run on the
    /// general engine. A footprint must cover every key the call can touch, on every path
    /// including failures: the engine checks it, and a miss costs a re-run.
    /// Of the hooks, batch payouts declare theirs ([`dex::pay_footprint`]).
    fn footprint(&self, txn: &BlockTx, state: &dyn Storage) -> Option<Footprint> {
        let mut fp = Footprint::default();
        self.footprint_into(txn, state, &mut fp).then_some(fp)
    }

    fn footprint_into(&self, txn: &BlockTx, state: &dyn Storage, fp: &mut Footprint) -> bool {
        let tx = match txn {
            BlockTx::User(tx) => tx,
            BlockTx::Hook(Hook::PayBatch { pool, orders }) => {
                *fp = dex::pay_footprint(pool, orders);
                return true;
            }
            BlockTx::Hook(_) => return false,
        };
        if let Call::Bridge(msg) = &tx.call {
            if bridge::is_deposit(msg) {
                // No nonce, balance or fee: see `execute_deposit`.
                let config = self.bridge.as_ref();
                bridge::footprint(msg, config, &tx.sender, tx.fee, tx.nonce, fp);
                return true;
            }
        }
        fp.exclusive.push(nonce_key(&tx.sender));
        fp.exclusive.push(balance_key(&tx.sender, AssetId::BTC));
        fp.deltas.push(self.fee_key);
        let mut exclusive = |k| {
            if !fp.exclusive.contains(&k) {
                fp.exclusive.push(k);
            }
        };
        match &tx.call {
            Call::Bank(BankMsg::Transfer { to, asset, .. }) => {
                if *asset != AssetId::BTC {
                    exclusive(balance_key(&tx.sender, *asset));
                }
                fp.deltas.push(balance_key(to, *asset));
            }
            Call::Dex(DexMsg::SwapExactIn { path, .. } | DexMsg::SwapExactOut { path, .. }) => {
                // An invalid path fails before touching anything.
                let Ok(pools) = dex::path_pools(path) else {
                    return true;
                };
                let first = path.first().copied().unwrap_or(AssetId::BTC);
                exclusive(balance_key(&tx.sender, first));
                for (i, pool) in pools.iter().enumerate() {
                    exclusive(DexKey::Reserves(*pool).key());
                    exclusive(balance_key(&dex::vault_address(pool), path[i + 1]));
                }
                for (i, pool) in pools.iter().enumerate() {
                    fp.deltas
                        .push(balance_key(&dex::vault_address(pool), path[i]));
                }
                if let Some(last) = path.last() {
                    fp.deltas.push(balance_key(&tx.sender, *last));
                }
            }
            Call::Dex(DexMsg::BatchSwap {
                asset_in,
                asset_out,
                ..
            }) => {
                let Ok(pool) = PoolId::new(*asset_in, *asset_out) else {
                    return true;
                };
                exclusive(balance_key(&tx.sender, *asset_in));
                exclusive(DexKey::Order(pool, tx.sender, tx.nonce).key());
                fp.reads.push(DexKey::Pool(pool).key());
                fp.deltas
                    .push(balance_key(&dex::vault_address(&pool), *asset_in));
                fp.deltas.push(DexKey::BatchTotal(pool, dex::A_TO_B).key());
                fp.deltas.push(DexKey::BatchTotal(pool, dex::B_TO_A).key());
            }
            Call::Lending(msg) => lending::footprint(msg, &tx.sender, state, fp),
            Call::Staking(msg) => staking::footprint(msg, &tx.sender, tx.nonce, state, fp),
            Call::Insurance(msg) => insurance::footprint(msg, &tx.sender, tx.nonce, state, fp),
            Call::Channel(msg) => channels::footprint(msg, &tx.sender, tx.nonce, state, fp),
            Call::Bridge(msg) => {
                let config = self.bridge.as_ref();
                bridge::footprint(msg, config, &tx.sender, tx.fee, tx.nonce, fp)
            }
            _ => return false,
        }
        true
    }
}

impl Runtime {
    /// Runs a hook: no fee, no nonce; a failure rolls back everything it did.
    fn execute_hook<V: StateView>(&self, hook: &Hook, view: &mut V) -> StateResult<Receipt> {
        let checkpoint = view.checkpoint();
        let result = match hook {
            Hook::SettleBatch { pool, orders } => {
                call_status(dex::settle_batch(view, pool, orders, self.height).map(|_| ()))?
            }
            Hook::PayBatch { pool, orders } => {
                call_status(dex::pay_batch(view, pool, orders, self.height).map(|_| ()))?
            }
            Hook::AccrueInterest { market } => {
                call_status(lending::accrue(view, *market, self.height).map(|_| ()))?
            }
        };
        let status = match result {
            Ok(()) => TxStatus::Success,
            Err(reason) => {
                view.rollback(checkpoint);
                TxStatus::Failed(reason)
            }
        };
        Ok(Receipt {
            status,
            fee_paid: 0,
        })
    }

    /// Runs a user transaction (the steps in the module doc).
    fn execute_user<V: StateView>(&self, tx: &Tx, view: &mut V) -> StateResult<Receipt> {
        if tx.chain_id != self.chain_id {
            return Ok(Receipt::invalid(format!(
                "wrong chain id: expected {}, got {}",
                self.chain_id, tx.chain_id
            )));
        }
        if let Call::Bridge(msg) = &tx.call {
            if bridge::is_deposit(msg) {
                return self.execute_deposit(tx, msg, view);
            }
        }
        let nonce_key = nonce_key(&tx.sender);
        let expected = num_of(&view.read(&nonce_key)?);
        if expected != u128::from(tx.nonce) {
            return Ok(Receipt::invalid(format!(
                "wrong nonce: expected {expected}, got {}",
                tx.nonce
            )));
        }
        if tx.fee > 0 {
            let fee_from = balance_key(&tx.sender, AssetId::BTC);
            if !view.try_sub(fee_from, tx.fee)? {
                let have = num_of(&view.read(&fee_from)?);
                return Ok(Receipt::invalid(format!(
                    "cannot pay fee: have {have} BTC sats, need {}",
                    tx.fee
                )));
            }
        }
        view.write(nonce_key, Some(Value::Num(expected.wrapping_add(1))));
        if tx.fee > 0 {
            view.add(self.fee_key, tx.fee);
        }
        let checkpoint = view.checkpoint();
        let result = match &tx.call {
            Call::Bank(msg) => call_status(bank::execute(view, &tx.sender, tx.nonce, msg))?,
            Call::Dex(msg) => {
                call_status(dex::execute(view, &tx.sender, tx.nonce, self.height, msg))?
            }
            Call::Lending(msg) => {
                call_status(lending::execute(view, &tx.sender, self.height, msg))?
            }
            Call::Staking(msg) => call_status(staking::execute(
                view,
                &tx.sender,
                tx.nonce,
                self.height,
                msg,
            ))?,
            Call::Insurance(msg) => call_status(insurance::execute(
                view,
                &tx.sender,
                tx.nonce,
                self.height,
                msg,
            ))?,
            Call::Channel(msg) => call_status(channels::execute(
                view,
                self.chain_id,
                &tx.sender,
                tx.nonce,
                self.height,
                msg,
            ))?,
            Call::Bridge(msg) => call_status(bridge::execute(
                view,
                self.bridge.as_ref(),
                &tx.sender,
                tx.fee,
                tx.nonce,
                self.height,
                msg,
            ))?,
        };
        let status = match result {
            Ok(()) => TxStatus::Success,
            Err(reason) => {
                view.rollback(checkpoint);
                TxStatus::Failed(reason)
            }
        };
        Ok(Receipt {
            status,
            fee_paid: tx.fee,
        })
    }

    /// Runs a bridge deposit (after the chain id check): a system transaction of the bridge's
    /// authority, so no nonce is checked or advanced and no fee charged. `Success` with
    /// `fee_paid == 0`, or `Invalid` with every change rolled back.
    fn execute_deposit<V: StateView>(
        &self,
        tx: &Tx,
        msg: &BridgeMsg,
        view: &mut V,
    ) -> StateResult<Receipt> {
        let checkpoint = view.checkpoint();
        let config = self.bridge.as_ref();
        let result = bridge::execute(view, config, &tx.sender, tx.fee, tx.nonce, self.height, msg);
        match call_status(result)? {
            Ok(()) => Ok(Receipt {
                status: TxStatus::Success,
                fee_paid: 0,
            }),
            Err(reason) => {
                view.rollback(checkpoint);
                Ok(Receipt::invalid(reason))
            }
        }
    }
}
