//! Targeted scenarios: what the engine must do, not only that it agrees with the oracle.

use parabit_exec::{
    execute_sequential, key_map_with_capacity, ExecConfig, KeyMap, ParallelExecutor, Value,
};

use crate::program::{key, quiet_test_panics, Op, Program, ProgramVm};

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("build a thread pool")
}

fn no_fallback() -> ExecConfig {
    ExecConfig {
        min_parallel_txns: 0,
        fallback: false,
        fallback_min_conflicts: 0,
        footprints: false,
        homes: false,
        ..ExecConfig::default()
    }
}

#[test]
fn declared_footprints_split_the_block_and_a_lie_falls_back() {
    // Transfers between distinct pairs, each crediting a hot fee key 0 by a delta and reading
    // a shared read-only key 1: every transaction is its own group.
    let transfer = |i: u8| {
        Program(vec![
            Op::Read(1),
            Op::TrySub(10 + i, 5),
            Op::Add(0, 1),
            Op::Add(130 + i % 100, 5),
        ])
    };
    let txns: Vec<Program> = (0..100u8).map(transfer).collect();
    let mut state: KeyMap<Value> = key_map_with_capacity(0);
    for i in 0..100u8 {
        state.insert(key(10 + i), Value::Num(3 + u128::from(i % 5)));
    }
    let pool = pool(2);
    let exec = ParallelExecutor::new(&pool);
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    assert_eq!(stats.footprint_groups, 100, "{stats:?}");
    assert_eq!(stats.validations, 0, "{stats:?}");
    // The planning and the merge are timed (what `parabit bench` reports as their shares).
    assert!(
        stats.footprint_planning > std::time::Duration::ZERO,
        "{stats:?}"
    );
    assert!(
        stats.footprint_merging > std::time::Duration::ZERO,
        "{stats:?}"
    );
    // A receiver that is also a sender joins the two into one group, still split from the rest.
    let mut chained = txns.clone();
    chained[50] = Program(vec![Op::TrySub(130 + 20, 1), Op::Add(0, 1)]);
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &chained, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &chained, &state));
    assert_eq!(stats.footprint_groups, 99, "{stats:?}");
    // One transaction reads a key it did not declare: the attempt is dropped and the general
    // engine runs the block, with the same result as ever.
    let mut lying = txns.clone();
    lying[70].0.push(Op::Undeclared(12));
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &lying, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &lying, &state));
    assert_eq!(stats.footprint_violations, 1, "{stats:?}");
    assert_eq!(stats.footprint_groups, 0, "{stats:?}");
    assert_eq!(
        stats.footprint_planning,
        std::time::Duration::ZERO,
        "{stats:?}"
    );
    assert!(stats.validations > 0, "{stats:?}");
}

#[test]
fn credits_to_one_hot_key_never_conflict() {
    let txns: Vec<Program> = (0..2000)
        .map(|i| Program(vec![Op::Add(0, i % 7 + 1)]))
        .collect();
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(4);
    let (out, stats) = ParallelExecutor::with_config(&pool, no_fallback())
        .execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(stats.aborts, 0, "{stats:?}");
    assert_eq!(stats.suspensions, 0, "{stats:?}");
    assert_eq!(stats.executions, 2000);
    let total: u128 = (0..2000u128).map(|i| i % 7 + 1).sum();
    assert_eq!(out.writes.0, vec![(key(0), Some(Value::Num(total)))]);
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
}

#[test]
fn try_sub_depends_on_its_outcome_not_the_value() {
    // A rich key, debited by every transaction while others credit it: the outcome of every
    // try_sub is "enough" whatever order they run in, so nothing needs re-execution.
    let mut state: KeyMap<Value> = key_map_with_capacity(1);
    state.insert(key(0), Value::Num(1_000_000));
    let txns: Vec<Program> = (0..2000)
        .map(|i| {
            if i % 2 == 0 {
                Program(vec![Op::TrySub(0, 10)])
            } else {
                Program(vec![Op::Add(0, 3)])
            }
        })
        .collect();
    let pool = pool(4);
    let (out, stats) = ParallelExecutor::with_config(&pool, no_fallback())
        .execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(stats.aborts + stats.suspensions, 0, "{stats:?}");
    assert_eq!(
        out.writes.0,
        vec![(key(0), Some(Value::Num(1_000_000 - 10_000 + 3_000)))]
    );
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
}

