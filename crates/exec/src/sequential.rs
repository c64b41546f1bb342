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
    key_map_with_capacity, num_of, BlockOutput, Checkpoint, Key, KeyMap, StateResult, StateView,
    Storage, Value, Vm, WriteSet,
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
        let result = catch_unwind(AssertUnwindSafe(|| vm.execute(txn, &mut view)));
        let output = match result {
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
        };
        outputs.push(output);
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
            match prev {
                Some(v) => {
                    self.overlay.insert(key, v);
                }
                None => {
                    self.overlay.remove(&key);
                }
            }
        }
    }
}
