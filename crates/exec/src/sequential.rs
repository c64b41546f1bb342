//! The sequential executor: runs a block's transactions one after another over an overlay on
//! the base state. It is the reference every parallel result must equal, and the engine's
//! fallback for tiny blocks and for the uncommitted suffix of a block that turned out to be a
//! dependency chain.
//!
//! Invariants:
//! - The overlay holds exactly the keys written by committed (not rolled back, not panicked)
//!   operations, with their latest values; that overlay is the block's write set.
//! - A transaction that panics leaves the overlay as it was before it started.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::types::{
    key_map_with_capacity, num_of, restore, BlockOutput, Checkpoint, Key, KeyMap, StateResult,
    StateView, Storage, Value, Vm, WriteSet,
};

/// Executes `txns` one by one on top of `storage`: the reference result.
pub fn execute_sequential<V: Vm, S: Storage>(
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
) -> BlockOutput<V::Output> {
    let mut overlay = key_map_with_capacity(txns.len() * 4);
    let mut outputs = Vec::with_capacity(txns.len());
    run(vm, txns, storage, &mut overlay, &mut outputs);
    BlockOutput {
        outputs,
        writes: WriteSet(overlay.into_iter().collect()),
    }
}

/// Runs `txns` in order over `overlay` (on top of `base`), appending one output each.
pub(crate) fn run<V: Vm, S: Storage>(
    vm: &V,
    txns: &[V::Txn],
    base: &S,
    overlay: &mut KeyMap<Option<Value>>,
    outputs: &mut Vec<V::Output>,
) {
    let mut undo = Vec::with_capacity(16);
    for txn in txns {
        undo.clear();
        let mut view = SeqView {
            base,
            overlay: &mut *overlay,
            undo: &mut undo,
        };
        outputs.push(run_one(vm, txn, &mut view));
    }
}

/// Runs `txns` like [`execute_sequential`] and, over its first `probe` transactions, measures
/// how many of them depend on a transaction less than `window` places before them: the ones
/// that would conflict in a parallel run with `window` transactions in flight. Returns the
/// block's output and that count.
///
/// A transaction depends on an earlier one when it reads (or `try_sub`s) a key the earlier one
/// wrote or added to; `add` alone depends on nothing, as in the parallel engine. Reads count
/// even when rolled back; writes count when kept.
pub fn execute_probed<V: Vm, S: Storage>(
    vm: &V,
    txns: &[V::Txn],
    storage: &S,
    probe: usize,
    window: usize,
) -> (BlockOutput<V::Output>, usize) {
    let probe = probe.min(txns.len());
    let mut overlay = key_map_with_capacity(txns.len() * 4);
    let mut outputs = Vec::with_capacity(txns.len());
    let mut last_writer: KeyMap<u32> = key_map_with_capacity(probe * 4);
    let mut close = 0;
    let mut undo = Vec::with_capacity(16);
    for (i, txn) in txns[..probe].iter().enumerate() {
        undo.clear();
        let mut view = ProbeView {
            inner: SeqView {
                base: storage,
                overlay: &mut overlay,
                undo: &mut undo,
            },
            last_writer: &last_writer,
            nearest: None,
        };
        let output = run_one(vm, txn, &mut view);
        if let Some(j) = view.nearest {
            if i - j as usize <= window {
                close += 1;
            }
        }
        for (key, _) in undo.iter() {
            last_writer.insert(*key, i as u32);
        }
        outputs.push(output);
    }
    run(vm, &txns[probe..], storage, &mut overlay, &mut outputs);
    let output = BlockOutput {
        outputs,
        writes: WriteSet(overlay.into_iter().collect()),
    };
    (output, close)
}

/// Executes one transaction on a view, turning a panic or a halt into the `Vm`'s panic
/// output with the view rolled back.
pub(crate) fn run_one<V: Vm, W: StateView>(vm: &V, txn: &V::Txn, view: &mut W) -> V::Output {
    match catch_unwind(AssertUnwindSafe(|| vm.execute(txn, view))) {
        Ok(Ok(output)) => output,
        // A sequential view never halts; treat a spurious halt like a panic.
        Ok(Err(_)) => {
            view.rollback(Checkpoint(0));
            vm.panic_output(txn, "execution halted outside the parallel engine")
        }
        Err(payload) => {
            view.rollback(Checkpoint(0));
            vm.panic_output(txn, &panic_message(&payload))
        }
    }
}

/// A [`SeqView`] that notes the latest earlier transaction whose writes it read.
struct ProbeView<'a, S> {
    inner: SeqView<'a, S>,
    last_writer: &'a KeyMap<u32>,
    nearest: Option<u32>,
}

impl<S> ProbeView<'_, S> {
    fn depend(&mut self, key: &Key) {
        if let Some(&j) = self.last_writer.get(key) {
            self.nearest = Some(self.nearest.map_or(j, |n| n.max(j)));
        }
    }
}

impl<S: Storage> StateView for ProbeView<'_, S> {
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>> {
        self.depend(key);
        self.inner.read(key)
    }

    fn write(&mut self, key: Key, value: Option<Value>) {
        self.inner.write(key, value)
    }

    fn add(&mut self, key: Key, delta: u128) {
        self.inner.add(key, delta)
    }

    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool> {
        self.depend(&key);
        self.inner.try_sub(key, amount)
    }

    fn checkpoint(&self) -> Checkpoint {
        self.inner.checkpoint()
    }

    fn rollback(&mut self, checkpoint: Checkpoint) {
        self.inner.rollback(checkpoint)
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// A view that reads the overlay, then the base, and writes the overlay in place, keeping an
/// undo log for rollback.
struct SeqView<'a, S> {
    base: &'a S,
    overlay: &'a mut KeyMap<Option<Value>>,
    undo: &'a mut Vec<(Key, Option<Option<Value>>)>,
}

impl<S: Storage> SeqView<'_, S> {
    fn current(&self, key: &Key) -> Option<Value> {
        match self.overlay.get(key) {
            Some(v) => v.clone(),
            None => self.base.get(key),
        }
    }

    fn set(&mut self, key: Key, value: Option<Value>) {
        let prev = self.overlay.insert(key, value);
        self.undo.push((key, prev));
    }
}

impl<S: Storage> StateView for SeqView<'_, S> {
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>> {
        Ok(self.current(key))
    }

    fn write(&mut self, key: Key, value: Option<Value>) {
        self.set(key, value);
    }

    fn add(&mut self, key: Key, delta: u128) {
        let now = num_of(&self.current(&key));
        self.set(key, Some(Value::Num(now.wrapping_add(delta))));
    }

    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool> {
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
            let Some((key, prev)) = self.undo.pop() else {
                break;
            };
            restore(self.overlay, key, prev);
        }
    }
}
