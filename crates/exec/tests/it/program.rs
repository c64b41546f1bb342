//! A small test VM whose transactions are random programs of state operations, so that random
//! blocks exercise every path of the engine: reads, writes, deletes, deltas, `try_sub`,
//! rollbacks, failing and panicking transactions, hot keys and dependency chains.

use std::sync::{Arc, Once};

use parabit_exec::{Footprint, Homes, Key, StateResult, StateView, Storage, Value, Vm};
use proptest::prelude::*;

/// One operation of a test transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Read a key and fold its value into the accumulator.
    Read(u8),
    /// Write a number derived from the accumulator.
    WriteNum(u8, u64),
    /// Write bytes derived from the accumulator.
    WriteBytes(u8, u8),
    /// Delete a key.
    Delete(u8),
    /// Add to a key.
    Add(u8, u64),
    /// Add the two's complement of an amount to a key (a wrapping subtraction, as a total
    /// that falls).
    Debit(u8, u64),
    /// Try to subtract from a key; the outcome goes into the accumulator.
    TrySub(u8, u64),
    /// `TrySub`, declared in the footprint as a key only added to and subtracted from (a
    /// vault paying out) rather than an exclusive one.
    Withdraw(u8, u64),
    /// Take a checkpoint.
    Checkpoint,
    /// Roll back to the last checkpoint if the accumulator is odd.
    RollbackIfOdd,
    /// Read a key and panic if its numeric value is divisible by the modulus.
    PanicIfDivisible(u8, u8),
    /// Burn CPU for this many rounds (to make a transaction slow).
    Work(u32),
    /// No effect; a program that starts with it is a barrier (see `Vm::is_barrier`).
    Barrier,
    /// No effect; a program that starts with it is a prologue (see `Vm::is_prologue`).
    Prologue,
    /// Read a key that the program's footprint does not declare (a lying `Vm`).
    Undeclared(u8),
    /// No effect; a program that starts with some has those homes `g` (see [`group`]).
    Home(u8),
}

/// A test transaction.
#[derive(Debug, Clone)]
pub struct Program(pub Vec<Op>);

/// The VM that runs programs; its output is the trace of everything the program observed.
pub struct ProgramVm;

pub fn key(k: u8) -> Key {
    Key::from_array([b'k', k])
}

/// Keys below this have no home; the rest belong to eight homes of [`GROUP`] keys each.
pub const HOMELESS: u8 = 8;
/// Keys per home.
pub const GROUP: u8 = 31;
/// Homeless keys from here (to [`VAULTS`]) are only read by the clean programs of
/// [`homed_block`].
pub const READ_ONLY: u8 = 4;
/// Homeless keys from here (to [`HOMELESS`]) are funded vaults that the programs of
/// [`homed_block`] pay into and withdraw from.
pub const VAULTS: u8 = 6;

/// The `i`-th key (mod [`GROUP`]) of home `g` (mod 8).
pub fn group(g: u8, i: u8) -> u8 {
    HOMELESS + (g % 8) * GROUP + i % GROUP
}

/// Home `g`'s id: spread over the id range, so that `n` lanes split the eight homes evenly.
fn home_id(g: u8) -> u64 {
    (u64::from(g % 8) << 61) | 0x5eed
}

fn mix(acc: u128, x: u128) -> u128 {
    (acc ^ x)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        .rotate_left(29)
}

fn observe(v: &Option<Value>) -> u128 {
    match v {
        None => 1,
        Some(Value::Num(n)) => mix(2, *n),
        Some(Value::Bytes(b)) => b.iter().fold(3, |a, x| mix(a, *x as u128)),
    }
}

/// Marker in test panics, so the panic hook can keep them quiet.
pub const TEST_PANIC: &str = "test program panicked on purpose";

/// Silences the panics the test programs raise on purpose.
pub fn quiet_test_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info.to_string();
            if !text.contains(TEST_PANIC) {
                default(info);
            }
        }));
    });
}

impl Vm for ProgramVm {
    type Txn = Program;
    type Output = Vec<u128>;

