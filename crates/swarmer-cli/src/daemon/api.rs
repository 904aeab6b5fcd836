//! The daemon's HTTP JSON API (`/api/v1/...`, documented by the OpenAPI document at
//! `/api/openapi.json`, generated from these handlers and the `model` types) and its server-sent
//! event stream. Errors become HTTP statuses in `error`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::Deserialize;
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::{MAX_METAINFO_BYTES, Metainfo};
use utoipa::OpenApi;

use super::download_dir::DownloadDir;
use super::error::ApiError;
use super::fetch::{fetch_torrent, is_http_url};
use super::guard::{self, ClientIp};
use super::insides::{self, Peer, Pieces, Tracker, TrackerState};
use super::json::big_json;
use super::manager::{Add, DownloadOrder, LabelEdit, Manager, ManagerError, SettingsPatch, Source};
use super::model::{File, Priority, SessionStats, Torrent, TorrentDetail};
use super::state::AppState;
use super::store::Settings;
use super::stream;

/// Largest .torrent upload or JSON body, bytes; larger ones get 413.
pub(crate) const MAX_UPLOAD_BYTES: usize = 10 << 20;
/// How often the event stream looks for changes.
const EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// Parses a JSON body, with a 400 that says what is wrong (axum's own rejection is plain text).
fn parse_json<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// The JSON API's routes (`/api/...`), for `http::router` to put behind the guard.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/torrents", get(list_torrents).post(add_torrent))
        .route(
            "/api/v1/torrents/{id}",
            get(get_torrent).delete(remove_torrent),
        )
        .route("/api/v1/torrents/{id}/pause", post(pause_torrent))
        .route("/api/v1/torrents/{id}/resume", post(resume_torrent))
        .route("/api/v1/torrents/{id}/files", put(set_files))
        .route("/api/v1/torrents/{id}/peers", get(get_peers))
        .route("/api/v1/torrents/{id}/trackers", get(get_trackers))
        .route("/api/v1/torrents/{id}/pieces", get(get_pieces))
        .route("/api/v1/torrents/{id}/limits", put(set_limits))
        .route(
            "/api/v1/torrents/{id}/download_order",
            put(set_download_order),
        )
        .route(
            "/api/v1/torrents/{id}/files/{index}/stream",
            get(stream::stream_file),
        )
        .route("/api/v1/torrents/{id}/playlist.m3u", get(stream::playlist))
        .route("/api/v1/torrents/{id}/category", put(set_category))
        .route("/api/v1/session", get(session_stats))
        .route("/api/v1/settings", get(get_settings).put(put_settings))
        .route("/api/v1/events", get(events))
        .route("/api/v1/login", post(login))
        .route("/api/openapi.json", get(openapi))
}

/// Path parameter: a torrent id.
#[derive(Deserialize)]
struct IdPath {
    id: u64,
}

fn id_of(
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<u64, ApiError> {
    path.map(|Path(p)| p.id)
        .map_err(|_| ApiError::bad_request("the torrent id must be a number"))
}

#[utoipa::path(get, path = "/api/v1/torrents", tag = "torrents",
    responses((status = 200, description = "Every torrent, in id order", body = [Torrent])))]
async fn list_torrents(State(s): State<AppState>) -> Response {
    let list: Vec<Torrent> = s.manager.list().await;
    big_json(&list, list.len())
}

/// Adding by magnet link or by the http(s) URL of a .torrent file (JSON), or by uploading a
/// .torrent file (multipart field `torrent`).
#[derive(Deserialize, utoipa::ToSchema)]
struct AddMagnet {
    /// A magnet link (BEP 9; `xt=urn:btih:`, `dn`, `tr`, `x.pe`, `so`); or else `url`.
    #[serde(default)]
    magnet: Option<String>,
    /// An http(s) URL of a .torrent file, which the daemon fetches (at most 40 MiB, 30 s).
    #[serde(default)]
    url: Option<String>,
    /// Where the files go (absolute); the session's default if absent.
    #[serde(default)]
    download_dir: Option<String>,
    /// Add it paused.
    #[serde(default)]
    paused: bool,
    /// Its category (created if new).
    #[serde(default)]
    category: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/torrents", tag = "torrents",
    request_body(content = AddMagnet, description = "JSON with a magnet link or a URL, or \
        multipart/form-data with a file field `torrent` (at most 10 MiB) and optional fields \
        `download_dir`, `paused` and `category`"),
    responses(
        (status = 201, description = "Added", body = Torrent),
        (status = 400, description = "Not a valid magnet link, URL or .torrent file, or the URL \
            could not be fetched"),
        (status = 409, description = "Already added; `id` names it"),
        (status = 413, description = "Upload larger than 10 MiB")))]
