//! The BEP 52 hash messages, which carry parts of a file's merkle tree between peers: `hash request`
//! (id 21), `hashes` (id 22) and `hash reject` (id 23). Their codec, bounded; answering a request
//! from a piece layer we hold (with the uncle hashes that prove it); and checking a `hashes` reply
//! against the file's `pieces root` before any of it is kept, so nothing a peer sends is trusted.
//!
//! The wire codec ([`crate::wire`]) hands these ids over as [`crate::wire::Message::Unknown`];
//! [`HashMessage::decode`] takes the id and payload from there. The library's metadata phase sends
//! requests through [`crate::layer_fetch`]; a running torrent answers them with [`answer`].
//!
//! Layers are counted from the leaves (layer 0, one hash per 16 KiB block); a piece layer is layer
//! log2(blocks per piece). swarmer keeps piece layers only, so it serves requests for them and,
//! through its driver, for the leaves of one piece it has ([`leaf_request_piece`],
//! [`serve_leaves`]: what a peer resolving a failed piece asks, see [`crate::blame`]); it rejects
//! others.

use crate::merkle::{self, Hash256, LeafEvidence};
use crate::metainfo::V2File;

/// `hash request`: asks for hashes of one layer of one file's tree (BEP 52).
pub const HASH_REQUEST: u8 = 21;
/// `hashes`: the hashes asked for, then the uncle hashes proving them (BEP 52).
pub const HASHES: u8 = 22;
/// `hash reject`: the request will not be answered (BEP 52).
pub const HASH_REJECT: u8 = 23;

/// The most hashes one request may ask for: 8,192 (256 KiB of hashes), libtorrent's limit too.
pub const MAX_HASHES_PER_REQUEST: u32 = 8192;
/// The most proof layers a request may ask for: a tree of 2^64 leaves has no more.
pub const MAX_PROOF_LAYERS: u32 = 64;

/// The fields every hash message starts with (BEP 52): which hashes of which tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRequest {
    /// The file's `pieces root`: which tree.
    pub pieces_root: Hash256,
    /// The layer the hashes are from, counted from the leaves (0).
    pub base_layer: u32,
    /// The index of the first hash in that layer; a multiple of `length`.
    pub index: u32,
    /// How many hashes: a power of two, at most [`MAX_HASHES_PER_REQUEST`].
    pub length: u32,
    /// How many layers of uncle hashes above the requested subtree to include.
    pub proof_layers: u32,
}

/// A decoded hash message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashMessage {
    /// id 21.
    Request(HashRequest),
    /// id 22: the request answered; `hashes` holds `length` hashes, then the uncles, lowest first.
    Hashes {
        /// What is answered.
        request: HashRequest,
        /// The hashes, then the proof.
        hashes: Vec<Hash256>,
    },
    /// id 23.
    Reject(HashRequest),
}

/// Why a hash message is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashMessageError {
    /// Not one of ids 21, 22, 23.
    #[error("message id {0} is not a BEP 52 hash message")]
    NotAHashMessage(u8),
    /// The payload is not 48 bytes (request, reject), or 48 plus whole hashes (hashes).
    #[error("hash message of {0} bytes has the wrong size")]
    WrongSize(usize),
    /// `length` is zero, not a power of two or over [`MAX_HASHES_PER_REQUEST`], `index` is not a
    /// multiple of it, or `proof_layers` is over [`MAX_PROOF_LAYERS`].
    #[error("hash request fields out of range")]
    OutOfRange,
    /// A `hashes` reply with more hashes than `length` plus `proof_layers`, or fewer than `length`.
    #[error("hashes reply holds {got} hashes for a request of {length} plus proof")]
    WrongCount {
        /// Hashes in the reply.
        got: usize,
        /// `length` of the request.
        length: u32,
    },
}

const HEADER: usize = 32 + 4 * 4;

