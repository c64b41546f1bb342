//! The vocabulary shared by the engine and every `Vm`: state keys, values, the state
//! operations a transaction may perform ([`StateView`]), the VM interface ([`Vm`]) and the
//! read-only base state a block executes on ([`Storage`]).
//!
//! Invariants:
//! - A [`Key`] carries its 64-bit hash, computed once when the key is built; every map in the
//!   engine uses it as is ([`KeyMap`]), so a key's bytes are hashed exactly once.
//! - Numeric operations treat a missing key or a byte value as zero and work modulo 2^128.
//!   Wrapping arithmetic is associative and commutative, so any order of applying deltas gives
//!   the same result, which is what lets the parallel engine sum deltas out of order and still
//!   equal the sequential executor bit for bit. Modules keep their numbers far from 2^128 (an
//!   asset's supply bounds every balance), so wrapping never happens in practice.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use smallvec::SmallVec;

/// Longest key the engine stores inline.
pub const MAX_KEY_LEN: usize = 62;

/// A state key: up to [`MAX_KEY_LEN`] bytes stored inline, with its hash precomputed.
#[derive(Clone, Copy)]
pub struct Key {
    hash: u64,
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
}

/// A key longer than [`MAX_KEY_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("state key of {0} bytes is longer than the {MAX_KEY_LEN}-byte maximum")]
pub struct KeyTooLong(pub usize);

