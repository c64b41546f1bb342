//! Integration tests of the bank module and the runtime, run through the engine's sequential
//! executor and its parallel executor.

mod bank;
mod batch_payout;
mod channels;
mod dex;
mod footprints;
mod genesis_spec;
mod harness;
mod insurance;
mod lending;
mod mint_burn;
mod props;
mod staking;

use parabit_exec::{execute_sequential, BlockOutput, KeyMap, Value};
use parabit_modules::BankMsg;
use parabit_modules::{genesis_state, BlockTx, Call, Runtime, Tx};
use parabit_primitives::{Address, Amount, AssetId, Receipt, SigningKey};

pub const CHAIN: u64 = 77;

pub fn account(i: u32) -> Address {
    SigningKey::from_seed(&i.to_le_bytes()).address()
}

pub fn fee_account() -> Address {
    SigningKey::from_seed(b"sequencer").address()
}

pub fn runtime() -> Runtime {
    Runtime::new(CHAIN, fee_account())
}

pub fn transfer(
    from: Address,
    nonce: u64,
    fee: Amount,
    to: Address,
    asset: AssetId,
    amount: Amount,
) -> Tx {
    Tx {
        chain_id: CHAIN,
        sender: from,
        nonce,
        fee,
        call: Call::Bank(BankMsg::Transfer { to, asset, amount }),
    }
}

/// Runs a block sequentially; returns the receipts, the writes and the state after.
pub fn run(
    state: &KeyMap<Value>,
    txs: &[Tx],
) -> (Vec<Receipt>, BlockOutput<Receipt>, KeyMap<Value>) {
    let block: Vec<BlockTx> = txs.iter().cloned().map(BlockTx::User).collect();
    let out = execute_sequential(&runtime(), &block, state);
    let mut after = state.clone();
    out.writes.apply_to(&mut after);
    (out.outputs.clone(), out, after)
}

/// Accounts 0..n with `btc` each.
pub fn funded(n: u32, btc: Amount) -> KeyMap<Value> {
    let balances: Vec<_> = (0..n).map(|i| (account(i), AssetId::BTC, btc)).collect();
    genesis_state(&balances)
}
