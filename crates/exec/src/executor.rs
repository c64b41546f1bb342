//! The parallel executor: worker loop, adaptive fallback to sequential execution, and the
//! assembly of a block's outputs and write set.
//!
//! Invariants:
//! - For any block, base state and pool size, [`ParallelExecutor::execute_block`] returns exactly
//!   what [`crate::execute_sequential`] returns (outputs and write set).
//! - A transaction whose execution panics gets the `Vm`'s panic output and no writes; the engine
//!   and its locks are unaffected (no lock is held while the `Vm` runs).
//! - When the block falls back, the committed prefix is re-validated in order on one thread
//!   before anything after it runs sequentially, so the prefix equals sequential execution.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use parking_lot::Mutex;
use rayon::prelude::*;
use smallvec::SmallVec;

use crate::homes::{self, Homed};
use crate::mvmemory::{CellRef, MvMemory, WriteOp};
use crate::partition::{self, KeyFilter, LaneWrites, Layer, Partitioned};
use crate::scheduler::{Claim, Scheduler, Task};
use crate::sequential::{self, panic_message};
use crate::types::{key_map_with_capacity, BlockOutput, Halt, Key, Storage, Value, Vm, WriteSet};
use crate::view::{reads_hold, ParView, ReadSet, Scratch};

/// Transactions started before the conflict rate is judged: a burst of conflicts at the start
/// of a block (everyone reading what a begin-block hook writes) is not a chain.
const FALLBACK_MIN_STARTED: usize = 128;

/// After a block fell back, the next ones run sequentially while their first `PROBE_TXNS`
/// transactions are watched for dependencies; parallel execution resumes when few are found.
const PROBE_TXNS: usize = 256;

/// A block is split by footprints only if no worker gets more than this share of it.
const MAX_LANE_SHARE: f64 = 0.75;

/// Blocks run without trying home lanes after an attempt was abandoned (a workload whose
/// transactions stray from their homes pays for one wasted attempt in this many blocks).
const HOMES_PAUSE: u32 = 16;

/// Counters of one block's execution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Incarnations executed (including ones that were suspended).
    pub executions: u64,
    /// Validations run.
    pub validations: u64,
    /// Incarnations aborted by a failed validation.
    pub aborts: u64,
    /// Executions suspended on a dependency.
    pub suspensions: u64,
    /// Index from which the block was finished sequentially, if it was (`Some(0)`: the whole
    /// block ran sequentially).
    pub sequential_from: Option<usize>,
    /// Worker panics (engine bugs) survived by re-running the block sequentially.
    pub engine_failures: u64,
    /// Transactions from the first barrier on, run after the rest of the block committed.
    pub after_barrier: u64,
    /// Prologue transactions, run before the rest of the block.
    pub prologue: u64,
    /// Whether the block ran sequentially because the previous one was a chain (it was probed
    /// for dependencies to decide about the next block).
    pub predicted_chain: bool,
    /// Independent groups the block was split into by the transactions' footprints (0: the
    /// block was not run that way).
    pub footprint_groups: u64,
    /// Footprint runs abandoned because a transaction strayed outside its footprint.
    pub footprint_violations: u64,
    /// Wall time of footprint runs spent planning them (footprints, grouping, the deal onto
    /// the workers): the part of the engine's overhead that grows with the block.
    pub footprint_planning: std::time::Duration,
    /// Wall time of footprint runs (and home-lane runs) spent merging the workers' results.
    pub footprint_merging: std::time::Duration,
    /// Lanes the block ran in by its transactions' homes (0: it was not run that way).
    pub home_lanes: u64,
    /// Home-lane attempts abandoned (a transaction without a home or outside it, a conflict
    /// on an exposed key, or lanes too uneven); the block then ran another way.
    pub home_abandoned: u64,
}

impl ExecStats {
    fn add(&mut self, other: &ExecStats) {
        self.executions += other.executions;
        self.validations += other.validations;
        self.aborts += other.aborts;
        self.suspensions += other.suspensions;
    }
}