#[test]
fn a_dependency_chain_falls_back_to_sequential() {
    // Slow transactions, so that both workers are surely busy on the chain.
    let txns: Vec<Program> = (0..1000)
        .map(|i| Program(vec![Op::Work(20_000), Op::Read(1), Op::WriteNum(1, i)]))
        .collect();
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(2);
    // On the general engine (no footprints), the chain is detected by its conflicts.
    let general = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            footprints: false,
            homes: false,
            ..ExecConfig::default()
        },
    );
    let (out, stats) = general.execute_block_with_stats(&ProgramVm, &txns, &state);
    let from = stats.sequential_from.expect("a chain should fall back");
    assert!(from < 1000, "{stats:?}");
    assert!(
        stats.executions < 400,
        "fallback should stop early: {stats:?}"
    );
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    // With footprints, the grouping sees one group and nothing runs speculatively at all; the
    // next block is then treated as a chain.
    let executor = ParallelExecutor::new(&pool);
    let (out, stats) = executor.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(stats.sequential_from, Some(0), "{stats:?}");
    assert_eq!(stats.validations + stats.aborts, 0, "{stats:?}");
    assert_eq!(stats.footprint_groups, 0, "{stats:?}");
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    let (out, stats) = executor.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert!(stats.predicted_chain, "{stats:?}");
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
}

#[test]
fn after_a_chain_the_next_blocks_are_probed_and_parallelism_resumes() {
    let chain: Vec<Program> = (0..1000)
        .map(|i| Program(vec![Op::Work(20_000), Op::Read(1), Op::WriteNum(1, i)]))
        .collect();
    // Independent transactions: each reads and writes its own key.
    let independent: Vec<Program> = (0..200u8)
        .map(|i| Program(vec![Op::Read(10 + i), Op::WriteNum(10 + i, 1)]))
        .collect();
    // Independent apart from one transaction in 16 that reads the key its predecessor wrote.
    let mostly: Vec<Program> = (0..200u8)
        .map(|i| {
            let k = if i % 16 == 1 { 9 + i } else { 10 + i };
            Program(vec![Op::Read(k), Op::WriteNum(10 + i, 1)])
        })
        .collect();
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(2);
    let executor = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            footprints: false,
            homes: false,
            ..ExecConfig::default()
        },
    );
    let run = |txns: &[Program]| {
        let (out, stats) = executor.execute_block_with_stats(&ProgramVm, txns, &state);
        assert_eq!(out, execute_sequential(&ProgramVm, txns, &state));
        stats
    };
    let first = run(&chain);
    assert!(
        first.sequential_from.is_some() && !first.predicted_chain,
        "{first:?}"
    );
    // The next chain is not started in parallel again: it is run sequentially and probed.
    let second = run(&chain);
    assert!(second.predicted_chain, "{second:?}");
    assert_eq!(second.sequential_from, Some(0));
    assert_eq!(second.validations, 0);
    // A block with close dependencies in 1 of 16 transactions keeps it sequential...
    let third = run(&mostly);
    assert!(third.predicted_chain, "{third:?}");
    // ...and so the independent block after it is only probed...
    let fourth = run(&independent);
    assert!(fourth.predicted_chain, "{fourth:?}");
    // ...but it showed no dependencies, so the following one runs in parallel.
    let fifth = run(&independent);
    assert!(!fifth.predicted_chain, "{fifth:?}");
    assert_eq!(fifth.sequential_from, None, "{fifth:?}");
    assert!(fifth.validations > 0, "{fifth:?}");
}

