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

use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::types::{key_map_with_capacity, num_of, Key, KeyMap, Storage, Value};

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
}

impl Cell {
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

pub(crate) struct MvMemory {
    shards: Vec<Mutex<KeyMap<Cell>>>,
}

impl MvMemory {
    pub(crate) fn new(expected_keys: usize) -> MvMemory {
        let per_shard = expected_keys / SHARDS + 8;
        MvMemory {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(key_map_with_capacity(per_shard)))
                .collect(),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<KeyMap<Cell>> {
        // The low bits feed hashbrown's bucket index; take high bits for the shard.
        &self.shards[(key.hash64() >> 57) as usize & (SHARDS - 1)]
    }

    /// Empties every shard, keeping its capacity. Runs on the current rayon pool.
    pub(crate) fn clear(&self) {
        use rayon::prelude::*;
        self.shards
            .par_iter()
            .for_each(|shard| shard.lock().clear());
    }

    /// Records an incarnation's write to `key`.
    pub(crate) fn write(&self, key: &Key, txn: u32, inc: u32, op: &WriteOp) {
        let entry = match op {
            WriteOp::Set(value) => Entry::Set {
                inc,
                value: value.clone(),
            },
            WriteOp::Delta(delta) => Entry::Delta { delta: *delta },
        };
        let mut shard = self.shard(key).lock();
        let entries = &mut shard.entry(*key).or_default().entries;
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
    }

    /// Removes transaction `txn`'s entry for `key`.
    pub(crate) fn remove(&self, key: &Key, txn: u32) {
        let mut shard = self.shard(key).lock();
        if let Some(cell) = shard.get_mut(key) {
            if let Ok(pos) = cell.entries.binary_search_by_key(&txn, |(t, _)| *t) {
                cell.entries.remove(pos);
            }
        }
    }

    /// Replaces transaction `txn`'s entry for `key` by an ESTIMATE marker.
    pub(crate) fn mark_estimate(&self, key: &Key, txn: u32) {
        let mut shard = self.shard(key).lock();
        if let Some(cell) = shard.get_mut(key) {
            if let Ok(pos) = cell.entries.binary_search_by_key(&txn, |(t, _)| *t) {
                cell.entries[pos].1 = Entry::Estimate;
            }
        }
    }

    /// Reads `key` as transaction `txn` sees it: where the value comes from, and the value.
    pub(crate) fn read<S: Storage>(
        &self,
        key: &Key,
        txn: u32,
        storage: &S,
    ) -> Result<(Origin, Option<Value>), Blocked> {
        let mut shard = self.shard(key).lock();
        let cell = shard.entry(*key).or_default();
        resolve(cell, key, txn, storage)
    }

    /// Where a read of `key` by `txn` would come from, without cloning any value.
    pub(crate) fn origin(&self, key: &Key, txn: u32) -> Result<Origin, Blocked> {
        let shard = self.shard(key).lock();
        let Some(cell) = shard.get(key) else {
            return Ok(Origin::Storage);
        };
        let entries = &cell.entries[..cell.entries.partition_point(|(t, _)| *t < txn)];
        match entries.last() {
            None => Ok(Origin::Storage),
            Some((t, Entry::Set { inc, .. })) => Ok(Origin::Version { txn: *t, inc: *inc }),
            Some((t, Entry::Estimate)) => Err(Blocked(*t)),
            Some((_, Entry::Delta { .. })) => {
                // Deltas: make sure none below is an ESTIMATE before calling it resolved.
                for (t, e) in entries.iter().rev() {
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

    /// The block's final write set when transactions `0..upto` are committed: every key with
    /// an entry below `upto`, resolved. Runs the shards on the current rayon pool.
    pub(crate) fn materialize<S: Storage>(
        &self,
        upto: u32,
        storage: &S,
    ) -> Vec<(Key, Option<Value>)> {
        use rayon::prelude::*;
        let parts: Vec<Vec<(Key, Option<Value>)>> = self
            .shards
            .par_iter()
            .map(|shard| {
                let mut shard = shard.lock();
                let mut out = Vec::with_capacity(shard.len());
                for (key, cell) in shard.iter_mut() {
                    if cell.entries.first().is_none_or(|(t, _)| *t >= upto) {
                        continue;
                    }
                    // Every transaction below `upto` is committed, so none has an ESTIMATE
                    // left; skip defensively rather than invent a value.
                    if let Ok((_, value)) = resolve(cell, key, upto, storage) {
                        out.push((*key, value));
                    }
                }
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
    let mut delta: u128 = 0;
    let mut saw_delta = false;
    for (t, e) in cell.entries[..below].iter().rev() {
        match e {
            Entry::Estimate => return Err(Blocked(*t)),
            Entry::Set { inc, value } => {
                return Ok(if saw_delta {
                    (
                        Origin::Resolved,
                        Some(Value::Num(num_of(value).wrapping_add(delta))),
                    )
                } else {
                    (Origin::Version { txn: *t, inc: *inc }, value.clone())
                });
            }
            Entry::Delta { delta: d } => {
                delta = delta.wrapping_add(*d);
                saw_delta = true;
            }
        }
    }
    let base = cell.base(key, storage);
    Ok(if saw_delta {
        (
            Origin::Resolved,
            Some(Value::Num(num_of(&base).wrapping_add(delta))),
        )
    } else {
        (Origin::Storage, base)
    })
}