/// Tuning of the parallel executor.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Blocks with fewer transactions than this run sequentially, and so does every block on a
    /// one-thread pool; 0 runs every block through the parallel machinery (for tests).
    pub min_parallel_txns: usize,
    /// Whether a block that turns out to be a dependency chain is finished sequentially.
    pub fallback: bool,
    /// Conflicts (aborts plus suspensions) needed before the fallback is considered.
    pub fallback_min_conflicts: usize,
    /// How many consecutive indices a worker claims from a scheduler cursor at once.
    pub chunk: usize,
    /// Whether blocks whose transactions all declare footprints are split into independent
    /// groups and run without the multi-version machinery.
    pub footprints: bool,
    /// Whether blocks whose transactions all have homes ([`Vm::homes`]) are first tried in
    /// home lanes, with no planning.
    pub homes: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            min_parallel_txns: 32,
            fallback: true,
            fallback_min_conflicts: 8,
            chunk: 8,
            footprints: true,
            homes: true,
        }
    }
}

/// Executes blocks in parallel on the threads of a rayon pool it is given.
///
/// It keeps its working memory from block to block; blocks given to one executor run one at
/// a time.
pub struct ParallelExecutor<'p> {
    pool: &'p rayon::ThreadPool,
    config: ExecConfig,
    workspace: Mutex<Workspace>,
    /// Set when a block fell back to sequential execution: the next block is probed
    /// sequentially instead of detecting the chain again in parallel.
    predict_chain: AtomicBool,
    /// Blocks still to run without trying home lanes, after an abandoned attempt.
    homes_pause: AtomicU32,
}

/// Memory reused from block to block: the multi-version map and the per-transaction records
/// keep their capacity, so a block neither allocates nor frees per key or per transaction.
struct Workspace {
    mv: MvMemory,
    slots: Vec<Slot>,
    /// Counts blocks, to tell this block's slot contents from leftovers.
    epoch: u64,
}

/// What a transaction's latest incarnation read and wrote, under one lock.
#[derive(Default)]
struct Slot(Mutex<SlotData>);

#[derive(Default)]
struct SlotData {
    /// The block these records belong to: a slot keeps the previous block's until its
    /// transaction first publishes in this one.
    epoch: u64,
    reads: ReadSet,
    /// The cells written.
    writes: SmallVec<[CellRef; 4]>,
}

struct Block<'a, V: Vm, S> {
    vm: &'a V,
    txns: &'a [V::Txn],
    storage: &'a S,
    mv: &'a MvMemory,
    scheduler: Scheduler,
    slots: &'a [Slot],
    epoch: u64,
    outputs: Vec<Mutex<Option<V::Output>>>,
    conflicts: AtomicUsize,
    /// Transactions before the first barrier: the part run by the workers.
    parallel_len: usize,
    /// Conflicts needed before a fallback: at least the configured number, and more than the
    /// burst of conflicts that the first transactions of every worker can cause at once.
    fallback_min_conflicts: usize,
    config: &'a ExecConfig,
}

impl<'p> ParallelExecutor<'p> {
    /// An executor whose workers are the threads of `pool`.
    pub fn new(pool: &'p rayon::ThreadPool) -> Self {
        Self::with_config(pool, ExecConfig::default())
    }

