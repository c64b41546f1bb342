//! Home lanes: when every transaction of a block acts for one account (its *home*,
//! [`Vm::homes`]) and the state's keys belong to accounts ([`Vm::key_home`]), the block is run
//! with no planning at all. Homes are split evenly between the workers by their ids; each
//! worker runs the transactions of its homes, in block order, as a plain sequential run over
//! its own overlay.
//!
//! When some transactions act for several homes (a swap: its sender and its pool), the
//! lanes are planned first ([`plan`]), which is still far cheaper than grouping by keys: a
//! union-find over the homes' ids (one to six per transaction, nothing hashed), the groups
//! dealt to the lanes largest first, and every home of a group owned by its lane. Homes no
//! transaction acts for are dealt by their ids, as without a plan.
//!
//! What a transaction may do in its lane: anything on the keys of its own lane's homes
//! (*local* keys); on any other key (a *foreign* key, or one of no home) `add`, `try_sub`,
//! and read it (*borrow* it). A lane's foreign `add`s and successful `try_sub`s are kept
//! apart as a *flow* per key (added, taken). A foreign `try_sub` succeeds if the lane's
//! takings from the key fit in its base value; the fold checks that every lane's together
//! fit, and that the key's owner did not touch it, so that every one succeeds in block
//! order too (a vault that many pay out of). A borrowed key is read from the base state and
//! noted: the fold checks that nothing in the block changed it (its owner did not write it,
//! and no lane added to it or took from it), so every borrower saw the value it would have
//! seen in block order. Anything else (a write of a key another lane owns, or a foreign
//! `try_sub` that does not fit) is a *violation*: the attempt is abandoned, nothing of it is
//! kept, and the caller runs the block another way.
//!
//! A local key may still receive other lanes' deltas, which the lane did not see. That is
//! exact only if nothing the lane did depends on the key's exact value: so every local key
//! the lane *exposed* is marked (read it, overwrote it, failed to `try_sub` from it, or saw a
//! value of 2^127 or more), and a foreign delta that lands on an exposed key is a
//! *conflict*: the attempt is abandoned as for a violation. What stays unexposed was only
//! added to and successfully `try_sub`ed from; other lanes' adds only raise it, so every such
//! `try_sub` succeeds in block order too, and the end value is the lane's plus the deltas.
//!
//! How it runs:
//! 1. In parallel, one lane per worker: each worker scans the block for its transactions
//!    (a [`Vm::homes`] call each, no exchange between workers) and runs them. If a worker
//!    meets a transaction of several homes, they stop; the block is planned serially and
//!    the lanes run the plan's lists instead.
//! 2. In parallel, one lane per worker: each worker checks the keys borrowed from it, folds
//!    the deltas aimed at its keys (from every lane's foreign deltas) into its overlay, and
//!    turns the overlay into its part of the write set (or, when a barrier follows, hands the
//!    overlay back as it is, [`Parts::lanes`]). Keys of no home are checked and folded by the
//!    first worker. The last worker also puts the outputs in block order.
//! 3. Serially: the parts concatenated (into the first, which has room for all).
//!
//! Invariants:
//! - Every lane deals homes to lanes the same way ([`Deal`]), so each key with a home is
//!   local to exactly one lane; a plan puts all homes of a transaction in its lane.
//! - The result equals sequential execution: two lanes share no local key; a lane's
//!   transactions are in block order; what crosses lanes is only `add`s, which commute
//!   (wrapping) and, on an unexposed key, cannot change any outcome.
//! - A key that any lane took from by a foreign `try_sub` ends at its base value plus every
//!   lane's credits minus every lane's takings, which fit in the base value; its owner did
//!   not touch it.
//! - Deltas folded into a key a lane owns are credits (each below 2^127, their sum not
//!   wrapping), and a lane's deltas to one key stay below `2^127 / lanes`; with unexposed
//!   values below 2^127, no value in block order wraps. Deltas to a key no lane touched
//!   and none took from may be anything: they commute.
//! - Exposure is never undone: a rollback restores a key's value but keeps its mark (the
//!   decision to roll back may have depended on what was read).
//! - A borrowed key is neither written by its owner nor added to by any lane in the block;
//!   borrowing is never undone (a rollback keeps the note).
//! - A violation or a conflict returns [`Homed::Abandoned`] and nothing else.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::partition::{find, least_loaded, union, KeyFilter, LaneWrites, Layer, Parts, Phases};
use rayon::prelude::*;