#[test]
fn a_chain_without_fallback_still_completes_and_agrees() {
    let txns: Vec<Program> = (0..500)
        .map(|i| Program(vec![Op::Read(1), Op::WriteNum(1, i), Op::Add(2, 1)]))
        .collect();
    let state: KeyMap<Value> = key_map_with_capacity(0);
    for threads in [2, 8] {
        let pool = pool(threads);
        let (out, stats) = ParallelExecutor::with_config(&pool, no_fallback())
            .execute_block_with_stats(&ProgramVm, &txns, &state);
        assert_eq!(stats.sequential_from, None);
        assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    }
}

#[test]
fn a_panicking_transaction_fails_alone() {
    quiet_test_panics();
    let mut txns: Vec<Program> = (0..300).map(|_| Program(vec![Op::Add(3, 1)])).collect();
    // Key 5 is missing (reads as 0), so this panics; its write before the panic is discarded.
    txns[100] = Program(vec![Op::Add(4, 9), Op::PanicIfDivisible(5, 7)]);
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(2);
    let out = ParallelExecutor::with_config(&pool, no_fallback())
        .execute_block(&ProgramVm, &txns, &state);
    assert_eq!(out.outputs[100][0], 0xdead);
    assert!(!out.writes.0.iter().any(|(k, _)| *k == key(4)));
    assert!(out.writes.0.contains(&(key(3), Some(Value::Num(299)))));
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    // The engine is still usable afterwards.
    let again = ParallelExecutor::new(&pool).execute_block(&ProgramVm, &txns, &state);
    assert_eq!(again, out);
}

#[test]
fn rollback_discards_writes_but_keeps_the_fee_like_prefix() {
    // Write, checkpoint, more writes, roll back (acc is odd after reading a missing key? we
    // force it by construction below and compare with the oracle).
    let txns: Vec<Program> = (0..200)
        .map(|i| {
            Program(vec![
                Op::Add(9, 1),
                Op::Checkpoint,
                Op::WriteNum(10 + (i % 5) as u8, i),
                Op::Read(10 + (i % 5) as u8),
                Op::RollbackIfOdd,
            ])
        })
        .collect();
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(3);
    let out = ParallelExecutor::with_config(&pool, no_fallback())
        .execute_block(&ProgramVm, &txns, &state);
    assert!(out.writes.0.contains(&(key(9), Some(Value::Num(200)))));
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
}

#[test]
fn a_barrier_waits_for_the_transactions_before_it() {
    // A slow credit, then a barrier that reads the credited key: the barrier runs once the
    // credit is committed, so it runs once and never reads a stale value.
    let txns = vec![
        Program(vec![Op::Work(300_000), Op::Add(0, 5)]),
        Program(vec![Op::Barrier, Op::Read(0), Op::WriteNum(1, 0)]),
    ];
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(2);
    let exec = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            chunk: 1,
            ..no_fallback()
        },
    );
    for _ in 0..5 {
        let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
        assert_eq!(stats.executions, 1, "{stats:?}");
        assert_eq!(stats.after_barrier, 1, "{stats:?}");
        assert_eq!(stats.aborts, 0, "{stats:?}");
        assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    }
}

#[test]
fn a_prologue_runs_before_the_block_that_reads_it() {
    // An accrual-like hook rewrites key 0; every other transaction reads it. Run first, the
    // hook leaves nothing for the others to conflict on.
    let mut txns = vec![Program(vec![
        Op::Prologue,
        Op::Work(50_000),
        Op::WriteNum(0, 7),
    ])];
    txns.extend((0..400).map(|i| Program(vec![Op::Read(0), Op::Add(1 + (i % 50) as u8, 1)])));
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(2);
    let exec = ParallelExecutor::with_config(&pool, no_fallback());
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(stats.prologue, 1, "{stats:?}");
    assert_eq!(stats.aborts + stats.suspensions, 0, "{stats:?}");
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
}