async fn add_torrent(
    State(s): State<AppState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<Torrent>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let add = if content_type.starts_with("multipart/form-data") {
        let multipart = <Multipart as axum::extract::FromRequest<()>>::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        add_from_multipart(multipart).await?
    } else {
        let body = axum::body::to_bytes(request.into_body(), MAX_UPLOAD_BYTES)
            .await
            .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
        let req: AddMagnet = parse_json(&headers, &body)?;
        let source = match (req.magnet.as_deref().map(str::trim), req.url.as_deref()) {
            (Some(link), None) => {
                let magnet = Magnet::parse(link)
                    .map_err(|e| ApiError::bad_request(format!("invalid magnet link: {e}")))?;
                Source::Magnet(Box::new(magnet), link.to_string())
            }
            (None, Some(url)) => fetched(url.trim()).await?,
            _ => {
                return Err(ApiError::bad_request("give either \"magnet\" or \"url\""));
            }
        };
        Add {
            download_dir: download_dir(req.download_dir)?,
            paused: req.paused,
            category: category(req.category),
            ..Add::new(source)
        }
    };
    let torrent = s.manager.add(add).await?;
    Ok((StatusCode::CREATED, Json(torrent)))
}

/// The .torrent file at an http(s) `url`, fetched and parsed.
async fn fetched(url: &str) -> Result<Source, ApiError> {
    if !is_http_url(url) {
        return Err(ApiError::bad_request("the url must be http:// or https://"));
    }
    let bytes = fetch_torrent(url).await.map_err(ApiError::bad_request)?;
    let metainfo = Metainfo::from_bytes(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid .torrent file at {url}: {e}")))?;
    Ok(Source::Metainfo(Arc::new(metainfo), bytes))
}

/// The category of an add request: an empty one is none.
fn category(name: Option<String>) -> Option<String> {
    name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty())
}

/// The `download_dir` of an add request; a relative one is a 400.
fn download_dir(dir: Option<String>) -> Result<Option<DownloadDir>, ApiError> {
    DownloadDir::from_request(dir.as_deref())
        .map_err(|e| ApiError::bad_request(format!("download_dir {e}")))
}

async fn add_from_multipart(mut multipart: Multipart) -> Result<Add, ApiError> {
    let (mut bytes, mut dir, mut paused, mut label) = (None, None, false, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        let data: Bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        match name.as_str() {
            "torrent" => bytes = Some(data),
            "download_dir" => dir = Some(String::from_utf8_lossy(&data).into_owned()),
            "paused" => paused = &data[..] == b"true" || &data[..] == b"1",
            "category" => label = Some(String::from_utf8_lossy(&data).into_owned()),
            _ => {}
        }
    }
    let bytes = bytes.ok_or_else(|| ApiError::bad_request("no file field named \"torrent\""))?;
    if bytes.len() > MAX_METAINFO_BYTES.min(MAX_UPLOAD_BYTES) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the .torrent file is larger than 10 MiB",
        ));
    }
    let metainfo = Metainfo::from_bytes(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid .torrent file: {e}")))?;
    Ok(Add {
        download_dir: download_dir(dir)?,
        paused,
        category: category(label),
        ..Add::new(Source::Metainfo(Arc::new(metainfo), bytes.to_vec()))
    })
}

#[utoipa::path(get, path = "/api/v1/torrents/{id}", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")),
    responses((status = 200, body = TorrentDetail), (status = 404, description = "No such torrent")))]
async fn get_torrent(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<Json<TorrentDetail>, ApiError> {
    Ok(Json(detail_with_progress(&s.manager, id_of(path)?).await?))
}

/// Torrent `id` with each file's `done_bytes`, which only the running torrent (or its saved
/// resume state) knows; when the torrent cannot answer (busy past the command timeout), the
/// detail without them rather than an error.
async fn detail_with_progress(manager: &Manager, id: u64) -> Result<TorrentDetail, ApiError> {
    match manager.details(id).await {
        Ok(inside) => Ok(inside.detail),
        Err(_) => Ok(manager.get(id).await?),
    }
}

#[utoipa::path(get, path = "/api/v1/torrents/{id}/peers", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")),
    responses((status = 200, description = "The connected peers (none when not running)",
        body = [Peer]), (status = 404, description = "No such torrent")))]
async fn get_peers(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Vec<Peer>>, ApiError> {
    Ok(Json(insides::peers(
        &s.manager.details(id_of(path)?).await?,
    )))
}

#[utoipa::path(get, path = "/api/v1/torrents/{id}/trackers", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")),
    responses((status = 200, description = "Its trackers, every tier in order, with announce \
        status and scrape counts", body = [Tracker]), (status = 404, description = "No such torrent")))]
