//! Benchmark workloads for Parabit's execution engine, and the runner behind `parabit bench`.
//!
//! The same workloads feed the criterion benches (`benches/engine.rs`), the tests and the
//! `parabit bench` command, so every figure quoted for a workload name means the same
//! transactions.
//!
//! | file | what it holds |
//! |---|---|
//! | `workload.rs` | [`WorkloadKind`] (the shared names), [`Accounts`] (deterministic keys), [`Workload`] (genesis, signed and unsigned blocks) |
//! | `runner.rs` | [`run`]: signature pre-verification, sequential versus parallel execution, the oracle comparison, timings |
//! | `root.rs` | [`state_root`]: a stand-in state commitment until the Jellyfish tree lands |
//! | `progress.rs` | progress bars on stderr that appear only for phases longer than a second |
//!
//! Invariants:
//! - Generation is a pure function of the [`WorkloadSpec`] (the seed included): the same spec
//!   gives the same keys, genesis, transactions and signatures on any machine and thread count.
//! - Every generated transaction is valid: its signature verifies, its nonce is the sender's
//!   next one, and the sender is funded at genesis for every fee and amount it sends, so
//!   sequential execution gives a `Success` receipt for each.
//! - The runner never prints: it hands reports to its caller; progress goes to stderr only.

mod error;
mod progress;
mod root;
mod runner;
mod workload;

pub use error::BenchError;
pub use progress::Progress;
pub use root::{hex32, state_root};
pub use runner::{
    available_threads, process_cpu_time, run, EngineReport, Report, RunOptions, SigReport,
};
pub use workload::{
    pool_token, Accounts, Workload, WorkloadKind, WorkloadSpec, BASE_BALANCE, BENCH_CHAIN_ID,
    DEFI_BATCH_POOLS, DEFI_INSURANCE_POOLS, DEFI_STAKE, DEFI_SWAP_POOLS, FEE, INSURANCE_CAPITAL,
    MAX_TRANSFER, POOL_RESERVE, SWAP_POOLS,
};
