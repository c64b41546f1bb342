//! `parabit bench`: generates a workload, then for each thread count runs its blocks
//! sequentially and in parallel on the same base state, compares outputs, write sets and
//! state roots, and prints a table (or one JSON object a line with `--json`). Exits non-zero
//! if any root differs.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::builder::RangedU64ValueParser;
use clap::Args;
use parabit_bench::{
    available_threads, Accounts, EngineReport, Report, RunOptions, SigReport, Workload,
    WorkloadKind, WorkloadSpec,
};

/// Arguments of `parabit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Workload to run: transfer-uniform, transfer-hot, transfer-serial, swap-pools, swap-hot,
    /// batchswap-hot, lending-mix, defi-mix, or all.
    #[arg(long, default_value = "transfer-uniform", value_parser = parse_workloads)]
    workload: Workloads,

    /// Accounts in the population, all funded at genesis.
    #[arg(long, default_value_t = 100_000, value_parser = RangedU64ValueParser::<usize>::new().range(2..=u64::from(u32::MAX)))]
    accounts: usize,

    /// Transactions in all.
    #[arg(long, default_value_t = 100_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    txs: usize,

    /// Transactions per block.
    #[arg(long, default_value_t = 10_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    block_size: usize,

    /// Thread counts to run with, comma-separated [default: 1 and every core].
    #[arg(long, value_delimiter = ',', value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    threads: Vec<usize>,

    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,

    /// Runs of each block each way (sequential, parallel, ceiling); the fastest of each
    /// counts. Above 1, interference from other processes on a shared machine is filtered out.
    #[arg(long, default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100))]
    repeat: usize,

    /// Seed of the accounts and transactions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The workloads selected by `--workload`.
#[derive(Debug, Clone)]
struct Workloads(Vec<WorkloadKind>);

fn parse_workloads(s: &str) -> Result<Workloads, String> {
    if s == "all" {
        return Ok(Workloads(WorkloadKind::ALL.to_vec()));
    }
    s.parse::<WorkloadKind>()
        .map(|k| Workloads(vec![k]))
        .map_err(|_| format!("expected one of {}, or all", WorkloadKind::names()))
}

/// The thread counts to run: the given ones, or 1 and every core.
fn thread_counts(given: &[usize]) -> Vec<usize> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let all = available_threads();
    if all > 1 {
        vec![1, all]
    } else {
        vec![1]
    }
}

/// Runs `parabit bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let threads = thread_counts(&args.threads);
    let options = RunOptions {
        threads: threads.clone(),
        progress: true,
        repeat: args.repeat,
    };
    tracing::info!(?threads, accounts = args.accounts, txs = args.txs, "bench");

    let start = Instant::now();
    let accounts = Accounts::derive(args.seed, args.accounts, true);
    tracing::info!(elapsed = ?start.elapsed(), "derived {} account keys", args.accounts);

    let mut out = std::io::stdout().lock();
    let mut mismatches = Vec::new();
    for &kind in &args.workload.0 {
        let spec = WorkloadSpec {
            kind,
            accounts: args.accounts,
            txs: args.txs,
            block_size: args.block_size,
            seed: args.seed,
        };
        let workload = Workload::generate_with(&spec, &accounts, true)
            .with_context(|| format!("generating workload {kind}"))?;
        if !args.json {
            writeln!(
                out,
                "\n{kind}: {} accounts, {} txs in {} blocks of {}",
                spec.accounts,
                workload.txs(),
                workload.blocks.len(),
                spec.block_size
            )?;
            writeln!(out, "{}", engine_header())?;
        }
        let mut write_err = None;
        let mut sig_header = false;
        parabit_bench::run(&workload, &options, |report| {
            if let Report::Engine(e) = report {
                if !e.roots_match {
                    mismatches.push(EngineReport::clone(e));
                }
            }
            let written = if args.json {
                serde_json::to_string(report)
                    .map_err(std::io::Error::other)
                    .and_then(|line| writeln!(out, "{line}"))
            } else {
                match report {
                    Report::Engine(e) => writeln!(out, "{}", engine_row(e)),
                    Report::Sig(s) => {
                        let header = if sig_header {
                            Ok(())
                        } else {
                            sig_header = true;
                            writeln!(out, "{}", sig_header_line())
                        };
                        header.and_then(|()| writeln!(out, "{}", sig_row(s)))
                    }
                }
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                write_err.get_or_insert(e);
            }
        })
        .with_context(|| format!("running workload {kind}"))?;
        if let Some(e) = write_err {
            return Err(e).context("writing the report to stdout");
        }
    }
    tracing::info!(elapsed = ?start.elapsed(), "bench finished");

    match mismatch_error(&mismatches) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The error for runs whose roots differed, if any did.
