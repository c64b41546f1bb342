//! The collaborative scheduler: hands out execution and validation tasks, lowest index first,
//! from two atomic cursors, and tracks each transaction's incarnation and status.
//!
//! This follows the Block-STM paper (Gelashvili et al., 2022, Algorithm 4) with two changes of
//! bookkeeping, both to cut traffic on the shared cursors (each atomic read-modify-write of a
//! line another core just wrote costs about as much as executing a small transaction):
//! - a worker claims a *chunk* of consecutive indices from a cursor with one `fetch_add`, and
//!   works through it (an index whose transaction is not in the right state is skipped, exactly
//!   as a single claim of it would be);
//! - `num_active` counts *workers* that hold any claimed work, not tasks: a worker enters before
//!   claiming and leaves only when it has nothing left, so follow-up tasks and dependencies
//!   need no counter updates.
//!
//! Invariants:
//! - The block is done when both cursors are past the end, no worker holds work, and no cursor
//!   moved back while that was being checked (`decrease_cnt`).
//! - A transaction's status moves ReadyToExecute → Executing → Executed → Aborting →
//!   ReadyToExecute (next incarnation), or Executing → Aborting when it suspends on a
//!   dependency; each move happens under that transaction's lock.
//! - A suspended transaction sits in exactly one dependency list, of a transaction that is not
//!   Executed; it is resumed when that one finishes executing.
//! - Idle workers sleep on a condition variable (after a bounded spin of a few microseconds) and
//!   are woken whenever a cursor moves back or the block is done: no unbounded busy spinning.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    ReadyToExecute,
    Executing,
    Executed,
    Aborting,
}

struct TxnState {
    incarnation: u32,
    status: Status,
    dependents: SmallVec<[u32; 2]>,
}

/// A unit of work for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// Execute this incarnation.
    Execute { txn: u32, inc: u32 },
    /// Validate this incarnation's reads.
    Validate { txn: u32, inc: u32 },
}

/// A chunk of consecutive indices claimed from one cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Try to execute each.
    Execute(Range<usize>),
    /// Try to validate each.
    Validate(Range<usize>),
}

pub(crate) struct Scheduler {
    n: usize,
    execution_idx: CachePadded<AtomicUsize>,
    validation_idx: CachePadded<AtomicUsize>,
    decrease_cnt: CachePadded<AtomicUsize>,
    num_active: CachePadded<AtomicUsize>,
    done: AtomicBool,
    halted: AtomicBool,
    txns: Vec<Mutex<TxnState>>,
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

impl Scheduler {
    pub(crate) fn new(n: usize) -> Scheduler {
        Scheduler {
            n,
            execution_idx: CachePadded::new(AtomicUsize::new(0)),
            validation_idx: CachePadded::new(AtomicUsize::new(0)),
            decrease_cnt: CachePadded::new(AtomicUsize::new(0)),
            num_active: CachePadded::new(AtomicUsize::new(0)),
            done: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            txns: (0..n)
                .map(|_| {
                    Mutex::new(TxnState {
                        incarnation: 0,
                        status: Status::ReadyToExecute,
                        dependents: SmallVec::new(),
                    })
                })
                .collect(),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Whether the block is done or the scheduler was halted.
    pub(crate) fn finished(&self) -> bool {
        self.done.load(Ordering::Acquire) || self.halted.load(Ordering::Acquire)
    }

    /// Whether every transaction is executed and validated.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Stops handing out tasks: every worker returns at its next request.
    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::Release);
        self.notify();
    }

    /// How far the execution cursor has gone: an upper bound on incarnations started.
    pub(crate) fn execution_cursor(&self) -> usize {
        self.execution_idx.load(Ordering::Relaxed)
    }

    /// Whether transaction `txn`'s latest incarnation is executed (used after the workers
    /// stopped, to find the committed prefix).
    pub(crate) fn executed_incarnation(&self, txn: u32) -> Option<u32> {
        let state = self.txns[txn as usize].lock();
        (state.status == Status::Executed).then_some(state.incarnation)
    }

    fn notify(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.sleep_lock.lock();
            self.wake.notify_all();
        }
    }

    fn work_available(&self) -> bool {
        self.finished()
            || self.execution_idx.load(Ordering::SeqCst) < self.n
            || self.validation_idx.load(Ordering::SeqCst) < self.n
    }