impl Key {
    /// Builds a key from its bytes.
    pub fn new(bytes: &[u8]) -> Result<Key, KeyTooLong> {
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyTooLong(bytes.len()));
        }
        let mut inline = [0u8; MAX_KEY_LEN];
        inline[..bytes.len()].copy_from_slice(bytes);
        Ok(Key {
            hash: xxhash_rust::xxh3::xxh3_64(bytes),
            len: bytes.len() as u8,
            bytes: inline,
        })
    }

    /// Builds a key from a fixed-size array; the length is checked at compile time.
    pub fn from_array<const N: usize>(bytes: [u8; N]) -> Key {
        const { assert!(N <= MAX_KEY_LEN, "state key too long") };
        let mut inline = [0u8; MAX_KEY_LEN];
        inline[..N].copy_from_slice(&bytes);
        Key {
            hash: xxhash_rust::xxh3::xxh3_64(&bytes),
            len: N as u8,
            bytes: inline,
        }
    }

    /// Builds a key by concatenating parts (a prefix byte, an address, an id…).
    pub fn from_parts(parts: &[&[u8]]) -> Result<Key, KeyTooLong> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > MAX_KEY_LEN {
            return Err(KeyTooLong(total));
        }
        let mut inline = [0u8; MAX_KEY_LEN];
        let mut at = 0;
        for p in parts {
            inline[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Ok(Key {
            hash: xxhash_rust::xxh3::xxh3_64(&inline[..total]),
            len: total as u8,
            bytes: inline,
        })
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The precomputed 64-bit hash of the key's bytes.
    pub fn hash64(&self) -> u64 {
        self.hash
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        // Bytes past `len` are always zero, so the whole fixed-size arrays compare equal exactly
        // when the keys do; comparing them whole compiles to a few vector compares, not a
        // `memcmp` call.
        self.hash == other.hash && self.len == other.len && self.bytes == other.bytes
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A hasher that passes a [`Key`]'s precomputed hash through (and mixes any other input).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-`Key` inputs; keep it correct, not fast.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// A `HashMap` keyed by [`Key`] that uses the key's precomputed hash.
pub type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// Puts `key` back as it was in `map` before a change: `before` (`None`: absent). For the
/// views' rollbacks.
pub(crate) fn restore<V>(map: &mut KeyMap<V>, key: Key, before: Option<V>) {
    match before {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// Creates an empty [`KeyMap`] with room for `capacity` entries.
pub fn key_map_with_capacity<V>(capacity: usize) -> KeyMap<V> {
    HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default())
}

/// A state value: a number (balances, nonces, totals) or encoded bytes (structured state).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A number; the target of `add` and `try_sub`.
    Num(u128),
    /// Encoded bytes (borsh, by convention).
    Bytes(Arc<[u8]>),
}

impl Value {
    /// The numeric reading of a value: a byte value reads as zero.
    pub fn as_num(&self) -> u128 {
        match self {
            Value::Num(n) => *n,
            Value::Bytes(_) => 0,
        }
    }

    /// Builds a byte value.
    pub fn bytes(bytes: impl Into<Arc<[u8]>>) -> Value {
        Value::Bytes(bytes.into())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) => write!(f, "Num({n})"),
            Value::Bytes(b) => {
                f.write_str("Bytes(")?;
                for x in b.iter() {
                    write!(f, "{x:02x}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The numeric reading of an optional value (missing reads as zero).
pub fn num_of(value: &Option<Value>) -> u128 {
    value.as_ref().map_or(0, Value::as_num)
}

/// Execution of a transaction cannot go on: it read a value that an earlier transaction of
/// the block is about to rewrite. The `Vm` must return it at once (the `?` operator does);
/// the engine suspends the transaction until that dependency has run and then re-executes it.
/// It is never seen by the sequential executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    pub(crate) blocking: u32,
}

/// The result of a state operation: `Err(Halt)` must be propagated out of `Vm::execute`.
pub type StateResult<T> = Result<T, Halt>;

/// An opaque position in a transaction's own writes, to roll back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint(pub(crate) usize);

/// The state operations a transaction may perform. Reads see the block's state as of just
/// before this transaction plus this transaction's own writes.
pub trait StateView {
    /// Reads a key. A read of a key with pending deltas resolves them.
    fn read(&mut self, key: &Key) -> StateResult<Option<Value>>;
    /// Writes (`Some`) or deletes (`None`) a key.
    fn write(&mut self, key: Key, value: Option<Value>);
    /// Adds `delta` to a numeric key (wrapping). Two transactions that only add to a key never
    /// conflict.
    fn add(&mut self, key: Key, delta: u128);
    /// Subtracts `amount` from a numeric key if it holds at least `amount`; returns whether it
    /// did. Depends only on that outcome, not on the exact value.
    fn try_sub(&mut self, key: Key, amount: u128) -> StateResult<bool>;
    /// Marks the current position in this transaction's writes.
    fn checkpoint(&self) -> Checkpoint;
    /// Discards every write, add and successful `try_sub` made after `checkpoint`. Reads made
    /// since stay recorded: the decision to roll back depended on them.
    fn rollback(&mut self, checkpoint: Checkpoint);
}

/// A virtual machine: executes one transaction against a [`StateView`].
///
/// `execute` must be deterministic: a function of the transaction and the values its state
/// operations return, nothing else (no clocks, no randomness, no global mutable state).
pub trait Vm: Sync {
    /// A transaction, already decoded and signature-checked.
    type Txn: Sync;
    /// What executing a transaction yields (a receipt).
    type Output: Send + Clone + PartialEq + fmt::Debug;

    /// Executes one transaction. Must return `Err(halt)` at once when a state operation does.
    fn execute<V: StateView>(&self, txn: &Self::Txn, view: &mut V) -> StateResult<Self::Output>;

    /// The output recorded for a transaction whose execution panicked; all its writes are
    /// discarded.
    fn panic_output(&self, txn: &Self::Txn, message: &str) -> Self::Output;

    /// Whether `txn` reads what the whole block before it did (an end-of-block settlement).
    /// The parallel engine runs the block up to its first barrier, then the barrier and what
    /// follows it on top of that committed state, instead of running a barrier speculatively
    /// early (and again later). A scheduling hint only: results are identical either way.
    fn is_barrier(&self, _txn: &Self::Txn) -> bool {
        false
    }

    /// Whether `txn` belongs to the block's prologue (begin-of-block hooks that much of the
    /// block reads, such as interest accrual). The leading prologue transactions run first, and
    /// the rest of the block on top of their writes, so nothing reads their keys before they
    /// are written. A scheduling hint only: results are identical either way.
    fn is_prologue(&self, _txn: &Self::Txn) -> bool {
        false
    }

    /// The keys `txn` may touch, if the `Vm` can tell before running it: then a block whose
    /// transactions all declare one is split into groups that share no key and run without
    /// the multi-version machinery. A transaction that strays outside its footprint is caught
    /// and the block re-run by the general engine, so a wrong footprint costs time, never
    /// correctness. `None` (the default): unknown.
    ///
    /// `state` is the state the block runs on (after its prologue), for `Vm`s whose keys
    /// depend on it (the markets an account entered): a footprint read from it can be
    /// outdated by an earlier transaction of the block, which again costs only a re-run.
    fn footprint(&self, _txn: &Self::Txn, _state: &dyn Storage) -> Option<Footprint> {
        None
    }

    /// [`Vm::footprint`] into a buffer the engine reuses (empty on entry): `false` if unknown.
    /// A `Vm` that declares footprints for every transaction of large blocks should implement
    /// this one, and `footprint` through it: the engine calls it once per transaction.
    fn footprint_into(&self, txn: &Self::Txn, state: &dyn Storage, fp: &mut Footprint) -> bool {
        match self.footprint(txn, state) {
            Some(f) => {
                *fp = f;
                true
            }
            None => false,
        }
    }

    /// The homes of `txn`: the accounts it acts for, as 64-bit ids whose bits are spread
    /// evenly (the first bytes of a public key), if the `Vm` can tell. When every
    /// transaction of a block has one, the engine first tries *home lanes*: each worker runs
    /// the transactions of its share of the homes. If every transaction has exactly one
    /// home there is no planning at all; if some act for several (a swap: its sender and the
    /// pool), the transactions are first grouped by the homes they share. A scheduling hint:
    /// a transaction that does more than its homes allow is caught, and the block is re-run
    /// another way, so a wrong answer costs time, never correctness. Empty (the default): no
    /// home.
    ///
    /// What homes allow: anything on keys of the same homes ([`Vm::key_home`]); on any other
    /// key, `add`, `try_sub` while all such subtractions in the block fit in its value
    /// (a shared vault), and reading it if nothing in the block changes it. A
    /// home's keys may be added to by other homes' transactions, as long as the home's own
    /// transactions neither read nor overwrite them (they may add to them and `try_sub` from
    /// them successfully).
    fn homes(&self, _txn: &Self::Txn) -> Homes {
        Homes::default()
    }

    /// The home of a state key (the account that owns it), in the same ids as
    /// [`Vm::homes`]; `None` (the default) for keys no account owns, which home lanes only
    /// ever add to.
    fn key_home(&self, _key: &Key) -> Option<u64> {
        None
    }
}

/// The accounts a transaction acts for ([`Vm::homes`]): at most [`Homes::MAX`], no id twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Homes {
    ids: [u64; Homes::MAX],
    len: u8,
}

impl Homes {
    /// The most homes a transaction can have.
    pub const MAX: usize = 6;

    /// One home.
    pub fn one(id: u64) -> Homes {
        let mut homes = Homes::default();
        homes.ids[0] = id;
        homes.len = 1;
        homes
    }

    /// Adds a home (nothing if it is there already); `false` if there is no room for it.
    pub fn push(&mut self, id: u64) -> bool {
        if self.as_slice().contains(&id) {
            return true;
        }
        match self.ids.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = id;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The homes, the first one first.
    pub fn as_slice(&self) -> &[u64] {
        self.ids.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The keys a transaction may touch, declared before it runs ([`Vm::footprint`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Keys it may write, delete or `try_sub` (and read or `add` to).
    pub exclusive: SmallVec<[Key; 4]>,
    /// Keys it may only read: transactions that only read a key run apart.
    pub reads: SmallVec<[Key; 2]>,
    /// Keys it may only `add` to: transactions sharing only these still run apart.
    pub deltas: SmallVec<[Key; 2]>,
    /// Keys it may only `add` to or `try_sub` from (a vault paying out): transactions sharing
    /// only these still run apart, each `try_sub` checked against the base value and the
    /// lane's own changes, and the block's total subtractions against the base value (if
    /// they all fit in it, every `try_sub` succeeds in block order too). A `try_sub` that
    /// fails in its lane, or subtractions over the base, re-run the block on the general
    /// engine.
    pub subs: SmallVec<[Key; 2]>,
}

impl Footprint {
    /// Empties every list, keeping their room.
    pub fn clear(&mut self) {
        self.exclusive.clear();
        self.reads.clear();
        self.deltas.clear();
        self.subs.clear();
    }
}

/// The read-only state a block executes on (the state after the previous block).
pub trait Storage: Sync {
    /// Reads a key's committed value.
    fn get(&self, key: &Key) -> Option<Value>;
}

impl Storage for KeyMap<Value> {
    fn get(&self, key: &Key) -> Option<Value> {
        KeyMap::get(self, key).cloned()
    }
}

impl<S: Storage + ?Sized> Storage for &S {
    fn get(&self, key: &Key) -> Option<Value> {
        (**self).get(key)
    }
}

/// A block's writes: each key it changed and its value after the block (`None`: deleted).
/// The order of entries is unspecified; [`WriteSet::sorted`] gives the canonical order.
#[derive(Debug, Clone, Default)]
pub struct WriteSet(pub Vec<(Key, Option<Value>)>);

impl WriteSet {
    /// The entries sorted by key bytes: the canonical order for hashing and comparing.
    pub fn sorted(mut self) -> Vec<(Key, Option<Value>)> {
        self.0.sort_unstable_by_key(|e| e.0);
        self.0
    }

    /// Number of keys written.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the block wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the writes to an in-memory state.
    pub fn apply_to(&self, state: &mut KeyMap<Value>) {
        for (k, v) in &self.0 {
            match v {
                Some(v) => {
                    state.insert(*k, v.clone());
                }
                None => {
                    state.remove(k);
                }
            }
        }
    }
}

impl PartialEq for WriteSet {
    fn eq(&self, other: &WriteSet) -> bool {
        self.clone().sorted() == other.clone().sorted()
    }
}
impl Eq for WriteSet {}

/// The result of executing a block: one output per transaction, in block order, and the
/// block's write set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutput<O> {
    /// Per-transaction outputs, in block order.
    pub outputs: Vec<O>,
    /// Every key the block changed, with its final value.
    pub writes: WriteSet,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_built_any_way_from_the_same_bytes_are_equal() {
        let a = Key::new(&[1, 2, 3]).expect("short key");
        let b = Key::from_array([1, 2, 3]);
        let c = Key::from_parts(&[&[1], &[2, 3]]).expect("short key");
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.hash64(), c.hash64());
        assert_eq!(a.as_bytes(), &[1, 2, 3]);
    }

    #[test]
    fn trailing_zeros_make_a_different_key() {
        let short = Key::new(&[1]).expect("short key");
        let long = Key::new(&[1, 0]).expect("short key");
        assert_ne!(short, long);
        assert!(short < long);
    }

    #[test]
    fn keys_longer_than_the_maximum_are_refused() {
        assert_eq!(
            Key::new(&[0; MAX_KEY_LEN + 1]),
            Err(KeyTooLong(MAX_KEY_LEN + 1))
        );
        assert!(Key::from_parts(&[&[0; 40], &[0; 40]]).is_err());
        assert!(Key::new(&[7; MAX_KEY_LEN]).is_ok());
    }

    #[test]
    fn homes_hold_each_id_once_up_to_the_maximum() {
        let mut homes = Homes::one(7);
        assert!(homes.push(7));
        assert_eq!(homes.as_slice(), &[7]);
        for id in 1..Homes::MAX as u64 {
            assert!(homes.push(100 + id));
        }
        assert_eq!(homes.as_slice().len(), Homes::MAX);
        assert!(!homes.push(999), "no room for a seventh");
        assert!(homes.push(7), "one already there needs no room");
        assert!(Homes::default().is_empty());
    }

    #[test]
    fn numeric_reading_of_values() {
        assert_eq!(num_of(&None), 0);
        assert_eq!(num_of(&Some(Value::Num(9))), 9);
        assert_eq!(num_of(&Some(Value::bytes(vec![1, 2]))), 0);
    }
}