#[test]
fn withdrawals_from_a_shared_vault_split_and_overdrafts_fall_back() {
    // Each transaction takes 10 from vault key 4 (declared as `subs`) and credits its own key.
    let txns: Vec<Program> = (0..100u8)
        .map(|i| Program(vec![Op::Withdraw(4, 10), Op::Add(10 + i, 10)]))
        .collect();
    let pool = pool(2);
    let exec = ParallelExecutor::new(&pool);
    let run = |vault: u128| {
        let mut state: KeyMap<Value> = key_map_with_capacity(1);
        state.insert(key(4), Value::Num(vault));
        let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
        assert_eq!(
            out,
            execute_sequential(&ProgramVm, &txns, &state),
            "{stats:?}"
        );
        (out, stats)
    };
    // Enough for all: one group per transaction, the vault ends 1,000 lower.
    let (out, stats) = run(2_000);
    assert_eq!(stats.footprint_groups, 100, "{stats:?}");
    assert_eq!(stats.footprint_violations, 0, "{stats:?}");
    assert!(out.writes.0.contains(&(key(4), Some(Value::Num(1_000)))));
    // 600: each lane's withdrawals fit on their own (at most 500 each), all of them do not;
    // the sum check catches it and the general engine gives the sequential result.
    let (_, stats) = run(600);
    assert_eq!(stats.footprint_violations, 1, "{stats:?}");
    // 30: the fourth withdrawal of a lane fails there: undecidable, so it falls back too.
    let (_, stats) = run(30);
    assert_eq!(stats.footprint_violations, 1, "{stats:?}");
}

#[test]
fn large_footprints_are_checked_as_exactly_as_small_ones() {
    // Each transaction declares 3 + 12 keys (sorted and binary-searched by the check): it
    // reads key 1, writes its own key, and credits 12 keys shared with the others.
    let big = |i: u8| {
        let mut ops = vec![Op::Read(1), Op::WriteNum(100 + i, u64::from(i))];
        ops.extend((0..12).map(|k| Op::Add(20 + k, u64::from(i) + 1)));
        Program(ops)
    };
    let txns: Vec<Program> = (0..60u8).map(big).collect();
    let state: KeyMap<Value> = key_map_with_capacity(0);
    let pool = pool(2);
    let exec = ParallelExecutor::new(&pool);
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    assert_eq!(stats.footprint_groups, 60, "{stats:?}");
    assert_eq!(stats.footprint_violations, 0, "{stats:?}");
    // One of them also touches a key it did not declare, between declared ones.
    let mut lying = txns.clone();
    lying[30].0.insert(5, Op::Undeclared(25));
    lying[30].0.push(Op::Undeclared(19));
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &lying, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &lying, &state));
    assert_eq!(stats.footprint_violations, 1, "{stats:?}");
}

#[test]
fn transfers_with_homes_run_in_home_lanes_and_a_conflict_pauses_them() {
    use crate::program::group;
    // Each of the eight homes pays from its keys to the next home's and to a homeless fee key.
    let transfer = |i: u8| {
        let g = i % 8;
        Program(vec![
            Op::Home(g),
            Op::TrySub(group(g, i / 8), 5),
            Op::Add(group(g + 1, i / 8), 5),
            Op::Add(0, 1),
        ])
    };
    let txns: Vec<Program> = (0..200u8).map(transfer).collect();
    let mut state: KeyMap<Value> = key_map_with_capacity(0);
    for g in 0..8 {
        for i in 0..25 {
            state.insert(key(group(g, i)), Value::Num(100));
        }
    }
    let pool = pool(2);
    let exec = ParallelExecutor::new(&pool);
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    assert_eq!(stats.home_lanes, 2, "{stats:?}");
    assert_eq!(stats.footprint_groups, 0, "{stats:?}");
    assert_eq!(stats.validations, 0, "{stats:?}");

    // Home 4 (the second lane's) reads a key that home 3 (the first lane's) credits in the
    // same block: home lanes are abandoned and the block runs another way, with the same
    // result.
    let mut exposed = txns.clone();
    exposed[150] = Program(vec![Op::Home(4), Op::Read(group(4, 0))]);
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &exposed, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &exposed, &state));
    assert_eq!(
        (stats.home_lanes, stats.home_abandoned),
        (0, 1),
        "{stats:?}"
    );
    assert!(stats.footprint_groups > 0, "{stats:?}");
    // The next blocks do not try home lanes again at once.
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
    assert_eq!(
        (stats.home_lanes, stats.home_abandoned),
        (0, 0),
        "{stats:?}"
    );
}

