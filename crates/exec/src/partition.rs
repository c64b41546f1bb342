//! Footprint-partitioned execution: when every transaction of a block declares the keys it
//! may touch ([`Vm::footprint`]), the block is split into groups that share no key and the
//! groups run on the workers as plain sequential runs, with no multi-version memory, no
//! validation and no scheduler.
//!
//! Grouping: two transactions are in one group when a key is exclusive (written or
//! `try_sub`ed) in one of them and touched in any way by the other, transitively (union-find
//! over the transactions). Keys that are only read join nobody. A key that every transaction
//! touching it only `add`s to (a fee account, a hot recipient) joins nobody: each worker sums
//! its deltas apart and the sums are added to the base value at the end, which is exact
//! because deltas commute (wrapping). Keys declared as `subs` (only added to or `try_sub`ed
//! from, such as a vault that pays out) are summed apart the same way, with two checks that
//! make the result the sequential one: a `try_sub` must succeed against the base value plus
//! its lane's own changes, and the block's subtractions from the key must all fit in the base
//! value (then every `try_sub` succeeds in block order too, whatever the other lanes added
//! before it); either failing is treated as a violation. Such a key with a single toucher is
//! simply applied in that transaction's lane, like an exclusive key. Groups of several are
//! dealt to the workers largest first onto the least loaded (LPT); then the groups of one, in
//! block order, fill the lanes in turn up to an even share. A worker runs its transactions in
//! block order.
//!
//! How it runs, so that little of it is serial:
//! 1. In parallel over chunks of the block: each footprint is computed and compacted to one
//!    word per key ([`touch`]: the key's identity and how it is declared), and the chunk's
//!    words are also bucketed by the key's shard (a stable counting sort).
//! 2. In parallel, one range of shards per worker, one shard at a time (so that the shard's
//!    table stays in the cache): every worker reads its buckets of all the chunks, in block
//!    order, and emits the edges (pairs of transactions that must share a group) and its
//!    pure-delta keys with more than one toucher.
//! 3. Serially: union-find over the edges (only the transactions they name: the rest are
//!    groups of one), and the deal onto the lanes.
//! 4. In parallel: the lanes run; each turns its overlay into a list of writes (or, when a
//!    barrier follows and more runs on top, hands the overlay back as it is: [`Parts`]).
//! 5. Serially: outputs in block order, the lists concatenated, the few summed deltas added.
//!
//! Keys are told apart by [`ident`], their 64-bit hash with the two low bits cleared: two
//! keys with one identity are one key to the grouping, which can only join groups (and make
//! a key count as "not only added to"), never split them. The footprint check compares
//! identities too: a key the transaction did not declare, but whose identity it did, is
//! treated as the declared key, which is safe for the same reason (every transaction that
//! touches that identity was grouped as if it touched that key).
//!
//! Invariants:
//! - The result equals sequential execution: within a group the order is the block's, and
//!   different groups touch disjoint keys except pure-delta keys, whose final value is the
//!   same sum in any order.
//! - Every state operation is checked against the transaction's footprint; one outside it
//!   (a `Vm` bug or a lie) makes the whole attempt return [`Partitioned::Violated`] and the
//!   caller runs the block through the general engine. Nothing of the attempt is kept.
//! - No keys are shared between the workers' overlays, so merging them is a concatenation;
//!   summed keys are in no overlay, only in the lanes' delta sums.
//! - A lane keeps a summed key's sums in the key's slot (by identity); a slot that would hold
//!   two different keys of one identity makes the attempt [`Partitioned::Violated`].
//! - A kept lane's [`KeyFilter`] is built from its finished map: every key the map holds has
//!   its bit set, so a lookup that skips the map on a clear bit never misses a write.
//! - A summed key with subtractions ends at `base + adds - subs` only if `subs <= base` and
//!   `base + adds` does not overflow, and every `try_sub` on it succeeded in its lane;
//!   otherwise the attempt is [`Partitioned::Violated`].

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::sequential::run_one;
use crate::types::{
    key_map_with_capacity, num_of, restore, BlockOutput, Checkpoint, Footprint, Halt, Key,
    KeyHasher, KeyMap, StateResult, StateView, Storage, Value, Vm, WriteSet,
};

/// What a partitioned attempt gave.
pub(crate) enum Partitioned<O> {
    /// Some transaction declared no footprint, or the block splits too unevenly: not
    /// attempted.
    NotApplicable,
    /// One group holds more than [`CHAIN_SHARE`] of the block: it is (nearly) a chain, best
    /// run sequentially. Not attempted.
    Chain,
    /// A transaction touched a key outside its footprint: run the block another way.
    Violated,
    /// The block's result, how many groups it had, and where the time went.
    Done(Parts<O>, usize, Phases),
}

/// Wall time of a partitioned run's steps outside the lanes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Phases {
    /// Footprints, grouping and the deal onto the lanes.
    pub planning: std::time::Duration,
    /// Outputs put back in block order, writes gathered, summed keys settled.
    pub merging: std::time::Duration,
}

