//! The collaborative scheduler: hands out execution and validation tasks, lowest index first,
//! from two atomic cursors, and tracks each transaction's incarnation and status.
//!
//! This follows the Block-STM paper (Gelashvili et al., 2022, Algorithm 4) with one change of
//! bookkeeping: `try_incarnate` never touches the active-task counter; its callers do, so every
//! path pairs one increment with one decrement (or hands the task on).
//!
//! Invariants:
//! - `num_active` counts tasks held by workers; the block is done when both cursors are past the
//!   end, no task is held, and no cursor moved back while that was being checked
//!   (`decrease_cnt`).
//! - A transaction's status moves ReadyToExecute → Executing → Executed → Aborting →
//!   ReadyToExecute (next incarnation), or Executing → Aborting when it suspends on a
//!   dependency; each move happens under that transaction's lock.
//! - A suspended transaction sits in exactly one dependency list, of a transaction that is not
//!   Executed; it is resumed when that one finishes executing.
//! - Idle workers sleep on a condition variable and are woken whenever a cursor moves back or the
//!   block is done: no busy spinning.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

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
    /// Nothing to do right now, but the block is not done.
    Wait,
    /// The block is done (or the scheduler was halted).
    Done,
}

pub(crate) struct Scheduler {
    n: usize,
    execution_idx: AtomicUsize,
    validation_idx: AtomicUsize,
    decrease_cnt: AtomicUsize,
    num_active: AtomicUsize,
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
            execution_idx: AtomicUsize::new(0),
            validation_idx: AtomicUsize::new(0),
            decrease_cnt: AtomicUsize::new(0),
            num_active: AtomicUsize::new(0),
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

    /// Sleeps until a cursor moves back or the block is done.
    pub(crate) fn wait_for_work(&self) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        {
            let mut guard = self.sleep_lock.lock();
            if !self.work_available() {
                // The timeout only bounds the damage of a missed wake-up; wake-ups are not
                // missed (see `notify`), so this rarely expires.
                self.wake.wait_for(&mut guard, Duration::from_millis(2));
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

    fn check_done(&self) {
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

    /// Moves `txn` from ReadyToExecute to Executing, if it is ready.
    fn try_incarnate(&self, txn: usize) -> Option<Task> {
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

    fn next_version_to_execute(&self) -> Option<Task> {
        if self.execution_idx.load(Ordering::SeqCst) >= self.n {
            self.check_done();
            return None;
        }
        self.num_active.fetch_add(1, Ordering::SeqCst);
        let idx = self.execution_idx.fetch_add(1, Ordering::SeqCst);
        let task = self.try_incarnate(idx);
        if task.is_none() {
            self.num_active.fetch_sub(1, Ordering::SeqCst);
        }
        task
    }

    fn next_version_to_validate(&self) -> Option<Task> {
        if self.validation_idx.load(Ordering::SeqCst) >= self.n {
            self.check_done();
            return None;
        }
        self.num_active.fetch_add(1, Ordering::SeqCst);
        let idx = self.validation_idx.fetch_add(1, Ordering::SeqCst);
        if idx < self.n {
            let state = self.txns[idx].lock();
            if state.status == Status::Executed {
                return Some(Task::Validate {
                    txn: idx as u32,
                    inc: state.incarnation,
                });
            }
        }
        self.num_active.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// The next task: a validation if the validation cursor is behind the execution cursor,
    /// else an execution.
    pub(crate) fn next_task(&self) -> Task {
        loop {
            if self.finished() {
                return Task::Done;
            }
            let v = self.validation_idx.load(Ordering::SeqCst);
            let e = self.execution_idx.load(Ordering::SeqCst);
            if v >= self.n && e >= self.n {
                self.check_done();
                return if self.finished() {
                    Task::Done
                } else {
                    Task::Wait
                };
            }
            if v < e {
                if let Some(task) = self.next_version_to_validate() {
                    return task;
                }
            } else if let Some(task) = self.next_version_to_execute() {
                return task;
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
        self.num_active.fetch_sub(1, Ordering::SeqCst);
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
        self.num_active.fetch_sub(1, Ordering::SeqCst);
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
                if let Some(task) = self.try_incarnate(idx) {
                    return Some(task);
                }
            }
        }
        self.num_active.fetch_sub(1, Ordering::SeqCst);
        None
    }
}
