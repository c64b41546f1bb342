//! Parallel execution equals the sequential oracle: outputs, write set and resulting state,
//! for thread counts 1, 2, 3, 4 and 8, with and without the sequential fallback.

use std::sync::OnceLock;

use parabit_exec::{
    execute_sequential, key_map_with_capacity, ExecConfig, KeyMap, ParallelExecutor, Value,
};
use proptest::prelude::*;

use crate::program::{
    block, homed_block, key, quiet_test_panics, sparse_block, Program, ProgramVm,
};

const THREADS: [usize; 5] = [1, 2, 3, 4, 8];

fn pools() -> &'static Vec<rayon::ThreadPool> {
    static POOLS: OnceLock<Vec<rayon::ThreadPool>> = OnceLock::new();
    POOLS.get_or_init(|| {
        THREADS
            .iter()
            .map(|&n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("build a thread pool")
            })
            .collect()
    })
}

fn configs() -> [ExecConfig; 4] {
    [
        // Everything in parallel, even tiny blocks, never falling back, one index per claim.
        ExecConfig {
            min_parallel_txns: 0,
            fallback: false,
            fallback_min_conflicts: 0,
            chunk: 1,
            footprints: false,
            homes: false,
        },
        // Fall back at the first hint of conflict: exercises the prefix + sequential suffix.
        ExecConfig {
            min_parallel_txns: 0,
            fallback: true,
            fallback_min_conflicts: 1,
            chunk: 3,
            footprints: false,
            homes: false,
        },
        ExecConfig {
            min_parallel_txns: 0,
            fallback: false,
            ..ExecConfig::default()
        },
        ExecConfig::default(),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

/// One block on `base`, with the default engine (even for tiny blocks) at every thread count,
/// against the oracle.
fn one_block_equals_sequential(
    base: Vec<(u8, Option<Value>)>,
    txns: &[Program],
) -> Result<(), TestCaseError> {
    quiet_test_panics();
    let mut state: KeyMap<Value> = key_map_with_capacity(base.len());
    for (k, v) in base {
        if let Some(v) = v {
            state.insert(key(k), v);
        }
    }
    let want = execute_sequential(&ProgramVm, txns, &state);
    let config = ExecConfig {
        min_parallel_txns: 0,
        ..ExecConfig::default()
    };
    for (pool, threads) in pools().iter().zip(THREADS) {
        let exec = ParallelExecutor::with_config(pool, config.clone());
        let (got, stats) = exec.execute_block_with_stats(&ProgramVm, txns, &state);
        prop_assert_eq!(
            &got.outputs,
            &want.outputs,
            "outputs differ at {} threads, {:?}",
            threads,
            stats
        );
        prop_assert_eq!(
            &got.writes,
            &want.writes,
            "write sets differ at {} threads, {:?}",
            threads,
            stats
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// A block that mostly splits by footprints (sometimes with a transaction that lies about
    /// its footprint): the partitioned run, and the general engine it falls back to, equal
    /// the oracle.
    #[test]
    fn partitioned_equals_sequential((base, txns) in sparse_block(300)) {
        one_block_equals_sequential(base, &txns)?;
    }

    /// A block of programs with homes (some straying, some exposing keys that other homes
    /// credit): home lanes, and whatever runs the block when they are abandoned, equal the
    /// oracle.
    #[test]
    fn home_lanes_equal_sequential((base, txns) in homed_block(300)) {
        one_block_equals_sequential(base, &txns)?;
    }

    /// A random block, cut into 1 to 3 consecutive blocks that each executor runs one after
    /// another (so its reused working memory is exercised across blocks).
    #[test]
    fn parallel_equals_sequential(((base, txns), parts) in (block(120), 1usize..4)) {
        quiet_test_panics();
        let mut state: KeyMap<Value> = key_map_with_capacity(base.len());
        for (k, v) in base {
            if let Some(v) = v {
                state.insert(key(k), v);
            }
        }
        let size = txns.len().div_ceil(parts).max(1);
        let blocks: Vec<_> = txns.chunks(size).collect();
        let mut expected = Vec::new();
        let mut expected_state = state.clone();
        for b in &blocks {
            let out = execute_sequential(&ProgramVm, b, &expected_state);
            out.writes.apply_to(&mut expected_state);
            expected.push(out);
        }
        for config in configs() {
            for (pool, threads) in pools().iter().zip(THREADS) {
                let exec = ParallelExecutor::with_config(pool, config.clone());
                let mut got_state = state.clone();
                for (b, want) in blocks.iter().zip(&expected) {
                    let got = exec.execute_block(&ProgramVm, b, &got_state);
                    prop_assert_eq!(&got.outputs, &want.outputs, "outputs differ at {} threads, {:?}", threads, config);
                    prop_assert_eq!(&got.writes, &want.writes, "write sets differ at {} threads, {:?}", threads, config);
                    got.writes.apply_to(&mut got_state);
                }
                prop_assert!(got_state == expected_state, "states differ at {} threads", threads);
            }
        }
    }
}