/// What a partitioned run produced: the outputs, and the writes either as one list or, when
/// the caller asked to keep them ([`execute`]'s `keep_lanes`), still in the lanes' maps.
pub(crate) struct Parts<O> {
    pub outputs: Vec<O>,
    /// Every write, or with `keep_lanes` only the summed keys' final values.
    pub writes: Vec<(Key, Option<Value>)>,
    /// With `keep_lanes`: each lane's writes, as it left them, and a filter of their keys.
    /// Their keys are disjoint from each other's and from those in `writes`.
    pub lanes: Vec<(LaneWrites, KeyFilter)>,
}

/// A map of writes that a stack of maps over the base state reads through.
pub(crate) trait Layer: Sync {
    /// `Some(value)` if the map wrote `key` (`Some(None)`: deleted it), `None` to look below.
    fn written(&self, key: &Key) -> Option<Option<Value>>;
}

impl Layer for KeyMap<Option<Value>> {
    fn written(&self, key: &Key) -> Option<Option<Value>> {
        self.get(key).cloned()
    }
}

/// A lane's writes as it left them: a footprint lane's overlay, or a home lane's (whose
/// slots may only mark a key it read).
pub(crate) enum LaneWrites {
    Values(KeyMap<Option<Value>>),
    Homes(KeyMap<crate::homes::Slot>),
}

impl LaneWrites {
    pub fn layer(&self) -> &dyn Layer {
        match self {
            LaneWrites::Values(map) => map,
            LaneWrites::Homes(map) => map,
        }
    }

    /// An upper bound on the number of writes.
    pub fn len(&self) -> usize {
        match self {
            LaneWrites::Values(map) => map.len(),
            LaneWrites::Homes(map) => map.len(),
        }
    }

    /// Moves the writes whose keys pass `keep` onto `out`.
    pub fn drain_into(self, out: &mut Vec<(Key, Option<Value>)>, keep: impl Fn(&Key) -> bool) {
        match self {
            LaneWrites::Values(map) => out.extend(map.into_iter().filter(|(k, _)| keep(k))),
            LaneWrites::Homes(map) => out.extend(
                map.into_iter()
                    .filter(|(k, s)| s.written && keep(k))
                    .map(|(k, s)| (k, s.value)),
            ),
        }
    }
}

/// A one-hash Bloom filter of a map's keys: a clear bit means the key is not in the map, so
/// a lookup through a stack of lanes' maps ([`Parts::lanes`]) skips the maps that cannot
/// hold it rather than probing each (a cache miss in a map of megabytes).
pub(crate) struct KeyFilter {
    bits: Vec<u64>,
    /// Bits minus one (a power of two minus one).
    mask: u64,
}

impl KeyFilter {
    /// A filter of `keys`, with about 8 bits per key (some 12% of absent keys pass).
    pub fn of<'a>(keys: impl ExactSizeIterator<Item = &'a Key>) -> KeyFilter {
        let bits = (keys.len() * 8).next_power_of_two().max(64);
        let mut filter = KeyFilter {
            bits: vec![0; bits / 64],
            mask: bits as u64 - 1,
        };
        for k in keys {
            let b = filter.bit(k);
            if let Some(w) = filter.bits.get_mut((b / 64) as usize) {
                *w |= 1 << (b % 64);
            }
        }
        filter
    }

    /// The key's bit: hash bits that the maps' tables do not index by (see [`shard_of`]).
    fn bit(&self, key: &Key) -> u64 {
        (key.hash64() >> 20) & self.mask
    }

    /// False if the key is certainly not in the map.
    pub fn may_hold(&self, key: &Key) -> bool {
        let b = self.bit(key);
        self.bits
            .get((b / 64) as usize)
            .is_none_or(|w| w & (1 << (b % 64)) != 0)
    }
}

impl<O> Parts<O> {
    /// The block's output (only meaningful without `keep_lanes`, or after folding the lanes
    /// into `writes`).
    pub fn into_output(self) -> BlockOutput<O> {
        BlockOutput {
            outputs: self.outputs,
            writes: WriteSet(self.writes),
        }
    }
}

/// How a transaction declares a key: the low two bits of a [`touch`].
const READ: u64 = 0;
const ADD: u64 = 1;
const WRITE: u64 = 2;
const SUB: u64 = 3;

/// Bits of a mask of kinds (`1 << kind`).
const READ_BIT: u8 = 1 << READ;
const ADD_BIT: u8 = 1 << ADD;
const WRITE_BIT: u8 = 1 << WRITE;
const SUB_BIT: u8 = 1 << SUB;

/// A block whose largest group holds more than this share of it is reported as a chain.
pub(crate) const CHAIN_SHARE: f64 = 0.9;

/// Why a block has no plan.
enum NoPlan {
    /// A transaction declared no footprint, or the largest group is over the caller's share.
    Unknown,
    /// The largest group is over [`CHAIN_SHARE`].
    Chain,
}

/// Transactions per chunk of compact footprints.
const CHUNK: usize = 256;

/// Footprints of at most this many keys are checked by a linear scan; longer ones are sorted
/// and checked by a binary search.
const LINEAR_CHECK: usize = 8;

