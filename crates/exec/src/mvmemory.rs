//! Multi-version memory: for every key a block writes, the value each transaction wrote to it,
//! ordered by transaction index.
//!
//! A read by transaction `i` sees the highest entry below `i`: a full value ends the search; a
//! delta is summed and the search goes on down (to the base storage if no full value is
//! below); an ESTIMATE (left by an aborted incarnation that will probably write the key again)
//! stops the reader, which then waits for that transaction.
//!
//! Invariants:
//! - Each cell is sorted by transaction index and holds at most one entry per transaction: the
//!   writes of that transaction's latest incarnation (or its ESTIMATE markers).
//! - An entry is removed as soon as a newer incarnation of its transaction stops writing the key,
//!   so a cell with no entries means "not written by this block".
//! - Locks are per shard and never held while user code (the `Vm`) runs.
//! - A cell stays at the same place in its shard's arena until the block's writes are drained,
//!   so a [`CellRef`] taken during the block stays valid for the whole block.

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::types::{num_of, Key, KeyMap, Storage, Value};

/// Number of shards; a power of two.
const SHARDS: usize = 128;

/// What one incarnation did to a key, after folding its operations on that key.
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    /// Set (or delete) the value.
    Set(Option<Value>),
    /// Add this (wrapping) amount to whatever value lies below.
    Delta(u128),
}

#[derive(Debug, Clone)]
enum Entry {
    Set { inc: u32, value: Option<Value> },
    Delta { delta: u128 },
    Estimate,
}

/// One key's versions, with the base storage's value once someone has read it (so the
/// block reads each key from storage at most once).
#[derive(Default)]
struct Cell {
    base: Option<Option<Value>>,
    entries: SmallVec<[(u32, Entry); 1]>,
    /// `(bound, sum)`: the value resolved from every entry below `bound` (and the base), when
    /// that involved deltas. Reads mostly move up the block, so a chain of deltas is summed
    /// once, not once per reader (which would be quadratic in the chain's length). Cleared by
    /// any change to an entry below `bound`.
    memo: Option<(u32, u128)>,
}

impl Cell {
    /// Forgets the memo if a change at `txn` affects it.
    fn touched(&mut self, txn: u32) {
        if matches!(self.memo, Some((bound, _)) if txn < bound) {
            self.memo = None;
        }
    }

    fn base<S: Storage>(&mut self, key: &Key, storage: &S) -> Option<Value> {
        match &self.base {
            Some(v) => v.clone(),
            None => {
                let v = storage.get(key);
                self.base = Some(v.clone());
                v
            }
        }
    }
}

/// Where a read's value came from, cheap to compare at validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// No entry below the reader: the base storage.
    Storage,
    /// A full value written by this incarnation, with no delta above it.
    Version { txn: u32, inc: u32 },
    /// Deltas summed over a full value or the base storage.
    Resolved,
}

/// A read hit an ESTIMATE of this transaction.
pub(crate) struct Blocked(pub u32);

/// A handle on a key's cell, valid until the memory is drained: lets a transaction that already
/// looked a key up write it, and a validator re-check it, without hashing or probing again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CellRef {
    shard: u32,
    index: u32,
}

/// A shard: an index from keys to positions in a dense arena of cells. Cells never move while
/// a block runs, so [`CellRef`]s stay valid; the arena is drained when the block's writes are
/// read off, and the index (plain data) is cleared with a memset.
#[derive(Default)]
struct Shard {
    index: KeyMap<u32>,
    cells: Vec<(Key, Cell)>,
}

impl Shard {
    fn cell(&mut self, key: &Key) -> (u32, &mut Cell) {
        let cells = &mut self.cells;
        let index = *self.index.entry(*key).or_insert_with(|| {
            cells.push((*key, Cell::default()));
            (cells.len() - 1) as u32
        });
        (index, &mut self.cells[index as usize].1)
    }
}

pub(crate) struct MvMemory {
    /// Each shard on its own cache line, so locking one does not steal its neighbours' lines
    /// from the other cores.
    shards: Vec<CachePadded<Mutex<Shard>>>,
}

