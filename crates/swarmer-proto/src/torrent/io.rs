//! The engine's boundary with its driver: the settings and connection facts it is given
//! ([`Config`], [`PeerInfo`]) and everything it hands back ([`Action`]s with their [`Outgoing`]
//! messages, [`Requested`] blocks and [`PeerFault`]s, [`Event`]s, [`Stats`]), peers named by
//! [`PeerKey`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::bitfield::BitfieldError;
use crate::hashes::EncodedHashRequest;
use crate::wire::{BlockRequest, Message};
use crate::{Bitfield, BlockRef, PieceIndex};

/// Tunables of the download engine. [`Config::default`] gives the values used by the CLI.
#[derive(Debug, Clone)]
pub struct Config {
    /// Outstanding requests per peer before its rate is known (blocks of 16 KiB). BEP 3 leaves this to the
    /// client; a deep start matters on fast links.
    pub initial_queue: u32,
    /// Upper bound of outstanding requests per peer (blocks), further capped by the peer's BEP 10 `reqq`.
    pub max_queue: u32,
    /// Outstanding requests assumed when a peer sends no `reqq`: the BEP 10 suggestion is 250.
    pub default_peer_reqq: u32,
    /// Seconds of a peer's measured download rate to keep in flight.
    pub queue_seconds: f64,
    /// A peer with outstanding requests that delivers nothing for this long loses them to other peers.
    pub request_timeout: Duration,
    /// A peer that sends nothing at all for this long is disconnected (BEP 3 suggests two minutes).
    pub peer_timeout: Duration,
    /// We send a keep-alive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// Memory for pieces not yet verified (pieces started, being filled or being hashed), in bytes;
    /// 8 MiB by default, which keeps about 8 MiB in flight, ample on loopback and LANs and 80 MiB/s
    /// at 100 ms round trips. A piece counts from its first request. New pieces are started only
    /// while below it (a peer with nothing in flight may go up to [`HEADROOM_PIECES`] pieces over
    /// it, so a departed peer's half-done pieces cannot stall the download). Buffers kept for reuse
    /// stay within the same bound.
    ///
    /// [`HEADROOM_PIECES`]: super::HEADROOM_PIECES
    pub max_unverified_bytes: u64,
    /// Trust at or below which a peer's address is banned (each good piece it contributed to adds 1, each
    /// failed piece takes 2, or 4 when it sent the whole piece).
    pub ban_trust: i32,
    /// Regular unchoke slots: peers we upload to, chosen by rate every [`Config::choke_interval`] (BEP 3
    /// "choking"); one optimistic slot comes on top.
    pub upload_slots: usize,
    /// How often the choker runs (10 s in libtorrent and Transmission).
    pub choke_interval: Duration,
    /// The optimistic unchoke moves to another peer every this many choker rounds (3: 30 s).
    pub optimistic_rounds: u32,
    /// A peer we want data from that sent no block for this long is snubbed: it keeps only the
    /// optimistic chance of an unchoke (anti-snubbing).
    pub snub_timeout: Duration,
    /// Requests we queue for one peer at a time, advertised as `reqq` (BEP 10); up to
    /// [`Config::upload_window`] more may be on their way out. Requests beyond it are refused; more
    /// than this many refused within one second is a flood and closes the connection.
    pub max_peer_requests: u32,
    /// Most blocks handed to the driver for one peer and not yet reported sent; the window follows
    /// the peer's upload rate (a quarter second of it, at least 2). Requests wait in the engine until
    /// then, where a `cancel` can still remove them.
    pub upload_window: u32,
    /// Size of the allowed-fast set we grant each IPv4 peer (BEP 6); 0 grants none.
    pub allowed_fast: usize,
    /// Our TCP listening port, sent as `p` in the extension handshake (BEP 10).
    pub listen_port: Option<u16>,
    /// The raw info dictionary (its bytes as in the metainfo, whose SHA-1 is the info hash) to serve
    /// to peers that ask for it (BEP 9 `ut_metadata`, advertised with `metadata_size`). `None`, or
    /// more than [`MAX_METADATA_SIZE`] bytes, serves nothing. Drivers pass `None` for a private
    /// torrent; [`Config::private`] overrides it anyway.
    ///
    /// [`MAX_METADATA_SIZE`]: crate::extension::MAX_METADATA_SIZE
    pub metadata: Option<Arc<[u8]>>,
    /// Exchange peers with peers that support BEP 11 `ut_pex`: tell each, at most once a minute,
    /// whom we connected to and lost, and report what they tell us as
    /// [`Event::PeersDiscovered`].
    pub pex: bool,
    /// The torrent is private (BEP 27): peers come only from its trackers, so no metadata is served
    /// and no peers are exchanged, whatever [`Config::metadata`] and [`Config::pex`] say.
    pub private: bool,
    /// Seconds of a web seed's measured rate that one fetch asks for (runs of whole pieces; the
    /// first fetch, before a rate is known, asks for [`Config::first_web_fetch`] bytes).
    pub web_fetch_seconds: f64,
    /// The size of a web seed's first fetch, in bytes (rounded up to whole pieces).
    pub first_web_fetch: u64,
    /// The most bytes one web seed fetch asks for (at least one piece); the memory budget for
    /// unverified pieces ([`Config::max_unverified_bytes`]) bounds it further.
    pub max_web_fetch: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            initial_queue: 32,
            max_queue: 1000,
            default_peer_reqq: 250,
            queue_seconds: 2.0,
            request_timeout: Duration::from_secs(20),
            peer_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(60),
            max_unverified_bytes: 8 * 1024 * 1024,
            ban_trust: -7,
            upload_slots: 4,
            choke_interval: Duration::from_secs(10),
            optimistic_rounds: 3,
            snub_timeout: Duration::from_secs(60),
            max_peer_requests: 250,
            upload_window: 64,
            allowed_fast: 10,
            listen_port: None,
            metadata: None,
            pex: true,
            private: false,
            web_fetch_seconds: 4.0,
            first_web_fetch: 1024 * 1024,
            max_web_fetch: 16 * 1024 * 1024,
        }
    }
}