use crate::sequential::run_one;
use crate::types::{
    key_map_with_capacity, num_of, restore, Checkpoint, Halt, Homes, Key, KeyHasher, KeyMap,
    StateResult, StateView, Storage, Value, Vm,
};

/// Values from here on are *big*: a local key that holds one is exposed.
const BIG: u128 = 1 << 127;

/// What a home-lane attempt gave.
pub(crate) enum Homed<O> {
    /// One worker, or the first transaction has no home: not attempted.
    NotApplicable,
    /// A later transaction has no home, a lane would get more than its share, or a
    /// violation or a conflict: nothing kept, run the block another way.
    Abandoned,
    /// The block's result (its writes as one list, or kept in the lanes' maps) and the wall
    /// time of the plan, if there was one, and of steps 2 and 3 (the merge).
    Done(Parts<O>, Phases),
}

/// The lane of a home, for `lanes` lanes (the id's high bits, spread evenly).
fn lane_of(home: u64, lanes: usize) -> usize {
    ((u128::from(home) * lanes as u128) >> 64) as usize
}

/// A local key in a lane's overlay.
#[derive(Clone)]
pub(crate) struct Slot {
    /// Its value, if `written`.
    pub value: Option<Value>,
    /// Whether the lane changed it (otherwise it is only marked exposed).
    pub written: bool,
    /// Whether something the lane did depends on its exact value.
    exposed: bool,
}

impl Layer for KeyMap<Slot> {
    fn written(&self, key: &Key) -> Option<Option<Value>> {
        self.get(key).filter(|s| s.written).map(|s| s.value.clone())
    }
}

/// What a lane did to a key it does not own: added (wrapping), and took by successful
/// `try_sub`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flow {
    add: u128,
    sub: u128,
    /// Whether an `add` was a debit (2^127 or more: a wrapping subtraction) or the sum of
    /// the adds wrapped: then the adds are not all credits, and the key's value in block
    /// order may dip below what a lane saw.
    debit: bool,
}

impl Flow {
    /// This flow with `delta` added.
    fn credit(self, delta: u128) -> Flow {
        let (add, wrapped) = self.add.overflowing_add(delta);
        Flow {
            add,
            debit: self.debit || wrapped || delta >= BIG,
            ..self
        }
    }

    /// Two lanes' flows to one key together; `None` if the takings overflow.
    fn join(self, other: Flow) -> Option<Flow> {
        let sum = self.credit(other.add);
        Some(Flow {
            sub: self.sub.checked_add(other.sub)?,
            debit: sum.debit || other.debit,
            ..sum
        })
    }

    /// The key's value at the end of the block, from `base`: `None` if it was taken from and
    /// the takings do not all fit in the base value, or the adds were not all credits or
    /// could wrap it (then some `try_sub` could have failed in block order).
    fn apply(self, base: u128) -> Option<u128> {
        if self.sub == 0 {
            return Some(base.wrapping_add(self.add));
        }
        if self.sub > base || self.debit {
            return None;
        }
        base.checked_add(self.add).map(|top| top - self.sub)
    }
}

enum Undo {
    /// A local key and its slot before (`None`: none).
    Local(Key, Option<Slot>),
    /// A foreign key, the lane it is kept for, and its flow before (`None`: none).
    Foreign(Key, usize, Option<Flow>),
}

/// A worker's part of the write set (a list, or kept as a map with its filter) and, from the
/// last worker, the outputs in block order.
struct Folded<O> {
    part: Vec<(Key, Option<Value>)>,
    kept: Option<(LaneWrites, KeyFilter)>,
    outputs: Option<Vec<O>>,
}

struct Lane<O> {
    /// The outputs of the lane's transactions, in block order.
    outputs: Vec<O>,
    overlay: KeyMap<Slot>,
    /// Deltas to keys the lane does not own, by the lane that owns them (keys of no home:
    /// the first).
    foreign: Vec<KeyMap<Flow>>,
    /// Keys the lane does not own that it read (from the base state), by the lane that owns
    /// them (keys of no home: the first).
    borrowed: Vec<KeyMap<()>>,
}