    /// Waits until a cursor moves back or the block is done: a few rounds of spinning and
    /// yielding first (most waits end within microseconds, when the other workers finish the
    /// transactions they hold), then sleeping on the condition variable, so a worker with
    /// nothing to do for long burns no CPU.
    pub(crate) fn wait_for_work(&self) {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if self.work_available() {
                return;
            }
            backoff.snooze();
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        {
            let mut guard = self.sleep_lock.lock();
            if !self.work_available() {
                // The timeout only bounds the damage of a missed wake-up; wake-ups are not
                // missed (see `notify`), so this rarely expires.
                self.wake.wait_for(&mut guard, Duration::from_micros(200));
            }
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    fn decrease_execution_idx(&self, target: usize) {
        if self.execution_idx.fetch_min(target, Ordering::SeqCst) > target {
            self.decrease_cnt.fetch_add(1, Ordering::SeqCst);
            self.notify();
        }
    }

    fn decrease_validation_idx(&self, target: usize) {
        if self.validation_idx.fetch_min(target, Ordering::SeqCst) > target {
            self.decrease_cnt.fetch_add(1, Ordering::SeqCst);
            self.notify();
        }
    }

    /// Declares the block done if it is.
    pub(crate) fn check_done(&self) {
        let observed = self.decrease_cnt.load(Ordering::SeqCst);
        if self.execution_idx.load(Ordering::SeqCst) >= self.n
            && self.validation_idx.load(Ordering::SeqCst) >= self.n
            && self.num_active.load(Ordering::SeqCst) == 0
            && observed == self.decrease_cnt.load(Ordering::SeqCst)
        {
            self.done.store(true, Ordering::Release);
            self.notify();
        }
    }

    /// A worker is about to claim work: it counts as active until [`Scheduler::leave`].
    pub(crate) fn enter(&self) {
        self.num_active.fetch_add(1, Ordering::SeqCst);
    }

    /// A worker holds no work any more.
    pub(crate) fn leave(&self) {
        self.num_active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Moves `txn` from ReadyToExecute to Executing, if it is ready.
    pub(crate) fn try_incarnate(&self, txn: usize) -> Option<Task> {
        if txn >= self.n {
            return None;
        }
        let mut state = self.txns[txn].lock();
        if state.status == Status::ReadyToExecute {
            state.status = Status::Executing;
            Some(Task::Execute {
                txn: txn as u32,
                inc: state.incarnation,
            })
        } else {
            None
        }
    }

    /// The validation of `txn`'s latest incarnation, if it is executed.
    pub(crate) fn validation_task(&self, txn: usize) -> Option<Task> {
        if txn >= self.n {
            return None;
        }
        let state = self.txns[txn].lock();
        (state.status == Status::Executed).then_some(Task::Validate {
            txn: txn as u32,
            inc: state.incarnation,
        })
    }

    /// Claims up to `chunk` indices: validations if the validation cursor is behind the
    /// execution cursor, else executions. `None` when both cursors are past the end. The caller
    /// must have entered.
    pub(crate) fn claim(&self, chunk: usize) -> Option<Claim> {
        loop {
            let v = self.validation_idx.load(Ordering::SeqCst);
            let e = self.execution_idx.load(Ordering::SeqCst);
            if v >= self.n && e >= self.n {
                return None;
            }
            if v < e {
                // Validations only up to the execution cursor: beyond it nothing is executed.
                let want = chunk.min(e - v).max(1);
                let start = self.validation_idx.fetch_add(want, Ordering::SeqCst);
                if start < self.n {
                    return Some(Claim::Validate(start..(start + want).min(self.n)));
                }
            } else {
                let start = self.execution_idx.fetch_add(chunk, Ordering::SeqCst);
                if start < self.n {
                    return Some(Claim::Execute(start..(start + chunk).min(self.n)));
                }
            }
        }
    }

    /// Suspends `txn` until `blocking` has executed. Returns false if `blocking` already has
    /// (then `txn` should simply re-execute).
    pub(crate) fn add_dependency(&self, txn: u32, blocking: u32) -> bool {
        debug_assert!(blocking < txn);
        {
            let mut blocker = self.txns[blocking as usize].lock();
            if blocker.status == Status::Executed {
                return false;
            }
            // Lock order: lower index first.
            let mut state = self.txns[txn as usize].lock();
            state.status = Status::Aborting;
            drop(state);
            blocker.dependents.push(txn);
        }
        true
    }

    fn set_ready_status(&self, txn: usize) {
        let mut state = self.txns[txn].lock();
        state.incarnation += 1;
        state.status = Status::ReadyToExecute;
    }

    /// Records that incarnation `inc` of `txn` executed; resumes its dependents and returns a
    /// follow-up validation task if one is due.
    pub(crate) fn finish_execution(&self, txn: u32, inc: u32, wrote_new_key: bool) -> Option<Task> {
        let dependents = {
            let mut state = self.txns[txn as usize].lock();
            debug_assert_eq!(state.incarnation, inc);
            state.status = Status::Executed;
            std::mem::take(&mut state.dependents)
        };
        if let Some(min) = dependents.iter().min() {
            for &d in &dependents {
                self.set_ready_status(d as usize);
            }
            self.decrease_execution_idx(*min as usize);
        }
        let idx = txn as usize;
        if self.validation_idx.load(Ordering::SeqCst) > idx {
            if wrote_new_key {
                self.decrease_validation_idx(idx);
            } else {
                return Some(Task::Validate { txn, inc });
            }
        }
        None
    }

    /// Claims the right to abort incarnation `inc` of `txn` (only one validator gets it).
    pub(crate) fn try_validation_abort(&self, txn: u32, inc: u32) -> bool {
        let mut state = self.txns[txn as usize].lock();
        if state.incarnation == inc && state.status == Status::Executed {
            state.status = Status::Aborting;
            true
        } else {
            false
        }
    }

    /// Finishes a validation; after an abort, schedules revalidation of the transactions after
    /// `txn` and returns the re-execution of `txn` if the execution cursor has passed it.
    pub(crate) fn finish_validation(&self, txn: u32, aborted: bool) -> Option<Task> {
        if aborted {
            let idx = txn as usize;
            self.set_ready_status(idx);
            self.decrease_validation_idx(idx + 1);
            if self.execution_idx.load(Ordering::SeqCst) > idx {
                return self.try_incarnate(idx);
            }
        }
        None
    }
}