    fn execute<V: StateView>(&self, txn: &Program, view: &mut V) -> StateResult<Vec<u128>> {
        let mut acc: u128 = 7;
        let mut trace = Vec::new();
        let mut checkpoint = view.checkpoint();
        for op in &txn.0 {
            match *op {
                Op::Read(k) => {
                    let v = view.read(&key(k))?;
                    acc = mix(acc, observe(&v));
                    trace.push(acc);
                }
                Op::WriteNum(k, salt) => {
                    view.write(key(k), Some(Value::Num((acc ^ salt as u128) % 1_000_000)))
                }
                Op::WriteBytes(k, len) => {
                    let bytes: Vec<u8> = (0..len).map(|i| (acc >> (i % 16)) as u8).collect();
                    view.write(key(k), Some(Value::Bytes(Arc::from(bytes))));
                }
                Op::Delete(k) => view.write(key(k), None),
                Op::Add(k, d) => view.add(key(k), d as u128),
                Op::Debit(k, d) => view.add(key(k), (d as u128).wrapping_neg()),
                Op::TrySub(k, amount) | Op::Withdraw(k, amount) => {
                    let ok = view.try_sub(key(k), amount as u128)?;
                    acc = mix(acc, ok as u128 + 11);
                    trace.push(acc);
                }
                Op::Checkpoint => checkpoint = view.checkpoint(),
                Op::RollbackIfOdd => {
                    if acc % 2 == 1 {
                        view.rollback(checkpoint);
                        trace.push(u128::MAX);
                    }
                }
                Op::PanicIfDivisible(k, m) => {
                    let v = view.read(&key(k))?;
                    let n = v.as_ref().map_or(0, Value::as_num);
                    if n % (m.max(1) as u128) == 0 {
                        panic!("{TEST_PANIC}: key {k} holds {n}");
                    }
                    acc = mix(acc, n);
                }
                Op::Undeclared(k) => {
                    let v = view.read(&key(k))?;
                    acc = mix(acc, observe(&v));
                    trace.push(acc);
                }
                Op::Barrier | Op::Prologue | Op::Home(_) => {}
                Op::Work(rounds) => {
                    for i in 0..rounds {
                        acc = std::hint::black_box(mix(acc, i as u128));
                    }
                }
            }
        }
        trace.push(acc);
        Ok(trace)
    }

    fn panic_output(&self, _txn: &Program, message: &str) -> Vec<u128> {
        vec![0xdead, message.len() as u128]
    }

    fn is_barrier(&self, txn: &Program) -> bool {
        matches!(txn.0.first(), Some(Op::Barrier))
    }

    fn is_prologue(&self, txn: &Program) -> bool {
        matches!(txn.0.first(), Some(Op::Prologue))
    }

    /// Every key the program names, by how it uses it, except [`Op::Undeclared`]'s.
    fn footprint(&self, txn: &Program, _state: &dyn Storage) -> Option<Footprint> {
        let mut fp = Footprint::default();
        for op in &txn.0 {
            match *op {
                Op::Read(k) | Op::PanicIfDivisible(k, _) => fp.reads.push(key(k)),
                Op::WriteNum(k, _) | Op::WriteBytes(k, _) | Op::Delete(k) | Op::TrySub(k, _) => {
                    fp.exclusive.push(key(k))
                }
                Op::Withdraw(k, _) => fp.subs.push(key(k)),
                Op::Add(k, _) | Op::Debit(k, _) => fp.deltas.push(key(k)),
                Op::Undeclared(_)
                | Op::Checkpoint
                | Op::RollbackIfOdd
                | Op::Work(_)
                | Op::Barrier
                | Op::Prologue
                | Op::Home(_) => {}
            }
        }
        Some(fp)
    }

    /// A program that starts with [`Op::Home`]s has those homes; others have none.
    fn homes(&self, txn: &Program) -> Homes {
        let mut homes = Homes::default();
        for op in &txn.0 {
            match op {
                Op::Home(g) if homes.push(home_id(*g)) => {}
                _ => break,
            }
        }
        homes
    }

    /// Keys from [`HOMELESS`] on belong to their [`group`]'s home.
    fn key_home(&self, key: &Key) -> Option<u64> {
        match key.as_bytes() {
            [b'k', k] if *k >= HOMELESS => Some(home_id((*k - HOMELESS) / GROUP)),
            _ => None,
        }
    }
}

/// Strategy for one operation over `keys` keys.
pub fn op(keys: u8) -> impl Strategy<Value = Op> {
    let k = 0..keys;
    prop_oneof![
        6 => k.clone().prop_map(Op::Read),
        3 => (k.clone(), any::<u64>()).prop_map(|(k, s)| Op::WriteNum(k, s)),
        1 => (k.clone(), 0u8..12).prop_map(|(k, l)| Op::WriteBytes(k, l)),
        1 => k.clone().prop_map(Op::Delete),
        5 => (k.clone(), 0u64..1000).prop_map(|(k, d)| Op::Add(k, d)),
        4 => (k.clone(), 0u64..1500).prop_map(|(k, a)| Op::TrySub(k, a)),
        2 => (k.clone(), 0u64..1500).prop_map(|(k, a)| Op::Withdraw(k, a)),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::RollbackIfOdd),
        1 => (k, 5u8..40).prop_map(|(k, m)| Op::PanicIfDivisible(k, m)),
    ]
}

