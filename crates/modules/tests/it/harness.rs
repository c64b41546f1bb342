//! The shared state machine behind the modules' scenario tests: a committed state, the next
//! block height and each sender's next nonce, with one module's messages sent as zero-fee
//! transactions, one block at a time, through the sequential executor.
//!
//! Invariants: every block runs at [`Chain::height`] and then advances it by one; nonces are
//! handed out in order per sender; [`Chain::fails`] checks that a failed message changed
//! nothing but its sender's nonce (and what the block's hooks, if any, write on their own).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::OnceLock;

use parabit_exec::{execute_sequential, Key, KeyMap, Value};
use parabit_modules::{
    balance_of, BlockTx, Call, ChannelMsg, Hook, InsuranceKey, InsuranceMsg, LendingKey,
    LendingMsg, StakingKey, StakingMsg, Tx,
};
use parabit_primitives::{Address, Amount, AssetId, Receipt, TxStatus};
use rayon::ThreadPool;

use crate::{runtime, CHAIN};

/// A module's message, as the runtime's [`Call`] wraps it.
pub trait Msg: Clone + Debug {
    fn into_call(self) -> Call;
}

/// Implements [`Msg`] for each `message type => Call variant`.
macro_rules! msgs {
    ($($msg:ty => $variant:ident),* $(,)?) => {
        $(impl Msg for $msg {
            fn into_call(self) -> Call {
                Call::$variant(self)
            }
        })*
    };
}

msgs!(
    StakingMsg => Staking,
    InsuranceMsg => Insurance,
    ChannelMsg => Channel,
    LendingMsg => Lending,
);

/// A module's typed storage key.
pub trait StateKey {
    fn state_key(&self) -> Key;
}

/// Implements [`StateKey`] for module key types with a `key()` method.
macro_rules! state_keys {
    ($($key:ty),* $(,)?) => {
        $(impl StateKey for $key {
            fn state_key(&self) -> Key {
                self.key()
            }
        })*
    };
}

state_keys!(StakingKey, InsuranceKey, LendingKey);

/// The hooks a block runs before its user transactions, given the state before it.
pub type Hooks = fn(&KeyMap<Value>) -> Vec<Hook>;

fn no_hooks(_: &KeyMap<Value>) -> Vec<Hook> {
    Vec::new()
}

/// A chain under test that sends `M` messages; `P` is the module's object under test (a pool
/// id), `()` where there is none.
pub struct Chain<M, P = ()> {
    pub state: KeyMap<Value>,
    pub height: u64,
    pub nonces: BTreeMap<Address, u64>,
    pub pool: P,
    hooks: Hooks,
    msg: PhantomData<fn(M)>,
}

impl<M: Msg, P> Chain<M, P> {
    /// A chain at height 1 from `state`, no nonces used, no hooks.
    pub fn start(state: KeyMap<Value>, pool: P) -> Self {
        Chain {
            state,
            height: 1,
            nonces: BTreeMap::new(),
            pool,
            hooks: no_hooks,
            msg: PhantomData,
        }
    }

    /// Every later block runs `hooks` before its user transactions.
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    pub fn next_nonce(&self, sender: &Address) -> u64 {
        self.nonces.get(sender).copied().unwrap_or(0)
    }

    /// A transaction of any call from `sender` with its next nonce.
    pub fn call_tx(&mut self, sender: Address, fee: Amount, call: Call) -> Tx {
        let n = self.nonces.entry(sender).or_insert(0);
        let tx = Tx {
            chain_id: CHAIN,
            sender,
            nonce: *n,
            fee,
            call,
        };
        *n += 1;
        tx
    }

    /// A zero-fee transaction of `msg` from `sender` with its next nonce.
    pub fn tx(&mut self, sender: Address, msg: M) -> Tx {
        self.call_tx(sender, 0, msg.into_call())
    }

    /// Runs the hooks and `txs` as one block at the current height, commits it and moves to
    /// the next height; every hook must succeed. Returns the user transactions' receipts.
    pub fn receipts(&mut self, txs: Vec<Tx>) -> Vec<Receipt> {
        let mut block: Vec<BlockTx> = (self.hooks)(&self.state)
            .into_iter()
            .map(BlockTx::Hook)
            .collect();
        let n_hooks = block.len();
        block.extend(txs.into_iter().map(BlockTx::User));
        let out = execute_sequential(&runtime().at_height(self.height), &block, &self.state);
        out.writes.apply_to(&mut self.state);
        self.height += 1;
        for r in &out.outputs[..n_hooks] {
            assert!(r.status.is_success(), "hook failed: {r:?}");
        }
        out.outputs[n_hooks..].to_vec()
    }

    /// [`Chain::receipts`], the statuses only.
    pub fn block(&mut self, txs: Vec<Tx>) -> Vec<TxStatus> {
        self.receipts(txs).into_iter().map(|r| r.status).collect()
    }

    /// Runs `blocks` empty blocks.
    pub fn idle(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.block(vec![]);
        }
    }

    /// Runs empty blocks until the next block's height is at least `height`.
    pub fn idle_until(&mut self, height: u64) {
        while self.height < height {
            self.block(vec![]);
        }
    }

    /// Sends `msg` alone in a block.
    pub fn send(&mut self, sender: Address, msg: M) -> TxStatus {
        let tx = self.tx(sender, msg);
        self.block(vec![tx]).remove(0)
    }

    pub fn ok(&mut self, sender: Address, msg: M) {
        let status = self.send(sender, msg.clone());
        assert_eq!(status, TxStatus::Success, "{msg:?}");
    }

    /// Sends `msg`, which must fail with exactly `reason` and change nothing but the sender's
    /// nonce (fees are 0) beside what the block's hooks write on their own.
    pub fn fails(&mut self, sender: Address, msg: M, reason: &str) {
        let mut expected = self.state.clone();
        let hooks: Vec<BlockTx> = (self.hooks)(&self.state)
            .into_iter()
            .map(BlockTx::Hook)
            .collect();
        if !hooks.is_empty() {
            let vm = runtime().at_height(self.height);
            execute_sequential(&vm, &hooks, &self.state)
                .writes
                .apply_to(&mut expected);
        }
        assert_eq!(
            self.send(sender, msg.clone()),
            TxStatus::Failed(reason.to_string()),
            "{msg:?}"
        );
        expected.insert(
            parabit_modules::bank::nonce_key(&sender),
            Value::Num(u128::from(self.next_nonce(&sender))),
        );
        assert_eq!(self.state, expected, "{msg:?} changed state");
    }

    /// A numeric key's value (0 if absent).
    pub fn num(&self, key: impl StateKey) -> u128 {
        self.state.get(&key.state_key()).map_or(0, Value::as_num)
    }

    pub fn balance(&self, who: &Address, asset: AssetId) -> Amount {
        balance_of(&self.state, who, asset)
    }
}

/// The parallel executor on `pool`, running even the smallest block in parallel.
pub fn parallel_on(pool: &ThreadPool) -> parabit_exec::ParallelExecutor<'_> {
    parabit_exec::ParallelExecutor::with_config(
        pool,
        parabit_exec::ExecConfig {
            min_parallel_txns: 0,
            ..parabit_exec::ExecConfig::default()
        },
    )
}

/// Rayon pools of 1, 2 and 4 threads for the parallel executor, built once.
pub fn pools() -> &'static [ThreadPool] {
    static POOLS: OnceLock<Vec<ThreadPool>> = OnceLock::new();
    POOLS.get_or_init(|| {
        [1, 2, 4]
            .into_iter()
            .map(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("thread pool")
            })
            .collect()
    })
}