/// No node / no transaction.
const NONE: u32 = u32::MAX;

/// Whether the transactions touching a key this way must run in order (in one group): unless
/// they only read it, or only add to it and `try_sub` from it.
fn joins(kinds: u8) -> bool {
    kinds != READ_BIT && !summable(kinds)
}

/// Whether a key touched this way by several transactions is summed apart.
fn summable(kinds: u8) -> bool {
    kinds & !(ADD_BIT | SUB_BIT) == 0
}

/// A key's identity for grouping and checking: its hash without the two low bits.
fn ident(key: &Key) -> u64 {
    key.hash64() & !3
}

/// The kind bit of a touch.
fn kind_bit(touch: u64) -> u8 {
    match touch & 3 {
        READ => READ_BIT,
        ADD => ADD_BIT,
        WRITE => WRITE_BIT,
        _ => SUB_BIT,
    }
}

/// A key and how it is declared, in one word.
fn touch(key: &Key, kind: u64) -> u64 {
    ident(key) | kind
}

/// The compact footprints of consecutive transactions: for the `j`-th,
/// `touches[ends[j - 1]..ends[j]]` (from 0 for the first). The same touches are also kept
/// bucketed by the shard of their key ([`shard_of`]), each with its transaction's index in
/// the chunk, in block order within a bucket: shard `s` is `by_shard[starts[s]..starts[s +
/// 1]]`, so that the scan of a shard reads only its own keys.
struct Chunk {
    touches: Vec<u64>,
    ends: Vec<u32>,
    by_shard: Vec<(u64, u8)>,
    starts: Vec<u32>,
}

impl Chunk {
    fn of<V: Vm>(vm: &V, txns: &[V::Txn], state: &dyn Storage, shards: usize) -> Option<Chunk> {
        let mut touches = Vec::with_capacity(txns.len() * 6);
        let mut ends = Vec::with_capacity(txns.len());
        let mut fp = Footprint::default();
        for t in txns {
            fp.clear();
            if !vm.footprint_into(t, state, &mut fp) {
                return None;
            }
            let from = touches.len();
            touches.extend(fp.exclusive.iter().map(|k| touch(k, WRITE)));
            touches.extend(fp.reads.iter().map(|k| touch(k, READ)));
            touches.extend(fp.deltas.iter().map(|k| touch(k, ADD)));
            touches.extend(fp.subs.iter().map(|k| touch(k, SUB)));
            // Sorted, so that the footprint check of a large footprint is a binary search
            // (a word sorts by the key's identity, then by kind).
            if let Some(t) = touches.get_mut(from..) {
                if t.len() > LINEAR_CHECK {
                    t.sort_unstable();
                }
            }
            ends.push(touches.len() as u32);
        }
        // A stable counting sort of the touches by shard.
        let mut starts = vec![0u32; shards + 1];
        for &t in &touches {
            starts[shard_of(t, shards) + 1] += 1;
        }
        for s in 1..starts.len() {
            starts[s] += starts[s - 1];
        }
        let mut at = starts.clone();
        let mut by_shard = vec![(0u64, 0u8); touches.len()];
        let mut from = 0usize;
        for (j, &end) in ends.iter().enumerate() {
            for &t in touches.get(from..end as usize).unwrap_or(&[]) {
                let slot = &mut at[shard_of(t, shards)];
                if let Some(e) = by_shard.get_mut(*slot as usize) {
                    // `j < CHUNK = 256`.
                    *e = (t, j as u8);
                }
                *slot += 1;
            }
            from = end as usize;
        }
        Some(Chunk {
            touches,
            ends,
            by_shard,
            starts,
        })
    }

    /// `(transaction index within the chunk, its touches)`, in order.
    fn txns(&self) -> impl Iterator<Item = (usize, &[u64])> + '_ {
        let mut start = 0;
        self.ends.iter().enumerate().map(move |(j, &end)| {
            let t = self.touches.get(start..end as usize).unwrap_or(&[]);
            start = end as usize;
            (j, t)
        })
    }

    fn touches_of(&self, j: usize) -> &[u64] {
        let start = match j.checked_sub(1) {
            Some(p) => self.ends.get(p).copied().unwrap_or(0) as usize,
            None => 0,
        };
        let end = self.ends.get(j).copied().unwrap_or(0) as usize;
        self.touches.get(start..end).unwrap_or(&[])
    }

    /// The touches of shard `s`, with their transactions' indexes in the chunk, in order.
    fn shard(&self, s: usize) -> &[(u64, u8)] {
        let (a, b) = (
            self.starts.get(s).copied().unwrap_or(0) as usize,
            self.starts.get(s + 1).copied().unwrap_or(0) as usize,
        );
        self.by_shard.get(a..b).unwrap_or(&[])
    }
}

/// A `u64`-keyed map over key identities (already hashes: passed through).
type IdentMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// Shards of the key space per worker in the scan: small enough that a shard's table stays
/// in the cache.
const SHARDS_PER_WORKER: usize = 8;

