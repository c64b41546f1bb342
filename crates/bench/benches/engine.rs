//! Criterion benches of the engine on the shared workloads: the sequential executor against
//! the parallel one on a two-thread pool, one small block of `transfer-uniform` and one of
//! `transfer-hot` (execution only: signatures are not checked here, the state is in memory).
//!
//! Kept small so it builds and runs quickly; `parabit bench` measures the full-size figures.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parabit_bench::{Workload, WorkloadKind, WorkloadSpec};
use parabit_exec::{execute_sequential, ParallelExecutor};

const ACCOUNTS: usize = 4_000;
const BLOCK: usize = 2_000;
const THREADS: usize = 2;

fn engine(c: &mut Criterion) {
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(THREADS).build() {
        Ok(pool) => pool,
        Err(e) => panic!("cannot build a {THREADS}-thread pool: {e}"),
    };
    let executor = ParallelExecutor::new(&pool);
    let mut group = c.benchmark_group("engine");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BLOCK as u64));
    for kind in [WorkloadKind::TransferUniform, WorkloadKind::TransferHot] {
        let spec = WorkloadSpec {
            kind,
            accounts: ACCOUNTS,
            txs: BLOCK,
            block_size: BLOCK,
            seed: 7,
        };
        let workload = match Workload::generate(&spec) {
            Ok(w) => w,
            Err(e) => panic!("cannot generate {kind}: {e}"),
        };
        let block = &workload.blocks[0];
        let vm = &workload.runtime;
        let state = &workload.genesis;
        group.bench_with_input(BenchmarkId::new("sequential", kind), block, |b, block| {
            b.iter(|| execute_sequential(vm, block, state))
        });
        group.bench_with_input(
            BenchmarkId::new(format!("parallel-{THREADS}t"), kind),
            block,
            |b, block| b.iter(|| executor.execute_block(vm, block, state)),
        );
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