/// A connection as the engine knows it, assigned by [`Torrent::add_peer`].
///
/// [`Torrent::add_peer`]: super::Torrent::add_peer
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub(super) u64);

/// A web seed as the engine knows it, assigned by [`Torrent::add_web_seed`].
///
/// [`Torrent::add_web_seed`]: super::Torrent::add_web_seed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebSeedKey(pub(super) u64);

/// How a web seed fetch ended, as the driver reports it with [`Torrent::handle_web_fetch_end`].
///
/// [`Torrent::handle_web_fetch_end`]: super::Torrent::handle_web_fetch_end
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEnd {
    /// Every asked byte was handed over.
    Done,
    /// The fetch failed (an HTTP error, a reply that was not the asked bytes, a truncated body, a
    /// stall): the bytes handed over so far are kept, the rest goes back to the picker and the seed
    /// waits before its next fetch ([`crate::webseed::backoff`], or longer if the server asked).
    Failed {
        /// The wait the server asked for (`Retry-After`, a BEP 17 `503` body).
        retry_after: Option<Duration>,
    },
}

/// One web seed as the engine sees it, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSeedStatus {
    /// Payload received from it, bytes/s (smoothed).
    pub download_rate: u64,
    /// Payload received from it in all.
    pub downloaded: u64,
    /// A fetch is under way.
    pub fetching: bool,
    /// Bytes arrived from it in the last second.
    pub sending: bool,
    /// Fetches failed in a row.
    pub failures: u32,
    /// While backed off after a failure: when the next fetch may start.
    pub retry_at: Option<crate::time::Instant>,
}

/// What the handshake told us about a newly connected peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo {
    /// The peer's address (its listening address when we dialled it).
    pub addr: SocketAddr,
    /// Both sides set the Fast Extension bit (BEP 6): `have all`/`have none`/`reject` are in use.
    pub fast: bool,
    /// Both sides set the extension protocol bit (BEP 10).
    pub extensions: bool,
    /// We dialled the peer, so `addr` is where it listens (what PEX tells others, BEP 11 flag
    /// 0x10); for an incoming connection its listening port comes from its extension handshake.
    pub outgoing: bool,
    /// The connection is encrypted (MSE), so PEX tells others the peer prefers encryption (BEP 11
    /// flag 0x01).
    pub encrypted: bool,
    /// The connection runs over uTP (BEP 29), so PEX tells others the peer speaks it (BEP 11 flag
    /// 0x04).
    pub utp: bool,
}

