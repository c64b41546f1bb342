//! The batch: a run of consecutive L2 blocks as written to Bitcoin, and its encoding in a
//! taproot envelope's data (`DESIGN.md`, "Batch envelope").
//!
//! Encoding: envelope version [`BATCH_VERSION`]; data = zstd(borsh([`Batch`])). Blocks are
//! borsh-encoded with their signed transactions (no field names, integers fixed-width), which
//! zstd then compresses.
//!
//! Invariants:
//! - A batch's blocks are consecutive: `blocks[0].height == first_height`, each block's parent
//!   hash is the previous block's hash, and `state_root` is the last block's state root.
//! - Batches chain: `prev_hash` is the previous batch's [`Batch::hash`] (zeros for batch 0), and
//!   each batch starts at the height after the previous one's last.
//! - Decoding never panics and never allocates more than [`MAX_BATCH_BYTES`]: a zstd bomb or
//!   a malformed batch is a [`BatchError`], and a follower skips it with the reason.

use std::io::Read;

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_modules::Call;
use parabit_primitives::Block;
use sha2::{Digest, Sha256};

/// The envelope version of batches.
pub const BATCH_VERSION: u8 = 1;
/// The largest decompressed batch accepted.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// zstd level used by the batcher.
pub const ZSTD_LEVEL: i32 = 15;

/// A run of consecutive L2 blocks and the state root after them.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Batch {
    /// Its position in the chain of batches, from 0.
    pub index: u64,
    /// The previous batch's hash; zeros for batch 0.
    pub prev_hash: [u8; 32],
    /// The first block's height.
    pub first_height: u64,
    /// The blocks, in order.
    pub blocks: Vec<Block<Call>>,
    /// The state root after the last block.
    pub state_root: [u8; 32],
}

/// Why a batch cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The envelope carries another version.
    #[error("unsupported batch version {0}")]
    Version(u8),
    /// The data is not zstd, or decompresses past the limit.
    #[error("batch data does not decompress: {0}")]
    Compression(String),
    /// The decompressed data is not a batch.
    #[error("batch does not decode: {0}")]
    Decode(String),
    /// The batch breaks one of the invariants above.
    #[error("inconsistent batch: {0}")]
    Inconsistent(String),
}

