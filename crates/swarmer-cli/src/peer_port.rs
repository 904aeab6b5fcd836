//! Starting a session on the peer port asked for, or on the next free one: if the port is taken
//! (by another client, or the DHT's UDP side of it), the next [`ATTEMPTS`]` - 1` ports are tried, as
//! libtorrent does, and the port used is said. Port 0 lets the system pick one. Shared by the CLI's
//! transfers and the daemon.

use std::io::ErrorKind;

use swarmer::{Session, SessionConfig, SessionError};

/// How many ports are tried, the one asked for first.
pub(crate) const ATTEMPTS: u16 = 10;

/// Whether a session error means "this port is taken", so the next one is worth a try.
fn taken(error: &SessionError) -> bool {
    match error {
        SessionError::Listen { error, .. } | SessionError::Dht { error, .. } => {
            error.kind() == ErrorKind::AddrInUse
        }
        _ => false,
    }
}

/// A session on `config.listen_port`, or on the first free port of the next ones (none for port
/// 0). Says on standard error when it is not the port asked for.
///
/// Errors: every port tried is taken (the last error), or the session fails otherwise.
pub(crate) async fn start_session(config: SessionConfig) -> Result<Session, SessionError> {
    let asked = config.listen_port;
    let mut port = asked;
    loop {
        let attempt = SessionConfig {
            listen_port: port,
            ..config.clone()
        };
        match Session::new(attempt).await {
            Ok(session) => {
                let used = session.listen_addr().port();
                if used != asked {
                    let why = if asked == 0 {
                        "picked by the system".to_owned()
                    } else {
                        format!("{asked} is taken")
                    };
                    eprintln!("swarmer: listening for peers on port {used} ({why})");
                }
                return Ok(session);
            }
            Err(e) if asked != 0 && taken(&e) && port < asked.saturating_add(ATTEMPTS - 1) => {
                tracing::info!("peer port {port} is taken; trying {}", port + 1);
                port += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_moves_to_the_next_free_one() {
        let config = |port| SessionConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            listen_port: port,
            dht: None,
            lsd: false,
            ..SessionConfig::default()
        };
        let first = start_session(config(0)).await.unwrap();
        let port = first.listen_addr().port();
        assert_ne!(port, 0, "port 0 picks one");
        let second = start_session(config(port)).await.unwrap();
        let next = second.listen_addr().port();
        assert!(next > port && next < port + ATTEMPTS, "{port} -> {next}");
    }
}
