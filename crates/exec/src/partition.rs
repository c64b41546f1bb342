//! Footprint-partitioned execution: when every transaction of a block declares the keys it
//! may touch ([`Vm::footprint`]), the block is split into groups that share no key and the
//! groups run on the workers as plain sequential runs, with no multi-version memory, no
//! validation and no scheduler.
//!
//! Grouping: two transactions are in one group when a key is exclusive (written or
//! `try_sub`ed) in one of them and touched in any way by the other, transitively (union-find
//! over the transactions). Keys that are only read join nobody. A key that every transaction touching it only `add`s to (a fee
//! account, a hot recipient) joins nobody: each worker sums its deltas apart and the sums are
//! added to the base value at the end, which is exact because deltas commute (wrapping).
//! Groups are dealt to the workers largest first onto the least loaded (LPT); a worker runs its
//! transactions in block order.
//!
//! Invariants:
//! - The result equals sequential execution: within a group the order is the block's, and
//!   different groups touch disjoint keys except pure-delta keys, whose final value is the
//!   same sum in any order.
//! - Every state operation is checked against the transaction's footprint; one outside it
//!   (a `Vm` bug or a lie) makes the whole attempt return [`Partitioned::Violated`] and the
//!   caller runs the block through the general engine. Nothing of the attempt is kept.
//! - No keys are shared between the workers' overlays, so merging them is a concatenation.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::sequential::run_one;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::types::{
    key_map_with_capacity, num_of, BlockOutput, Checkpoint, Footprint, Halt, Key, KeyHasher,
    KeyMap, StateResult, StateView, Storage, Value, Vm, WriteSet,
};

/// What a partitioned attempt gave.
pub(crate) enum Partitioned<O> {
    /// Some transaction declared no footprint, or the block is one group: not attempted.
    NotApplicable,
    /// A transaction touched a key outside its footprint: run the block another way.
    Violated,
    /// The block's result, and how many groups it had.
    Done(BlockOutput<O>, usize),
}

/// How a key is touched in a block: bits of a mask.
const READ: u8 = 1;
const ADD: u8 = 2;
const WRITE: u8 = 4;

/// Whether the transactions touching a key this way must run in order (in one group): unless
/// they only read it, or only add to it.
fn joins(kinds: u8) -> bool {
    kinds != READ && kinds != ADD
}

/// Per key hash: its first toucher and the mask of how it is touched. Keys are told apart by
/// their 64-bit hash only: two keys with one hash are treated as one key, which can only join
/// groups (and make a key count as "not only added to"), never split them.
type KeyUse = HashMap<u64, (u32, u8), BuildHasherDefault<KeyHasher>>;