async fn get_trackers(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Vec<Tracker>>, ApiError> {
    Ok(Json(insides::trackers(
        &s.manager.details(id_of(path)?).await?,
    )))
}

#[utoipa::path(get, path = "/api/v1/torrents/{id}/pieces", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")),
    responses((status = 200, body = Pieces), (status = 404, description = "No such torrent")))]
async fn get_pieces(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Pieces>, ApiError> {
    Ok(Json(insides::pieces(
        &s.manager.details(id_of(path)?).await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/torrents/{id}/pause", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")),
    responses((status = 200, body = Torrent), (status = 404, description = "No such torrent")))]
async fn pause_torrent(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Torrent>, ApiError> {
    Ok(Json(s.manager.pause(id_of(path)?).await?))
}

#[utoipa::path(post, path = "/api/v1/torrents/{id}/resume", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")),
    responses((status = 200, body = Torrent), (status = 404, description = "No such torrent")))]
async fn resume_torrent(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Torrent>, ApiError> {
    Ok(Json(s.manager.resume(id_of(path)?).await?))
}

/// `?delete_data=true` also deletes the torrent's files.
#[derive(Deserialize, utoipa::IntoParams)]
struct RemoveQuery {
    /// Delete the downloaded files too (default false).
    #[serde(default)]
    delete_data: bool,
}

#[utoipa::path(delete, path = "/api/v1/torrents/{id}", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id"), RemoveQuery),
    responses((status = 204, description = "Removed (and its data deleted if asked)"),
        (status = 404, description = "No such torrent")))]
async fn remove_torrent(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
    query: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let id = id_of(path)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    s.manager.remove(id, q.delete_data).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New file priorities.
#[derive(Deserialize, utoipa::ToSchema)]
struct FilesBody {
    /// One per file of the torrent, in its order (padding files included).
    priorities: Vec<Priority>,
}

#[utoipa::path(put, path = "/api/v1/torrents/{id}/files", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")), request_body = FilesBody,
    responses((status = 200, body = TorrentDetail), (status = 404, description = "No such torrent"),
        (status = 422, description = "Not one priority per file, or metadata not known yet")))]
async fn set_files(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TorrentDetail>, ApiError> {
    let id = id_of(path)?;
    let req: FilesBody = parse_json(&headers, &body)?;
    let priorities = req.priorities.into_iter().map(Into::into).collect();
    s.manager.set_priorities(id, priorities).await?;
    Ok(Json(detail_with_progress(&s.manager, id).await?))
}

/// A torrent's own rate limits.
#[derive(Deserialize, utoipa::ToSchema)]
struct LimitsBody {
    /// Upload limit, bytes/s; null: none.
    #[serde(default)]
    max_upload_rate: Option<u64>,
    /// Download limit, bytes/s; null: none.
    #[serde(default)]
    max_download_rate: Option<u64>,
}

#[utoipa::path(put, path = "/api/v1/torrents/{id}/limits", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")), request_body = LimitsBody,
    responses((status = 200, body = Torrent), (status = 404, description = "No such torrent")))]
async fn set_limits(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Torrent>, ApiError> {
    let id = id_of(path)?;
    let req: LimitsBody = parse_json(&headers, &body)?;
    Ok(Json(
        s.manager
            .set_limits(id, req.max_upload_rate, req.max_download_rate)
            .await?,
    ))
}

/// A torrent's download order; an absent field stays as it is.
#[derive(Deserialize, utoipa::ToSchema)]
struct DownloadOrderBody {
    /// Download the wanted pieces in order (the first 16 MiB of those missing get deadlines,
    /// requested first from the fastest peers; the rest keeps rarest-first).
    #[serde(default)]
    sequential: Option<bool>,
    /// Download the first and last piece of every wanted file first.
    #[serde(default)]
    first_last_piece: Option<bool>,
}

#[utoipa::path(put, path = "/api/v1/torrents/{id}/download_order", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")), request_body = DownloadOrderBody,
    responses((status = 200, description = "Saved with the torrent (it survives a restart) and in \
        effect at once", body = Torrent), (status = 404, description = "No such torrent")))]
async fn set_download_order(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Torrent>, ApiError> {
    let id = id_of(path)?;
    let req: DownloadOrderBody = parse_json(&headers, &body)?;
    let order = DownloadOrder {
        sequential: req.sequential,
        first_last_piece: req.first_last_piece,
    };
    Ok(Json(s.manager.set_download_order(id, order).await?))
}

/// A torrent's new category.
#[derive(Deserialize, utoipa::ToSchema)]
struct CategoryBody {
    /// The category (created if new); null or empty: none.
    category: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/torrents/{id}/category", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")), request_body = CategoryBody,
    responses((status = 200, body = Torrent), (status = 404, description = "No such torrent"),
        (status = 422, description = "Not a valid category name")))]
