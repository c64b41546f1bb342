//! Quick ratio probe of the engine on a minimal transfer VM, with per-block statistics
//! (`BLOCK_STATS=1`), the parallel machinery forced onto one thread (`FORCE_PAR=1`), and the
//! machine's own ceiling for this workload (`PROBE=ceiling`: two independent halves at once):
//! `cargo run --release -p parabit-exec --example probe -- 2`.
#[path = "../benches/support/transfer_vm.rs"]
mod transfer_vm;

use std::time::Instant;

use parabit_exec::{execute_sequential, ParallelExecutor};
use transfer_vm::{workload, TransferVm};

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let only = std::env::var("PROBE").unwrap_or_default();
    if only == "ceiling" {
        ceiling();
        return;
    }
    for (name, hot, serial) in [
        ("uniform", false, false),
        ("hot", true, false),
        ("serial", false, true),
    ] {
        if !only.is_empty() && only != name {
            continue;
        }
        let (base, txns) = workload(100_000, 100_000, hot, serial);
        let mut config = parabit_exec::ExecConfig::default();
        if std::env::var_os("FORCE_PAR").is_some() {
            config.min_parallel_txns = 0;
        }
        let exec = ParallelExecutor::with_config(&pool, config);
        let (mut seq, mut par) = (0.0, 0.0);
        let (mut seq_cpu, mut par_cpu) = (0.0, 0.0);
        let mut agg = parabit_exec::ExecStats::default();
        for round in 0..3 {
            let mut state = base.clone();
            for block in txns.chunks(10_000) {
                let c0 = cpu_seconds();
                let t = Instant::now();
                let par_only = std::env::var("PAR_ONLY").is_ok();
                let a = if par_only {
                    ParallelExecutor::new(&pool).execute_block(&TransferVm, block, &state)
                } else {
                    execute_sequential(&TransferVm, block, &state)
                };
                let s = t.elapsed().as_secs_f64();
                if round > 0 {
                    seq_cpu += cpu_seconds() - c0;
                }
                let c0 = cpu_seconds();
                let t = Instant::now();
                let (b, stats) = exec.execute_block_with_stats(&TransferVm, block, &state);
                let p = t.elapsed().as_secs_f64();
                if round > 0 {
                    par_cpu += cpu_seconds() - c0;
                }
                assert!(a.outputs == b.outputs);
                a.writes.apply_to(&mut state);
                if std::env::var_os("BLOCK_STATS").is_some() {
                    eprintln!("{name} seq {s:.4} par {p:.4} {stats:?}");
                }
                agg.executions += stats.executions;
                agg.validations += stats.validations;
                agg.aborts += stats.aborts;
                agg.suspensions += stats.suspensions;
                if round > 0 {
                    seq += s;
                    par += p;
                }
            }
        }
        let n = 2.0 * txns.len() as f64;
        println!(
            "{name:8} seq {:>10.0} tx/s  par({threads}) {:>10.0} tx/s  speedup {:.2}  \
             cpu par/seq {:.2}  {agg:?}",
            n / seq,
            n / par,
            seq / par,
            par_cpu / seq_cpu
        );
    }
}

/// The machine's ceiling: two independent sequential executions at once.
#[allow(dead_code)]
pub fn ceiling() {
    let (state, txns) = workload(100_000, 100_000, false, false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let mut one = 0.0;
    let mut two = 0.0;
    for _ in 0..3 {
        for block in txns.chunks(10_000) {
            let t = Instant::now();
            let _ = execute_sequential(&TransferVm, block, &state);
            one += t.elapsed().as_secs_f64();
            let (a, b) = block.split_at(5_000);
            let t = Instant::now();
            pool.install(|| {
                rayon::join(
                    || execute_sequential(&TransferVm, a, &state),
                    || execute_sequential(&TransferVm, b, &state),
                )
            });
            two += t.elapsed().as_secs_f64();
        }
    }
    println!(
        "ceiling: two independent halves at once run {:.2}x one thread",
        one / two
    );
}

/// Process CPU time in seconds (all threads).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes to it.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
