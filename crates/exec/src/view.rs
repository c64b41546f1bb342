//! The state view of one incarnation in the parallel engine: reads go through the
//! transaction's own writes, then the multi-version memory, then the base storage, and are
//! recorded for validation; writes are buffered in an operation log until the incarnation
//! finishes.
//!
//! Invariants:
//! - Every value the transaction observed from outside itself has a [`ReadRecord`] that
//!   validation can re-check: a plain read by where it came from (or, for summed deltas, by
//!   value); a `try_sub` by its outcome only.
//! - The log is append-only; `rollback` truncates it and keeps the read records.

use smallvec::SmallVec;

use crate::mvmemory::{Blocked, CellRef, MvMemory, Origin, WriteOp};
use crate::types::{num_of, Checkpoint, Halt, Key, StateResult, StateView, Storage, Value};

/// What validation re-checks for one read.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// A plain read: the same origin, or for summed deltas the same number.
    Exact(Option<u128>),
    /// A `try_sub`: `value + before >= amount` must still be `ok`.
    Threshold {
        before: u128,
        amount: u128,
        ok: bool,
    },
}

/// One read of a key from outside the transaction.
#[derive(Debug, Clone)]
pub(crate) struct ReadRecord {
    pub(crate) cell: CellRef,
    pub(crate) origin: Origin,
    pub(crate) check: Check,
}

/// A key this incarnation read from outside itself: its cell, and what it saw there.
pub(crate) type Seen = (Key, CellRef, Origin, Option<Value>);

pub(crate) type ReadSet = Vec<ReadRecord>;
pub(crate) type OpLog = Vec<(Key, WriteOp)>;

pub(crate) struct ParView<'a, S> {
    pub(crate) mv: &'a MvMemory,
    pub(crate) storage: &'a S,
    pub(crate) txn: u32,
    pub(crate) reads: &'a mut ReadSet,
    pub(crate) log: &'a mut OpLog,
    /// Values this incarnation already read from outside itself: a key is looked up in the
    /// multi-version memory once per incarnation, and the transaction sees one value of it.
    pub(crate) seen: &'a mut Vec<Seen>,
}

/// The transaction's own effect on a key so far: `Some(value)` if it set it (deltas after the
/// set applied), else the sum of its deltas (zero if none).
enum Local {
    Set(Option<Value>),
    Deltas { sum: u128, any: bool },
}

impl<S: Storage> ParView<'_, S> {
    fn local(&self, key: &Key) -> Local {
        let mut sum: u128 = 0;
        let mut any = false;
        for (k, op) in self.log.iter().rev() {
            if k != key {
                continue;
            }
            match op {
                WriteOp::Delta(d) => {
                    sum = sum.wrapping_add(*d);
                    any = true;
                }
                WriteOp::Set(v) => {
                    return Local::Set(if any {
                        Some(Value::Num(num_of(v).wrapping_add(sum)))
                    } else {
                        v.clone()
                    });
                }
            }
        }
        Local::Deltas { sum, any }
    }

    fn outside(&mut self, key: &Key) -> StateResult<(CellRef, Origin, Option<Value>)> {
        if let Some((_, cell, origin, value)) = self.seen.iter().find(|(k, ..)| k == key) {
            return Ok((*cell, *origin, value.clone()));
        }
        match self.mv.read(key, self.txn, self.storage) {
            Ok((cell, origin, value)) => {
                self.seen.push((*key, cell, origin, value.clone()));
                Ok((cell, origin, value))
            }
            Err(Blocked(blocking)) => Err(Halt { blocking }),
        }
    }
}