/// Programs of two homes (a swap: its sender and a pool) are grouped by the homes they
/// share and the groups dealt to the lanes; a homeless key nothing changes is borrowed.
/// Homes 0 to 3 trade with "pools" 4 and 5, homes 6 and 7 with nobody: three groups
/// ({0, 2, 4}, {1, 3, 5}, {6}, {7}), even on two lanes.
#[test]
fn programs_of_several_homes_run_in_planned_lanes() {
    use crate::program::group;
    let swap = |i: u8| {
        let (g, p) = (i % 4, 4 + i % 2);
        Program(vec![
            Op::Home(g),
            Op::Home(p),
            Op::Read(5),
            Op::TrySub(group(g, i / 8), 5),
            Op::Add(group(p, 0), 5),
            Op::Read(group(p, 1)),
            Op::WriteNum(group(p, 1), u64::from(i)),
            Op::Add(0, 1),
        ])
    };
    let transfer = |i: u8| {
        let g = 6 + i % 2;
        Program(vec![
            Op::Home(g),
            Op::TrySub(group(g, i / 8), 5),
            Op::Add(group(i % 8, 30), 5),
        ])
    };
    let txns: Vec<Program> = (0..200u8)
        .map(|i| if i % 3 == 0 { transfer(i) } else { swap(i) })
        .collect();
    let mut state: KeyMap<Value> = key_map_with_capacity(0);
    for g in 0..8 {
        for i in 0..31 {
            state.insert(key(group(g, i)), Value::Num(100));
        }
    }
    for threads in [2, 3] {
        let pool = pool(threads);
        let exec = ParallelExecutor::new(&pool);
        let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
        assert_eq!(out, execute_sequential(&ProgramVm, &txns, &state));
        assert_eq!(
            (stats.home_lanes, stats.home_abandoned),
            (threads as u64, 0),
            "{stats:?}"
        );
        assert_eq!(stats.validations, 0, "{stats:?}");
    }
}

#[test]
fn credits_that_could_wrap_a_debited_balance_leave_home_lanes() {
    use crate::program::group;
    // Home 4 (second lane) debits a balance near 2^128 that home 3 (first lane) credits first:
    // in block order the credit wraps it to a small number before the debit. Folding the
    // credit into the debited value would overflow instead; the engine must notice that the
    // value was too large to fold into and run the block another way.
    let top = key(group(4, 0));
    let mut txns = vec![Program(vec![Op::Home(3), Op::Add(group(4, 0), 10)])];
    txns.push(Program(vec![Op::Home(4), Op::TrySub(group(4, 0), 1)]));
    for i in 0..40u8 {
        let g = i % 8;
        txns.push(Program(vec![Op::Home(g), Op::Add(group(g, 1 + i / 8), 1)]));
    }
    let mut state: KeyMap<Value> = key_map_with_capacity(0);
    state.insert(top, Value::Num(u128::MAX - 5));
    let want = execute_sequential(&ProgramVm, &txns, &state);
    let wrapped = want
        .writes
        .0
        .iter()
        .find(|(k, _)| *k == top)
        .map(|(_, v)| v.clone());
    assert_eq!(wrapped, Some(Some(Value::Num(3))));
    let pool = pool(2);
    let exec = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            min_parallel_txns: 0,
            ..ExecConfig::default()
        },
    );
    let (out, stats) = exec.execute_block_with_stats(&ProgramVm, &txns, &state);
    assert_eq!(out, want);
    assert_eq!(
        (stats.home_lanes, stats.home_abandoned),
        (0, 1),
        "{stats:?}"
    );
}