/// Which of `shards` shards a key identity (or touch) belongs to (bits the tables do not
/// index by).
fn shard_of(id: u64, shards: usize) -> usize {
    ((((id >> 24) & 0xffff_ffff) * shards as u64) >> 32) as usize
}

/// One key of a shard, while the shard is scanned.
struct KeyUse {
    /// Its first toucher.
    first: u32,
    /// How it is touched so far (mask of kind bits).
    kinds: u8,
    /// Whether a transaction other than the first touches it.
    multi: bool,
    /// While it does not join: the latest of the other touchers seen, a node of `nodes`.
    chain: u32,
}

/// What a worker's scan found.
#[derive(Default)]
struct ShardUse {
    /// Pairs of transactions that must be in one group.
    edges: Vec<(u32, u32)>,
    /// Keys only ever added to (or `try_sub`ed from), by more than one transaction: summed
    /// apart.
    summed: Vec<u64>,
}

/// Handles the keys of shards `shards` (of the chunks' bucketing), one shard at a time.
fn scan_shards(chunks: &[Chunk], shards: std::ops::Range<usize>, touches: usize) -> ShardUse {
    let mut keys: IdentMap<KeyUse> = HashMap::with_hasher(Default::default());
    // Touchers of keys that do not join (yet): `(transaction, previous node)`.
    let mut nodes: Vec<(u32, u32)> = Vec::new();
    let mut out = ShardUse::default();
    let mut candidates = Vec::new();
    let per_shard = touches / chunks.first().map_or(1, |c| c.starts.len() - 1).max(1) + 16;
    for s in shards {
        keys.clear();
        keys.reserve(per_shard);
        nodes.clear();
        candidates.clear();
        for (c, chunk) in chunks.iter().enumerate() {
            let base = (c * CHUNK) as u32;
            for &(t, j) in chunk.shard(s) {
                let i = base + u32::from(j);
                let id = t & !3;
                let bit = kind_bit(t);
                let k = match keys.entry(id) {
                    Entry::Vacant(e) => {
                        e.insert(KeyUse {
                            first: i,
                            kinds: bit,
                            multi: false,
                            chain: NONE,
                        });
                        continue;
                    }
                    Entry::Occupied(e) => e.into_mut(),
                };
                let old = k.kinds;
                k.kinds |= bit;
                if i != k.first && !k.multi {
                    k.multi = true;
                    if summable(k.kinds) {
                        candidates.push(id);
                    }
                }
                if joins(k.kinds) {
                    if !joins(old) {
                        // It joins from now on: so do the touchers seen before.
                        let mut node = k.chain;
                        while let Some(&(tx, prev)) = nodes.get(node as usize) {
                            out.edges.push((k.first, tx));
                            node = prev;
                        }
                        k.chain = NONE;
                    }
                    if i != k.first {
                        out.edges.push((k.first, i));
                    }
                } else if i != k.first && nodes.get(k.chain as usize).is_none_or(|n| n.0 != i) {
                    nodes.push((i, k.chain));
                    k.chain = (nodes.len() - 1) as u32;
                }
            }
        }
        out.summed.extend(
            candidates
                .iter()
                .filter(|id| keys.get(*id).is_some_and(|k| summable(k.kinds))),
        );
    }
    out
}

/// The keys summed apart, by identity, each with its index in the lanes' [`Slots`]. Looked up
/// for every `add` and `try_sub` of a key not declared exclusive; most such keys are not
/// summed (a recipient credited once), so a small bitmap answers them first, without
/// hashing: a clear bit means "not summed", a set bit is settled by the map.
struct Summed {
    bits: Vec<u64>,
    index: IdentMap<u32>,
}

/// Bits in [`Summed`]'s filter (2 KiB, so it stays in the first-level cache).
const SUMMED_BITS: u64 = 1 << 14;

impl Summed {
    fn new(ids: Vec<u64>) -> Summed {
        let mut bits = vec![0u64; (SUMMED_BITS / 64) as usize];
        for &id in &ids {
            let b = Self::bit(id);
            if let Some(w) = bits.get_mut((b / 64) as usize) {
                *w |= 1 << (b % 64);
            }
        }
        Summed {
            bits,
            index: ids.into_iter().zip(0..).collect(),
        }
    }

    /// The filter bit of an identity: bits the tables do not index by (see [`shard_of`]).
    fn bit(id: u64) -> u64 {
        (id >> 40) % SUMMED_BITS
    }

