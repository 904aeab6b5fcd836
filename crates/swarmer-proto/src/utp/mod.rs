//! uTP, the Micro Transport Protocol (BEP 29): reliable ordered byte streams over UDP whose
//! congestion control, LEDBAT (RFC 6817), backs off as soon as it adds queuing delay, so
//! BitTorrent traffic yields to everything else on the user's link.
//!
//! Split by concern: [`packet`] is the codec, [`ledbat`] the congestion window, [`conn`] one
//! connection's state machine and [`endpoint`] the connections of one UDP socket. All of it is
//! sans-IO: time comes in as an [`Instant`](crate::time::Instant), random ids and sequence numbers
//! from the caller's random source, and datagrams go out through `poll_transmit`.

pub mod conn;
pub mod endpoint;
pub mod ledbat;
pub mod packet;

#[cfg(test)]
mod link_sim;
#[cfg(test)]
mod tests;

pub use conn::{CloseReason, Config, Connection, State};
pub use endpoint::{ConnectionId, Endpoint, EndpointConfig, TooManyConnections};
pub use packet::{Header, Packet, PacketError, PacketType, SelectiveAck, looks_like_utp};
