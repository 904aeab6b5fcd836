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
use super::guard::{self, ClientIp};
use super::manager::{Add, Manager, ManagerError, SettingsPatch, Source};
use super::model::{Peer, Priority, SessionStats, Torrent, TorrentDetail};
use super::state::AppState;
use super::store::Settings;

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
        .route("/api/v1/torrents/{id}/peers", get(list_peers))
        .route("/api/v1/torrents/{id}/pause", post(pause_torrent))
        .route("/api/v1/torrents/{id}/resume", post(resume_torrent))
        .route("/api/v1/torrents/{id}/files", put(set_files))
        .route("/api/v1/torrents/{id}/limits", put(set_limits))
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
async fn list_torrents(State(s): State<AppState>) -> Json<Vec<Torrent>> {
    Json(s.manager.list().await)
}

/// Adding by magnet link (JSON) or by uploading a .torrent file (multipart field `torrent`).
#[derive(Deserialize, utoipa::ToSchema)]
struct AddMagnet {
    /// A magnet link (BEP 9; `xt=urn:btih:`, `dn`, `tr`, `x.pe`, `so`).
    magnet: String,
    /// Where the files go (absolute); the session's default if absent.
    #[serde(default)]
    download_dir: Option<String>,
    /// Add it paused.
    #[serde(default)]
    paused: bool,
}

#[utoipa::path(post, path = "/api/v1/torrents", tag = "torrents",
    request_body(content = AddMagnet, description = "JSON with a magnet link, or multipart/form-data \
        with a file field `torrent` (at most 10 MiB) and optional fields `download_dir` and `paused`"),
    responses(
        (status = 201, description = "Added", body = Torrent),
        (status = 400, description = "Not a valid magnet link or .torrent file"),
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
        let magnet = Magnet::parse(req.magnet.trim())
            .map_err(|e| ApiError::bad_request(format!("invalid magnet link: {e}")))?;
        Add {
            download_dir: download_dir(req.download_dir)?,
            paused: req.paused,
            ..Add::new(Source::Magnet(
                Box::new(magnet),
                req.magnet.trim().to_string(),
            ))
        }
    };
    let torrent = s.manager.add(add).await?;
    Ok((StatusCode::CREATED, Json(torrent)))
}

/// The `download_dir` of an add request; a relative one is a 400.
fn download_dir(dir: Option<String>) -> Result<Option<DownloadDir>, ApiError> {
    DownloadDir::from_request(dir.as_deref())
        .map_err(|e| ApiError::bad_request(format!("download_dir {e}")))
}

async fn add_from_multipart(mut multipart: Multipart) -> Result<Add, ApiError> {
    let (mut bytes, mut dir, mut paused) = (None, None, false);
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
    Ok(Json(s.manager.get(id_of(path)?).await?))
}

#[utoipa::path(get, path = "/api/v1/torrents/{id}/peers", tag = "torrents",
    params(("id" = u64, Path, description = "Torrent id")),
    responses((status = 200, body = [Peer], description = "Connected peers, each with its transport (tcp or utp)"),
        (status = 404, description = "No such torrent")))]
async fn list_peers(
    State(s): State<AppState>,
    path: Result<Path<IdPath>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Vec<Peer>>, ApiError> {
    let d = s.manager.details(id_of(path)?).await?;
    let pieces = d.detail.piece_count;
    Ok(Json(d.peers.iter().map(|p| Peer::of(p, pieces)).collect()))
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
    Ok(Json(s.manager.set_priorities(id, priorities).await?))
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
        list_peers,
        pause_torrent,
        resume_torrent,
        remove_torrent,
        set_files,
        set_limits,
        session_stats,
        get_settings,
        put_settings,
        events,
        login
    ),
    components(schemas(
        Torrent,
        TorrentDetail,
        Peer,
        SessionStats,
        Settings,
        SettingsPatch,
        AddMagnet,
        FilesBody,
        LimitsBody,
        LoginBody,
        Priority
    ))
)]
pub(crate) struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