impl HashMessage {
    /// Decodes the payload of message `id` (after the id byte). Bounded: a `hashes` reply holds at
    /// most [`MAX_HASHES_PER_REQUEST`] + [`MAX_PROOF_LAYERS`] hashes, so at most 264 KiB.
    pub fn decode(id: u8, payload: &[u8]) -> Result<HashMessage, HashMessageError> {
        if !matches!(id, HASH_REQUEST | HASHES | HASH_REJECT) {
            return Err(HashMessageError::NotAHashMessage(id));
        }
        let (header, rest) = payload
            .split_at_checked(HEADER)
            .ok_or(HashMessageError::WrongSize(payload.len()))?;
        let word = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let request = HashRequest {
            pieces_root: header[..32].try_into().expect("32 bytes"),
            base_layer: word(32),
            index: word(36),
            length: word(40),
            proof_layers: word(44),
        };
        let fits = request.length.is_power_of_two()
            && request.length <= MAX_HASHES_PER_REQUEST
            && request.index % request.length == 0
            && request.proof_layers <= MAX_PROOF_LAYERS
            && request.base_layer <= MAX_PROOF_LAYERS;
        if !fits {
            return Err(HashMessageError::OutOfRange);
        }
        match id {
            HASHES => {
                if rest.len() % 32 != 0 {
                    return Err(HashMessageError::WrongSize(payload.len()));
                }
                let got = rest.len() / 32;
                if got < request.length as usize
                    || got > (request.length + request.proof_layers) as usize
                {
                    return Err(HashMessageError::WrongCount {
                        got,
                        length: request.length,
                    });
                }
                let hashes = rest
                    .chunks_exact(32)
                    .map(|c| c.try_into().expect("32 bytes"))
                    .collect();
                Ok(HashMessage::Hashes { request, hashes })
            }
            _ if !rest.is_empty() => Err(HashMessageError::WrongSize(payload.len())),
            HASH_REQUEST => Ok(HashMessage::Request(request)),
            _ => Ok(HashMessage::Reject(request)),
        }
    }

    /// Appends the message's id and payload (without the 4-byte length prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (id, request, hashes) = match self {
            HashMessage::Request(r) => (HASH_REQUEST, r, &[][..]),
            HashMessage::Hashes { request, hashes } => (HASHES, request, &hashes[..]),
            HashMessage::Reject(r) => (HASH_REJECT, r, &[][..]),
        };
        out.push(id);
        out.extend_from_slice(&request.pieces_root);
        for word in [
            request.base_layer,
            request.index,
            request.length,
            request.proof_layers,
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        hashes.iter().for_each(|h| out.extend_from_slice(h));
    }
}

/// The layers of `file`'s tree above its piece layer: log2 of the piece layer's width (the next
/// power of two of its piece count).
fn layers_above_pieces(file: &V2File) -> u32 {
    u64::from(file.piece_count)
        .next_power_of_two()
        .trailing_zeros()
}

/// The layer index of piece layers for pieces of `piece_length` bytes.
pub fn piece_layer(piece_length: u32) -> u32 {
    merkle::blocks_per_piece(piece_length).trailing_zeros()
}

/// Answers `request` from `file`'s piece layer: `Some(hashes)` (the asked hashes, padded past the
/// file's end as the tree is, then up to `proof_layers` uncles), or `None` to reject it (another
/// layer, a range past the layer, no layer known, or a file of one piece).
pub fn serve(file: &V2File, request: &HashRequest, piece_length: u32) -> Option<Vec<Hash256>> {
    let layer = file.layer.as_ref()?;
    if request.pieces_root != file.pieces_root || request.base_layer != piece_layer(piece_length) {
        return None;
    }
    let width = file.piece_count.checked_next_power_of_two()?;
    let end = request.index.checked_add(request.length)?;
    if end > width {
        return None;
    }
    let pad = merkle::pad_hash(merkle::blocks_per_piece(piece_length));
    // The whole padded layer, then each level up, keeping the uncles of the requested subtree.
    let mut level: Vec<Hash256> = (0..width as usize)
        .map(|i| layer.get(i).copied().unwrap_or(pad))
        .collect();
    let mut out: Vec<Hash256> = level[request.index as usize..end as usize].to_vec();
    // Going up: the first log2(length) levels merge the requested subtree into one node; from
    // there on each level adds that node's sibling (an uncle) to the proof.
    let mut position = request.index as usize;
    let mut span = request.length as usize;
    let mut proof = 0;
    while level.len() > 1 {
        if span == 1 {
            if proof == request.proof_layers {
                break;
            }
            out.push(level[position ^ 1]);
            proof += 1;
        } else {
            span /= 2;
        }
        position /= 2;
        level = level
            .chunks_exact(2)
            .map(|p| crate::digest::sha256_pair(&p[0], &p[1]))
            .collect();
    }
    Some(out)
}

