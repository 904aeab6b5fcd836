//! What the daemon knows of a torrent's files as media: a `Content-Type` from the file's
//! extension (`mime_guess`), whether it belongs in a playlist (audio and video), and the paths
//! of the stream and playlist endpoints, which the JSON views list for the web UI.

/// The media type of a file at `path` (its components), from its extension;
/// `application/octet-stream` when unknown.
pub(crate) fn content_type(path: &[String]) -> &'static str {
    path.last()
        .and_then(|name| mime_guess::from_path(name).first_raw())
        .unwrap_or("application/octet-stream")
}

/// True for audio and video files: the ones an `.m3u` playlist lists.
pub(crate) fn is_media(path: &[String]) -> bool {
    let kind = content_type(path);
    kind.starts_with("video/") || kind.starts_with("audio/")
}

/// The stream endpoint of file `index` of torrent `id`.
pub(crate) fn stream_path(id: u64, index: usize) -> String {
    format!("/api/v1/torrents/{id}/files/{index}/stream")
}

/// The playlist endpoint of torrent `id`.
pub(crate) fn playlist_path(id: u64) -> String {
    format!("/api/v1/torrents/{id}/playlist.m3u")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_extensions() {
        let path = |s: &str| vec!["dir".to_string(), s.to_string()];
        assert_eq!(content_type(&path("film.mp4")), "video/mp4");
        assert_eq!(content_type(&path("film.MKV")), "video/x-matroska");
        assert_eq!(content_type(&path("song.mp3")), "audio/mpeg");
        assert_eq!(content_type(&path("notes")), "application/octet-stream");
        assert!(is_media(&path("a.webm")));
        assert!(!is_media(&path("a.nfo")));
    }
}
