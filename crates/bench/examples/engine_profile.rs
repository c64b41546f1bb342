//! Runs one workload's blocks through the parallel engine in a loop, without signatures or the
//! sequential comparison, for profilers:
//! `cargo run --release -p parabit-bench --example engine_profile -- swap-pools 2`
//! (`SEQUENTIAL=1`: the sequential executor; `FORCE_PAR=1`: the parallel machinery even on one
//! thread; `NOHOMES=1`: without home lanes).

use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use parabit_bench::{Workload, WorkloadKind, WorkloadSpec};
use parabit_exec::{execute_sequential, ParallelExecutor};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let kind: WorkloadKind = args
        .next()
        .unwrap_or_else(|| "transfer-uniform".into())
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown workload"))?;
    let threads: usize = args
        .next()
        .map_or(Ok(2), |s| s.parse())
        .context("threads")?;
    let sequential = std::env::var_os("SEQUENTIAL").is_some();
    let spec = WorkloadSpec {
        kind,
        accounts: 100_000,
        txs: 50_000,
        block_size: 10_000,
        seed: 1,
    };
    let workload = Workload::generate(&spec).context("generate")?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut config = parabit_exec::ExecConfig::default();
    if std::env::var_os("NOHOMES").is_some() {
        config.homes = false;
    }
    if std::env::var_os("FORCE_PAR").is_some() {
        // The parallel machinery even on one thread.
        config.min_parallel_txns = 0;
    }
    let exec = ParallelExecutor::with_config(&pool, config);
    if std::env::var_os("COMPARE").is_some() {
        // Sequential and parallel alternately on the same blocks; the best round of each, so
        // that noise from other processes cancels out.
        let (mut best_seq, mut best_par) = (f64::MAX, f64::MAX);
        for _ in 0..10 {
            for parallel in [false, true] {
                let mut state = workload.genesis.clone();
                let mut spent = 0.0;
                for block in &workload.blocks {
                    let t = Instant::now();
                    let out = if parallel {
                        exec.execute_block(&workload.runtime, block, &state)
                    } else {
                        execute_sequential(&workload.runtime, block, &state)
                    };
                    spent += t.elapsed().as_secs_f64();
                    out.writes.apply_to(&mut state);
                }
                if parallel {
                    best_par = best_par.min(spent);
                } else {
                    best_seq = best_seq.min(spent);
                }
            }
        }
        println!(
            "{kind}: best of 10: sequential {:.1} ms, parallel ({threads} threads) {:.1} ms, speedup {:.3}",
            best_seq * 1e3,
            best_par * 1e3,
            best_seq / best_par
        );
        return Ok(());
    }
    let start = Instant::now();
    let mut total = parabit_exec::ExecStats::default();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    for _ in 0..rounds {
        let mut state = workload.genesis.clone();
        for block in &workload.blocks {
            let out = if sequential {
                execute_sequential(&workload.runtime, block, &state)
            } else {
                let (out, stats) = exec.execute_block_with_stats(&workload.runtime, block, &state);
                total.executions += stats.executions;
                total.validations += stats.validations;
                total.aborts += stats.aborts;
                total.suspensions += stats.suspensions;
                total.after_barrier += stats.after_barrier;
                total.footprint_planning += stats.footprint_planning;
                total.footprint_merging += stats.footprint_merging;
                out
            };
            out.writes.apply_to(&mut state);
        }
    }
    let txs = rounds * workload.blocks.iter().map(Vec::len).sum::<usize>();
    println!(
        "{kind}: {:.0} tx/s ({}) {total:?}",
        txs as f64 / start.elapsed().as_secs_f64(),
        if sequential { "sequential" } else { "parallel" }
    );
    Ok(())
}