    /// The slot of a summed key's identity; `None` if it is not summed.
    fn slot(&self, id: u64) -> Option<usize> {
        let b = Self::bit(id);
        let set = self
            .bits
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0);
        if !set {
            return None;
        }
        self.index.get(&id).map(|&i| i as usize)
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// A lane's changes to the summed keys, one slot per key in [`Summed`]'s order: the key and
/// its sums once the lane touched it (a key that was added 0 to is still written, as in
/// sequential execution), `None` before.
type Slots = Vec<Option<(Key, Sums)>>;

/// The plan: compact footprints, which delta keys are summed apart, and each lane's
/// transactions.
struct Plan {
    chunks: Vec<Chunk>,
    /// Keys only ever added to, by more than one transaction.
    summed: Summed,
    lanes: Vec<Vec<u32>>,
    /// The lane of each transaction.
    lane_of: Vec<u32>,
    /// Per lane, an upper bound on the keys it writes (its transactions' touches).
    write_bound: Vec<usize>,
    groups: usize,
}

impl Plan {
    fn touches_of(&self, i: u32) -> &[u64] {
        let i = i as usize;
        self.chunks
            .get(i / CHUNK)
            .map_or(&[], |c| c.touches_of(i % CHUNK))
    }
}

/// The lane with the least load (the first of those tied): where the next group goes.
pub(crate) fn least_loaded(load: &[usize]) -> usize {
    load.iter()
        .enumerate()
        .min_by_key(|(l, w)| (**w, *l))
        .map_or(0, |(l, _)| l)
}

pub(crate) fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let p = parent[i as usize];
        parent[i as usize] = parent[p as usize];
        i = p;
    }
    i
}

pub(crate) fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // The smaller index is the root: deterministic, and roots stay early.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// Groups the block and deals the groups to `workers` lanes; no plan if a transaction has no
/// footprint or if one lane would get more than `max_share` of the transactions (then the
/// block is better run sequentially or by the general engine).
fn plan<V: Vm, S: Storage>(
    pool: &rayon::ThreadPool,
    vm: &V,
    txns: &[V::Txn],
    state: &S,
    workers: usize,
    max_share: f64,
) -> Result<Plan, NoPlan> {
    let n = txns.len();
    let shards = workers * SHARDS_PER_WORKER;
    let chunks: Vec<Chunk> = pool
        .install(|| {
            txns.par_chunks(CHUNK)
                .map(|c| Chunk::of(vm, c, state, shards))
                .collect::<Option<Vec<Chunk>>>()
        })
        .ok_or(NoPlan::Unknown)?;
    let touches: usize = chunks.iter().map(|c| c.touches.len()).sum();
    let found = pool.broadcast(|ctx| {
        let w = ctx.index();
        scan_shards(
            &chunks,
            w * SHARDS_PER_WORKER..(w + 1) * SHARDS_PER_WORKER,
            touches,
        )
    });
    // Union-find over the transactions that share a key with another; the rest (most, in a
    // block that parallelises) are groups of one and skip it.
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let mut linked = vec![false; n];
    let mut summed = Vec::new();
    for f in &found {
        for &(a, b) in &f.edges {
            union(&mut parent, a, b);
            for x in [a, b] {
                if let Some(l) = linked.get_mut(x as usize) {
                    *l = true;
                }
            }
        }
        // Each shard lists its own keys once: no duplicates across shards.
        summed.extend(f.summed.iter().copied());
    }
    // Group sizes, by root (a root is its group's smallest index, so it comes first).
    let mut size = vec![0u32; n];
    let mut big = Vec::new();
    let mut in_groups = 0;
    for i in 0..n {
        if !linked[i] {
            continue;
        }
        let r = find(&mut parent, i as u32);
        parent[i] = r;
        size[r as usize] += 1;
        in_groups += 1;
        if r as usize == i {
            big.push(r);
        }
    }
    let singles = n - in_groups;
    let groups = big.len() + singles;
    let largest = big
        .iter()
        .map(|r| size[*r as usize] as usize)
        .max()
        .unwrap_or(0)
        .max(usize::from(singles > 0));
    if largest as f64 > CHAIN_SHARE * n as f64 {
        return Err(NoPlan::Chain);
    }
    if largest as f64 > max_share * n as f64 {
        return Err(NoPlan::Unknown);
    }
    // Groups of several, largest first onto the least loaded lane; ties by root, so
    // deterministic.
    big.sort_unstable_by_key(|r| (std::cmp::Reverse(size[*r as usize]), *r));
    let mut load = vec![0usize; workers];
    // Reuse `size` for the lane of each root.
    for r in big {
        let lane = least_loaded(&load);
        load[lane] += size[r as usize] as usize;
        size[r as usize] = lane as u32;
    }
    // Then the groups of one, in block order, filling each lane in turn up to an even share.
    let even = n.div_ceil(workers);
    let mut room: Vec<usize> = load.iter().map(|l| even.saturating_sub(*l)).collect();
    let mut filling = 0;
    let mut lanes: Vec<Vec<u32>> = (0..workers)
        .map(|l| Vec::with_capacity(load[l] + room[l]))
        .collect();
    let mut write_bound = vec![0usize; workers];
    let mut lane_of = Vec::with_capacity(n);
    for (c, chunk) in chunks.iter().enumerate() {
        for (j, ts) in chunk.txns() {
            let i = c * CHUNK + j;
            let lane = if linked[i] {
                size[parent[i] as usize] as usize
            } else {
                while room.get(filling).is_some_and(|r| *r == 0) && filling + 1 < workers {
                    filling += 1;
                }
                if let Some(r) = room.get_mut(filling) {
                    *r = r.saturating_sub(1);
                }
                filling
            };
            lanes[lane].push(i as u32);
            write_bound[lane] += ts.len();
            lane_of.push(lane as u32);
        }
    }
    Ok(Plan {
        chunks,
        summed: Summed::new(summed),
        lanes,
        lane_of,
        write_bound,
        groups,
    })
}