impl MvMemory {
    pub(crate) fn new() -> MvMemory {
        MvMemory {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(Shard::default())))
                .collect(),
        }
    }

    fn shard_of(key: &Key) -> u32 {
        // The low bits feed hashbrown's bucket index; take high bits for the shard.
        ((key.hash64() >> 57) as usize & (SHARDS - 1)) as u32
    }

    /// Records an incarnation's write to `key` (looking the key up if no handle is given).
    pub(crate) fn write(
        &self,
        key: &Key,
        known: Option<CellRef>,
        txn: u32,
        inc: u32,
        op: &WriteOp,
    ) -> CellRef {
        let entry = match op {
            WriteOp::Set(value) => Entry::Set {
                inc,
                value: value.clone(),
            },
            WriteOp::Delta(delta) => Entry::Delta { delta: *delta },
        };
        let shard_idx = known.map_or_else(|| Self::shard_of(key), |r| r.shard);
        let mut shard = self.shards[shard_idx as usize].lock();
        let (index, cell) = match known {
            Some(r) => (r.index, &mut shard.cells[r.index as usize].1),
            None => shard.cell(key),
        };
        cell.touched(txn);
        let entries = &mut cell.entries;
        // Transactions mostly finish in index order: try the end before searching (a hot key
        // has an entry per transaction, and a binary search over them misses the cache).
        match entries.last_mut() {
            None => entries.push((txn, entry)),
            Some((last, _)) if *last < txn => entries.push((txn, entry)),
            Some((last, e)) if *last == txn => *e = entry,
            Some(_) => match entries.binary_search_by_key(&txn, |(t, _)| *t) {
                Ok(pos) => entries[pos].1 = entry,
                Err(pos) => entries.insert(pos, (txn, entry)),
            },
        }
        CellRef {
            shard: shard_idx,
            index,
        }
    }

    fn with_entry(
        &self,
        cell: CellRef,
        txn: u32,
        f: impl FnOnce(&mut SmallVec<[(u32, Entry); 1]>, usize),
    ) {
        let mut shard = self.shards[cell.shard as usize].lock();
        let cell = &mut shard.cells[cell.index as usize].1;
        cell.touched(txn);
        let entries = &mut cell.entries;
        if let Ok(pos) = entries.binary_search_by_key(&txn, |(t, _)| *t) {
            f(entries, pos);
        }
    }

    /// Removes transaction `txn`'s entry from a cell.
    pub(crate) fn remove(&self, cell: CellRef, txn: u32) {
        self.with_entry(cell, txn, |entries, pos| {
            entries.remove(pos);
        });
    }

    /// Replaces transaction `txn`'s entry in a cell by an ESTIMATE marker.
    pub(crate) fn mark_estimate(&self, cell: CellRef, txn: u32) {
        self.with_entry(cell, txn, |entries, pos| entries[pos].1 = Entry::Estimate);
    }

    /// Reads `key` as transaction `txn` sees it: a handle on its cell, where the value comes
    /// from, and the value.
    pub(crate) fn read<S: Storage>(
        &self,
        key: &Key,
        txn: u32,
        storage: &S,
    ) -> Result<(CellRef, Origin, Option<Value>), Blocked> {
        let shard_idx = Self::shard_of(key);
        let mut shard = self.shards[shard_idx as usize].lock();
        let (index, cell) = shard.cell(key);
        let (origin, value) = resolve(cell, key, txn, storage)?;
        let cell = CellRef {
            shard: shard_idx,
            index,
        };
        Ok((cell, origin, value))
    }

    /// Reads a cell already looked up, as transaction `txn` sees it.
    pub(crate) fn read_at<S: Storage>(
        &self,
        cell: CellRef,
        txn: u32,
        storage: &S,
    ) -> Result<(Origin, Option<Value>), Blocked> {
        let mut shard = self.shards[cell.shard as usize].lock();
        let (key, cell) = &mut shard.cells[cell.index as usize];
        resolve(cell, key, txn, storage)
    }

    /// Where a read of a cell by `txn` would come from, without cloning any value.
    pub(crate) fn origin(&self, cell: CellRef, txn: u32) -> Result<Origin, Blocked> {
        let shard = self.shards[cell.shard as usize].lock();
        let cell = &shard.cells[cell.index as usize].1;
        let entries = &cell.entries[..cell.entries.partition_point(|(t, _)| *t < txn)];
        match entries.last() {
            None => Ok(Origin::Storage),
            Some((t, Entry::Set { inc, .. })) => Ok(Origin::Version { txn: *t, inc: *inc }),
            Some((t, Entry::Estimate)) => Err(Blocked(*t)),
            Some((_, Entry::Delta { .. })) => {
                // Deltas: make sure none below is an ESTIMATE before calling it resolved (none
                // is below a memo's bound, or the memo would have been cleared).
                let floor = cell
                    .memo
                    .filter(|(bound, _)| *bound <= txn)
                    .map_or(0, |(bound, _)| bound);
                for (t, e) in entries.iter().rev() {
                    if *t < floor {
                        break;
                    }
                    match e {
                        Entry::Estimate => return Err(Blocked(*t)),
                        Entry::Set { .. } => break,
                        Entry::Delta { .. } => {}
                    }
                }
                Ok(Origin::Resolved)
            }
        }
    }

    /// Empties the memory and returns the block's final write set when transactions `0..upto`
    /// are committed: every key with an entry below `upto`, resolved. Runs the shards on the
    /// current rayon pool; the memory keeps its capacity for the next block.
    pub(crate) fn drain<S: Storage>(&self, upto: u32, storage: &S) -> Vec<(Key, Option<Value>)> {
        use rayon::prelude::*;
        let parts: Vec<Vec<(Key, Option<Value>)>> = self
            .shards
            .par_iter()
            .map(|shard| {
                let mut shard = shard.lock();
                let mut out = Vec::with_capacity(shard.cells.len());
                for (key, mut cell) in shard.cells.drain(..) {
                    if cell.entries.first().is_none_or(|(t, _)| *t >= upto) {
                        continue;
                    }
                    // Every transaction below `upto` is committed, so none has an ESTIMATE
                    // left; skip defensively rather than invent a value.
                    if let Ok((_, value)) = resolve(&mut cell, &key, upto, storage) {
                        out.push((key, value));
                    }
                }
                shard.index.clear();
                out
            })
            .collect();
        let total = parts.iter().map(Vec::len).sum();
        let mut all = Vec::with_capacity(total);
        for p in parts {
            all.extend(p);
        }
        all
    }
}

