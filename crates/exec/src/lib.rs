//! # Parabit's execution engine
//!
//! This crate runs a block of transactions on every core and returns exactly what running them
//! one after another would: the same per-transaction outputs and the same final write set, bit
//! for bit, on any number of threads. It knows nothing of DeFi: it is generic over a [`Vm`]
//! that executes one transaction against a [`StateView`].
//!
//! ## The algorithm (Block-STM, with deltas)
//!
//! Optimistic multi-version execution, after Gelashvili et al., *Block-STM* (PPoPP 2023):
//!
//! 1. **Speculate.** Workers take transactions lowest index first and execute them against a
//!    *multi-version memory*: for every key, the value each transaction of the block wrote,
//!    ordered by index. Transaction `i` reads the highest write below `i`, or the base state.
//!    Every read is recorded (its *read set*); writes are buffered and published when the
//!    incarnation ends.
//! 2. **Validate.** After a transaction executes, it is validated: each recorded read is looked
//!    up again. If a lower transaction has since written something else there, the incarnation
//!    is aborted, its writes become ESTIMATE markers, and it is re-executed. Transactions
//!    above it are re-validated.
//! 3. **Wait, don't spin.** A read that meets an ESTIMATE (a value about to be rewritten) stops
//!    the transaction: it is put on the blocking transaction's dependency list and the worker
//!    moves on. When the blocking transaction finishes, its dependents are resumed.
//! 4. **Commit in order.** When the scheduler's two cursors (next to execute, next to validate)
//!    have passed the end with no task in flight, every transaction is executed and valid; the
//!    outputs are taken in block order and the write set is read off the multi-version memory.
//!
//! **Deltas.** Besides `read` and `write`, a transaction may `add(key, delta)` and
//! `try_sub(key, amount)`. An `add` is stored as a delta entry, not a value, and reads nothing,
//! so any number of transactions crediting one hot account (a fee collector, a pool total) run
//! in parallel without conflict. A `try_sub` reads the value under it, but records only its
//! *outcome* (was there enough?): it is re-run only if a change below flips that outcome. A plain
//! `read` of a key with pending deltas sums them (and so depends on them). All numeric
//! operations wrap modulo 2^128, so deltas commute exactly.
//!
//! **Adaptive fallback.** Tiny blocks (and single-thread pools) run sequentially. When a block
//! turns out to be a dependency chain (conflicts reach 1 in 32 of the transactions started, past a start-up burst), the workers
//! stop, the longest executed-and-valid prefix is re-validated in order, and the rest of the
//! block runs sequentially on top of it, instead of burning every core on re-executions.
//! The next block is not thrown at the workers again: it runs sequentially while its first
//! 256 transactions are watched for reads of what a transaction less than one window (threads ×
//! chunk) before them wrote; parallel execution resumes with the block after one where such
//! close dependencies are rarer than 1 in 32. A stream of chains thus costs one detection, not
//! one per block.
//!
//! **Prologue and barriers.** Two scheduling hints from the `Vm`, which never change results.
//! Leading *prologue* transactions (begin-of-block hooks that the whole block reads, such as
//! interest accrual) run first, and the rest of the block runs on top of their writes, so nothing
//! reads those keys before they are written. A *barrier* (an end-of-block settlement that reads
//! everything the block did) is not run speculatively: the workers execute the block up to the
//! first barrier, and the barrier and what follows it run on top of that committed state. On
//! the footprint path (below), what follows the barriers is run as a block of its own, so work
//! a barrier splits off (paying a settled auction's orders in chunks) is parallel again, and the
//! body's writes stay in the workers' maps, read through where they are and filtered once at
//! the end, rather than copied into one map and back.
//!
//! **Panics.** A panic inside `Vm::execute` fails that transaction only: its writes are
//! discarded and the `Vm` supplies its output. No lock is held while the `Vm` runs.
//!
//! **Footprints.** Block-STM pays for its generality on every key access (multi-version
//! lookups, read sets, validation), which costs more than a one-microsecond transfer itself.
//! When a `Vm` can say beforehand which keys a transaction may touch ([`Vm::footprint`]), the
//! engine first tries a cheaper plan: group the transactions by shared keys (keys only read,
//! or only added to, share nothing), deal the groups to the workers, and run each worker's
//! transactions as a plain sequential run; pure-delta keys are summed at the end. Keys declared
//! as `subs` (only added to and `try_sub`ed from, like a vault that pays out) share nothing
//! either: each `try_sub` must succeed against the base value plus its lane's own changes, and
//! the block's total subtractions must fit in the base value, which makes every `try_sub`
//! succeed in block order too; otherwise the attempt is dropped. The footprint may read the
//! block's base state (the markets an account entered). Every state
//! operation is checked against the footprint, and one outside it drops the attempt for the
//! general engine, so a wrong footprint costs time, never correctness. A block whose largest
//! group would keep one worker busy for most of it goes to the general engine.
//!
//! **Home lanes.** Cheaper still, when the state belongs to accounts: if every transaction
//! of a block acts for one account ([`Vm::homes`], a transfer's sender) and the `Vm` says
//! which account owns each key ([`Vm::key_home`]), there is nothing to plan. The homes are
//! split evenly between the workers by their ids; each worker picks its transactions out of
//! the block and runs them in order over its own overlay, doing anything to its own homes'
//! keys and only `add`s to others' (a recipient, the fee account), which it sums apart. A
//! key that a lane *exposed* (read, overwrote, failed to `try_sub` from) must receive no
//! other lane's deltas; what a lane only added to and successfully subtracted from can, since
//! credits only raise it. A lane may also *borrow* a key it does not own: read it from the
//! base state, which is exact if nothing in the block changes it; and `try_sub` from it, as
//! long as every lane's subtractions fit in its value together and its owner leaves it alone
//! (a vault that many pay out of). Then each worker checks
//! the keys borrowed from it and folds the deltas aimed at its keys into its own overlay.
//! Anything outside those rules abandons the attempt for the footprint plan (and pauses home
//! lanes for a few blocks), so a wrong home costs time, never correctness. A block with
//! barriers runs its body in home lanes and the rest on top of the lanes' overlays, as on
//! the footprint path. A transaction may act for several homes (a swap: its sender and its
//! pool); then the block is planned first, by a union-find over the homes' ids rather than
//! over every key, and each group of homes goes to one lane.
//!
//! The sequential executor ([`execute_sequential`]) runs the same `Vm` over a plain overlay. It
//! is the reference: property tests check that the parallel engine equals it on random blocks.
//!
//! ## Where things are
//!
//! | file | what it holds |
//! |---|---|
//! | `types.rs` | [`Key`] (inline bytes, hash computed once), [`Value`], [`StateView`], [`Vm`], [`Storage`], [`WriteSet`] |
//! | `sequential.rs` | the reference executor, also used for fallback |
//! | `mvmemory.rs` | the sharded multi-version memory, delta resolution, write-set materialisation |
//! | `scheduler.rs` | execution/validation cursors, transaction status, dependencies, idle sleep |
//! | `view.rs` | the per-incarnation view: read recording, write log, validation of a read |
//! | `homes.rs` | home lanes: transactions dealt by their account, deltas folded across lanes |
//! | `partition.rs` | footprint-partitioned execution: grouping by declared keys, lanes, merge |
//! | `executor.rs` | [`ParallelExecutor`]: the worker loop, the fallback, assembling the result |
//!
//! The engine does no I/O; its workers are the threads of a rayon pool given by the caller. A
//! parallel run called from outside that pool moves onto one of its workers, so that the serial
//! steps between the parallel ones (grouping, merging) do not share the cores with the caller
//! and idling workers; the sequential paths stay on the caller's thread. [`ExecStats`] times the
//! footprint path's planning and merging, which `parabit bench` reports as shares of its wall
//! time: on two cores they, not the workers' share of the block, are what stands between the
//! engine and the machine's ceiling (`BENCHMARKS.md`).

mod executor;
mod homes;
mod mvmemory;
mod partition;
mod scheduler;
mod sequential;
mod types;
mod view;

pub use executor::{ExecConfig, ExecStats, ParallelExecutor};
pub use sequential::execute_sequential;
pub use types::{
    key_map_with_capacity, num_of, BlockOutput, Checkpoint, Footprint, Halt, Homes, Key, KeyHasher,
    KeyMap, KeyTooLong, StateResult, StateView, Storage, Value, Vm, WriteSet, MAX_KEY_LEN,
};