    /// An executor with explicit tuning.
    pub fn with_config(pool: &'p rayon::ThreadPool, config: ExecConfig) -> Self {
        ParallelExecutor {
            pool,
            config,
            workspace: Mutex::new(Workspace {
                mv: MvMemory::new(),
                slots: Vec::new(),
                epoch: 0,
            }),
            predict_chain: AtomicBool::new(false),
            homes_pause: AtomicU32::new(0),
        }
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
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
        // A prologue (begin-of-block hooks that the rest reads) runs first, on its own; the
        // rest of the block runs on top of its writes.
        let lead = txns.iter().take_while(|t| vm.is_prologue(t)).count();
        if lead == 0 || lead == txns.len() {
            return self.execute_body(vm, txns, storage);
        }
        let head = sequential::execute_sequential(vm, &txns[..lead], storage);
        let mut top = key_map_with_capacity(head.writes.len());
        top.extend(head.writes.0.iter().cloned());
        let layered = Stacked {
            maps: &[(&top, None)],
            base: storage,
        };
        let (tail, mut stats) = self.execute_body(vm, &txns[lead..], &layered);
        stats.prologue = lead as u64;
        // The tail's writes win; keep the prologue's writes the tail did not overwrite.
        for (key, _) in &tail.writes.0 {
            top.remove(key);
        }
        let mut writes = tail.writes.0;
        writes.extend(top);
        let mut outputs = head.outputs;
        outputs.extend(tail.outputs);
        (
            BlockOutput {
                outputs,
                writes: WriteSet(writes),
            },
            stats,
        )
    }

    /// The barriers from `parallel_len` on, and what follows them, on top of a partitioned
    /// run of the transactions before them (`body`, its writes still in the lanes' maps, so
    /// that nothing is copied into one map to be read through).
    ///
    /// The barriers run on their own; what follows them (work they split off, such as paying a
    /// settled batch's orders) is a block of its own on top. The block's writes are the body's,
    /// less the keys written after it, and those.
    fn after_barrier<V: Vm, S: Storage>(
        &self,
        vm: &V,
        txns: &[V::Txn],
        parallel_len: usize,
        storage: &S,
        body: partition::Parts<V::Output>,
        stats: &mut ExecStats,
    ) -> BlockOutput<V::Output> {
        let partition::Parts {
            mut outputs,
            writes: summed,
            lanes,
        } = body;
        let mut summed_map = key_map_with_capacity(summed.len());
        summed_map.extend(summed);
        let mut maps: Vec<(&dyn Layer, Option<&KeyFilter>)> = Vec::with_capacity(lanes.len() + 1);
        maps.push((&summed_map, None));
        maps.extend(
            lanes
                .iter()
                .map(|(map, filter)| (map.layer(), Some(filter))),
        );
        let base: &dyn Storage = storage;
        let below = Stacked { maps: &maps, base };
        let barriers = txns[parallel_len..]
            .iter()
            .take_while(|t| vm.is_barrier(t))
            .count();
        let rest = parallel_len + barriers;
        let mut later = key_map_with_capacity(64);
        sequential::run(
            vm,
            &txns[parallel_len..rest],
            &below,
            &mut later,
            &mut outputs,
        );
        if rest < txns.len() {
            // Behind `dyn`: one instance of this function for every tail.
            let base: &dyn Storage = &below;
            let layered = Stacked {
                maps: &[(&later, None)],
                base,
            };
            let (tail, tail_stats) = self.execute_body(vm, &txns[rest..], &layered);
            stats.footprint_groups += tail_stats.footprint_groups;
            stats.footprint_violations += tail_stats.footprint_violations;
            stats.footprint_planning += tail_stats.footprint_planning;
            stats.footprint_merging += tail_stats.footprint_merging;
            stats.aborts += tail_stats.aborts;
            outputs.extend(tail.outputs);
            later.reserve(tail.writes.len());
            later.extend(tail.writes.0);
        }
        drop(maps);
        let merging = std::time::Instant::now();
        // The body's writes that nothing after it overwrote, each lane's filtered on a worker
        // (this runs on the pool: `execute_body` moved there); most of them are not in
        // `later`, which a filter of its keys says without probing it.
        let overwritten = KeyFilter::of(later.keys());
        let total_bound =
            lanes.iter().map(|(map, _)| map.len()).sum::<usize>() + summed_map.len() + later.len();
        let mut parts: Vec<Vec<(Key, Option<Value>)>> = lanes
            .into_par_iter()
            .map(|(map, _)| map)
            .chain(rayon::iter::once(LaneWrites::Values(summed_map)))
            .enumerate()
            .map(|(i, lane)| {
                // The first part takes the others: room for all, so they are appended once.
                let mut kept = Vec::with_capacity(if i == 0 { total_bound } else { lane.len() });
                lane.drain_into(&mut kept, |k| {
                    !overwritten.may_hold(k) || !later.contains_key(k)
                });
                kept
            })
            .collect();
        let mut writes = if parts.is_empty() {
            Vec::with_capacity(later.len())
        } else {
            parts.swap_remove(0)
        };
        for part in parts.iter_mut() {
            writes.append(part);
        }
        writes.extend(later);
        stats.footprint_merging += merging.elapsed();
        BlockOutput {
            outputs,
            writes: WriteSet(writes),
        }
    }

