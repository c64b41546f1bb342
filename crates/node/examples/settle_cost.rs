//! Cost on Bitcoin: virtual bytes of Bitcoin transaction (one commit and one reveal per chunk)
//! per L2 transaction, for batches of the benchmark workloads (`parabit-bench`).
//!
//! For each row it generates the workload's signed transactions over a population of
//! genesis-funded accounts, cuts them into L2 blocks of `--block-size` transactions (headers
//! with their real `tx_root`, fees and counts; state roots are 32 pseudo-random bytes, as
//! incompressible as real ones), encodes the batch as the batcher does (compact encoding with
//! the genesis accounts as dictionary, zstd level 15, chunks of at most `MAX_CHUNK_BYTES`),
//! and builds and signs the real commit and reveals (1 sat/vB, a commit funded by one
//! confirmed wallet coin). The figure is `(commit vsize + Σ reveal vsize) / transactions`.
//!
//! Run: `cargo run --release -p parabit-node --example settle_cost [-- --accounts N]`.

use std::time::Instant;

use parabit_bench::{Accounts, Workload, WorkloadKind, WorkloadSpec};
use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{Amount, FeeRate, OutPoint, TxOut, Txid};
use parabit_bitcoin::{build_commit_reveals, TaprootWallet, Utxo};
use parabit_modules::Call;
use parabit_node::batch::{Batch, BatchCodec, Chunk, BATCH_VERSION, MAX_CHUNK_BYTES};
use parabit_primitives::{tx_root, Block, BlockHeader, SignedTransaction};
use sha2::{Digest, Sha256};

struct Row {
    workload: &'static str,
    txs: usize,
    blocks: usize,
    compact: usize,
    data: usize,
    chunks: usize,
    vbytes: usize,
}

fn batch_of(signed: &[Vec<SignedTransaction<Call>>]) -> Batch {
    let mut blocks: Vec<Block<Call>> = Vec::new();
    for (i, txs) in signed.iter().enumerate() {
        let height = 1 + i as u64;
        let ids: Vec<_> = txs.iter().map(SignedTransaction::id).collect();
        let header = BlockHeader {
            height,
            parent_hash: blocks.last().map_or([0; 32], |b| b.header.hash()),
            timestamp_ms: 1_800_000_000_000 + height * 1_000,
            tx_root: tx_root(&ids),
            state_root: Sha256::digest(height.to_le_bytes()).into(),
            bitcoin_height: 900_000,
            fees: txs.iter().map(|t| t.tx.fee).sum(),
            tx_count: txs.len() as u32,
        };
        blocks.push(Block {
            header,
            txs: txs.clone(),
        });
    }
    Batch {
        index: 7,
        prev_hash: [0x11; 32],
        first_height: 1,
        state_root: blocks.last().map_or([0; 32], |b| b.header.state_root),
        blocks,
    }
}

fn measure(
    kind: WorkloadKind,
    txs: usize,
    block_size: usize,
    accounts: &Accounts,
) -> Result<Row, Box<dyn std::error::Error>> {
    let spec = WorkloadSpec {
        kind,
        accounts: accounts.len(),
        txs,
        block_size,
        seed: accounts.seed(),
    };
    let w = Workload::generate_with(&spec, accounts, false)?;
    let codec = BatchCodec::new(
        w.runtime.chain_id,
        (0..accounts.len()).map(|i| accounts.address(i)),
    );
    let batch = batch_of(&w.signed);
    batch.check()?;
    let compact = batch.to_compact(&codec)?.len();
    let (data, chunks) = batch.to_chunks(&codec, MAX_CHUNK_BYTES)?;
    // The batch comes back exactly.
    let back = Batch::from_chunks(&codec, &chunks)?;
    if back != batch {
        return Err("the batch does not round-trip".into());
    }
    let kp = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[0x42; 32])?);
    let wallet = TaprootWallet::from_keypair(kp);
    let coin = Utxo {
        outpoint: OutPoint {
            txid: Txid::all_zeros(),
            vout: 0,
        },
        txout: TxOut {
            value: Amount::from_btc(10.0)?,
            script_pubkey: wallet.script_pubkey().clone(),
        },
        confirmations: 6,
        coinbase: false,
    };
    let datas: Vec<Vec<u8>> = chunks.iter().map(Chunk::to_envelope_data).collect();
    let set = build_commit_reveals(
        &wallet,
        &kp,
        &[],
        &[coin],
        BATCH_VERSION,
        &datas,
        FeeRate::from_sat_per_vb_u32(1),
    )?;
    Ok(Row {
        workload: kind.name(),
        txs: w.txs(),
        blocks: w.signed.len(),
        compact,
        data: data.len(),
        chunks: chunks.len(),
        vbytes: set.vsize(),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut n_accounts = 100_000usize;
    let mut block_size = 2_500usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--accounts" => n_accounts = args.next().ok_or("--accounts N")?.parse()?,
            "--block-size" => block_size = args.next().ok_or("--block-size N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let t = Instant::now();
    let accounts = Accounts::derive(1, n_accounts, false);
    eprintln!("{n_accounts} accounts in {:.1?}", t.elapsed());
    let mut rows = Vec::new();
    for txs in [2_500, 5_000, 10_000, 20_000] {
        rows.push(measure(
            WorkloadKind::TransferUniform,
            txs,
            block_size,
            &accounts,
        )?);
    }
    for kind in [
        WorkloadKind::TransferHot,
        WorkloadKind::SwapPools,
        WorkloadKind::SwapHot,
        WorkloadKind::BatchswapHot,
        WorkloadKind::LendingMix,
        WorkloadKind::DefiMix,
    ] {
        rows.push(measure(kind, 5_000, block_size, &accounts)?);
    }
    println!(
        "| workload | L2 txs | L2 blocks | compact B/tx | zstd B/tx | chunks (reveals) | commit + reveals vB | vB per L2 tx |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {} | {} | **{:.2}** |",
            r.workload,
            r.txs,
            r.blocks,
            r.compact as f64 / r.txs as f64,
            r.data as f64 / r.txs as f64,
            r.chunks,
            r.vbytes,
            r.vbytes as f64 / r.txs as f64
        );
    }
    eprintln!("done in {:.1?}", t.elapsed());
    Ok(())
}