/// Runs `txns` partitioned on the pool, if every transaction declares a footprint and the
/// block splits well enough (no lane over `max_share` of it). With `keep_lanes`, the lanes'
/// writes are returned as their maps (for a caller that runs more on top of them) instead of
/// one list.
pub(crate) fn execute<V: Vm, S: Storage>(
    pool: &rayon::ThreadPool,
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
    max_share: f64,
    keep_lanes: bool,
) -> Partitioned<V::Output> {
    let workers = pool.current_num_threads().max(1);
    let started = Instant::now();
    let plan = match plan(pool, vm, txns, storage, workers, max_share) {
        Ok(plan) => plan,
        Err(NoPlan::Chain) => return Partitioned::Chain,
        Err(NoPlan::Unknown) => return Partitioned::NotApplicable,
    };
    let planned = Instant::now();
    let stop = AtomicBool::new(false);
    let all_bound: usize = plan.write_bound.iter().sum();
    let results = pool.broadcast(|ctx| {
        let lane = plan.lanes.get(ctx.index())?;
        // The first lane's list of writes takes the others' too, and the summed keys.
        let extra = if keep_lanes {
            0
        } else if ctx.index() == 0 {
            all_bound - plan.write_bound.first().copied().unwrap_or(0) + plan.summed.len()
        } else {
            0
        };
        // A panic here would be an engine bug (the `Vm`'s are caught per transaction).
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_lane(vm, txns, storage, &plan, lane, &stop, extra, keep_lanes)
        }))
        .ok();
        if result.as_ref().is_none_or(|r| r.violated) {
            stop.store(true, Ordering::Relaxed);
        }
        result
    });
    let ran = Instant::now();
    let mut lanes = Vec::with_capacity(results.len());
    for (lane, result) in plan.lanes.iter().zip(results) {
        match result {
            Some(r) if !r.violated && r.outputs.len() == lane.len() => lanes.push(r),
            _ => return Partitioned::Violated,
        }
    }
    let mut outputs = Vec::with_capacity(txns.len());
    let mut writes = Vec::new();
    let mut kept = Vec::new();
    let mut totals: Slots = vec![None; plan.summed.len()];
    let mut lane_outputs = Vec::with_capacity(lanes.len());
    for lane in lanes {
        if keep_lanes {
            kept.push((LaneWrites::Values(lane.overlay), lane.filter));
        } else if writes.capacity() == 0 {
            writes = lane.writes;
        } else {
            writes.extend(lane.writes);
        }
        for (total, slot) in totals.iter_mut().zip(lane.sums) {
            let Some((k, d)) = slot else { continue };
            match total {
                None => *total = Some((k, d)),
                // Two keys of one identity: not summed apart (astronomically rare).
                Some((t, _)) if *t != k => return Partitioned::Violated,
                Some((_, sum)) => {
                    sum.add = sum.add.wrapping_add(d.add);
                    sum.sub = match sum.sub.checked_add(d.sub) {
                        Some(s) => s,
                        None => return Partitioned::Violated,
                    };
                }
            }
        }
        lane_outputs.push(lane.outputs.into_iter());
    }
    for &lane in &plan.lane_of {
        match lane_outputs.get_mut(lane as usize).and_then(Iterator::next) {
            Some(o) => outputs.push(o),
            None => return Partitioned::Violated,
        }
    }
    for (k, d) in totals.into_iter().flatten() {
        let base = num_of(&storage.get(&k));
        let end = if d.sub == 0 {
            base.wrapping_add(d.add)
        } else {
            // Every `try_sub` succeeded in its lane; they all succeed in block order too when
            // their total fits in the base value and no add wrapped.
            match base.checked_add(d.add) {
                Some(top) if d.sub <= base => top - d.sub,
                _ => return Partitioned::Violated,
            }
        };
        writes.push((k, Some(Value::Num(end))));
    }
    Partitioned::Done(
        Parts {
            outputs,
            writes,
            lanes: kept,
        },
        plan.groups,
        Phases {
            planning: planned - started,
            merging: ran.elapsed(),
        },
    )
}

/// A lane's (or the block's) changes to a summed key: what was added, and what was taken
/// by successful `try_sub`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sums {
    add: u128,
    sub: u128,
}

struct LaneResult<O> {
    outputs: Vec<O>,
    writes: Vec<(Key, Option<Value>)>,
    /// With `keep_lanes`, the lane's writes as a map (and `writes` empty), and their filter.
    overlay: KeyMap<Option<Value>>,
    filter: KeyFilter,
    sums: Slots,
    violated: bool,
}