/// What to send back for hash message `id` with `payload` received by a torrent whose v2 part is
/// `v2` (`None` for a v1 torrent): for a `hash request`, [`answer_request`]; nothing for `hashes`
/// and `hash reject`, which a running torrent never asked for and ignores.
///
/// Errors: a malformed message (the caller closes the connection, as for any malformed frame).
pub fn answer(
    v2: Option<&crate::metainfo::V2Info>,
    piece_length: u32,
    id: u8,
    payload: &[u8],
) -> Result<Option<Vec<u8>>, HashMessageError> {
    let HashMessage::Request(request) = HashMessage::decode(id, payload)? else {
        return Ok(None);
    };
    Ok(Some(answer_request(v2, piece_length, request)))
}

/// The whole framed reply to a decoded `request` (length prefix, then id 22 `hashes` from our
/// piece layer with its proof, or id 23 `hash reject`), for a torrent whose v2 part is `v2`.
pub fn answer_request(
    v2: Option<&crate::metainfo::V2Info>,
    piece_length: u32,
    request: HashRequest,
) -> Vec<u8> {
    let served = v2
        .and_then(|v2| {
            v2.files
                .iter()
                .find(|f| f.pieces_root == request.pieces_root)
        })
        .and_then(|file| serve(file, &request, piece_length));
    frame(&reply(request, served))
}

/// The reply to `request`: `hashes` when `served` holds them, else `hash reject`.
pub fn reply(request: HashRequest, served: Option<Vec<Hash256>>) -> HashMessage {
    match served {
        Some(hashes) => HashMessage::Hashes { request, hashes },
        None => HashMessage::Reject(request),
    }
}

/// `message` as it goes on the wire: the 4-byte length prefix, the id and the payload.
pub fn frame(message: &HashMessage) -> Vec<u8> {
    let mut body = Vec::new();
    message.encode(&mut body);
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}

/// Checks a `hashes` reply for `file` (`hashes` as decoded: the asked ones, then the uncles) up to
/// its `pieces root`, and returns the asked hashes if they are proven. A reply whose proof stops
/// short of the root proves nothing on its own and is not accepted.
pub fn verify(
    file_root: &Hash256,
    piece_count: u32,
    request: &HashRequest,
    hashes: &[Hash256],
) -> Option<Vec<Hash256>> {
    if request.pieces_root != *file_root || hashes.len() < request.length as usize {
        return None;
    }
    let (asked, proof) = hashes.split_at(request.length as usize);
    let width = piece_count.checked_next_power_of_two()?;
    if request.index.checked_add(request.length)? > width {
        return None;
    }
    let needed = width
        .trailing_zeros()
        .checked_sub(request.length.trailing_zeros())?;
    if proof.len() != needed as usize {
        return None;
    }
    let mut node = merkle::root(asked.to_vec(), asked.len(), merkle::ZERO_LEAF);
    let mut position = request.index / request.length;
    for uncle in proof {
        node = if position % 2 == 0 {
            crate::digest::sha256_pair(&node, uncle)
        } else {
            crate::digest::sha256_pair(uncle, &node)
        };
        position /= 2;
    }
    (node == *file_root).then(|| asked.to_vec())
}

/// The requests that fetch `file`'s whole piece layer with proofs (for a torrent started from a
/// magnet link, whose metadata has none): one of at most 512 hashes per chunk of the layer.
pub fn layer_requests(file: &V2File, piece_length: u32) -> Vec<HashRequest> {
    let width = u64::from(file.piece_count).next_power_of_two();
    let length = width.min(512) as u32;
    let proof_layers = layers_above_pieces(file) - length.trailing_zeros();
    (0..file.piece_count.div_ceil(length))
        .map(|chunk| HashRequest {
            pieces_root: file.pieces_root,
            base_layer: piece_layer(piece_length),
            index: chunk * length,
            length,
            proof_layers,
        })
        .collect()
}