/// A message for a peer, owned, as the engine produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// BEP 3 keep-alive.
    KeepAlive,
    /// BEP 3 `interested`.
    Interested,
    /// BEP 3 `not interested`.
    NotInterested,
    /// BEP 3 `request` for a block.
    Request(BlockRef),
    /// BEP 3 `cancel` of an earlier request.
    Cancel(BlockRef),
    /// BEP 3 `have`.
    Have(PieceIndex),
    /// BEP 3 `bitfield` with the pieces we have.
    Bitfield(Bitfield),
    /// BEP 6 `have none`.
    HaveNone,
    /// BEP 6 `have all`.
    HaveAll,
    /// BEP 6 `reject request`.
    Reject(BlockRequest),
    /// BEP 3 `choke`: we will not serve this peer's requests.
    Choke,
    /// BEP 3 `unchoke`: we will serve this peer's requests.
    Unchoke,
    /// BEP 6 `allowed fast`: the peer may request this piece while we choke it.
    AllowedFast(PieceIndex),
    /// BEP 10 extended message: id and bencoded payload.
    Extended(u8, Vec<u8>),
    /// BEP 52 `hash request` (id 21) for the leaves of a piece that failed ([`crate::blame`]).
    HashRequest(EncodedHashRequest),
}

impl Outgoing {
    /// The wire form of the message (BEP 3 section "peer messages"), borrowing from `self`.
    pub fn to_message(&self) -> Message<'_> {
        let req = |b: &BlockRef| BlockRequest {
            index: b.piece.get(),
            begin: b.offset,
            length: b.length,
        };
        match self {
            Outgoing::KeepAlive => Message::KeepAlive,
            Outgoing::Interested => Message::Interested,
            Outgoing::NotInterested => Message::NotInterested,
            Outgoing::Request(b) => Message::Request(req(b)),
            Outgoing::Cancel(b) => Message::Cancel(req(b)),
            Outgoing::Have(p) => Message::Have(p.get()),
            Outgoing::Bitfield(b) => Message::Bitfield(b.as_bytes()),
            Outgoing::HaveNone => Message::HaveNone,
            Outgoing::HaveAll => Message::HaveAll,
            Outgoing::Reject(r) => Message::Reject(*r),
            Outgoing::Choke => Message::Choke,
            Outgoing::Unchoke => Message::Unchoke,
            Outgoing::AllowedFast(p) => Message::AllowedFast(p.get()),
            Outgoing::Extended(id, payload) => Message::Extended { id: *id, payload },
            Outgoing::HashRequest(r) => Message::Unknown {
                id: crate::hashes::HASH_REQUEST,
                payload: r.payload(),
            },
        }
    }
}

/// Why the engine closes a connection, sorted by whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerFault {
    /// The peer sent bytes that do not parse as the protocol says.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer sent well-formed messages that break the protocol's rules.
    #[error("misbehaved: {0}")]
    Misbehaved(Offence),
    /// The peer did nothing wrong, but is of no use to us now.
    #[error("not useful: {0}")]
    Useless(&'static str),
}

/// The rule a misbehaving peer broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Offence {
    /// `have all` or `have none` after the first message (BEP 6). A late `bitfield` is taken as
    /// a batch of `have`s instead, as other clients do.
    #[error("piece availability message after the first message")]
    LateBitfield,
    /// A bitfield of the wrong length or with spare bits set (BEP 3).
    #[error("{0}")]
    BadBitfield(BitfieldError),
    /// A BEP 6 message without the Fast Extension negotiated.
    #[error("fast extension message without the fast extension")]
    FastNotNegotiated,
    /// `have` of a piece past the last one.
    #[error("have of piece {0}, past the last piece")]
    HaveOutOfRange(u32),
    /// A `piece` message that is not a block of this torrent's layout.
    #[error("block (piece {index}, offset {begin}, {length} bytes) is not in the torrent")]
    BlockOutOfRange {
        /// Piece index sent.
        index: u32,
        /// Offset sent.
        begin: u32,
        /// Data length sent.
        length: u32,
    },
    /// Sent data that failed the piece hash too often; its address is banned.
    #[error("sent data that failed verification")]
    HashFailures,
    /// Sent a block whose hash is proven wrong by its file's merkle tree (BEP 52); its address is
    /// banned.
    #[error("sent a corrupt block (proven by the v2 merkle tree)")]
    CorruptBlock,
    /// Answered a `hash request` with hashes that do not hash up to the node we trust (BEP 52);
    /// its address is banned.
    #[error("sent hashes that do not match the merkle tree")]
    BadHashes,
    /// Nothing received for [`Config::peer_timeout`].
    #[error("silent for {0:?}")]
    Silent(Duration),
    /// A `request` or `cancel` outside the torrent: no such piece, a range past the piece's end, or
    /// zero bytes.
    #[error("request (piece {index}, offset {begin}, {length} bytes) is not in the torrent")]
    RequestOutOfRange {
        /// Piece index sent.
        index: u32,
        /// Offset sent.
        begin: u32,
        /// Length sent.
        length: u32,
    },
    /// More than [`Config::max_peer_requests`] requests we had to refuse within one second: for pieces
    /// we lack, blocks over 16 KiB, or beyond the advertised `reqq`.
    #[error("request flood: over {0} refused requests in a second")]
    RequestFlood(u32),
    /// More than [`UNREQUESTED_BLOCKS_ALLOWED`] blocks we never asked this peer for (nor cancelled
    /// lately).
    ///
    /// [`UNREQUESTED_BLOCKS_ALLOWED`]: super::UNREQUESTED_BLOCKS_ALLOWED
    #[error("sent {0} blocks we never requested")]
    UnrequestedBlocks(u32),
    /// More `have`s for pieces it had already announced than the torrent has pieces (at least
    /// [`REDUNDANT_HAVES_ALLOWED`]): a flood.
    ///
    /// [`REDUNDANT_HAVES_ALLOWED`]: super::REDUNDANT_HAVES_ALLOWED
    #[error("sent {0} have messages for pieces it had announced already")]
    RedundantHaves(u32),
    /// More BEP 9 metadata requests within a minute than the allowance (this many; see
    /// [`METADATA_REQUESTS_PER_MINUTE`]).
    ///
    /// [`METADATA_REQUESTS_PER_MINUTE`]: super::METADATA_REQUESTS_PER_MINUTE
    #[error("over {0} metadata requests in a minute")]
    MetadataFlood(u32),
}

