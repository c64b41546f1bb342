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
use crate::types::{
    key_map_with_capacity, num_of, Checkpoint, Halt, Key, KeyMap, StateResult, StateView, Storage,
    Value,
};

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

/// Logs longer than this get a per-key index, so that a transaction touching many keys (an
/// end-of-block settlement paying thousands of orders) stays linear, not quadratic.
const LONG: usize = 24;

/// One worker's buffers for the incarnation it is executing, reused from one to the next.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Reads from outside the transaction, for validation.
    pub(crate) reads: ReadSet,
    /// Writes, adds and successful subtractions, in order.
    log: OpLog,
    /// Values already read from outside: a key is looked up in the multi-version memory once
    /// per incarnation, and the transaction sees one value of it.
    seen: Vec<Seen>,
    /// The log folded per key, kept once the log is long.
    local: Option<KeyMap<Local>>,
    /// Positions in `seen`, kept once it is long.
    seen_index: Option<KeyMap<usize>>,
}

impl Scratch {
    /// Empties every buffer for a new incarnation.
    pub(crate) fn clear(&mut self) {
        self.reads.clear();
        self.log.clear();
        self.seen.clear();
        self.local = None;
        self.seen_index = None;
    }

    /// Drops the writes (a panicked incarnation's), keeping the reads.
    pub(crate) fn discard_writes(&mut self) {
        self.log.clear();
        self.local = None;
    }

    /// The cell of a key this incarnation read, if it did.
    pub(crate) fn seen_cell(&self, key: &Key) -> Option<CellRef> {
        self.seen_position(key).map(|i| self.seen[i].1)
    }

    fn seen_position(&self, key: &Key) -> Option<usize> {
        match &self.seen_index {
            Some(index) => index.get(key).copied(),
            None => self.seen.iter().position(|(k, ..)| k == key),
        }
    }

    fn remember(&mut self, seen: Seen) {
        let key = seen.0;
        self.seen.push(seen);
        match &mut self.seen_index {
            Some(index) => {
                index.insert(key, self.seen.len() - 1);
            }
            None if self.seen.len() > LONG => {
                let mut index = key_map_with_capacity(self.seen.len() * 2);
                for (i, (k, ..)) in self.seen.iter().enumerate() {
                    index.insert(*k, i);
                }
                self.seen_index = Some(index);
            }
            None => {}
        }
    }

    fn push(&mut self, key: Key, op: WriteOp) {
        if let Some(local) = &mut self.local {
            let now = match local.get(&key) {
                None => Local::Deltas { sum: 0, any: false },
                Some(l) => l.clone(),
            };
            local.insert(key, now.then(&op));
        }
        self.log.push((key, op));
        if self.local.is_none() && self.log.len() > LONG {
            self.index_log();
        }
    }

    fn index_log(&mut self) {
        let mut local: KeyMap<Local> = key_map_with_capacity(self.log.len() * 2);
        for (key, op) in &self.log {
            let now = local
                .remove(key)
                .unwrap_or(Local::Deltas { sum: 0, any: false });
            local.insert(*key, now.then(op));
        }
        self.local = Some(local);
    }

    /// The transaction's own effect on `key` so far.
    fn local(&self, key: &Key) -> Local {
        if let Some(local) = &self.local {
            return local
                .get(key)
                .cloned()
                .unwrap_or(Local::Deltas { sum: 0, any: false });
        }
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

    fn rollback(&mut self, len: usize) {
        self.log.truncate(len);
        if self.local.is_some() {
            self.local = None;
            if self.log.len() > LONG {
                self.index_log();
            }
        }
    }

    /// Folds the log into one operation per key.
    pub(crate) fn fold(&self, out: &mut SmallVec<[(Key, WriteOp); 4]>) {
        out.clear();
        if let Some(local) = &self.local {
            out.extend(local.iter().map(|(k, l)| (*k, l.as_op())));
            return;
        }
        for (key, op) in &self.log {
            match out.iter_mut().find(|(k, _)| k == key) {
                None => out.push((*key, op.clone())),
                Some((_, prev)) => *prev = Local::from_op(prev).then(op).as_op(),
            }
        }
    }
}

pub(crate) struct ParView<'a, S> {
    pub(crate) mv: &'a MvMemory,
    pub(crate) storage: &'a S,
    pub(crate) txn: u32,
    pub(crate) scratch: &'a mut Scratch,
}

/// The transaction's own effect on a key so far: the value if it set it (deltas after the
/// set applied), else the sum of its deltas (`any`: whether there were some).
#[derive(Clone)]
enum Local {
    Set(Option<Value>),
    Deltas { sum: u128, any: bool },
}

impl Local {
    /// The effect after one more operation.
    fn then(self, op: &WriteOp) -> Local {
        match (self, op) {
            (_, WriteOp::Set(v)) => Local::Set(v.clone()),
            (Local::Set(v), WriteOp::Delta(d)) => {
                Local::Set(Some(Value::Num(num_of(&v).wrapping_add(*d))))
            }
            (Local::Deltas { sum, .. }, WriteOp::Delta(d)) => Local::Deltas {
                sum: sum.wrapping_add(*d),
                any: true,
            },
        }
    }

    fn from_op(op: &WriteOp) -> Local {
        match op {
            WriteOp::Set(v) => Local::Set(v.clone()),
            WriteOp::Delta(d) => Local::Deltas { sum: *d, any: true },
        }
    }

    fn as_op(&self) -> WriteOp {
        match self {
            Local::Set(v) => WriteOp::Set(v.clone()),
            Local::Deltas { sum, .. } => WriteOp::Delta(*sum),
        }
    }
}

impl<S: Storage> ParView<'_, S> {
    fn outside(&mut self, key: &Key) -> StateResult<(CellRef, Origin, Option<Value>)> {
        if let Some(i) = self.scratch.seen_position(key) {
            let (_, cell, origin, value) = &self.scratch.seen[i];
            return Ok((*cell, *origin, value.clone()));
        }
        match self.mv.read(key, self.txn, self.storage) {
            Ok((cell, origin, value)) => {
                self.scratch.remember((*key, cell, origin, value.clone()));
                Ok((cell, origin, value))
            }
            Err(Blocked(blocking)) => Err(Halt { blocking }),
        }
    }
}

impl<S: Storage> StateView for ParView<'_, S> {
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>> {
        let (sum, any) = match self.scratch.local(key) {
            Local::Set(v) => return Ok(v),
            Local::Deltas { sum, any } => (sum, any),
        };
        let (cell, origin, value) = self.outside(key)?;
        let exact = match origin {
            Origin::Resolved => Some(num_of(&value)),
            _ => None,
        };
        self.scratch.reads.push(ReadRecord {
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
        self.scratch.push(key, WriteOp::Set(value));
    }

    fn add(&mut self, key: Key, delta: u128) {
        self.scratch.push(key, WriteOp::Delta(delta));
    }

    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool> {
        let ok = match self.scratch.local(&key) {
            Local::Set(v) => num_of(&v) >= amount,
            Local::Deltas { sum, .. } => {
                let (cell, origin, value) = self.outside(&key)?;
                let ok = num_of(&value).wrapping_add(sum) >= amount;
                self.scratch.reads.push(ReadRecord {
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
            self.scratch
                .push(key, WriteOp::Delta(0u128.wrapping_sub(amount)));
        }
        Ok(ok)
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.scratch.log.len())
    }

    fn rollback(&mut self, checkpoint: Checkpoint) {
        self.scratch.rollback(checkpoint.0);
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