    /// The block's result from a lane run of its body (`txns[..parallel_len]`): its output,
    /// or with barriers after it, those and the rest run on top ([`Self::after_barrier`]).
    fn finish<V: Vm, S: Storage>(
        &self,
        vm: &V,
        txns: &[V::Txn],
        parallel_len: usize,
        storage: &S,
        body: partition::Parts<V::Output>,
        mut stats: ExecStats,
    ) -> (BlockOutput<V::Output>, ExecStats) {
        if parallel_len == txns.len() {
            return (body.into_output(), stats);
        }
        stats.after_barrier = (txns.len() - parallel_len) as u64;
        let out = self.after_barrier(vm, txns, parallel_len, storage, body, &mut stats);
        (out, stats)
    }

    /// Whether to try home lanes for this block: not within [`HOMES_PAUSE`] blocks of an
    /// abandoned attempt.
    fn homes_ready(&self) -> bool {
        let pause = self.homes_pause.load(Ordering::Relaxed);
        if pause == 0 {
            return true;
        }
        self.homes_pause.store(pause - 1, Ordering::Relaxed);
        false
    }

    /// A block without a prologue.
    fn execute_body<V: Vm, S: Storage>(
        &self,
        vm: &V,
        txns: &[V::Txn],
        storage: &S,
    ) -> (BlockOutput<V::Output>, ExecStats) {
        let threads = self.threads();
        let min = self.config.min_parallel_txns;
        if (threads <= 1 && min > 0) || txns.len() < min || txns.len() >= u32::MAX as usize {
            return run_sequentially(vm, txns, storage);
        }
        // Barriers (end-of-block settlements) and what follows them run once everything before
        // them is committed.
        let parallel_len = txns
            .iter()
            .position(|t| vm.is_barrier(t))
            .unwrap_or(txns.len());
        if parallel_len < min {
            return run_sequentially(vm, txns, storage);
        }
        if self.config.fallback && self.predict_chain.load(Ordering::Relaxed) {
            return self.run_probed(vm, txns, storage, parallel_len);
        }
        if self.pool.current_thread_index().is_none() {
            // Called from outside the pool: run the block on one of its workers, so that the
            // serial steps between the parallel ones do not compete with idling workers for
            // the cores (a third runnable thread on two cores). The sequential paths above
            // stay on the caller's thread, where its caches are.
            return self.pool.install(|| self.execute_body(vm, txns, storage));
        }
        let body = &txns[..parallel_len];
        let barrier = parallel_len < txns.len();
        let mut home_abandoned = 0;
        if self.config.homes && self.homes_ready() {
            match homes::execute(self.pool, vm, body, storage, MAX_LANE_SHARE, barrier) {
                Homed::Done(parts, phases) => {
                    let stats = ExecStats {
                        executions: txns.len() as u64,
                        home_lanes: threads as u64,
                        footprint_planning: phases.planning,
                        footprint_merging: phases.merging,
                        ..ExecStats::default()
                    };
                    return self.finish(vm, txns, parallel_len, storage, parts, stats);
                }
                Homed::Abandoned => {
                    home_abandoned = 1;
                    self.homes_pause.store(HOMES_PAUSE, Ordering::Relaxed);
                }
                Homed::NotApplicable => {}
            }
        }
        let mut violations = 0;
        if self.config.footprints {
            match partition::execute(self.pool, vm, body, storage, MAX_LANE_SHARE, barrier) {
                Partitioned::Done(parts, groups, phases) => {
                    let stats = ExecStats {
                        executions: txns.len() as u64,
                        footprint_groups: groups as u64,
                        footprint_planning: phases.planning,
                        footprint_merging: phases.merging,
                        home_abandoned,
                        ..ExecStats::default()
                    };
                    return self.finish(vm, txns, parallel_len, storage, parts, stats);
                }
                Partitioned::Violated => violations = 1,
                Partitioned::Chain if self.config.fallback => {
                    // Nearly every transaction is in one group: nothing worth running in
                    // parallel, here or on the general engine. Run it sequentially and treat
                    // the next block as a chain too (it is probed, and the engine comes back
                    // when its dependencies thin out), as after a detected chain.
                    self.predict_chain.store(true, Ordering::Relaxed);
                    let (out, mut stats) = run_sequentially(vm, txns, storage);
                    stats.home_abandoned = home_abandoned;
                    return (out, stats);
                }
                Partitioned::Chain | Partitioned::NotApplicable => {}
            }
        }
        let mut workspace = self.workspace.lock();
        let Workspace { mv, slots, epoch } = &mut *workspace;
        *epoch += 1;
        if slots.len() < parallel_len {
            slots.resize_with(parallel_len, Slot::default);
        }
        let block = Block {
            vm,
            txns,
            storage,
            mv,
            scheduler: Scheduler::new(parallel_len),
            slots: &slots[..parallel_len],
            epoch: *epoch,
            outputs: (0..parallel_len).map(|_| Mutex::new(None)).collect(),
            conflicts: AtomicUsize::new(0),
            parallel_len,
            fallback_min_conflicts: self
                .config
                .fallback_min_conflicts
                .max(2 * threads * self.config.chunk),
            config: &self.config,
        };
        let mut stats = ExecStats {
            footprint_violations: violations,
            home_abandoned,
            ..ExecStats::default()
        };
        let mut engine_failed = false;
        for result in self.pool.broadcast(|_| {
            // A panic here is a bug in the engine, never in the `Vm` (those are caught per
            // transaction). Stop the other workers rather than leave them waiting for it.
            catch_unwind(AssertUnwindSafe(|| block.work())).inspect_err(|_| block.scheduler.halt())
        }) {
            match result {
                Ok(s) => stats.add(&s),
                Err(_) => engine_failed = true,
            }
        }
        let output = self.pool.install(|| {
            if engine_failed {
                // Discard whatever the workers left and fall back to the reference executor.
                block.mv.drain(0, storage);
                stats.sequential_from = Some(0);
                stats.engine_failures += 1;
                return sequential::execute_sequential(vm, txns, storage);
            }
            block.finish(&mut stats)
        });
        if stats.engine_failures == 0 && stats.sequential_from.is_some_and(|i| i < parallel_len) {
            self.predict_chain.store(true, Ordering::Relaxed);
        }
        (output, stats)
    }