/// Work for the driver, drained with [`Torrent::poll_action`].
///
/// [`Torrent::poll_action`]: super::Torrent::poll_action
#[derive(Debug)]
pub enum Action {
    /// Send `message` to `peer`.
    Send {
        /// The connection.
        peer: PeerKey,
        /// What to send.
        message: Outgoing,
    },
    /// Close the connection to `peer` (the engine has already forgotten it).
    Disconnect {
        /// The connection.
        peer: PeerKey,
        /// Why.
        fault: PeerFault,
    },
    /// Read `block` from disk and send it to `peer` as a `piece` message (BEP 3), then report it with
    /// [`Torrent::handle_block_sent`]. Blocks for one peer are handed out in request order.
    ///
    /// [`Torrent::handle_block_sent`]: super::Torrent::handle_block_sent
    Upload {
        /// The connection.
        peer: PeerKey,
        /// The requested range; we have verified its piece.
        block: Requested,
    },
    /// Hash `data` (all of `piece`), and if it matches write it to disk; then call
    /// [`Torrent::handle_piece_verified`] with the buffer.
    ///
    /// [`Torrent::handle_piece_verified`]: super::Torrent::handle_piece_verified
    VerifyPiece {
        /// The piece.
        piece: PieceIndex,
        /// Exactly the piece's bytes.
        data: Vec<u8>,
    },
    /// Fetch `length` bytes of the torrent's content from byte `offset` on from web seed `seed`
    /// (whole pieces, or the rest of one in endgame; they may span files): hand them over in order
    /// with [`Torrent::handle_web_data`] as they arrive, then report the end with
    /// [`Torrent::handle_web_fetch_end`]. A seed has at most one fetch at a time.
    ///
    /// [`Torrent::handle_web_data`]: super::Torrent::handle_web_data
    /// [`Torrent::handle_web_fetch_end`]: super::Torrent::handle_web_fetch_end
    WebFetch {
        /// The web seed.
        seed: WebSeedKey,
        /// The first byte, counted over the whole torrent.
        offset: u64,
        /// Bytes.
        length: u64,
    },
    /// Stop using web seed `seed` (the engine has already forgotten it): it sent data that failed
    /// verification.
    DropWebSeed {
        /// The web seed.
        seed: WebSeedKey,
        /// Why.
        fault: PeerFault,
    },
}

