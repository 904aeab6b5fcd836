//! Changing the daemon's peer port: every torrent stops, then a session on the new port starts
//! and the queue starts them again on it. Part of the [`Owner`](super::Owner).

use swarmer::SessionConfig;

use super::{Owner, PortChange, Report};
use crate::daemon::manager::entry::Run;
use crate::daemon::manager::request::{ManagerError, Reply};

impl Owner {
    /// Starts moving every torrent to a session on `port`: they stop (and magnet links stop
    /// fetching) now; [`Owner::continue_port_change`] does the rest once they have.
    pub(super) fn set_peer_port(&mut self, port: u16, reply: Reply<u16>) {
        if port == self.session.listen_addr().port() {
            let _ = reply.send(Ok(port));
            return;
        }
        if self.port_change.is_some() {
            let _ = reply.send(Err(ManagerError::Conflict(
                "the peer port is being changed already".into(),
            )));
            return;
        }
        tracing::info!(port, "changing the peer port: stopping every torrent");
        self.port_change = Some(PortChange {
            port,
            reply,
            starting: false,
        });
        self.stop_all();
    }

    /// Once no torrent runs any more, starts the session on the new port (in a task that reports
    /// back with `Report::SessionReady`).
    pub(super) fn continue_port_change(&mut self) {
        let busy = self.entries.values().any(|e| !matches!(e.run, Run::Idle));
        let Some(change) = self.port_change.as_mut().filter(|c| !c.starting && !busy) else {
            return;
        };
        change.starting = true;
        let config = SessionConfig {
            listen_port: change.port,
            ..self.session_config.clone()
        };
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let result = crate::peer_port::start_session(config).await;
            let _ = reports.send(Report::SessionReady(result));
        });
    }
}