/// The leaf-layer request (base layer 0, no proof) for the leaves of `evidence`: what a piece that
/// failed its v2 check is resolved with ([`crate::blame`]).
pub fn leaf_request(evidence: &LeafEvidence) -> HashRequest {
    HashRequest {
        pieces_root: evidence.pieces_root,
        base_layer: 0,
        index: evidence.first_leaf,
        length: evidence.width,
        proof_layers: 0,
    }
}

/// Checks a `hashes` reply to [`leaf_request`]`(evidence)`: the asked leaves must hash up to
/// `evidence.expected`, a node we trust already, so any uncles sent are not needed and ignored.
/// Returns the proven leaves, or `None` when the reply answers another request or does not hash
/// up (the answerer lied).
pub fn verify_leaves(
    evidence: &LeafEvidence,
    request: &HashRequest,
    hashes: &[Hash256],
) -> Option<Vec<Hash256>> {
    let asked = leaf_request(evidence);
    let same = request.pieces_root == asked.pieces_root
        && request.base_layer == 0
        && request.index == asked.index
        && request.length == asked.length;
    let leaves = hashes.get(..asked.length as usize)?;
    let root = merkle::root(leaves.to_vec(), asked.length as usize, merkle::ZERO_LEAF);
    (same && root == evidence.expected).then(|| leaves.to_vec())
}

/// The piece of `file` whose leaves `request` asks for (base layer 0, exactly one piece's leaves:
/// blocks per piece of them, or a file of one piece's whole tree), as an index within the file; the
/// driver answers such a request with [`serve_leaves`] from the piece's bytes.
pub fn leaf_request_piece(file: &V2File, request: &HashRequest, piece_length: u32) -> Option<u32> {
    if request.base_layer != 0 || request.pieces_root != file.pieces_root {
        return None;
    }
    let width = if file.piece_count == 1 {
        file.length
            .div_ceil(u64::from(crate::BLOCK_SIZE))
            .next_power_of_two() as u32
    } else {
        merkle::blocks_per_piece(piece_length) as u32
    };
    let piece = request.index / width;
    (request.length == width && request.index % width == 0 && piece < file.piece_count)
        .then_some(piece)
}

/// Answers a [`leaf_request_piece`] request for piece `piece` of `file` from `content`, the file's
/// bytes in that piece (checked by the caller): the leaf hashes, padded with [`merkle::ZERO_LEAF`],
/// then up to `proof_layers` uncles from the piece layer (none for a file of one piece, whose
/// leaves hash up to its root).
pub fn serve_leaves(
    file: &V2File,
    request: &HashRequest,
    piece_length: u32,
    piece: u32,
    content: &[u8],
) -> Option<Vec<Hash256>> {
    let mut out = merkle::leaf_hashes(content);
    if out.len() > request.length as usize {
        return None;
    }
    out.resize(request.length as usize, merkle::ZERO_LEAF);
    if request.proof_layers > 0 && file.piece_count > 1 {
        let above = HashRequest {
            base_layer: piece_layer(piece_length),
            index: piece,
            length: 1,
            ..*request
        };
        out.extend(serve(file, &above, piece_length)?.into_iter().skip(1));
    }
    Some(out)
}

/// A `hash request` ready for the wire: the payload after the message id (BEP 52), kept beside
/// the request so an outgoing message can borrow it ([`crate::torrent::Outgoing::HashRequest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedHashRequest {
    /// The request.
    pub request: HashRequest,
    payload: [u8; HEADER],
}

impl EncodedHashRequest {
    /// Encodes `request`.
    pub fn new(request: HashRequest) -> EncodedHashRequest {
        let mut bytes = Vec::with_capacity(HEADER + 1);
        HashMessage::Request(request).encode(&mut bytes);
        let payload = bytes[1..].try_into().expect("a request is a header");
        EncodedHashRequest { request, payload }
    }

    /// The payload after the message id.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

#[cfg(test)]
mod tests;