/// Withdrawals by several lanes from one key: home 3 (first lane) takes 80 of home 4's 100
/// (second lane), then home 4 itself takes 50, which fails in block order though it fits in
/// home 4's lane. So a key that another lane subtracted from must not have been touched by
/// its owner (nor debited by another lane); from a key no lane owns (a shared vault),
/// withdrawals pass only while they fit in it together; a total no lane owns may rise and
/// fall.
#[test]
fn withdrawals_from_one_key_in_several_lanes_must_fit_together() {
    use crate::program::group;
    let vault = 6;
    let filler = |txns: &mut Vec<Program>| {
        for i in 0..40u8 {
            let g = i % 8;
            txns.push(Program(vec![Op::Home(g), Op::Add(group(g, 1 + i / 8), 1)]));
        }
    };
    let mut state: KeyMap<Value> = key_map_with_capacity(0);
    state.insert(key(group(4, 0)), Value::Num(100));
    state.insert(key(vault), Value::Num(100));
    let pool = pool(2);
    let exec = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            min_parallel_txns: 0,
            ..ExecConfig::default()
        },
    );
    let run = |txns: &[Program]| {
        let want = execute_sequential(&ProgramVm, txns, &state);
        let (out, stats) = exec.execute_block_with_stats(&ProgramVm, txns, &state);
        assert_eq!(out, want);
        // Home lanes rest after an abandoned attempt: let the next block try them again.
        for _ in 0..16 {
            exec.execute_block(&ProgramVm, &[], &state);
        }
        (stats.home_lanes, stats.home_abandoned)
    };
    // Taken from, or debited by a wrapping add (which a later credit hides in the lane's sum
    // of adds), before its owner takes 50.
    for first in [Op::Withdraw(group(4, 0), 80), Op::Debit(group(4, 0), 80)] {
        let mut owner_too = vec![
            Program(vec![Op::Home(3), first]),
            Program(vec![Op::Home(4), Op::TrySub(group(4, 0), 50)]),
            Program(vec![Op::Home(3), Op::Add(group(4, 0), 100)]),
        ];
        filler(&mut owner_too);
        assert_eq!(run(&owner_too), (0, 1));
    }
    // The vault debited by a wrapping add before another lane's withdrawal, which then
    // fails in block order; a later credit hides the debit in the lane's sum of adds.
    let mut debited = vec![
        Program(vec![Op::Home(4), Op::Debit(vault, 60)]),
        Program(vec![Op::Home(3), Op::Withdraw(vault, 60)]),
        Program(vec![Op::Home(4), Op::Add(vault, 100)]),
    ];
    filler(&mut debited);
    assert_eq!(run(&debited), (0, 1));
    // A total no lane owns, credited and debited by both lanes: the adds commute.
    let mut total = vec![
        Program(vec![Op::Home(3), Op::Add(1, 50), Op::Debit(1, 70)]),
        Program(vec![Op::Home(4), Op::Debit(1, 20), Op::Add(1, 5)]),
    ];
    filler(&mut total);
    assert_eq!(run(&total), (2, 0));
    // Two lanes' withdrawals from the shared vault: 60 and 30 fit, 60 and 60 do not.
    for (second, fits) in [(30, true), (60, false)] {
        let mut shared = vec![
            Program(vec![Op::Home(3), Op::Withdraw(vault, 60)]),
            Program(vec![Op::Home(4), Op::Withdraw(vault, second)]),
        ];
        filler(&mut shared);
        let want = if fits { (2, 0) } else { (0, 1) };
        assert_eq!(run(&shared), want, "second withdrawal {second}");
    }
}
