//! The runner behind `parabit bench`: for each thread count, pre-verifies every block's
//! signatures on a pool of that many threads, then runs every block sequentially (the oracle)
//! and in parallel, compares them, and reports timings.
//!
//! Steps (0 once per workload, 1–5 for each thread count `n`):
//! 0. Warm-up (untimed): every block executed sequentially over a scratch state and
//!    a few thousand signatures checked: the first thread count measured does not pay for
//!    first-touch page faults and a cold allocator.
//! 1. Build a rayon pool of `n` threads and one [`ParallelExecutor`] on it (it keeps its
//!    working memory from block to block, as a node's would).
//! 2. Start one state from the genesis, which both paths read: two copies would give a
//!    path the warm caches of whichever ran last on its own copy (the ceiling run too),
//!    which for short blocks is worth more than the engine's overhead. A second copy is
//!    split off for the parallel path at the first block where the two differ.
//! 3. Warm-up (untimed, discarded): block 0 once each way on genesis, so page faults and the
//!    executor's first allocations are not charged to either path.
//! 4. For each block: verify its signatures with `verify_batch` inside the pool (timed apart:
//!    not part of execution); run `execute_sequential` on the sequential state and
//!    `execute_block_with_stats` on the state, each timed alone (the order alternates from
//!    block to block), and the ceiling run; with `repeat` above 1, each of them that many
//!    times, keeping the fastest of each (every parallel run must give the same result);
//!    compare outputs and write sets (exactly: the same outputs and the same writes); apply
//!    the sequential write set (and, once they have differed, each to its own state).
//! 5. Compute both [`state_root`]s. `roots_match` means every block's outputs and write set
//!    were equal *and* the final roots are equal.
//!
//! `cpu_cores_used` is the process CPU time (`CLOCK_PROCESS_CPUTIME_ID`) spent during the
//! parallel calls divided by their wall time: how many cores the engine kept busy, idle
//! spinning included. Transactions per second count execution only (signatures are checked
//! beforehand, the state is in memory).
//!
//! Signature pre-verification is reported apart ([`SigReport`]): the rate on `n` threads
//! against `n` times the single-thread rate measured in the same run.

use std::time::{Duration, Instant};

use parabit_exec::{execute_sequential, ParallelExecutor};
use parabit_primitives::{verify_batch, verify_one};
use serde::Serialize;

use crate::error::BenchError;
use crate::progress::Progress;
use crate::root::{hex32, state_root};
use crate::workload::Workload;

/// How to run a workload.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Thread counts to run with, in order; each at least 1.
    pub threads: Vec<usize>,
    /// Show progress bars on stderr (for phases over a second).
    pub progress: bool,
    /// Runs of each block each way (sequential, parallel, ceiling), at least 1; the fastest
    /// of each counts. More than 1 filters out interference from other processes on a shared
    /// machine, which hurts a run that needs every core more than one that needs one.
    pub repeat: usize,
}

/// One thread count's execution figures: one JSON line of `parabit bench --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineReport {
    /// Workload name.
    pub workload: String,
    /// Accounts in the population.
    pub accounts: usize,
    /// Transactions executed (each path).
    pub txs: usize,
    /// Transactions per block.
    pub block_size: usize,
    /// Blocks executed.
    pub blocks: usize,
    /// Threads in the parallel executor's pool.
    pub threads: usize,
    /// Runs of each block each way; the times are each block's fastest ([`RunOptions::repeat`]).
    pub repeat: usize,
    /// Wall time of the parallel executor over all blocks.
    pub seconds: f64,
    /// Transactions per second of the parallel executor.
    pub tps: f64,
    /// Wall time of the sequential executor over all blocks.
    pub sequential_seconds: f64,
    /// Transactions per second of the sequential executor.
    pub sequential_tps: f64,
    /// `sequential_seconds / seconds`.
    pub speedup: f64,
    /// The machine's ceiling for this workload, measured in the same run: the speedup of
    /// running each block's transactions as `threads` independent slices at once, each with the
    /// sequential executor and no coordination at all (the results are thrown away: slices do
    /// not see each other's writes). No parallel executor can beat it on this machine.
    pub ceiling_speedup: f64,
    /// `speedup / ceiling_speedup`: how much of the machine's ceiling the engine reaches.
    pub efficiency: f64,
    /// Process CPU time over wall time during the parallel runs.
    pub cpu_cores_used: f64,
    /// Every block's outputs and write set, and the final state roots, were equal.
    pub roots_match: bool,
    /// The first block whose outputs or write set differed, if any.
    pub first_divergent_block: Option<usize>,
    /// Stand-in state root after the sequential path (see [`state_root`]).
    pub sequential_root: String,
    /// Stand-in state root after the parallel path.
    pub parallel_root: String,
    /// Receipts of the sequential path that were not `Success` (0 for generated workloads).
    pub failed_txs: usize,
    /// Incarnations the parallel workers executed (a sequential fallback's suffix is not
    /// counted; on one thread the engine reports each transaction once).
    pub executions: u64,
    /// Validations it ran.
    pub validations: u64,
    /// Incarnations aborted by a failed validation.
    pub aborts: u64,
    /// Executions suspended on a dependency.
    pub suspensions: u64,
    /// Blocks finished sequentially, wholly or from some index (on one thread: all).
    pub fallback_blocks: usize,
    /// Transactions those blocks ran sequentially.
    pub fallback_txs: usize,
    /// Blocks split by the transactions' footprints into independent groups.
    pub footprint_blocks: usize,
    /// Footprint attempts dropped because a transaction strayed outside its footprint (a
    /// `Vm` bug: should be 0).
    pub footprint_violations: u64,
    /// Blocks run in home lanes (by the transactions' accounts, with no planning).
    pub home_blocks: usize,
    /// Home-lane attempts abandoned (the block then ran another way).
    pub home_abandoned: u64,
    /// Share of the parallel run's wall time spent planning footprint runs (footprints,
    /// grouping, the deal onto the workers).
    pub planning_share: f64,
    /// Share of the parallel run's wall time spent merging the workers' results (of
    /// footprint and home-lane runs).
    pub merging_share: f64,
    /// Wall time of signature pre-verification on this pool (not part of `seconds`).
    pub verify_seconds: f64,
}

