//! Criterion benchmarks of the engine alone, on a minimal transfer VM (no signatures, no
//! module code): sequential vs parallel on uniform, hot-recipient and single-sender blocks.
//!
//! `cargo bench -p parabit-exec --bench engine`

#[path = "support/transfer_vm.rs"]
mod transfer_vm;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use parabit_exec::{execute_sequential, ParallelExecutor};
use transfer_vm::{workload, TransferVm};

const ACCOUNTS: u32 = 100_000;
const BLOCK: usize = 10_000;

fn engine(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("build a thread pool");
    let exec = ParallelExecutor::new(&pool);
    for (name, hot, serial) in [
        ("transfer-uniform", false, false),
        ("transfer-hot", true, false),
        ("transfer-serial", false, true),
    ] {
        let (state, txns) = workload(ACCOUNTS, BLOCK, hot, serial);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(BLOCK as u64));
        group.sample_size(20);
        group.bench_function("sequential", |b| {
            b.iter_batched(
                || (),
                |_| execute_sequential(&TransferVm, &txns, &state),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("parallel-{threads}"), |b| {
            b.iter_batched(
                || (),
                |_| exec.execute_block(&TransferVm, &txns, &state),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