    /// Runs a block sequentially (the previous one was a chain) and decides from its first
    /// transactions whether the next block goes back to the parallel engine: it does when
    /// fewer than 1 in 32 of them depend on one of the transactions that would be in flight
    /// beside them, the same rate below which the engine does not fall back.
    fn run_probed<V: Vm, S: Storage>(
        &self,
        vm: &V,
        txns: &[V::Txn],
        storage: &S,
        parallel_len: usize,
    ) -> (BlockOutput<V::Output>, ExecStats) {
        let probe = PROBE_TXNS.min(parallel_len);
        let window = self.threads() * self.config.chunk;
        let (output, close) = sequential::execute_probed(vm, txns, storage, probe, window);
        if close * 32 < probe {
            self.predict_chain.store(false, Ordering::Relaxed);
        }
        let stats = ExecStats {
            executions: txns.len() as u64,
            sequential_from: Some(0),
            predicted_chain: true,
            ..ExecStats::default()
        };
        (output, stats)
    }
}

/// Maps of writes over the base state (a prologue's writes; a block body's lanes under its
/// barriers), the first map holding a key winning.
struct Stacked<'a, S: ?Sized> {
    maps: &'a [(&'a dyn Layer, Option<&'a KeyFilter>)],
    base: &'a S,
}

