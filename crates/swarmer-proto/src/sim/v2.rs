//! The simulator's BitTorrent v2 mode (BEP 52): the content as one file with its merkle tree, pieces
//! checked against it (so a failed piece comes with its leaf hashes), and the driver's part in
//! answering leaf hash requests from the content of pieces a node has, truthfully or, for a node
//! with [`NodeConfig::false_hashes`], not.

use super::{ConnId, NodeId, Swarm};
use crate::hashes::{self, HashMessage};
use crate::merkle::{self, PieceCheck};
use crate::metainfo::{V2File, V2Info};
use crate::{Layout, PieceIndex};

#[cfg(doc)]
use super::NodeConfig;

impl Swarm {
    /// As [`Swarm::new`], with the content as one v2 file (BEP 52): pieces are checked against its
    /// merkle tree and nodes answer hash requests for the leaves of pieces they have. `layout`
    /// must be of one file, with a power of two for the piece length (at least 16 KiB).
    pub fn new_v2(layout: Layout, seed: u64) -> Swarm {
        let piece_length = layout.piece_length();
        assert!(
            piece_length.is_power_of_two() && piece_length >= crate::BLOCK_SIZE,
            "v2 piece length"
        );
        let mut swarm = Swarm::new(layout, seed);
        let (pieces_root, layer) =
            merkle::file_tree(&swarm.content, piece_length).expect("content is not empty");
        let piece_count = swarm.layout.piece_count();
        swarm.v2 = Some(V2Info {
            info_hash: [0; 32],
            files: vec![V2File {
                file: 0,
                length: swarm.content.len() as u64,
                first_piece: 0,
                piece_count,
                pieces_root,
                layer: (piece_count > 1).then_some(layer),
            }],
        });
        swarm
    }

    /// Checks a piece as the driver does: its SHA-1, or in a v2 swarm its merkle tree.
    pub(super) fn check_piece(&self, piece: PieceIndex, data: &[u8]) -> PieceCheck {
        match &self.v2 {
            Some(v2) => v2
                .check_piece(piece.get(), data, self.layout.piece_length())
                .unwrap_or(PieceCheck::Bad(None)),
            None if crate::digest::sha1(data) == self.hashes[piece.as_usize()] => PieceCheck::Good,
            None => PieceCheck::Bad(None),
        }
    }

    /// Answers a `hash request` (BEP 52) that `node` received on `conn`, as the library's driver
    /// does: the leaves of a piece it has, else a `hash reject`.
    pub(super) fn answer_hash_request(&mut self, node: NodeId, conn: ConnId, payload: &[u8]) {
        let Ok(HashMessage::Request(request)) = HashMessage::decode(hashes::HASH_REQUEST, payload)
        else {
            return;
        };
        let n = &self.nodes[node.0];
        let served = self.v2.as_ref().and_then(|v2| {
            let file = &v2.files[0];
            let piece_length = self.layout.piece_length();
            let index = hashes::leaf_request_piece(file, &request, piece_length)?;
            let piece = self.layout.piece(index)?;
            if !n.engine.have().get(piece.as_usize()) {
                return None;
            }
            let start = self.layout.piece_offset(piece) as usize;
            let content = &self.content[start..start + self.layout.piece_len(piece) as usize];
            let mut leaves = hashes::serve_leaves(file, &request, piece_length, index, content)?;
            if n.config.false_hashes {
                leaves[0][0] ^= 1;
            }
            Some(leaves)
        });
        let reply = match served {
            Some(hashes) => HashMessage::Hashes { request, hashes },
            None => HashMessage::Reject(request),
        };
        self.enqueue(node, conn, hashes::frame(&reply), 0);
        self.kick_uplink(node);
    }
}