fn mismatch_error(mismatches: &[EngineReport]) -> Option<anyhow::Error> {
    if mismatches.is_empty() {
        return None;
    }
    let which: Vec<String> = mismatches
        .iter()
        .map(|e| {
            let at = e
                .first_divergent_block
                .map_or_else(|| "final state".to_string(), |b| format!("block {b}"));
            format!(
                "{} on {} threads (first difference: {at}; sequential root {}, parallel root {})",
                e.workload, e.threads, e.sequential_root, e.parallel_root
            )
        })
        .collect();
    Some(anyhow::anyhow!(
        "parallel execution diverged from the sequential oracle: state roots differ for {}",
        which.join("; ")
    ))
}

fn engine_header() -> String {
    format!(
        "{:>7} {:>12} {:>12} {:>8} {:>8} {:>6} {:>6} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5} {:>6}",
        "threads",
        "seq tx/s",
        "par tx/s",
        "speedup",
        "ceiling",
        "eff",
        "cores",
        "execs",
        "aborts",
        "suspends",
        "fallback",
        "footprint",
        "homes",
        "plan",
        "merge",
        "roots"
    )
}

fn engine_row(e: &EngineReport) -> String {
    format!(
        "{:>7} {:>12.0} {:>12.0} {:>7.2}x {:>7.2}x {:>5.0}% {:>6.2} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>4.0}% {:>4.0}% {:>6}",
        e.threads,
        e.sequential_tps,
        e.tps,
        e.speedup,
        e.ceiling_speedup,
        e.efficiency * 100.0,
        e.cpu_cores_used,
        e.executions,
        e.aborts,
        e.suspensions,
        format!("{}/{}", e.fallback_blocks, e.blocks),
        format!("{}/{}", e.footprint_blocks, e.blocks),
        format!("{}/{}", e.home_blocks, e.blocks),
        e.planning_share * 100.0,
        e.merging_share * 100.0,
        if e.roots_match { "match" } else { "DIFFER" }
    )
}

fn sig_header_line() -> String {
    format!(
        "{:>7} {:>12} {:>12} {:>10}   (signature pre-verification)",
        "threads", "sigs/s", "1-thread", "efficiency"
    )
}

fn sig_row(s: &SigReport) -> String {
    format!(
        "{:>7} {:>12.0} {:>12.0} {:>9.1}%",
        s.threads,
        s.rate,
        s.single_thread_rate,
        s.efficiency * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(roots_match: bool, block: Option<usize>) -> EngineReport {
        EngineReport {
            workload: "transfer-hot".into(),
            accounts: 10,
            txs: 10,
            block_size: 5,
            blocks: 2,
            threads: 2,
            repeat: 1,
            seconds: 1.0,
            tps: 10.0,
            sequential_seconds: 1.0,
            sequential_tps: 10.0,
            speedup: 1.0,
            ceiling_speedup: 2.0,
            efficiency: 0.5,
            cpu_cores_used: 1.0,
            roots_match,
            first_divergent_block: block,
            sequential_root: "aa".into(),
            parallel_root: "bb".into(),
            failed_txs: 0,
            executions: 10,
            validations: 10,
            aborts: 0,
            suspensions: 0,
            fallback_blocks: 0,
            fallback_txs: 0,
            footprint_blocks: 0,
            footprint_violations: 0,
            home_blocks: 0,
            home_abandoned: 0,
            planning_share: 0.1,
            merging_share: 0.02,
            verify_seconds: 0.1,
        }
    }

    #[test]
    fn a_root_mismatch_is_an_error_naming_the_run() {
        assert!(mismatch_error(&[]).is_none());
        let msg = mismatch_error(&[report(false, Some(1))])
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("diverged from the sequential oracle"), "{msg}");
        assert!(msg.contains("transfer-hot on 2 threads"), "{msg}");
        assert!(msg.contains("block 1") && msg.contains("aa") && msg.contains("bb"));
        let msg = mismatch_error(&[report(false, None)])
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("final state"), "{msg}");
    }

    #[test]
    fn default_threads_are_one_and_every_core() {
        let t = thread_counts(&[]);
        assert_eq!(t[0], 1);
        assert!(t.len() <= 2);
        assert_eq!(thread_counts(&[3, 1]), vec![3, 1]);
    }
}