/// A `u64`-keyed map over home ids (already spread: passed through).
type IdMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// How homes are dealt to the lanes.
enum Deal {
    /// By the id's high bits ([`lane_of`]): every transaction has one home.
    Even,
    /// By a plan ([`plan`]): the lane of every home a transaction acts for; other homes
    /// by their ids, as [`Deal::Even`].
    Planned(IdMap<u32>),
}

impl Deal {
    /// The lane that owns home `h`. Any deal is exact as long as every lane uses the same
    /// one: a key belongs to one lane, which alone may read it as it is.
    fn lane(&self, h: u64, lanes: usize) -> usize {
        match self {
            Deal::Even => lane_of(h, lanes),
            Deal::Planned(map) => map
                .get(&h)
                .map_or_else(|| lane_of(h, lanes), |&l| l as usize),
        }
    }
}

/// Why a lane stopped.
enum Stop {
    /// A transaction acts for several homes: the block needs a plan.
    Several,
    /// Anything else: abandon the attempt.
    Abandon,
}

/// The transactions of a block grouped by the homes they share, dealt to the lanes.
struct Plan {
    /// Each lane's transactions, in block order.
    lists: Vec<Vec<u32>>,
    /// Each transaction's lane.
    lane_of_tx: Vec<u32>,
}

/// Groups `txns` by shared homes (union-find over home ids) and deals the groups to `lanes`
/// lanes, largest first onto the least loaded; `None` if a transaction has no home or a lane
/// would get more than `max_len` transactions. Also the lane of every home.
fn plan<V: Vm>(
    vm: &V,
    txns: &[V::Txn],
    lanes: usize,
    max_len: usize,
) -> Option<(IdMap<u32>, Plan)> {
    // The homes in parallel (a `Vm` call each); the union-find serially.
    let all: Vec<Homes> = txns.par_iter().map(|t| vm.homes(t)).collect();
    let mut node: IdMap<u32> = HashMap::with_capacity_and_hasher(txns.len(), Default::default());
    let mut parent: Vec<u32> = Vec::with_capacity(txns.len());
    let mut first = Vec::with_capacity(txns.len());
    for homes in &all {
        let mut root = None;
        for &h in homes.as_slice() {
            let n = *node.entry(h).or_insert_with(|| {
                parent.push(parent.len() as u32);
                (parent.len() - 1) as u32
            });
            match root {
                None => root = Some(n),
                Some(r) => union(&mut parent, r, n),
            }
        }
        first.push(root?);
    }
    let mut size = vec![0u32; parent.len()];
    for f in &mut first {
        *f = find(&mut parent, *f);
        size[*f as usize] += 1;
    }
    let mut groups: Vec<u32> = (0..parent.len() as u32)
        .filter(|&r| size[r as usize] > 0)
        .collect();
    groups.sort_unstable_by_key(|&r| (std::cmp::Reverse(size[r as usize]), r));
    let mut load = vec![0usize; lanes];
    // `size` becomes each group's lane.
    for r in groups {
        let lane = least_loaded(&load);
        load[lane] += size[r as usize] as usize;
        if load[lane] > max_len {
            return None;
        }
        size[r as usize] = lane as u32;
    }
    for n in node.values_mut() {
        *n = size[find(&mut parent, *n) as usize];
    }
    let mut lists: Vec<Vec<u32>> = load.iter().map(|l| Vec::with_capacity(*l)).collect();
    let mut lane_of_tx = Vec::with_capacity(txns.len());
    for (i, f) in first.iter().enumerate() {
        let lane = size[*f as usize];
        lists.get_mut(lane as usize)?.push(i as u32);
        lane_of_tx.push(lane);
    }
    Some((node, Plan { lists, lane_of_tx }))
}

