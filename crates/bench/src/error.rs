//! The bench library's errors.

use parabit_primitives::SignatureError;

/// Why a workload could not be generated or run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A workload name that is not one of [`crate::WorkloadKind::ALL`].
    #[error("unknown workload {0:?}: expected one of {names}", names = crate::WorkloadKind::names())]
    UnknownWorkload(String),
    /// Parameters that cannot describe a workload (too few accounts, empty blocks…).
    #[error("invalid workload parameters: {0}")]
    InvalidSpec(String),
    /// No thread count to run with.
    #[error("no thread counts given: pass at least one, e.g. 1,2")]
    NoThreads,
    /// A thread count of zero.
    #[error("thread count 0 is not allowed: every pool needs at least one thread")]
    ZeroThreads,
    /// Accounts derived for other parameters than the workload's.
    #[error(
        "accounts were derived for seed {have_seed} and {have_len} accounts, \
         but the workload needs seed {want_seed} and {want_len}"
    )]
    AccountsMismatch {
        /// Seed of the accounts given.
        have_seed: u64,
        /// Number of accounts given.
        have_len: usize,
        /// Seed the workload asks for.
        want_seed: u64,
        /// Number of accounts the workload asks for.
        want_len: usize,
    },
    /// The rayon pool could not be built.
    #[error("cannot build a pool of {threads} threads")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Rayon's reason.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// A generated transaction whose signature does not verify (a generator bug).
    #[error("transaction {index} of block {block} failed signature pre-verification")]
    BadSignature {
        /// Block index.
        block: usize,
        /// Index in the block.
        index: usize,
        /// Why it failed.
        #[source]
        source: SignatureError,
    },
}
