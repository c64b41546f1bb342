//! Placeholder while the engine is written.
use crate::types::{BlockOutput, Storage, Vm};

/// Counters of one parallel run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Incarnations executed.
    pub executions: u64,
    /// Validations run.
    pub validations: u64,
    /// Incarnations aborted by a failed validation.
    pub aborts: u64,
    /// Executions suspended on a dependency.
    pub suspensions: u64,
    /// Index from which the block was finished sequentially, if it was.
    pub sequential_from: Option<usize>,
}

/// Executes blocks in parallel on a rayon pool it is given.
pub struct ParallelExecutor<'p> {
    pool: &'p rayon::ThreadPool,
}

impl<'p> ParallelExecutor<'p> {
    /// An executor whose workers are the threads of `pool`.
    pub fn new(pool: &'p rayon::ThreadPool) -> Self {
        ParallelExecutor { pool }
    }

    /// Executes a block; the result equals [`crate::execute_sequential`]'s.
    pub fn execute_block<V: Vm, S: Storage>(
        &self,
        vm: &V,
        txns: &[V::Txn],
        storage: &S,
    ) -> BlockOutput<V::Output> {
        self.execute_block_with_stats(vm, txns, storage).0
    }

    /// Executes a block and reports what the engine did.
    pub fn execute_block_with_stats<V: Vm, S: Storage>(
        &self,
        vm: &V,
        txns: &[V::Txn],
        storage: &S,
    ) -> (BlockOutput<V::Output>, ExecStats) {
        let _ = self.pool.current_num_threads();
        (crate::execute_sequential(vm, txns, storage), ExecStats::default())
    }
}