/// Lane `lane`'s transactions, dealt by [`lane_of`] of their one home; `Err` if one has no
/// home or several, or the lane would get more than `max_len`.
fn scan<V: Vm>(
    vm: &V,
    txns: &[V::Txn],
    lane: usize,
    lanes: usize,
    max_len: usize,
) -> Result<Vec<u32>, Stop> {
    let mut indexes = Vec::with_capacity(txns.len() / lanes + txns.len() / 32 + 16);
    for (i, t) in txns.iter().enumerate() {
        let homes = vm.homes(t);
        let home = match homes.as_slice() {
            [h] => *h,
            [] => return Err(Stop::Abandon),
            _ => return Err(Stop::Several),
        };
        if lane_of(home, lanes) == lane {
            indexes.push(i as u32);
        }
    }
    if indexes.len() > max_len {
        return Err(Stop::Abandon);
    }
    Ok(indexes)
}

/// Runs `txns` in home lanes on the pool's workers, if every transaction has a home and no
/// lane gets more than `max_share` of them: dealt by their home's id if each has one, else
/// by a [`plan`]. With `keep`, the writes are returned in the lanes' maps
/// ([`Parts::lanes`]) for a caller that runs more on top of them.
pub(crate) fn execute<V: Vm, S: Storage>(
    pool: &rayon::ThreadPool,
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
    max_share: f64,
    keep: bool,
) -> Homed<V::Output> {
    let lanes = pool.current_num_threads();
    if lanes < 2 || txns.first().is_none_or(|t| vm.homes(t).is_empty()) {
        return Homed::NotApplicable;
    }
    let max_len = (max_share * txns.len() as f64) as usize;
    let mut deal = Deal::Even;
    let mut planning = Duration::ZERO;
    let mut planned: Option<Plan> = None;
    let ran = loop {
        let stop = AtomicBool::new(false);
        let lists = planned.as_ref().map(|p| &p.lists);
        let ran: Vec<Result<Lane<V::Output>, Stop>> = pool.broadcast(|ctx| {
            let lane = ctx.index();
            // A panic here would be an engine bug (the `Vm`'s are caught per transaction).
            let result = catch_unwind(AssertUnwindSafe(|| {
                let scanned;
                let indexes = match lists {
                    Some(lists) => lists.get(lane).ok_or(Stop::Abandon)?,
                    None => {
                        scanned = scan(vm, txns, lane, lanes, max_len)?;
                        &scanned
                    }
                };
                run_lane(vm, txns, storage, lane, lanes, &deal, indexes, &stop).ok_or(Stop::Abandon)
            }))
            .unwrap_or(Err(Stop::Abandon));
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            result
        });
        let several = ran.iter().any(|r| matches!(r, Err(Stop::Several)));
        if ran.iter().any(|r| matches!(r, Err(Stop::Abandon))) {
            return Homed::Abandoned;
        }
        if !several {
            break ran;
        }
        // Some transaction acts for several homes: group them, once.
        if planned.is_some() {
            return Homed::Abandoned;
        }
        let started = Instant::now();
        let Some((homes, p)) = plan(vm, txns, lanes, max_len) else {
            return Homed::Abandoned;
        };
        planning = started.elapsed();
        deal = Deal::Planned(homes);
        planned = Some(p);
    };
    let Ok(ran) = ran.into_iter().collect::<Result<Vec<_>, Stop>>() else {
        return Homed::Abandoned;
    };
    let merging = Instant::now();
    let mut overlays = Vec::with_capacity(ran.len());
    let mut foreigns = Vec::with_capacity(ran.len());
    let mut borrowed = Vec::with_capacity(ran.len());
    let mut ordered = Vec::with_capacity(ran.len());
    // The first part gets room for all: the others are appended without a reallocation.
    let mut bound = 0;
    for lane in ran {
        bound += lane.overlay.len() + lane.foreign.iter().map(KeyMap::len).sum::<usize>();
        overlays.push(Mutex::new(lane.overlay));
        foreigns.push(lane.foreign);
        borrowed.push(lane.borrowed);
        ordered.push(lane.outputs.into_iter());
    }
    let ordered = Mutex::new(ordered);
    let limit = (BIG - 1) / lanes as u128;
    let folded: Vec<Option<Folded<V::Output>>> = pool.broadcast(|ctx| {
        let w = ctx.index();
        // Each worker locks only its own lane's overlay.
        let mut overlay = overlays.get(w)?.lock().ok()?;
        // A key another lane read from the base state must not have changed in the block:
        // not written by this lane, and added to by none.
        for key in borrowed
            .iter()
            .filter_map(|b| b.get(w))
            .flat_map(KeyMap::keys)
        {
            if overlay.get(key).is_some_and(|s| s.written)
                || foreigns
                    .iter()
                    .any(|f| f.get(w).is_some_and(|f| f.contains_key(key)))
            {
                return None;
            }
        }
        let mut part = if keep {
            Vec::new()
        } else {
            Vec::with_capacity(if w == 0 { bound } else { overlay.len() * 2 })
        };
        // Keys this lane never touched that other lanes added to: base plus the deltas,
        // summed in `extra` first when several lanes may add to one (homeless keys, or more
        // than two lanes).
        let mut extra: KeyMap<Flow> = key_map_with_capacity(0);
        for foreign in foreigns.iter().filter_map(|f| f.get(w)) {
            for (key, &flow) in foreign {
                match overlay.get_mut(key) {
                    Some(slot) => {
                        // Other lanes' subtractions from a key this lane touched: not
                        // checked against its own; credits onto what it exposed: a conflict.
                        if flow.sub > 0
                            || flow.debit
                            || slot.exposed
                            || !slot.written
                            || flow.add > limit
                        {
                            return None;
                        }
                        // Below 2^127, plus under 2^127 from all lanes: cannot wrap (checked
                        // all the same: this runs outside any `catch_unwind`).
                        let sum = num_of(&slot.value).checked_add(flow.add)?;
                        slot.value = Some(Value::Num(sum));
                    }
                    None if lanes == 2 && vm.key_home(key).is_some() => {
                        // The only other lane's flow for this key.
                        let end = flow.apply(num_of(&storage.get(key)))?;
                        part.push((*key, Some(Value::Num(end))));
                    }
                    None => {
                        let e = extra.entry(*key).or_default();
                        *e = e.join(flow)?;
                    }
                }
            }
        }
        let mut summed = Vec::with_capacity(extra.len());
        for (k, flow) in extra {
            let end = flow.apply(num_of(&storage.get(&k)))?;
            summed.push((k, Some(Value::Num(end))));
        }
        let kept = if keep {
            // The overlay as it is (its slots that only mark a read are skipped by readers);
            // the keys it never touched go with the summed keys, in `part`.
            part.extend(summed);
            let overlay = std::mem::take(&mut *overlay);
            let filter = KeyFilter::of(overlay.keys());
            Some((LaneWrites::Homes(overlay), filter))
        } else {
            part.reserve(overlay.len());
            part.extend(
                overlay
                    .drain()
                    .filter(|(_, s)| s.written)
                    .map(|(k, s)| (k, s.value)),
            );
            part.extend(summed);
            None
        };
        // The last worker (the first has the concatenation ahead) puts the outputs in block
        // order: each lane's are in block order.
        let outputs = if w + 1 == lanes {
            let mut ordered = ordered.lock().ok()?;
            let mut outputs = Vec::with_capacity(txns.len());
            for (i, t) in txns.iter().enumerate() {
                let lane = match &planned {
                    Some(p) => *p.lane_of_tx.get(i)? as usize,
                    None => lane_of(*vm.homes(t).as_slice().first()?, lanes),
                };
                outputs.push(ordered.get_mut(lane)?.next()?);
            }
            Some(outputs)
        } else {
            None
        };
        Some(Folded {
            part,
            kept,
            outputs,
        })
    });
    let Some(folded) = folded.into_iter().collect::<Option<Vec<_>>>() else {
        return Homed::Abandoned;
    };
    let mut writes = Vec::new();
    let mut outputs = Vec::new();
    let mut lanes_kept = Vec::with_capacity(if keep { folded.len() } else { 0 });
    for f in folded {
        if writes.capacity() == 0 {
            writes = f.part;
        } else {
            writes.extend(f.part);
        }
        lanes_kept.extend(f.kept);
        if let Some(o) = f.outputs {
            outputs = o;
        }
    }
    Homed::Done(
        Parts {
            outputs,
            writes,
            lanes: lanes_kept,
        },
        Phases {
            planning,
            merging: merging.elapsed(),
        },
    )
}

