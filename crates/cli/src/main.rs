//! `parabit`: the command-line entry point of Parabit.
//!
//! Subcommands live in their own modules; each takes its parsed arguments and returns
//! `anyhow::Result`, so every failure reaches the user as one readable chain of causes on
//! stderr and a non-zero exit code. Logs (`RUST_LOG`, default `warn`) and progress bars go to
//! stderr; stdout carries only the command's output (for `bench --json`: one JSON object a
//! line).

mod bench;
mod bridge_cmd;
mod channel_cmd;
mod client;
mod follow_cmd;
mod human;
mod load_cmd;
mod node_cmd;
mod proof;
mod query_cmd;
mod regtest_cmd;
mod settle_cmd;
mod tx_cmd;
mod wallet_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: the engine allocates per block (overlays, write
/// lists, plans) and frees it all again, which glibc's allocator serves by mapping fresh pages
/// each time; mimalloc reuses them (see [`keep_freed_memory`]). Measured in `BENCHMARKS.md`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in mimalloc's `mi_option_e`, the same in the v2 and v3
/// headers vendored by `libmimalloc-sys` 0.1.49 (pinned), which names no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Lets mimalloc keep freed memory for a second (not its default 10 ms) before giving it back
/// to the system: a block's buffers, freed at its end, are then reused by the next block
/// rather than faulted in and zeroed again, which cost several percent of a block (the kernel
/// zeroing pages showed up at 4-9% of a parallel run's profile).
fn keep_freed_memory() {
    // SAFETY: `mi_option_get` and `mi_option_set` read and store one option value; mimalloc
    // allows both at any time, from any thread. The value is changed only while it is the
    // default (10): a `MIMALLOC_PURGE_DELAY` set by the user wins.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 10 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000);
        }
    }
}

/// Parabit: a Bitcoin L2 with a parallel execution engine.
#[derive(Debug, Parser)]
#[command(name = "parabit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local development network: funded accounts, a pool, markets, staking and
    /// insurance seeded; JSON-RPC on 127.0.0.1:8645. Ctrl-C stops it; it resumes on restart.
    Devnet(node_cmd::DevnetArgs),
    /// Run a node from a genesis file (and an optional TOML config file).
    Node(node_cmd::NodeArgs),
    /// Check a stopped node's data directory: integrity, and a replay from genesis that must
    /// reach every block's state root.
    Verify(node_cmd::VerifyArgs),
    /// Measure the execution engine: parallel against sequential on the same blocks, with
    /// the state roots compared.
    Bench(bench::BenchArgs),
    /// Keys in the encrypted keystore: create, import, list, show, remove.
    Wallet(wallet_cmd::WalletArgs),
    /// Sign a transaction with a keystore key, send it to the node and wait for its receipt.
    Tx(tx_cmd::TxArgs),
    /// Read chain state from the node: blocks, transactions, balances, pools, markets, proofs.
    Query(query_cmd::QueryArgs),
    /// Payment channels off-chain: build and sign channel states (`parabit tx channel-*`
    /// sends them).
    Channel(channel_cmd::ChannelArgs),
    /// Load-test a running node over JSON-RPC: fund and pre-sign, send at a target rate,
    /// follow commits, report rates and submit-to-commit latency.
    Load(load_cmd::LoadArgs),
    /// BTC in and out: deposit from a key's Bitcoin coins, follow withdrawals, the bridge's
    /// address and totals (`parabit tx withdraw-btc` sends a withdrawal).
    Bridge(bridge_cmd::BridgeArgs),
    /// Run a Bitcoin regtest chain as its own process, serving Bitcoin Core's JSON-RPC
    /// subset (cookie or user/password auth), for devnets and full nodes to share.
    Regtest(regtest_cmd::RegtestArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Devnet(args) => node_cmd::devnet(&args),
        Command::Node(args) => node_cmd::node(&args),
        Command::Verify(args) => node_cmd::verify(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Wallet(args) => wallet_cmd::run(&args),
        Command::Tx(args) => tx_cmd::run(&args),
        Command::Query(args) => query_cmd::run(&args),
        Command::Channel(args) => channel_cmd::run(&args),
        Command::Load(args) => load_cmd::run(&args),
        Command::Regtest(args) => regtest_cmd::run(&args),
        Command::Bridge(args) => bridge_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // Fails only if a subscriber is already installed, which cannot happen here.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
