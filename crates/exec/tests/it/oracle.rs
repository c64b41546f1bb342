//! Parallel execution equals the sequential oracle: outputs, write set and resulting state,
//! for thread counts 1, 2, 3, 4 and 8, with and without the sequential fallback.

use std::sync::OnceLock;

use parabit_exec::{
    execute_sequential, key_map_with_capacity, ExecConfig, KeyMap, ParallelExecutor, Value,
};
use proptest::prelude::*;

use crate::program::{block, key, quiet_test_panics, ProgramVm};

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
        },
        // Fall back at the first hint of conflict: exercises the prefix + sequential suffix.
        ExecConfig {
            min_parallel_txns: 0,
            fallback: true,
            fallback_min_conflicts: 1,
            chunk: 3,
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

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn parallel_equals_sequential((base, txns) in block(120)) {
        quiet_test_panics();
        let mut state: KeyMap<Value> = key_map_with_capacity(base.len());
        for (k, v) in base {
            if let Some(v) = v {
                state.insert(key(k), v);
            }
        }
        let expected = execute_sequential(&ProgramVm, &txns, &state);
        let mut expected_state = state.clone();
        expected.writes.apply_to(&mut expected_state);
        for config in configs() {
            for (pool, threads) in pools().iter().zip(THREADS) {
                let exec = ParallelExecutor::with_config(pool, config.clone());
                let got = exec.execute_block(&ProgramVm, &txns, &state);
                prop_assert_eq!(&got.outputs, &expected.outputs, "outputs differ at {} threads, {:?}", threads, config);
                prop_assert_eq!(&got.writes, &expected.writes, "write sets differ at {} threads, {:?}", threads, config);
                let mut got_state = state.clone();
                got.writes.apply_to(&mut got_state);
                prop_assert!(got_state == expected_state, "states differ at {} threads", threads);
            }
        }
    }
}
