//! The node's metrics, served in the OpenMetrics text format at `GET /metrics` on the RPC
//! address (so a Prometheus server can scrape a node without another port).
//!
//! Counters are bumped where things happen (block production and application, transaction
//! admission); gauges that mirror state (height, mempool size, settlement progress) are read
//! when the page is rendered, so they are never stale.
//!
//! Invariants:
//! - Counters only grow; `parabit_transactions_total` summed over its `status` label equals the
//!   transactions of every block this process committed.
//! - Rendering never blocks block production for long: it takes the same short locks as an
//!   RPC read.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use parabit_primitives::{Receipt, TxStatus};

/// The content type of the rendered page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A transaction outcome, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// An admission outcome, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Where a block came from, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    blocks: Family<SourceLabel, Counter>,
    transactions: Family<StatusLabel, Counter>,
    submitted: Family<ResultLabel, Counter>,
    block_seconds: Histogram,
    block_txs: Histogram,
    height: Gauge,
    mempool_txs: Gauge,
    mempool_bytes: Gauge,
    batches_posted: Gauge,
    verified_height: Gauge,
    bridge_deposited: Gauge,
    bridge_withdrawn: Gauge,
    bridge_waiting: Gauge,
    bridge_payouts: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("parabit");
        let blocks = Family::<SourceLabel, Counter>::default();
        let transactions = Family::<StatusLabel, Counter>::default();
        let submitted = Family::<ResultLabel, Counter>::default();
        let block_seconds = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let block_txs = Histogram::new([1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 50_000.0]);
        let (height, mempool_txs, mempool_bytes, batches_posted, verified_height) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        registry.register(
            "blocks",
            "Blocks committed by this process (produced here, or applied from Bitcoin)",
            blocks.clone(),
        );
        registry.register(
            "transactions",
            "Transactions committed by this process, by receipt status",
            transactions.clone(),
        );
        registry.register(
            "submitted_transactions",
            "Transactions submitted to the mempool, by admission result",
            submitted.clone(),
        );
        registry.register(
            "block_seconds",
            "Time to execute, root and commit one block",
            block_seconds.clone(),
        );
        registry.register(
            "block_transactions",
            "Transactions per committed block",
            block_txs.clone(),
        );
        registry.register(
            "height",
            "Height of the latest committed block",
            height.clone(),
        );
        registry.register(
            "mempool_transactions",
            "Transactions waiting in the mempool",
            mempool_txs.clone(),
        );
        registry.register(
            "mempool_bytes",
            "Encoded bytes of the transactions in the mempool",
            mempool_bytes.clone(),
        );
        let (bridge_deposited, bridge_withdrawn, bridge_waiting, bridge_payouts) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        registry.register(
            "bridge_deposited_sats",
            "BTC credited on L2 by bridge deposits, in satoshis",
            bridge_deposited.clone(),
        );
        registry.register(
            "bridge_withdrawn_sats",
            "BTC burned on L2 by bridge withdrawals, in satoshis",
            bridge_withdrawn.clone(),
        );
        registry.register(
            "bridge_withdrawals_waiting",
            "Withdrawals the sequencer has not paid on Bitcoin yet",
            bridge_waiting.clone(),
        );
        registry.register(
            "bridge_payouts",
            "Payout transactions the sequencer made on Bitcoin",
            bridge_payouts.clone(),
        );
        registry.register(
            "batches_posted",
            "Batches whose Bitcoin transactions were accepted (posted or confirmed)",
            batches_posted.clone(),
        );
        registry.register(
            "verified_height",
            "Highest L2 height whose state root a full node checked against Bitcoin",
            verified_height.clone(),
        );
        Metrics {
            registry,
            blocks,
            transactions,
            submitted,
            block_seconds,
            block_txs,
            height,
            mempool_txs,
            mempool_bytes,
            batches_posted,
            verified_height,
            bridge_deposited,
            bridge_withdrawn,
            bridge_waiting,
            bridge_payouts,
        }
    }

    /// Counts a committed block: where it came from (`"produced"` or `"applied"`), how long it
    /// took, and its receipts.
    pub fn block(&self, source: &'static str, seconds: f64, receipts: &[Receipt]) {
        self.blocks.get_or_create(&SourceLabel { source }).inc();
        self.block_seconds.observe(seconds);
        self.block_txs.observe(receipts.len() as f64);
        let mut counts = [0u64; 4];
        for r in receipts {
            counts[match r.status {
                TxStatus::Success => 0,
                TxStatus::Failed(_) => 1,
                TxStatus::Invalid(_) => 2,
                TxStatus::Panicked(_) => 3,
            }] += 1;
        }
        for (status, n) in ["success", "failed", "invalid", "panicked"]
            .into_iter()
            .zip(counts)
        {
            if n > 0 {
                self.transactions
                    .get_or_create(&StatusLabel { status })
                    .inc_by(n);
            }
        }
    }

    /// Counts admissions to the mempool.
    pub fn submitted(&self, accepted: u64, rejected: u64) {
        if accepted > 0 {
            self.submitted
                .get_or_create(&ResultLabel { result: "accepted" })
                .inc_by(accepted);
        }
        if rejected > 0 {
            self.submitted
                .get_or_create(&ResultLabel { result: "rejected" })
                .inc_by(rejected);
        }
    }

    /// The page, with the gauges set from `now` first.
    pub fn render(&self, now: &Snapshot) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.height.set(gauge(now.height));
        self.mempool_txs.set(gauge(now.mempool_txs));
        self.mempool_bytes.set(gauge(now.mempool_bytes));
        self.batches_posted.set(gauge(now.batches_posted));
        self.verified_height.set(gauge(now.verified_height));
        self.bridge_deposited.set(gauge(
            u64::try_from(now.bridge_deposited).unwrap_or(u64::MAX),
        ));
        self.bridge_withdrawn.set(gauge(
            u64::try_from(now.bridge_withdrawn).unwrap_or(u64::MAX),
        ));
        self.bridge_waiting.set(gauge(now.bridge_waiting));
        self.bridge_payouts.set(gauge(now.bridge_payouts));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }
}