/// Things that happened, for progress reports and logs, drained with [`Torrent::poll_event`].
///
/// [`Torrent::poll_event`]: super::Torrent::poll_event
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece passed its hash check and was written.
    PieceVerified(PieceIndex),
    /// A piece failed its hash check; these addresses sent some of it.
    HashFailed {
        /// The piece, now to be downloaded again.
        piece: PieceIndex,
        /// Every address that contributed a block.
        peers: Vec<IpAddr>,
        /// Every web seed that contributed a block.
        web_seeds: Vec<WebSeedKey>,
    },
    /// The bad blocks of a failed v2 piece were found (BEP 52 leaf hashes, proven): these addresses
    /// sent them, and only they are blamed.
    BadBlocksPinned {
        /// The piece, downloaded again.
        piece: PieceIndex,
        /// The senders of the bad blocks.
        peers: Vec<IpAddr>,
    },
    /// An address is banned after bad data (repeated, or one block proven bad) or lying hashes.
    Banned(IpAddr),
    /// Every wanted piece (priority other than `Skip`) is verified: the torrent is finished. Emitted
    /// each time it becomes so (again after priorities asked for more); without a selection it comes
    /// just before [`Event::Complete`].
    Finished,
    /// Every piece is verified.
    Complete,
    /// A peer said (BEP 5 `port`) that it runs a DHT node at this UDP address.
    DhtPort(SocketAddr),
    /// A peer told us of other peers (BEP 11 `ut_pex` `added`/`added6`): at most
    /// [`crate::extension::MAX_PEX_PEERS`] usable addresses (no port 0, no unspecified address),
    /// from one message per peer per [`PEX_MIN_RECEIVE_INTERVAL`]. The driver may dial them.
    ///
    /// [`PEX_MIN_RECEIVE_INTERVAL`]: super::PEX_MIN_RECEIVE_INTERVAL
    /// Each comes with its BEP 11 flags (0x01: it prefers encryption).
    PeersDiscovered(Vec<(SocketAddr, crate::extension::PexFlags)>),
}

/// A range of one verified piece that a peer requested (BEP 3 `request`), checked against the layout:
/// `offset + length` is within the piece and `length` is 1 to [`BLOCK_SIZE`] bytes. Peers usually ask
/// for aligned 16 KiB blocks, but BEP 3 allows any range.
///
/// [`BLOCK_SIZE`]: crate::BLOCK_SIZE
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Requested {
    /// The piece.
    pub piece: PieceIndex,
    /// Byte offset within the piece.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

impl Requested {
    /// The request as it appears on the wire (`request`, `cancel`, `reject`).
    pub fn to_wire(self) -> BlockRequest {
        BlockRequest {
            index: self.piece.get(),
            begin: self.offset,
            length: self.length,
        }
    }
}

/// One connected peer as the engine sees it, for display (a client's peer list, Transmission's
/// `peers`, qBittorrent's peer view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Payload received from it, bytes/s (smoothed over the last seconds).
    pub download_rate: u64,
    /// Payload sent to it, bytes/s (smoothed).
    pub upload_rate: u64,
    /// Pieces it has, from its bitfield and `have`s.
    pub pieces: u32,
    /// We choke it: it may not download from us (BEP 3).
    pub am_choking: bool,
    /// We want pieces it has.
    pub am_interested: bool,
    /// It chokes us.
    pub peer_choking: bool,
    /// It wants pieces we have.
    pub peer_interested: bool,
    /// The connection went through an MSE handshake.
    pub encrypted: bool,
    /// The connection runs over uTP (BEP 29) rather than TCP.
    pub utp: bool,
    /// The client name and version it sent in its BEP 10 handshake (`v`), if any (at most
    /// [`MAX_CLIENT_NAME`](crate::extension::MAX_CLIENT_NAME) bytes).
    pub client: Option<String>,
}

/// Counters for progress reports and trackers (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Payload bytes received in `piece` messages and from web seeds, including discarded ones.
    pub downloaded: u64,
    /// Payload bytes received that were not needed (duplicates, unrequested) or failed verification.
    pub wasted: u64,
    /// Bytes of verified pieces.
    pub verified: u64,
    /// Bytes of wanted pieces still to verify (`left` in a tracker announce): 0 once finished.
    pub left: u64,
    /// Bytes of wanted pieces (priority other than `Skip`), verified or not: the size of the selection,
    /// in whole pieces.
    pub wanted: u64,
    /// Connected peers (web seeds apart).
    pub peers: usize,
    /// Peers that are not choking us.
    pub unchoked_by: usize,
    /// Total download rate over the last second, bytes/s.
    pub download_rate: u64,
    /// Payload bytes of `piece` messages the driver reported sent.
    pub uploaded: u64,
    /// Total upload rate over the last second, bytes/s.
    pub upload_rate: u64,
    /// Peers we are not choking.
    pub unchoked: usize,
    /// Web seeds in use (not dropped).
    pub web_seeds: usize,
    /// Web seeds that sent bytes in the last second.
    pub web_seeds_sending: usize,
}