fn resolve<S: Storage>(
    cell: &mut Cell,
    key: &Key,
    txn: u32,
    storage: &S,
) -> Result<(Origin, Option<Value>), Blocked> {
    let below = cell.entries.partition_point(|(t, _)| *t < txn);
    let memo = cell.memo.filter(|(bound, _)| *bound <= txn);
    let floor = memo.map_or(0, |(bound, _)| bound);
    let mut delta: u128 = 0;
    let mut saw_delta = false;
    for (t, e) in cell.entries[..below].iter().rev() {
        if *t < floor {
            break;
        }
        match e {
            Entry::Estimate => return Err(Blocked(*t)),
            Entry::Set { inc, value } => {
                if !saw_delta {
                    return Ok((Origin::Version { txn: *t, inc: *inc }, value.clone()));
                }
                let sum = num_of(value).wrapping_add(delta);
                cell.memo = Some((txn, sum));
                return Ok((Origin::Resolved, Some(Value::Num(sum))));
            }
            Entry::Delta { delta: d } => {
                delta = delta.wrapping_add(*d);
                saw_delta = true;
            }
        }
    }
    let under = match memo {
        Some((_, sum)) => Some(sum),
        None if saw_delta => Some(num_of(&cell.base(key, storage))),
        None => None,
    };
    match under {
        Some(under) => {
            let sum = under.wrapping_add(delta);
            cell.memo = Some((txn, sum));
            Ok((Origin::Resolved, Some(Value::Num(sum))))
        }
        None => Ok((Origin::Storage, cell.base(key, storage))),
    }
}