/// Runs a lane's transactions in order; `extra`: room to leave in its list of writes;
/// `keep`: return the writes as the lane's map instead of a list.
#[allow(clippy::too_many_arguments)]
fn run_lane<V: Vm, S: Storage>(
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
    plan: &Plan,
    lane: &[u32],
    stop: &AtomicBool,
    extra: usize,
    keep: bool,
) -> LaneResult<V::Output> {
    // As much room as the sequential executor's overlay gives a transaction (room for every
    // declared key measured slower: bigger maps cost more than the rehashes they save).
    let mut overlay = key_map_with_capacity(lane.len() * 4);
    let mut sums: Slots = vec![None; plan.summed.len()];
    let mut undo = Vec::with_capacity(16);
    let mut outputs = Vec::with_capacity(lane.len());
    let mut violated = false;
    for &i in lane {
        let Some(txn) = txns.get(i as usize) else {
            violated = true;
            break;
        };
        undo.clear();
        let mut view = FootprintView {
            base: storage,
            overlay: &mut overlay,
            sums: &mut sums,
            undo: &mut undo,
            touches: plan.touches_of(i),
            summed: &plan.summed,
            violated: false,
        };
        let output = run_one(vm, txn, &mut view);
        if view.violated || stop.load(Ordering::Relaxed) {
            violated = true;
            break;
        }
        outputs.push(output);
    }
    let mut writes = Vec::new();
    let mut filter = KeyFilter::of(std::iter::empty());
    if !violated {
        if keep {
            filter = KeyFilter::of(overlay.keys());
        } else {
            writes.reserve_exact(overlay.len() + extra);
            writes.extend(overlay.drain());
        }
    }
    LaneResult {
        outputs,
        writes,
        overlay,
        filter,
        sums,
        violated,
    }
}

enum Undo {
    Overlay(Key, Option<Option<Value>>),
    /// A summed key's slot and its sums before (`None`: untouched).
    Sum(usize, Option<Sums>),
}

/// A sequential view restricted to a footprint: exclusive keys in the lane's overlay,
/// summed keys in the lane's delta sums.
struct FootprintView<'a, S> {
    base: &'a S,
    overlay: &'a mut KeyMap<Option<Value>>,
    sums: &'a mut Slots,
    undo: &'a mut Vec<Undo>,
    /// The transaction's compact footprint.
    touches: &'a [u64],
    /// Keys only ever added to, by more than one transaction of the block.
    summed: &'a Summed,
    violated: bool,
}

impl<S: Storage> FootprintView<'_, S> {
    /// How the transaction declared `key`: a mask of kind bits (0: not at all).
    fn declared(&self, key: &Key) -> u8 {
        let id = ident(key);
        if self.touches.len() <= LINEAR_CHECK {
            // Without branches: this runs for every state operation of every transaction
            // (`1 << kind` is the kind's bit, see `kind_bit`).
            // `t ^ id < 4`: the same identity (an identity's two low bits are clear).
            let mut mask = 0u8;
            for &t in self.touches {
                mask |= u8::from(t ^ id < 4) << (t & 3);
            }
            return mask;
        }
        // Sorted by `Chunk::of`: from the first word of this identity, while it lasts.
        let from = self.touches.partition_point(|&t| t & !3 < id);
        let mut mask = 0;
        for &t in self.touches.get(from..).unwrap_or(&[]) {
            if t & !3 != id {
                break;
            }
            mask |= kind_bit(t);
        }
        mask
    }

    /// Whether the transaction may write `key`; notes a violation if not.
    fn exclusive(&mut self, key: &Key) -> bool {
        if self.declared(key) & WRITE_BIT == 0 {
            // An explicit branch: `violated |= !ok` was compiled into an unconditional
            // `violated = true` here (rustc 1.95, opt-level 3).
            self.violated = true;
            return false;
        }
        true
    }

    fn current(&self, key: &Key) -> Option<Value> {
        match self.overlay.get(key) {
            Some(v) => v.clone(),
            None => self.base.get(key),
        }
    }

    fn set(&mut self, key: Key, value: Option<Value>) {
        let prev = self.overlay.insert(key, value);
        self.undo.push(Undo::Overlay(key, prev));
    }

    /// Replaces the lane's sums of summed key `key`, in slot `i`, by `f` of them (zeros if
    /// the lane has not touched it), with an undo entry. False, noting a violation, if the
    /// slot holds another key of the same identity or `f` refuses (`None`).
    fn update_sums(&mut self, i: usize, key: Key, f: impl FnOnce(Sums) -> Option<Sums>) -> bool {
        let Some(slot) = self.sums.get_mut(i) else {
            self.violated = true;
            return false;
        };
        let prev = match slot {
            None => None,
            Some((k, sums)) if *k == key => Some(*sums),
            Some(_) => {
                self.violated = true;
                return false;
            }
        };
        let Some(next) = f(prev.unwrap_or_default()) else {
            self.violated = true;
            return false;
        };
        *slot = Some((key, next));
        self.undo.push(Undo::Sum(i, prev));
        true
    }

    fn stop() -> Halt {
        Halt { blocking: 0 }
    }
}