impl<S: Storage> StateView for ParView<'_, S> {
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>> {
        let (sum, any) = match self.local(key) {
            Local::Set(v) => return Ok(v),
            Local::Deltas { sum, any } => (sum, any),
        };
        let (cell, origin, value) = self.outside(key)?;
        let exact = match origin {
            Origin::Resolved => Some(num_of(&value)),
            _ => None,
        };
        self.reads.push(ReadRecord {
            cell,
            origin,
            check: Check::Exact(exact),
        });
        Ok(if any {
            Some(Value::Num(num_of(&value).wrapping_add(sum)))
        } else {
            value
        })
    }

    fn write(&mut self, key: Key, value: Option<Value>) {
        self.log.push((key, WriteOp::Set(value)));
    }

    fn add(&mut self, key: Key, delta: u128) {
        self.log.push((key, WriteOp::Delta(delta)));
    }

    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool> {
        let ok = match self.local(&key) {
            Local::Set(v) => num_of(&v) >= amount,
            Local::Deltas { sum, .. } => {
                let (cell, origin, value) = self.outside(&key)?;
                let ok = num_of(&value).wrapping_add(sum) >= amount;
                self.reads.push(ReadRecord {
                    cell,
                    origin,
                    check: Check::Threshold {
                        before: sum,
                        amount,
                        ok,
                    },
                });
                ok
            }
        };
        if ok {
            self.log
                .push((key, WriteOp::Delta(0u128.wrapping_sub(amount))));
        }
        Ok(ok)
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.log.len())
    }

    fn rollback(&mut self, checkpoint: Checkpoint) {
        self.log.truncate(checkpoint.0);
    }
}

/// Whether every recorded read of transaction `txn` still holds. Consecutive records of one
/// cell (a fee debit then a transfer debit of the same balance) share one lookup.
pub(crate) fn reads_hold<S: Storage>(
    mv: &MvMemory,
    storage: &S,
    txn: u32,
    reads: &ReadSet,
) -> bool {
    let mut last: Option<(CellRef, Origin)> = None;
    for read in reads {
        let now = match last {
            Some((cell, origin)) if cell == read.cell => origin,
            _ => match mv.origin(read.cell, txn) {
                Ok(origin) => origin,
                Err(Blocked(_)) => return false,
            },
        };
        last = Some((read.cell, now));
        if !still_valid(mv, storage, txn, read, now) {
            return false;
        }
    }
    true
}

/// Whether a recorded read still holds for transaction `txn`, given where a read of its cell
/// would come from now.
fn still_valid<S: Storage>(
    mv: &MvMemory,
    storage: &S,
    txn: u32,
    read: &ReadRecord,
    now: Origin,
) -> bool {
    if now == read.origin && now != Origin::Resolved {
        return true;
    }
    match read.check {
        // A plain read from storage or a version: a different origin means a different write.
        Check::Exact(None) => false,
        Check::Exact(Some(number)) => match mv.read_at(read.cell, txn, storage) {
            Ok((_, value)) => matches!(value, Some(Value::Num(n)) if n == number),
            Err(_) => false,
        },
        Check::Threshold { before, amount, ok } => match mv.read_at(read.cell, txn, storage) {
            Ok((_, value)) => (num_of(&value).wrapping_add(before) >= amount) == ok,
            Err(_) => false,
        },
    }
}

/// Folds an incarnation's operation log into one operation per key, in first-write order.
pub(crate) fn fold_log(log: &OpLog, out: &mut SmallVec<[(Key, WriteOp); 4]>) {
    out.clear();
    for (key, op) in log {
        match out.iter_mut().find(|(k, _)| k == key) {
            None => out.push((*key, op.clone())),
            Some((_, prev)) => {
                *prev = match (&*prev, op) {
                    (_, WriteOp::Set(v)) => WriteOp::Set(v.clone()),
                    (WriteOp::Set(v), WriteOp::Delta(d)) => {
                        WriteOp::Set(Some(Value::Num(num_of(v).wrapping_add(*d))))
                    }
                    (WriteOp::Delta(a), WriteOp::Delta(b)) => WriteOp::Delta(a.wrapping_add(*b)),
                };
            }
        }
    }
}