/// The state-mirroring values of a page.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Latest committed height.
    pub height: u64,
    /// Pooled transactions.
    pub mempool_txs: u64,
    /// Their encoded bytes.
    pub mempool_bytes: u64,
    /// Batches accepted by Bitcoin.
    pub batches_posted: u64,
    /// A follower's verified height (0 otherwise).
    pub verified_height: u64,
    /// BTC credited by bridge deposits (satoshis).
    pub bridge_deposited: u128,
    /// BTC burned by bridge withdrawals (satoshis).
    pub bridge_withdrawn: u128,
    /// Withdrawals waiting for a payout (on the sequencer).
    pub bridge_waiting: u64,
    /// Payouts made (on the sequencer).
    pub bridge_payouts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_counts_blocks_transactions_and_admissions() {
        let m = Metrics::new();
        let receipts = [
            Receipt {
                status: TxStatus::Success,
                fee_paid: 1,
            },
            Receipt {
                status: TxStatus::Failed("slippage".into()),
                fee_paid: 1,
            },
            Receipt {
                status: TxStatus::Success,
                fee_paid: 1,
            },
        ];
        m.block("produced", 0.02, &receipts);
        m.block("applied", 3.0, &[]);
        m.submitted(5, 2);
        let page = m.render(&Snapshot {
            height: 42,
            mempool_txs: 7,
            mempool_bytes: 900,
            batches_posted: 3,
            verified_height: 40,
            bridge_deposited: 1_000_000,
            bridge_withdrawn: 50_000,
            bridge_waiting: 2,
            bridge_payouts: 1,
        });
        for line in [
            "parabit_blocks_total{source=\"produced\"} 1",
            "parabit_blocks_total{source=\"applied\"} 1",
            "parabit_transactions_total{status=\"success\"} 2",
            "parabit_transactions_total{status=\"failed\"} 1",
            "parabit_submitted_transactions_total{result=\"accepted\"} 5",
            "parabit_submitted_transactions_total{result=\"rejected\"} 2",
            "parabit_block_seconds_bucket{le=\"0.025\"} 1",
            "parabit_block_seconds_bucket{le=\"5.0\"} 2",
            "parabit_block_seconds_count 2",
            "parabit_height 42",
            "parabit_mempool_transactions 7",
            "parabit_mempool_bytes 900",
            "parabit_batches_posted 3",
            "parabit_verified_height 40",
            "parabit_bridge_deposited_sats 1000000",
            "parabit_bridge_withdrawn_sats 50000",
            "parabit_bridge_withdrawals_waiting 2",
            "parabit_bridge_payouts 1",
        ] {
            assert!(page.contains(line), "missing {line:?} in:\n{page}");
        }
        assert!(page.ends_with("# EOF\n"), "{page}");
    }
}
