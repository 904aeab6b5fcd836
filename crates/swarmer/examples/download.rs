//! Downloads one torrent with the library API and prints progress: `download FILE.torrent DIR`.

use swarmer::{Session, SessionConfig};
use swarmer_proto::metainfo::Metainfo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(torrent), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: download FILE.torrent DIR");
        std::process::exit(2);
    };
    let metainfo = Metainfo::from_bytes(&std::fs::read(&torrent)?)?;
    let session = Session::new(SessionConfig {
        listen_port: 0,
        ..SessionConfig::default()
    })
    .await?;
    let mut handle = session.add_torrent(metainfo, dir.as_ref()).await?;
    let mut progress = handle.progress();
    tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            let p = progress.borrow().clone();
            println!(
                "{}/{} pieces, {} peers, {} bytes/s",
                p.pieces_have, p.piece_count, p.peers, p.download_rate
            );
        }
    });
    handle.wait_complete().await?;
    handle.stop().await?;
    println!("done");
    Ok(())
}