/// Runs lane `lane`'s transactions `indexes`; `None` on a violation, or once another lane
/// raised `stop`.
#[allow(clippy::too_many_arguments)]
fn run_lane<V: Vm, S: Storage>(
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
    lane: usize,
    lanes: usize,
    deal: &Deal,
    indexes: &[u32],
    stop: &AtomicBool,
) -> Option<Lane<V::Output>> {
    // As much room as the sequential executor's overlay gives a transaction.
    let mut overlay = key_map_with_capacity(indexes.len() * 4);
    let mut foreign: Vec<KeyMap<Flow>> = (0..lanes)
        .map(|l| key_map_with_capacity(if l == lane { 0 } else { indexes.len() / lanes }))
        .collect();
    let mut borrowed: Vec<KeyMap<()>> = (0..lanes).map(|_| key_map_with_capacity(0)).collect();
    let mut outputs = Vec::with_capacity(indexes.len());
    let mut undo = Vec::with_capacity(16);
    for &i in indexes {
        let txn = txns.get(i as usize)?;
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        undo.clear();
        let mut view = HomeView {
            vm,
            base: storage,
            lane,
            lanes,
            deal,
            overlay: &mut overlay,
            foreign: &mut foreign,
            borrowed: &mut borrowed,
            undo: &mut undo,
            violated: false,
        };
        let output = run_one(vm, txn, &mut view);
        if view.violated {
            return None;
        }
        outputs.push(output);
    }
    Some(Lane {
        outputs,
        overlay,
        foreign,
        borrowed,
    })
}