impl Batch {
    /// SHA-256 of the borsh encoding.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(borsh::to_vec(self).unwrap_or_default()).into()
    }

    /// The last block's height (`first_height - 1` for an empty batch).
    pub fn last_height(&self) -> u64 {
        (self.first_height + self.blocks.len() as u64).saturating_sub(1)
    }

    /// Transactions in all the blocks.
    pub fn tx_count(&self) -> usize {
        self.blocks.iter().map(|b| b.txs.len()).sum()
    }

    /// The envelope data: zstd(borsh(batch)).
    pub fn encode(&self) -> Result<Vec<u8>, BatchError> {
        let raw = borsh::to_vec(self).map_err(|e| BatchError::Decode(e.to_string()))?;
        zstd::bulk::compress(&raw, ZSTD_LEVEL).map_err(|e| BatchError::Compression(e.to_string()))
    }

    /// Reads envelope data of `version`, checking the batch's internal consistency.
    pub fn decode(version: u8, data: &[u8]) -> Result<Batch, BatchError> {
        if version != BATCH_VERSION {
            return Err(BatchError::Version(version));
        }
        let decoder = zstd::stream::read::Decoder::new(data)
            .map_err(|e| BatchError::Compression(e.to_string()))?;
        let mut raw = Vec::new();
        decoder
            .take(MAX_BATCH_BYTES as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| BatchError::Compression(e.to_string()))?;
        if raw.len() > MAX_BATCH_BYTES {
            return Err(BatchError::Compression(format!(
                "more than {MAX_BATCH_BYTES} bytes"
            )));
        }
        let batch = Batch::try_from_slice(&raw).map_err(|e| BatchError::Decode(e.to_string()))?;
        batch.check()?;
        Ok(batch)
    }

    /// The internal invariants: consecutive linked blocks, the root of the last one.
    pub fn check(&self) -> Result<(), BatchError> {
        let fail = |s: String| Err(BatchError::Inconsistent(s));
        let Some(last) = self.blocks.last() else {
            return fail("no blocks".into());
        };
        for (i, b) in self.blocks.iter().enumerate() {
            if b.header.height != self.first_height + i as u64 {
                return fail(format!(
                    "block {i} has height {}, expected {}",
                    b.header.height,
                    self.first_height + i as u64
                ));
            }
            if i > 0 && b.header.parent_hash != self.blocks[i - 1].header.hash() {
                return fail(format!(
                    "block {} does not follow its predecessor",
                    b.header.height
                ));
            }
            if !b.txs_match_header() {
                return fail(format!(
                    "block {}'s transactions do not match its header",
                    b.header.height
                ));
            }
        }
        if last.header.state_root != self.state_root {
            return fail("state root is not the last block's".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_primitives::{tx_root, BlockHeader};

    fn block(height: u64, parent: [u8; 32]) -> Block<Call> {
        Block {
            header: BlockHeader {
                height,
                parent_hash: parent,
                timestamp_ms: height,
                tx_root: tx_root(&[]),
                state_root: [height as u8; 32],
                bitcoin_height: 0,
                fees: 0,
                tx_count: 0,
            },
            txs: Vec::new(),
        }
    }

    fn batch() -> Batch {
        let a = block(5, [1; 32]);
        let b = block(6, a.header.hash());
        Batch {
            index: 2,
            prev_hash: [9; 32],
            first_height: 5,
            state_root: b.header.state_root,
            blocks: vec![a, b],
        }
    }

    #[test]
    fn round_trips_and_checks() {
        let b = batch();
        let data = b.encode().expect("encode");
        assert_eq!(Batch::decode(BATCH_VERSION, &data).expect("decode"), b);
        assert_eq!(b.last_height(), 6);
        assert!(matches!(
            Batch::decode(2, &data),
            Err(BatchError::Version(2))
        ));
        assert!(matches!(
            Batch::decode(BATCH_VERSION, b"not zstd"),
            Err(BatchError::Compression(_))
        ));
        let mut broken = batch();
        broken.blocks[1].header.parent_hash = [0; 32];
        let data = broken.encode().expect("encode");
        assert!(matches!(
            Batch::decode(BATCH_VERSION, &data),
            Err(BatchError::Inconsistent(_))
        ));
        let mut wrong_root = batch();
        wrong_root.state_root = [7; 32];
        assert!(wrong_root.check().is_err());
    }

    proptest::proptest! {
        /// Arbitrary data, and every single-byte change of a valid encoding, never panics;
        /// what decodes is consistent (also the cargo-fuzz target `crates/node/fuzz`).
        #[test]
        fn decoding_arbitrary_or_damaged_data_never_panics(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            at in proptest::prelude::any::<usize>(),
            bit in 0u8..8,
        ) {
            if let Ok(b) = Batch::decode(BATCH_VERSION, &data) {
                proptest::prop_assert!(b.check().is_ok());
            }
            let mut good = batch().encode().expect("encode");
            let i = at % good.len();
            good[i] ^= 1 << bit;
            if let Ok(b) = Batch::decode(BATCH_VERSION, &good) {
                proptest::prop_assert!(b.check().is_ok());
            }
            let raw = borsh::to_vec(&batch()).expect("borsh");
            let mut damaged = raw.clone();
            let j = at % damaged.len();
            damaged[j] ^= 1 << bit;
            let packed = zstd::bulk::compress(&damaged, 1).expect("compress");
            if let Ok(b) = Batch::decode(BATCH_VERSION, &packed) {
                proptest::prop_assert!(b.check().is_ok());
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; MAX_BATCH_BYTES + 10];
        let data = zstd::bulk::compress(&zeros, 3).expect("compress");
        assert!(data.len() < 1_000_000);
        assert!(matches!(
            Batch::decode(BATCH_VERSION, &data),
            Err(BatchError::Compression(_))
        ));
    }
}
