//! swarmer, the embeddable BitTorrent client library: a [`Session`] hosts torrents, talks to trackers and
//! peers with tokio, and reports progress and events. The protocol logic lives in `swarmer-proto`.

pub mod tracker;
