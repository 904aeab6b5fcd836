//! One torrent in a session, from its handle to its owner task: how it is added (`options`), what
//! it shows (`progress`), what it is asked (`command`, `handle`), what the session opens for it and
//! the check of data on disk (`task`), its connections, engine and verification while it runs
//! (`running`), its web seeds' HTTP fetches (`web_seeds`), and its fast-resume saves
//! (`resume_saver`).
//!
//! Dependencies point one way: `options`, `progress` and `command` import no sibling; `task` builds
//! on them; `running` on `task`; the session spawns `running::run` and hands out a `handle`.

mod command;
mod handle;
mod options;
mod progress;
mod reader;
mod resume_saver;
mod running;
mod task;
mod web_seeds;
mod wishes;

pub(crate) use command::Command;
pub use handle::TorrentHandle;
pub use options::{AddTorrentOptions, ExistingData, SeedLimits};
pub use progress::{Details, PeerDetails, Progress, TorrentState};
pub(crate) use reader::ReaderParts;
pub use reader::{FileReader, MAX_READ_AHEAD, MIN_READ_AHEAD, READ_CHUNK};
pub(crate) use running::run;
pub(crate) use task::TorrentTask;
pub use web_seeds::WebSeedDetails;
pub use wishes::{MAX_READERS, SEQUENTIAL_WINDOW};