/// The plan: footprints, which delta keys are pure, and each worker's transactions.
struct Plan {
    footprints: Vec<Footprint>,
    /// For transaction `i`, `pure[delta_at[i] + j]`: whether its `j`-th delta key is only ever
    /// added to in this block.
    pure: Vec<bool>,
    delta_at: Vec<u32>,
    lanes: Vec<Vec<u32>>,
    groups: usize,
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let p = parent[i as usize];
        parent[i as usize] = parent[p as usize];
        i = p;
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // The smaller index is the root: deterministic, and roots stay early.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// Groups the block and deals the groups to `workers` lanes; `None` if a transaction has no
/// footprint or if one lane would get more than `max_share` of the transactions (then the
/// block is better run sequentially or by the general engine).
fn plan<V: Vm>(vm: &V, txns: &[V::Txn], workers: usize, max_share: f64) -> Option<Plan> {
    let n = txns.len();
    let mut footprints = Vec::with_capacity(n);
    for t in txns {
        footprints.push(vm.footprint(t)?);
    }
    // Every key: its first toucher and how it is touched.
    let mut keys: KeyUse = HashMap::with_capacity_and_hasher(n * 4, Default::default());
    for (i, fp) in footprints.iter().enumerate() {
        let touches = fp
            .exclusive
            .iter()
            .map(|k| (k, WRITE))
            .chain(fp.reads.iter().map(|k| (k, READ)))
            .chain(fp.deltas.iter().map(|k| (k, ADD)));
        for (k, kind) in touches {
            keys.entry(k.hash64()).or_insert((i as u32, 0)).1 |= kind;
        }
    }
    // Join every toucher of a key to its first, unless the key is only read or only added to.
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let mut pure = Vec::with_capacity(n * 2);
    let mut delta_at = Vec::with_capacity(n);
    for (i, fp) in footprints.iter().enumerate() {
        for k in fp.exclusive.iter().chain(&fp.reads) {
            if let Some(&(first, kinds)) = keys.get(&k.hash64()) {
                if joins(kinds) && first != i as u32 {
                    union(&mut parent, i as u32, first);
                }
            }
        }
        delta_at.push(pure.len() as u32);
        for k in &fp.deltas {
            let (first, kinds) = keys.get(&k.hash64()).copied().unwrap_or((i as u32, ADD));
            if joins(kinds) && first != i as u32 {
                union(&mut parent, i as u32, first);
            }
            pure.push(kinds == ADD);
        }
    }
    // Group sizes, by root.
    let mut size = vec![0u32; n];
    let mut roots = Vec::new();
    for i in 0..n as u32 {
        let r = find(&mut parent, i);
        if size[r as usize] == 0 {
            roots.push(r);
        }
        size[r as usize] += 1;
    }
    let groups = roots.len();
    let largest = roots.iter().map(|r| size[*r as usize]).max().unwrap_or(0) as usize;
    if largest as f64 > max_share * n as f64 {
        return None;
    }
    // Largest group first onto the least loaded lane; ties by root, so deterministic.
    roots.sort_unstable_by_key(|r| (std::cmp::Reverse(size[*r as usize]), *r));
    let mut load = vec![0usize; workers];
    let mut lane_of_root = vec![u32::MAX; n];
    for r in roots {
        let (lane, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(l, w)| (**w, *l))
            .unwrap_or((0, &0));
        load[lane] += size[r as usize] as usize;
        lane_of_root[r as usize] = lane as u32;
    }
    let mut lanes: Vec<Vec<u32>> = load.iter().map(|w| Vec::with_capacity(*w)).collect();
    for i in 0..n as u32 {
        let r = find(&mut parent, i);
        lanes[lane_of_root[r as usize] as usize].push(i);
    }
    Some(Plan {
        footprints,
        pure,
        delta_at,
        lanes,
        groups,
    })
}

/// Runs `txns` partitioned on the pool, if every transaction declares a footprint and the
/// block splits well enough (no lane over `max_share` of it).
pub(crate) fn execute<V: Vm, S: Storage>(
    pool: &rayon::ThreadPool,
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
    max_share: f64,
) -> Partitioned<V::Output> {
    let workers = pool.current_num_threads().max(1);
    let Some(plan) = plan(vm, txns, workers, max_share) else {
        return Partitioned::NotApplicable;
    };
    let results = pool.broadcast(|ctx| {
        let lane = plan.lanes.get(ctx.index())?;
        // A panic here would be an engine bug (the `Vm`'s are caught per transaction).
        catch_unwind(AssertUnwindSafe(|| {
            run_lane(vm, txns, storage, &plan, lane)
        }))
        .ok()
    });
    let mut outputs: Vec<Option<V::Output>> = (0..txns.len()).map(|_| None).collect();
    let mut writes = Vec::with_capacity(txns.len() * 4);
    let mut deltas: KeyMap<u128> = key_map_with_capacity(txns.len());
    for (lane, result) in plan.lanes.iter().zip(results) {
        let Some(result) = result else {
            return Partitioned::Violated;
        };
        if result.violated || result.outputs.len() != lane.len() {
            return Partitioned::Violated;
        }
        for (i, o) in lane.iter().zip(result.outputs) {
            outputs[*i as usize] = Some(o);
        }
        writes.extend(result.overlay);
        for (k, d) in result.deltas {
            let sum = deltas.entry(k).or_insert(0);
            *sum = sum.wrapping_add(d);
        }
    }
    for (k, d) in deltas {
        let now = num_of(&storage.get(&k));
        writes.push((k, Some(Value::Num(now.wrapping_add(d)))));
    }
    let outputs: Option<Vec<V::Output>> = outputs.into_iter().collect();
    match outputs {
        Some(outputs) => Partitioned::Done(
            BlockOutput {
                outputs,
                writes: WriteSet(writes),
            },
            plan.groups,
        ),
        None => Partitioned::Violated,
    }
}

struct LaneResult<O> {
    outputs: Vec<O>,
    overlay: KeyMap<Option<Value>>,
    deltas: KeyMap<u128>,
    violated: bool,
}

fn run_lane<V: Vm, S: Storage>(
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
    plan: &Plan,
    lane: &[u32],
) -> LaneResult<V::Output> {
    let mut overlay = key_map_with_capacity(lane.len() * 3);
    let mut deltas = key_map_with_capacity(lane.len());
    let mut undo = Vec::with_capacity(16);
    let mut outputs = Vec::with_capacity(lane.len());
    for &i in lane {
        undo.clear();
        let mut view = FootprintView {
            base: storage,
            overlay: &mut overlay,
            deltas: &mut deltas,
            undo: &mut undo,
            footprint: &plan.footprints[i as usize],
            pure: plan
                .pure
                .get(plan.delta_at[i as usize] as usize..)
                .unwrap_or(&[]),
            violated: false,
        };
        let output = run_one(vm, &txns[i as usize], &mut view);
        if view.violated {
            return LaneResult {
                outputs,
                overlay,
                deltas,
                violated: true,
            };
        }
        outputs.push(output);
    }
    LaneResult {
        outputs,
        overlay,
        deltas,
        violated: false,
    }
}

enum Undo {
    Overlay(Key, Option<Option<Value>>),
    Delta(Key, Option<u128>),
}

/// A sequential view restricted to a footprint: exclusive keys in the lane's overlay,
/// pure-delta keys summed apart.
struct FootprintView<'a, S> {
    base: &'a S,
    overlay: &'a mut KeyMap<Option<Value>>,
    deltas: &'a mut KeyMap<u128>,
    undo: &'a mut Vec<Undo>,
    footprint: &'a Footprint,
    /// Whether each of the footprint's delta keys is only ever added to in the block.
    pure: &'a [bool],
    violated: bool,
}