/// A sequential view over a lane's overlay that allows only `add` on keys of other lanes.
struct HomeView<'a, V, S> {
    vm: &'a V,
    base: &'a S,
    lane: usize,
    lanes: usize,
    deal: &'a Deal,
    overlay: &'a mut KeyMap<Slot>,
    foreign: &'a mut [KeyMap<Flow>],
    borrowed: &'a mut [KeyMap<()>],
    undo: &'a mut Vec<Undo>,
    violated: bool,
}

impl<V: Vm, S: Storage> HomeView<'_, V, S> {
    /// Whether a lane owns `key` (it has a home), and the lane its deltas and borrows are
    /// kept for: the owner, or for a key of no home the first.
    fn owner(&self, key: &Key) -> (bool, usize) {
        match self.vm.key_home(key) {
            Some(h) => (true, self.deal.lane(h, self.lanes)),
            None => (false, 0),
        }
    }

    fn local(&self, key: &Key) -> bool {
        self.owner(key) == (true, self.lane)
    }

    /// Notes a violation if `key` is not local; returns whether it is.
    fn owned(&mut self, key: &Key) -> bool {
        let local = self.local(key);
        if !local {
            self.violated = true;
        }
        local
    }

    fn current(&self, key: &Key) -> Option<Value> {
        match self.overlay.get(key) {
            Some(s) if s.written => s.value.clone(),
            _ => self.base.get(key),
        }
    }

    /// Writes a local key (exposing it if `expose`), with an undo entry.
    fn set(&mut self, key: Key, value: Option<Value>, expose: bool) {
        match self.overlay.entry(key) {
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                let exposed = slot.exposed || expose;
                let before = std::mem::replace(
                    slot,
                    Slot {
                        value,
                        written: true,
                        exposed,
                    },
                );
                self.undo.push(Undo::Local(key, Some(before)));
            }
            Entry::Vacant(e) => {
                e.insert(Slot {
                    value,
                    written: true,
                    exposed: expose,
                });
                self.undo.push(Undo::Local(key, None));
            }
        }
    }

    /// Updates this lane's flow to a key it does not own, kept for lane `target`, with an
    /// undo entry; `false` (nothing changed) if `f` refuses.
    fn flow(&mut self, key: Key, target: usize, f: impl FnOnce(Flow) -> Option<Flow>) -> bool {
        let Some(flows) = self.foreign.get_mut(target) else {
            return false;
        };
        // One lookup: this runs for every credit to another account.
        let before = match flows.entry(key) {
            Entry::Occupied(mut e) => {
                let before = *e.get();
                let Some(after) = f(before) else {
                    return false;
                };
                *e.get_mut() = after;
                Some(before)
            }
            Entry::Vacant(e) => {
                let Some(after) = f(Flow::default()) else {
                    return false;
                };
                e.insert(after);
                None
            }
        };
        self.undo.push(Undo::Foreign(key, target, before));
        true
    }

    /// Marks a local key exposed (no undo entry: a mark is never undone).
    fn expose(&mut self, key: &Key) {
        match self.overlay.get_mut(key) {
            Some(slot) => slot.exposed = true,
            None => {
                self.overlay.insert(
                    *key,
                    Slot {
                        value: None,
                        written: false,
                        exposed: true,
                    },
                );
            }
        }
    }

    fn stop() -> Halt {
        Halt { blocking: 0 }
    }
}