/// Strategy for a block that splits into many independent groups: short programs over up to
/// 256 keys, a hot key credited only by deltas, a few read-only keys, and sometimes a
/// program that strays outside its footprint.
pub fn sparse_block(
    max_txns: usize,
) -> impl Strategy<Value = (Vec<(u8, Option<Value>)>, Vec<Program>)> {
    let base = proptest::collection::vec(
        (any::<u8>(), (0u128..5000).prop_map(|n| Some(Value::Num(n)))),
        0..200,
    );
    let txn = prop_oneof![
        8 => proptest::collection::vec(op(255), 1..4).prop_map(|ops| {
            // Keys 0..8 are the shared ones below; keep them out of random programs.
            Program(ops.into_iter().map(|o| shift(o, 8)).collect())
        }),
        3 => (1u64..100, 8u8..255).prop_map(|(d, k)| Program(vec![Op::TrySub(k, d), Op::Add(0, d)])),
        // Shared vaults (keys 4..8) that pay out and take in, as lending markets do.
        2 => (1u64..400, 4u8..8, 8u8..255).prop_map(|(d, v, k)| Program(vec![Op::Withdraw(v, d), Op::Add(k, d)])),
        2 => (1u64..400, 4u8..8, 8u8..255).prop_map(|(d, v, k)| Program(vec![Op::TrySub(k, d), Op::Add(v, d)])),
        1 => (1u8..4, 8u8..255, any::<u64>())
            .prop_map(|(r, k, s)| Program(vec![Op::Read(r), Op::WriteNum(k, s)])),
        1 => (any::<u8>(), 8u8..255).prop_map(|(u, k)| Program(vec![Op::Undeclared(u), Op::Add(k, 1)])),
        // A barrier (like a batch settlement) that splits the block into segments.
        1 => (8u8..255, any::<u64>()).prop_map(|(k, s)| Program(vec![Op::Barrier, Op::Read(4), Op::WriteNum(k, s)])),
    ];
    (base, proptest::collection::vec(txn, 0..max_txns))
}