impl<S: Storage> StateView for FootprintView<'_, S> {
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>> {
        if self.declared(key) & (READ_BIT | WRITE_BIT) == 0 {
            self.violated = true;
            return Err(Self::stop());
        }
        Ok(self.current(key))
    }

    fn write(&mut self, key: Key, value: Option<Value>) {
        if self.exclusive(&key) {
            self.set(key, value);
        }
    }

    fn add(&mut self, key: Key, delta: u128) {
        let declared = self.declared(&key);
        if declared & (WRITE_BIT | ADD_BIT | SUB_BIT) == 0 {
            self.violated = true;
            return;
        }
        let slot = if declared & WRITE_BIT == 0 {
            self.summed.slot(ident(&key))
        } else {
            None
        };
        if let Some(i) = slot {
            // Only ever added to (or subtracted from) in this block, by several
            // transactions: summed apart, in any order.
            self.update_sums(i, key, |mut sums| {
                sums.add = sums.add.wrapping_add(delta);
                Some(sums)
            });
        } else {
            // Its other touchers, if any, are in this lane's group: in block order.
            let now = num_of(&self.current(&key));
            self.set(key, Some(Value::Num(now.wrapping_add(delta))));
        }
    }

    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool> {
        let declared = self.declared(&key);
        if declared & WRITE_BIT == 0 {
            if declared & SUB_BIT == 0 {
                self.violated = true;
                return Err(Self::stop());
            }
            if let Some(i) = self.summed.slot(ident(&key)) {
                // Against the base value and this lane's own changes. A failure could be a
                // success in block order (another lane may add first): undecidable here.
                let base = num_of(&self.base.get(&key));
                let taken = self.update_sums(i, key, |mut sums| {
                    let now = base.checked_add(sums.add)?.checked_sub(sums.sub)?;
                    sums.sub = sums.sub.checked_add(amount).filter(|_| now >= amount)?;
                    Some(sums)
                });
                return if taken { Ok(true) } else { Err(Self::stop()) };
            }
        }
        let now = num_of(&self.current(&key));
        if now >= amount {
            self.set(key, Some(Value::Num(now - amount)));
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.undo.len())
    }

    fn rollback(&mut self, checkpoint: Checkpoint) {
        while self.undo.len() > checkpoint.0 {
            match self.undo.pop() {
                Some(Undo::Overlay(key, before)) => restore(self.overlay, key, before),
                Some(Undo::Sum(i, before)) => {
                    if let Some(slot) = self.sums.get_mut(i) {
                        match (slot.as_mut(), before) {
                            (Some((_, sums)), Some(b)) => *sums = b,
                            _ => *slot = None,
                        }
                    }
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key in the map passes its filter, and most keys not in it do not.
    #[test]
    fn the_key_filter_passes_its_keys_and_few_others() {
        let key = |i: u32| Key::from_array(i.to_be_bytes());
        let keys: Vec<Key> = (0..10_000).map(key).collect();
        let filter = KeyFilter::of(keys.iter());
        assert!(keys.iter().all(|k| filter.may_hold(k)));
        let passed = (10_000..20_000)
            .filter(|i| filter.may_hold(&key(*i)))
            .count();
        assert!(passed < 2_000, "{passed} of 10,000 absent keys passed");
        assert!(!KeyFilter::of(std::iter::empty()).may_hold(&key(1)));
    }

    /// The footprint checks, which must hold in release builds too (`cargo test --release`):
    /// an earlier form of `exclusive` was compiled into an unconditional violation there.
    #[test]
    fn the_view_allows_what_is_declared_and_nothing_else() {
        let (w, a, r, other) = (
            Key::from_array([1u8, 2]),
            Key::from_array([3u8, 4]),
            Key::from_array([5u8]),
            Key::from_array([6u8]),
        );
        let touches = [touch(&w, WRITE), touch(&a, ADD), touch(&r, READ)];
        let mut base: KeyMap<Value> = key_map_with_capacity(4);
        base.insert(w, Value::Num(10));
        base.insert(a, Value::Num(1));
        let summed = Summed::new(Vec::new());
        let (mut overlay, mut sums, mut undo) = (key_map_with_capacity(4), Vec::new(), Vec::new());
        let mut view = FootprintView {
            base: &base,
            overlay: &mut overlay,
            sums: &mut sums,
            undo: &mut undo,
            touches: &touches,
            summed: &summed,
            violated: false,
        };
        assert_eq!(view.declared(&w), WRITE_BIT);
        assert_eq!(view.declared(&a), ADD_BIT);
        assert_eq!(view.declared(&other), 0);
        assert_eq!(view.read(&r), Ok(None));
        assert_eq!(view.try_sub(w, 4), Ok(true));
        view.write(w, Some(Value::Num(5)));
        view.add(a, 2);
        view.add(w, 1);
        assert!(!view.violated);
        assert_eq!(view.read(&w), Ok(Some(Value::Num(6))));
        // Not summed (a single toucher): applied in the lane's overlay.
        assert_eq!(view.current(&a), Some(Value::Num(3)));
        for bad in 0..4 {
            view.violated = false;
            match bad {
                0 => assert!(view.read(&a).is_err()),
                1 => view.write(r, None),
                2 => view.add(r, 1),
                _ => assert!(view.try_sub(a, 1).is_err()),
            }
            assert!(view.violated, "operation {bad}");
        }
    }
}