impl<S: Storage> FootprintView<'_, S> {
    fn exclusive(&mut self, key: &Key) -> bool {
        let ok = self.footprint.exclusive.contains(key);
        self.violated |= !ok;
        ok
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

    fn stop() -> Halt {
        Halt { blocking: 0 }
    }
}

impl<S: Storage> StateView for FootprintView<'_, S> {
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>> {
        if !self.footprint.reads.contains(key) && !self.exclusive(key) {
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
        let pure_delta = if self.footprint.exclusive.contains(&key) {
            false
        } else if let Some(j) = self.footprint.deltas.iter().position(|k| *k == key) {
            self.pure.get(j).copied().unwrap_or(false)
        } else {
            self.violated = true;
            return;
        };
        if pure_delta {
            // Only ever added to in this block: summed apart, in any order.
            let prev = self.deltas.get(&key).copied();
            self.deltas
                .insert(key, prev.unwrap_or(0).wrapping_add(delta));
            self.undo.push(Undo::Delta(key, prev));
        } else {
            // Its other touchers are in this lane's group: in block order.
            let now = num_of(&self.current(&key));
            self.set(key, Some(Value::Num(now.wrapping_add(delta))));
        }
    }

    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool> {
        if !self.exclusive(&key) {
            return Err(Self::stop());
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
                Some(Undo::Overlay(key, Some(v))) => {
                    self.overlay.insert(key, v);
                }
                Some(Undo::Overlay(key, None)) => {
                    self.overlay.remove(&key);
                }
                Some(Undo::Delta(key, Some(d))) => {
                    self.deltas.insert(key, d);
                }
                Some(Undo::Delta(key, None)) => {
                    self.deltas.remove(&key);
                }
                None => break,
            }
        }
    }
}