/// Strategy for a block of programs with homes. A third of the blocks are *clean*: every key of a
/// home is funded, each program touches only its home's keys (anything on the lower half,
/// successful `try_sub`s and adds on the upper half), adds to other homes' upper halves
/// and to the homeless keys below [`READ_ONLY`] (a transfer's recipient, a fee account), and
/// reads homeless keys from [`READ_ONLY`] on, which nothing in a clean block changes (a
/// pool's description), and pays into and withdraws from the homeless vaults from
/// [`VAULTS`] on, so home lanes finish, folding other lanes' credits into keys a lane
/// subtracted from. A third also expose keys that other homes credit (a conflict unless no
/// other lane credits them) and read keys that other lanes change, and a third add strays (a
/// write or `try_sub` of another home's key, no home at all), so that every way out of home
/// lanes is taken. Some programs act for two homes, so that the lanes are planned by
/// grouping the homes. Any block may hold barriers (a settlement, reading and writing anything):
/// the programs before the first run in home lanes, the rest on top of them.
pub fn homed_block(
    max_txns: usize,
) -> impl Strategy<Value = (Vec<(u8, Option<Value>)>, Vec<Program>)> {
    let home = |g: u8, ops: Vec<Op>| Program(std::iter::once(Op::Home(g)).chain(ops).collect());
    let half = GROUP / 2;
    let upper = move |g: u8, i: u8| group(g, half + i % (GROUP - half));
    let clean = prop_oneof![
        // Anything on the lower half of the home's keys.
        4 => (0u8..8, proptest::collection::vec(op(half), 1..5))
            .prop_map(move |(g, ops)| home(g, ops.into_iter().map(|o| regroup(o, g)).collect())),
        // A transfer from the upper half to another home's upper half, paying a fee.
        6 => (0u8..8, any::<u8>(), 0u8..8, any::<u8>(), 1u64..300, 0u8..READ_ONLY)
            .prop_map(move |(g, i, h, j, d, fee)| {
                home(g, vec![Op::TrySub(upper(g, i), d), Op::Add(upper(h, j), d), Op::Add(fee, 1)])
            }),
        // The same after reading a key that no program of a clean block changes.
        2 => (0u8..8, any::<u8>(), 0u8..8, any::<u8>(), 1u64..300, READ_ONLY..VAULTS)
            .prop_map(move |(g, i, h, j, d, k)| {
                home(g, vec![Op::Read(k), Op::TrySub(upper(g, i), d), Op::Add(upper(h, j), d)])
            }),
        // A withdrawal from a vault (a homeless key every lane takes from) or a payment
        // into one; together they fit in the vaults' funds.
        2 => (0u8..8, any::<u8>(), VAULTS..HOMELESS, 1u64..300, any::<bool>())
            .prop_map(move |(g, i, v, d, pay)| {
                let (from, to) = if pay { (upper(g, i), v) } else { (v, upper(g, i)) };
                home(g, vec![Op::Withdraw(from, d), Op::Add(to, d)])
            }),
        // A total that rises and falls (a market's supply): credits and debits of a
        // homeless key only ever added to.
        1 => (0u8..8, any::<u8>(), 0u8..READ_ONLY, 1u64..300, any::<bool>())
            .prop_map(move |(g, i, t, d, up)| {
                let total = if up { Op::Add(t, d) } else { Op::Debit(t, d) };
                home(g, vec![Op::TrySub(upper(g, i), d), total])
            }),
        // A program of two homes (a swap: its sender and a pool), pairs `g` and `g ^ 1`
        // only, so that the homes group into four pairs: anything on both homes' lower
        // halves, and a transfer between their upper halves.
        3 => (0u8..8, proptest::collection::vec(op(half), 1..5), any::<u8>(), 1u64..300)
            .prop_map(move |(g, ops, i, d)| {
                let mut p = vec![Op::Home(g), Op::Home(g ^ 1)];
                p.extend(ops.into_iter().enumerate().map(|(n, o)| regroup(o, g ^ (n as u8 & 1))));
                p.extend([Op::TrySub(upper(g ^ 1, i), d), Op::Add(upper(g, i), d)]);
                Program(p)
            }),
    ];
    // Clean, plus operations that expose an upper-half key (which other homes credit): a
    // read, an overwrite, a `try_sub` bigger than any balance, each sometimes rolled back.
    let exposing = prop_oneof![
        8 => clean.clone(),
        1 => (0u8..8, any::<u8>()).prop_map(move |(g, i)| home(g, vec![Op::Read(upper(g, i))])),
        1 => (0u8..8, any::<u8>(), any::<u64>()).prop_map(move |(g, i, s)| {
            home(g, vec![Op::Checkpoint, Op::WriteNum(upper(g, i), s), Op::RollbackIfOdd])
        }),
        1 => (0u8..8, any::<u8>()).prop_map(move |(g, i)| {
            home(g, vec![Op::Checkpoint, Op::Add(upper(g, i), 1), Op::Read(upper(g, i)), Op::RollbackIfOdd])
        }),
        1 => (0u8..8, any::<u8>()).prop_map(move |(g, i)| home(g, vec![Op::TrySub(upper(g, i), 1 << 40)])),
        // A read of a key that another home may change, or that programs credit.
        1 => (0u8..8, 0u8..8, any::<u8>()).prop_map(move |(g, h, i)| home(g, vec![Op::Read(group(h, i))])),
        // A withdrawal from a vault big enough that two drain it; one from another home's key
        // (which that home may touch too), big enough to drain it with that home's own.
        1 => (0u8..8, VAULTS..HOMELESS).prop_map(move |(g, v)| home(g, vec![Op::Withdraw(v, 60_000)])),
        1 => (0u8..8, 0u8..8, any::<u8>(), 1u64..5300).prop_map(move |(g, h, i, d)| {
            home(g, vec![Op::Withdraw(upper(h, i), d)])
        }),
        // A debit of another home's key, which that home may take from too.
        1 => (0u8..8, 0u8..8, any::<u8>(), 1u64..5300).prop_map(move |(g, h, i, d)| {
            home(g, vec![Op::Debit(upper(h, i), d)])
        }),
        // Two homes of any pair (which may group everything into one).
        1 => (0u8..8, 0u8..8, op(half)).prop_map(move |(g, h, o)| {
            Program(vec![Op::Home(g), Op::Home(h), regroup(o, h)])
        }),
        1 => (0u8..8, 0u8..READ_ONLY).prop_map(move |(g, k)| home(g, vec![Op::Read(k), Op::Add(k, 1)])),
    ];
    let dirty = prop_oneof![
        8 => exposing.clone(),
        // Anything on any key: mostly a stray.
        1 => (0u8..8, op(255)).prop_map(move |(g, o)| home(g, vec![o])),
        1 => op(255).prop_map(|o| Program(vec![o])),
    ];
    // A settlement: reads a homed and a homeless key, writes one and credits another.
    let barrier = (
        any::<u8>(),
        0u8..HOMELESS,
        any::<u8>(),
        any::<u64>(),
        any::<u8>(),
    )
        .prop_map(|(r, h, w, s, a)| {
            Program(vec![
                Op::Barrier,
                Op::Read(r),
                Op::Read(h),
                Op::WriteNum(w, s),
                Op::Add(a, 3),
            ])
        });
    let clean = prop_oneof![40 => clean, 1 => barrier.clone()];
    let exposing = prop_oneof![40 => exposing, 1 => barrier.clone()];
    let dirty = prop_oneof![40 => dirty, 1 => barrier];
    let funded: Vec<(u8, Option<Value>)> = (HOMELESS..=255)
        .map(|k| (k, Some(Value::Num(5000 + u128::from(k)))))
        .chain((VAULTS..HOMELESS).map(|k| (k, Some(Value::Num(100_000)))))
        .collect();
    let random_base = proptest::collection::vec(
        (any::<u8>(), (0u128..5000).prop_map(|n| Some(Value::Num(n)))),
        0..200,
    );
    prop_oneof![
        proptest::collection::vec(clean, 0..max_txns).prop_map({
            let funded = funded.clone();
            move |t| (funded.clone(), t)
        }),
        proptest::collection::vec(exposing, 0..max_txns).prop_map(move |t| (funded.clone(), t)),
        (random_base, proptest::collection::vec(dirty, 0..max_txns)),
    ]
}