impl<V: Vm, S: Storage> StateView for HomeView<'_, V, S> {
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>> {
        let (owned, owner) = self.owner(key);
        if !owned || owner != self.lane {
            // Borrowed: the base value, which the fold checks nothing in the block changed.
            let Some(keys) = self.borrowed.get_mut(owner) else {
                self.violated = true;
                return Err(Self::stop());
            };
            if !keys.contains_key(key) {
                keys.insert(*key, ());
            }
            return Ok(self.base.get(key));
        }
        // One lookup: the value, and the key marked exposed.
        Ok(match self.overlay.entry(*key) {
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                slot.exposed = true;
                if slot.written {
                    slot.value.clone()
                } else {
                    self.base.get(key)
                }
            }
            Entry::Vacant(e) => {
                e.insert(Slot {
                    value: None,
                    written: false,
                    exposed: true,
                });
                self.base.get(key)
            }
        })
    }

    fn write(&mut self, key: Key, value: Option<Value>) {
        if self.owned(&key) {
            self.set(key, value, true);
        }
    }

    fn add(&mut self, key: Key, delta: u128) {
        let (owned, target) = self.owner(&key);
        if owned && target == self.lane {
            let now = num_of(&self.current(&key));
            let (next, wrapped) = now.overflowing_add(delta);
            self.set(key, Some(Value::Num(next)), wrapped || next >= BIG);
            return;
        }
        if !self.flow(key, target, |f| Some(f.credit(delta))) {
            self.violated = true;
        }
    }

    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool> {
        let (owned, target) = self.owner(&key);
        if !owned || target != self.lane {
            // Succeeds in block order if every lane's subtractions together fit in the base
            // value (the fold checks); one that does not fit even this lane's cannot be
            // decided here.
            let base = num_of(&self.base.get(&key));
            let fits = self.flow(key, target, |f| {
                f.sub
                    .checked_add(amount)
                    .filter(|sub| *sub <= base)
                    .map(|sub| Flow { sub, ..f })
            });
            if !fits {
                self.violated = true;
                return Err(Self::stop());
            }
            return Ok(true);
        }
        let now = num_of(&self.current(&key));
        if now >= amount {
            self.set(key, Some(Value::Num(now - amount)), now >= BIG);
            Ok(true)
        } else {
            self.expose(&key);
            Ok(false)
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.undo.len())
    }

    fn rollback(&mut self, checkpoint: Checkpoint) {
        while self.undo.len() > checkpoint.0 {
            match self.undo.pop() {
                Some(Undo::Local(key, before)) => {
                    let exposed = self.overlay.get(&key).is_some_and(|s| s.exposed);
                    match before {
                        Some(mut slot) => {
                            slot.exposed |= exposed;
                            self.overlay.insert(key, slot);
                        }
                        None if exposed => {
                            self.overlay.insert(
                                key,
                                Slot {
                                    value: None,
                                    written: false,
                                    exposed: true,
                                },
                            );
                        }
                        None => {
                            self.overlay.remove(&key);
                        }
                    }
                }
                Some(Undo::Foreign(key, target, before)) => {
                    if let Some(sums) = self.foreign.get_mut(target) {
                        restore(sums, key, before);
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

    #[test]
    fn lanes_split_ids_evenly_and_in_range() {
        for lanes in 1..9 {
            let mut count = vec![0usize; lanes];
            for i in 0..8000u64 {
                let id = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let l = lane_of(id, lanes);
                assert!(l < lanes);
                count[l] += 1;
            }
            let even = 8000 / lanes;
            assert!(
                count.iter().all(|c| c.abs_diff(even) < even / 10 + 2),
                "{count:?}"
            );
        }
        assert_eq!(lane_of(u64::MAX, 2), 1);
        assert_eq!(lane_of(0, 2), 0);
    }
}
