//! Integration tests of the bank module and the runtime, run through the engine's sequential
//! executor and its parallel executor.

mod bank;
mod batch_payout;
mod bridge;
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
use parabit_modules::{genesis_state, BlockTx, BridgeConfig, Call, Runtime, Tx};
use parabit_modules::{BankMsg, BridgeMsg};
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

/// The bridge's authority in tests (the sequencer's key; not the fee account, to tell them
/// apart).
pub fn authority() -> Address {
    SigningKey::from_seed(b"bridge-authority").address()
}

/// The minimum deposit and withdrawal of [`bridge_config`].
pub const BRIDGE_MIN: u64 = 10_000;

/// The bridge of [`bridged_runtime`].
pub fn bridge_config() -> BridgeConfig {
    BridgeConfig {
        authority: authority(),
        min_deposit: BRIDGE_MIN,
        min_withdrawal: BRIDGE_MIN,
    }
}

/// [`runtime`] with the bridge of [`bridge_config`].
pub fn bridged_runtime() -> Runtime {
    runtime().with_bridge(bridge_config())
}

/// A valid deposit transaction of the authority: outpoint `(txid, vout)`, fee 0, nonce 0.
pub fn deposit_tx(txid: [u8; 32], vout: u32, recipient: Address, amount: u64) -> Tx {
    Tx {
        chain_id: CHAIN,
        sender: authority(),
        nonce: 0,
        fee: 0,
        call: Call::Bridge(BridgeMsg::Deposit {
            txid,
            vout,
            recipient,
            amount,
            bitcoin_height: 800_000,
        }),
    }
}

/// A withdrawal of `amount` sat to `script_pubkey`.
pub fn withdraw_tx(
    sender: Address,
    nonce: u64,
    fee: Amount,
    amount: u64,
    script_pubkey: Vec<u8>,
) -> Tx {
    Tx {
        chain_id: CHAIN,
        sender,
        nonce,
        fee,
        call: Call::Bridge(BridgeMsg::Withdraw {
            amount,
            script_pubkey,
        }),
    }
}

/// A P2WPKH output script (`00 14 <20 bytes>`).
pub fn p2wpkh(fill: u8) -> Vec<u8> {
    let mut s = vec![0x00, 0x14];
    s.extend([fill; 20]);
    s
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