/// Signature pre-verification figures for one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SigReport {
    /// Always `"sigverify"`.
    pub workload: &'static str,
    /// The workload whose transactions were verified.
    pub source: String,
    /// Signatures verified.
    pub signatures: usize,
    /// Threads in the pool.
    pub threads: usize,
    /// Wall time.
    pub seconds: f64,
    /// Signatures per second on `threads` threads.
    pub rate: f64,
    /// Signatures per second on one thread, in the same run.
    pub single_thread_rate: f64,
    /// `rate / (threads × single_thread_rate)`.
    pub efficiency: f64,
}

/// A line of output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Report {
    /// Execution figures.
    Engine(Box<EngineReport>),
    /// Signature verification figures.
    Sig(SigReport),
}

/// The number of cores this process may use (1 if unknown).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// CPU time used so far by all threads of this process (`None` where unsupported).
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc knows.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return None;
        }
        Some(Duration::new(
            u64::try_from(ts.tv_sec).ok()?,
            u32::try_from(ts.tv_nsec).ok()?,
        ))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Runs `workload` on every thread count of `options`, handing each report to `on_report` as
/// soon as it is ready (engine reports one per thread count, then the signature reports),
/// and returns them all.
pub fn run(
    workload: &Workload,
    options: &RunOptions,
    mut on_report: impl FnMut(&Report),
) -> Result<Vec<Report>, BenchError> {
    if options.threads.is_empty() {
        return Err(BenchError::NoThreads);
    }
    if options.threads.contains(&0) {
        return Err(BenchError::ZeroThreads);
    }
    warm_up(workload);
    let mut reports = Vec::new();
    let mut verify_times = Vec::new();
    for &threads in &options.threads {
        let (report, verify) =
            run_threads(workload, threads, options.repeat.max(1), options.progress)?;
        let report = Report::Engine(Box::new(report));
        on_report(&report);
        reports.push(report);
        verify_times.push((threads, verify));
    }

    let signatures = workload.txs();
    let single = match verify_times.iter().find(|(t, _)| *t == 1) {
        Some(&(_, d)) => d,
        None => {
            let pool = build_pool(1)?;
            verify_all(workload, &pool)?
        }
    };
    let single_rate = rate(signatures, single);
    for (threads, d) in verify_times {
        let r = rate(signatures, d);
        let report = Report::Sig(SigReport {
            workload: "sigverify",
            source: workload.spec.kind.name().to_string(),
            signatures,
            threads,
            seconds: d.as_secs_f64(),
            rate: r,
            single_thread_rate: single_rate,
            efficiency: ratio(r, threads as f64 * single_rate),
        });
        on_report(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// One untimed pass before any measurement: every block executed sequentially over a scratch
/// state, and some signatures checked. Without it the first thread count pays for the first
/// touch of fresh memory and of the allocator's arenas (measured: 10–25% slower).
fn warm_up(workload: &Workload) {
    let mut state = workload.genesis.clone();
    for block in &workload.blocks {
        let out = execute_sequential(&workload.runtime, block, &state);
        out.writes.apply_to(&mut state);
    }
    if let Some(first) = workload.signed.first() {
        for tx in first.iter().take(2_000) {
            let _ = verify_one(tx);
        }
    }
}

fn build_pool(threads: usize) -> Result<rayon::ThreadPool, BenchError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("parabit-exec-{i}"))
        .build()
        .map_err(|source| BenchError::ThreadPool { threads, source })
}

fn rate(count: usize, d: Duration) -> f64 {
    ratio(count as f64, d.as_secs_f64())
}

/// `a / b`, or 0 when `b` is 0 (keeps JSON free of infinities).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Verifies one block's signatures inside `pool`; returns the time taken.
fn verify_block(
    workload: &Workload,
    block: usize,
    pool: &rayon::ThreadPool,
) -> Result<Duration, BenchError> {
    let txs = &workload.signed[block];
    let start = Instant::now();
    let results = pool.install(|| verify_batch(txs));
    let elapsed = start.elapsed();
    if let Some((index, Err(source))) = results.into_iter().enumerate().find(|(_, r)| r.is_err()) {
        return Err(BenchError::BadSignature {
            block,
            index,
            source,
        });
    }
    Ok(elapsed)
}

fn verify_all(workload: &Workload, pool: &rayon::ThreadPool) -> Result<Duration, BenchError> {
    let mut total = Duration::ZERO;
    for block in 0..workload.signed.len() {
        total += verify_block(workload, block, pool)?;
    }
    Ok(total)
}

/// The ceiling run: `block` cut into `threads` slices executed at once by the sequential
/// executor on `state`, with no coordination; returns the wall time. The outputs are discarded.
fn split_run(
    vm: &parabit_modules::Runtime,
    block: &[parabit_modules::BlockTx],
    state: &parabit_exec::KeyMap<parabit_exec::Value>,
    threads: usize,
    pool: &rayon::ThreadPool,
) -> Duration {
    use rayon::prelude::*;
    let slice = block.len().div_ceil(threads).max(1);
    let start = Instant::now();
    pool.install(|| {
        block.par_chunks(slice).for_each(|part| {
            let _ = execute_sequential(vm, part, state);
        })
    });
    start.elapsed()
}

/// One thread count: returns the engine report and the signature verification time.
fn run_threads(
    workload: &Workload,
    threads: usize,
    repeat: usize,
    progress: bool,
) -> Result<(EngineReport, Duration), BenchError> {
    let pool = build_pool(threads)?;
    let executor = ParallelExecutor::new(&pool);
    let vm = &workload.runtime;
    let txs = workload.txs();
    let bar = Progress::new(
        progress,
        txs as u64,
        format!("{}, {threads} thread(s)", workload.spec.kind),
    );

    if let Some(first) = workload.blocks.first() {
        let _ = execute_sequential(vm, first, &workload.genesis);
        let _ = executor.execute_block_with_stats(vm, first, &workload.genesis);
    }

    let mut seq_state = workload.genesis.clone();
    // The parallel path's own state, once it has differed from the sequential one.
    let mut par_state: Option<parabit_exec::KeyMap<parabit_exec::Value>> = None;
    let mut seq_time = Duration::ZERO;
    let mut par_time = Duration::ZERO;
    let mut ceiling_time = Duration::ZERO;
    let mut par_cpu = Duration::ZERO;
    let mut cpu_known = true;
    let mut verify_time = Duration::ZERO;
    let mut first_divergent_block = None;
    let mut failed_txs = 0;
    let (mut executions, mut validations, mut aborts, mut suspensions) = (0, 0, 0, 0);
    let (mut fallback_blocks, mut fallback_txs) = (0, 0);
    let (mut footprint_blocks, mut footprint_violations) = (0, 0);
    let (mut home_blocks, mut home_abandoned) = (0, 0);
    let (mut planning, mut merging) = (Duration::ZERO, Duration::ZERO);

    for (b, block) in workload.blocks.iter().enumerate() {
        verify_time += verify_block(workload, b, &pool)?;

        let run_seq = |state| {
            let start = Instant::now();
            let out = execute_sequential(vm, block, state);
            (out, start.elapsed())
        };
        let run_par = |state| {
            let cpu0 = process_cpu_time();
            let start = Instant::now();
            let (out, stats) = executor.execute_block_with_stats(vm, block, state);
            let wall = start.elapsed();
            let cpu = match (cpu0, process_cpu_time()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
            (out, stats, wall, cpu)
        };
        // Each way `repeat` times on the same state, the order alternating; the fastest run
        // of each counts, with the statistics of the fastest parallel run. Every parallel run
        // must give the first one's result.
        let mut seq_out = None;
        let mut par_out = None;
        let (mut seq_wall, mut par_wall, mut ceiling) =
            (Duration::MAX, Duration::MAX, Duration::MAX);
        let (mut stats, mut cpu) = (Default::default(), None);
        let mut repeats_agree = true;
        for r in 0..repeat {
            let par_on = par_state.as_ref().unwrap_or(&seq_state);
            let ((s_out, s_wall), (p_out, p_stats, p_wall, p_cpu)) = if (b + r) % 2 == 0 {
                let s = run_seq(&seq_state);
                (s, run_par(par_on))
            } else {
                let p = run_par(par_on);
                (run_seq(&seq_state), p)
            };
            seq_wall = seq_wall.min(s_wall);
            if p_wall < par_wall {
                par_wall = p_wall;
                stats = p_stats;
                cpu = p_cpu;
            }
            ceiling = ceiling.min(split_run(vm, block, &seq_state, threads, &pool));
            match &par_out {
                None => {
                    seq_out = Some(s_out);
                    par_out = Some(p_out);
                }
                Some(first) => repeats_agree &= *first == p_out,
            }
        }
        let (Some(seq_out), Some(par_out)) = (seq_out, par_out) else {
            continue;
        };
        seq_time += seq_wall;
        par_time += par_wall;
        ceiling_time += ceiling;
        match cpu {
            Some(c) => par_cpu += c,
            None => cpu_known = false,
        }
        executions += stats.executions;
        validations += stats.validations;
        aborts += stats.aborts;
        suspensions += stats.suspensions;
        if stats.footprint_groups > 0 {
            footprint_blocks += 1;
        }
        footprint_violations += stats.footprint_violations;
        home_blocks += usize::from(stats.home_lanes > 0);
        home_abandoned += stats.home_abandoned;
        planning += stats.footprint_planning;
        merging += stats.footprint_merging;
        if let Some(from) = stats.sequential_from {
            fallback_blocks += 1;
            fallback_txs += block.len().saturating_sub(from);
        }
        failed_txs += seq_out
            .outputs
            .iter()
            .filter(|r| !r.status.is_success())
            .count();
        let differ = seq_out != par_out;
        if first_divergent_block.is_none() && (differ || !repeats_agree) {
            tracing::error!(
                block = b,
                threads,
                "parallel execution differs from the sequential oracle"
            );
            first_divergent_block = Some(b);
        }
        if par_state.is_none() && differ {
            par_state = Some(seq_state.clone());
        }
        if let Some(state) = par_state.as_mut() {
            par_out.writes.apply_to(state);
        }
        seq_out.writes.apply_to(&mut seq_state);
        bar.inc(block.len() as u64);
    }
    bar.finish();

    let par_state = par_state.as_ref().unwrap_or(&seq_state);
    let (seq_root, par_root) = rayon::join(|| state_root(&seq_state), || state_root(par_state));
    let seconds = par_time.as_secs_f64();
    let sequential_seconds = seq_time.as_secs_f64();
    let report = EngineReport {
        workload: workload.spec.kind.name().to_string(),
        accounts: workload.spec.accounts,
        txs,
        block_size: workload.spec.block_size,
        blocks: workload.blocks.len(),
        threads,
        repeat,
        seconds,
        tps: rate(txs, par_time),
        sequential_seconds,
        sequential_tps: rate(txs, seq_time),
        speedup: ratio(sequential_seconds, seconds),
        ceiling_speedup: ratio(sequential_seconds, ceiling_time.as_secs_f64()),
        efficiency: ratio(
            ratio(sequential_seconds, seconds),
            ratio(sequential_seconds, ceiling_time.as_secs_f64()),
        ),
        cpu_cores_used: if cpu_known {
            ratio(par_cpu.as_secs_f64(), seconds)
        } else {
            0.0
        },
        roots_match: first_divergent_block.is_none() && seq_root == par_root,
        first_divergent_block,
        sequential_root: hex32(&seq_root),
        parallel_root: hex32(&par_root),
        failed_txs,
        executions,
        validations,
        aborts,
        suspensions,
        fallback_blocks,
        fallback_txs,
        footprint_blocks,
        footprint_violations,
        home_blocks,
        home_abandoned,
        planning_share: ratio(planning.as_secs_f64(), seconds),
        merging_share: ratio(merging.as_secs_f64(), seconds),
        verify_seconds: verify_time.as_secs_f64(),
    };
    Ok((report, verify_time))
}