async fn set_category(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Torrent>, ApiError> {
    let id = id_of(path)?;
    let req: CategoryBody = parse_json(&headers, &body)?;
    let name = category(req.category);
    // 404 first: the label edit passes over unknown ids.
    s.manager.get(id).await?;
    if let Some(name) = &name
        && !s.manager.labels().await.categories.contains_key(name)
    {
        s.manager
            .edit_labels(LabelEdit::CreateCategory(name.clone(), None))
            .await?;
    }
    s.manager
        .edit_labels(LabelEdit::SetCategory(vec![id], name))
        .await?;
    Ok(Json(s.manager.get(id).await?.torrent))
}

#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, body = SessionStats)))]
async fn session_stats(State(s): State<AppState>) -> Result<Json<SessionStats>, ApiError> {
    s.manager
        .stats()
        .await
        .map(Json)
        .ok_or_else(|| ManagerError::ShuttingDown.into())
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "session",
    responses((status = 200, body = Settings)))]
async fn get_settings(State(s): State<AppState>) -> Result<Json<Settings>, ApiError> {
    s.manager
        .settings()
        .await
        .map(Json)
        .ok_or_else(|| ManagerError::ShuttingDown.into())
}

#[utoipa::path(put, path = "/api/v1/settings", tag = "session", request_body = SettingsPatch,
    responses((status = 200, body = Settings), (status = 422, description = "A relative download_dir")))]
async fn put_settings(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Settings>, ApiError> {
    let patch: SettingsPatch = parse_json(&headers, &body)?;
    Ok(Json(s.manager.set_settings(patch).await?))
}

#[utoipa::path(get, path = "/api/v1/events", tag = "session",
    responses((status = 200, content_type = "text/event-stream", description = "`event: torrents` \
        (data: the torrent list as GET /api/v1/torrents) and `event: session` (data: SessionStats): \
        sent at once, then at most once a second when they change")))]
async fn events(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct St {
        manager: Manager,
        last_torrents: String,
        last_session: String,
        pending: Vec<Event>,
        interval: tokio::time::Interval,
    }
    let st = St {
        manager: s.manager,
        last_torrents: String::new(),
        last_session: String::new(),
        pending: Vec::new(),
        interval: tokio::time::interval(EVENT_INTERVAL),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop() {
                return Some((Ok(event), st));
            }
            st.interval.tick().await;
            let torrents = serde_json::to_string(&st.manager.list().await).ok()?;
            let session = serde_json::to_string(&st.manager.stats().await?).ok()?;
            if session != st.last_session {
                st.pending
                    .push(Event::default().event("session").data(&session));
                st.last_session = session;
            }
            if torrents != st.last_torrents {
                st.pending
                    .push(Event::default().event("torrents").data(&torrents));
                st.last_torrents = torrents;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The token, to exchange for a cookie.
#[derive(Deserialize, utoipa::ToSchema)]
struct LoginBody {
    /// The daemon's token.
    token: String,
}

#[utoipa::path(post, path = "/api/v1/login", tag = "session", request_body = LoginBody,
    responses((status = 204, description = "Token accepted; the cookie `swarmer_token` is set"),
        (status = 401, description = "Wrong token"),
        (status = 403, description = "Too many wrong tokens from this address: banned for an hour")))]
async fn login(
    State(s): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: LoginBody = parse_json(&headers, &body)?;
    let cookie = HeaderValue::from_str(&format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        guard::COOKIE,
        req.token
    ))
    .map_err(|_| ApiError::bad_request("the token has characters a header cannot hold"))?;
    let ok = s.guard.accepts(req.token.as_bytes());
    if !s.guard.login_attempt(ip, ok) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, guard::BANNED));
    }
    if !ok {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong token"));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "swarmer daemon API",
        description = "Manage the torrents of a running `swarmer daemon`. \
        Non-GET requests need the header `X-Requested-By`; a daemon with a token needs \
        `Authorization: Bearer TOKEN` (or Basic with the token as password, or the login cookie)."
    ),
    paths(
        list_torrents,
        add_torrent,
        get_torrent,
        pause_torrent,
        resume_torrent,
        remove_torrent,
        set_files,
        get_peers,
        get_trackers,
        get_pieces,
        set_limits,
        set_download_order,
        stream::stream_file,
        stream::playlist,
        set_category,
        session_stats,
        get_settings,
        put_settings,
        events,
        login
    ),
    components(schemas(
        Torrent,
        TorrentDetail,
        File,
        Peer,
        Tracker,
        TrackerState,
        Pieces,
        SessionStats,
        Settings,
        SettingsPatch,
        AddMagnet,
        FilesBody,
        LimitsBody,
        DownloadOrderBody,
        CategoryBody,
        LoginBody,
        Priority
    ))
)]
pub(crate) struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