impl<S: Storage + ?Sized> Storage for Stacked<'_, S> {
    fn get(&self, key: &Key) -> Option<Value> {
        for (map, filter) in self.maps {
            if filter.is_some_and(|f| !f.may_hold(key)) {
                continue;
            }
            if let Some(v) = map.written(key) {
                return v;
            }
        }
        self.base.get(key)
    }
}

/// The whole block on the calling thread, by the reference executor.
fn run_sequentially<V: Vm, S: Storage>(
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
) -> (BlockOutput<V::Output>, ExecStats) {
    let stats = ExecStats {
        executions: txns.len() as u64,
        sequential_from: Some(0),
        ..ExecStats::default()
    };
    (sequential::execute_sequential(vm, txns, storage), stats)
}

impl<V: Vm, S: Storage> Block<'_, V, S> {
    /// One worker: takes tasks until the block is done or the scheduler halts.
    fn work(&self) -> ExecStats {
        let mut stats = ExecStats::default();
        let mut scratch = Scratch::default();
        let sched = &self.scheduler;
        let mut follow_up: Option<Task> = None;
        let mut claim: Option<Claim> = None;
        let mut active = false;
        loop {
            let task = if let Some(task) = follow_up.take() {
                task
            } else {
                let next = match &mut claim {
                    Some(Claim::Execute(range)) => range.next().map(|i| sched.try_incarnate(i)),
                    Some(Claim::Validate(range)) => range.next().map(|i| sched.validation_task(i)),
                    None => None,
                };
                match next {
                    Some(Some(task)) => task,
                    // Not in the right state: skip, as a single claim would.
                    Some(None) => continue,
                    None => {
                        if sched.finished() {
                            break;
                        }
                        if !active {
                            sched.enter();
                            active = true;
                        }
                        claim = sched.claim(self.config.chunk);
                        if claim.is_none() {
                            sched.leave();
                            active = false;
                            sched.check_done();
                            if sched.finished() {
                                break;
                            }
                            sched.wait_for_work();
                        }
                        continue;
                    }
                }
            };
            if sched.finished() {
                break;
            }
            follow_up = match task {
                Task::Execute { txn, inc } => self.execute(txn, inc, &mut scratch, &mut stats),
                Task::Validate { txn, inc } => self.validate(txn, inc, &mut stats),
            };
        }
        if active {
            sched.leave();
        }
        stats
    }

    fn conflict(&self) {
        let conflicts = self.conflicts.fetch_add(1, Ordering::Relaxed) + 1;
        let started = self.scheduler.execution_cursor();
        if self.config.fallback
            && conflicts >= self.fallback_min_conflicts
            && started >= FALLBACK_MIN_STARTED
            && conflicts * 32 >= started
        {
            self.scheduler.halt();
        }
    }

    fn execute(
        &self,
        txn: u32,
        inc: u32,
        scratch: &mut Scratch,
        stats: &mut ExecStats,
    ) -> Option<Task> {
        let output = loop {
            scratch.clear();
            stats.executions += 1;
            let mut view = ParView {
                mv: self.mv,
                storage: self.storage,
                txn,
                scratch: &mut *scratch,
            };
            let txn_ref = &self.txns[txn as usize];
            match catch_unwind(AssertUnwindSafe(|| self.vm.execute(txn_ref, &mut view))) {
                Ok(Ok(output)) => break output,
                Ok(Err(Halt { blocking })) => {
                    stats.suspensions += 1;
                    self.conflict();
                    if self.scheduler.add_dependency(txn, blocking) {
                        return None;
                    }
                    // The dependency finished meanwhile: run again at once.
                }
                Err(payload) => {
                    scratch.discard_writes();
                    break self.vm.panic_output(txn_ref, &panic_message(&payload));
                }
            }
        };

        let mut folded: SmallVec<[(Key, WriteOp); 4]> = SmallVec::new();
        scratch.fold(&mut folded);
        let mut wrote_new_key = false;
        {
            let mut slot = self.slots[txn as usize].0.lock();
            if slot.epoch != self.epoch {
                slot.epoch = self.epoch;
                slot.writes.clear();
            }
            let mut now: SmallVec<[CellRef; 4]> = SmallVec::new();
            for (key, op) in &folded {
                let known = scratch.seen_cell(key);
                let cell = self.mv.write(key, known, txn, inc, op);
                wrote_new_key |= !slot.writes.contains(&cell);
                now.push(cell);
            }
            for old in slot.writes.iter() {
                if !now.contains(old) {
                    self.mv.remove(*old, txn);
                }
            }
            slot.writes = now;
            std::mem::swap(&mut slot.reads, &mut scratch.reads);
        }
        *self.outputs[txn as usize].lock() = Some(output);
        self.scheduler.finish_execution(txn, inc, wrote_new_key)
    }

    fn validate(&self, txn: u32, inc: u32, stats: &mut ExecStats) -> Option<Task> {
        stats.validations += 1;
        let slot = &self.slots[txn as usize].0;
        let valid = reads_hold(self.mv, self.storage, txn, &slot.lock().reads);
        let aborted = !valid && self.scheduler.try_validation_abort(txn, inc);
        if aborted {
            stats.aborts += 1;
            for cell in slot.lock().writes.iter() {
                self.mv.mark_estimate(*cell, txn);
            }
            self.conflict();
        }
        self.scheduler.finish_validation(txn, aborted)
    }

    /// Assembles the block's result once the workers stopped: all of it from the
    /// multi-version memory if the block completed, else the committed prefix from there and
    /// the rest by sequential execution.
    fn finish(&self, stats: &mut ExecStats) -> BlockOutput<V::Output> {
        let n = self.txns.len();
        let mut committed = if self.scheduler.is_done() {
            self.parallel_len
        } else {
            self.committed_prefix()
        };
        let mut outputs = Vec::with_capacity(n);
        for (i, slot) in self.outputs[..committed].iter().enumerate() {
            match slot.lock().take() {
                Some(o) => outputs.push(o),
                // Unreachable for a committed transaction; a shorter prefix is still correct.
                None => {
                    committed = i;
                    break;
                }
            }
        }
        let writes = self.mv.drain(committed as u32, self.storage);
        if committed == n {
            return BlockOutput {
                outputs,
                writes: WriteSet(writes),
            };
        }
        // Finish sequentially on top of the committed prefix's writes: after a fallback, or the
        // barriers at the end of the block.
        if committed < self.parallel_len {
            stats.sequential_from = Some(committed);
        } else {
            stats.after_barrier = (n - committed) as u64;
        }
        let mut overlay = key_map_with_capacity(writes.len() + (n - committed) * 4);
        overlay.extend(writes);
        sequential::run(
            self.vm,
            &self.txns[committed..],
            self.storage,
            &mut overlay,
            &mut outputs,
        );
        BlockOutput {
            outputs,
            writes: WriteSet(overlay.into_iter().collect()),
        }
    }

    /// The longest prefix of transactions that are executed and whose reads still hold, checked
    /// in block order.
    fn committed_prefix(&self) -> usize {
        for (i, slot) in self.slots.iter().enumerate() {
            let txn = i as u32;
            if self.scheduler.executed_incarnation(txn).is_none() {
                return i;
            }
            if !reads_hold(self.mv, self.storage, txn, &slot.0.lock().reads) {
                return i;
            }
        }
        self.slots.len()
    }
}