/// `op` with its key moved into home `g`'s keys.
fn regroup(op: Op, g: u8) -> Op {
    rekey(op, |k| group(g, k))
}

/// `op` with its key moved into `lo..=255`.
fn shift(op: Op, lo: u8) -> Op {
    rekey(op, |k| lo + k % (255 - lo))
}

/// `op` with its key `k` replaced by `m(k)`.
fn rekey(op: Op, m: impl Fn(u8) -> u8) -> Op {
    match op {
        Op::Read(k) => Op::Read(m(k)),
        Op::WriteNum(k, s) => Op::WriteNum(m(k), s),
        Op::WriteBytes(k, l) => Op::WriteBytes(m(k), l),
        Op::Delete(k) => Op::Delete(m(k)),
        Op::Add(k, d) => Op::Add(m(k), d),
        Op::Debit(k, d) => Op::Debit(m(k), d),
        Op::TrySub(k, a) => Op::TrySub(m(k), a),
        Op::Withdraw(k, a) => Op::Withdraw(m(k), a),
        Op::PanicIfDivisible(k, d) => Op::PanicIfDivisible(m(k), d),
        Op::Undeclared(k) => Op::Undeclared(m(k)),
        other => other,
    }
}

/// Strategy for a block: some transactions touch a hot key only by deltas, some form chains.
pub fn block(max_txns: usize) -> impl Strategy<Value = (Vec<(u8, Option<Value>)>, Vec<Program>)> {
    (1u8..48).prop_flat_map(move |keys| {
        let base = proptest::collection::vec(
            (
                0..keys,
                prop_oneof![
                    3 => (0u128..5000).prop_map(|n| Some(Value::Num(n))),
                    1 => proptest::collection::vec(any::<u8>(), 0..6)
                        .prop_map(|b| Some(Value::Bytes(Arc::from(b)))),
                ],
            ),
            0..keys as usize,
        );
        let txn = prop_oneof![
            6 => proptest::collection::vec(op(keys), 1..8).prop_map(Program),
            // Long programs: past the view's threshold for indexing its log.
            1 => proptest::collection::vec(op(keys), 25..90).prop_map(Program),
            // Barriers (end-of-block settlements): read many keys, write some.
            1 => proptest::collection::vec(op(keys), 1..12).prop_map(|ops| {
                Program(std::iter::once(Op::Barrier).chain(ops).collect())
            }),
            // Prologue transactions (begin-of-block hooks); only a leading run counts as one.
            1 => proptest::collection::vec(op(keys), 1..6).prop_map(|ops| {
                Program(std::iter::once(Op::Prologue).chain(ops).collect())
            }),
            // Hot key 0, credit only: must never conflict.
            2 => (1u64..100).prop_map(|d| Program(vec![Op::Add(0, d)])),
            // A chain: read-modify-write of key 1.
            2 => any::<u64>().prop_map(|s| Program(vec![Op::Read(1), Op::WriteNum(1, s)])),
        ];
        (base, proptest::collection::vec(txn, 0..max_txns))
    })
}
