//! `sync/maindata`: the whole state (`full_update`) for `rid=0` or a rid no longer kept, else only
//! what changed since the state the client saw at its `rid`: changed fields of each torrent, new
//! torrents whole, `torrents_removed`, changed categories, `categories_removed`, new tags,
//! `tags_removed`, and changed `server_state` fields. The last few states are kept (16, and
//! 100,000 torrent rows in all), so clients polling side by side each find theirs.
//! `sync/torrentPeers`: one torrent's connected peers, always as a full update.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::app::transfer_map;
use super::form::Params;
use super::shared::{Qbt, Snapshot, failed, one};
use super::torrents::categories_map;
use super::view::{info, peer_row};

/// `sync/torrentPeers`: the connected peers of the torrent `hash`, keyed `ip:port`, each with
/// its carrier (`connection`: "uTP" or "BT"). Always a full update (qBittorrent clients take one
/// at any `rid`).
pub(super) async fn torrent_peers(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let hash = match params.require("hash") {
        Ok(h) => h,
        Err(r) => return r,
    };
    let t = match one(&qbt, hash).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let d = match qbt.manager().details(t.id).await {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let pieces = d.detail.piece_count;
    let peers: Map<String, Value> = d
        .peers
        .iter()
        .map(|p| (p.addr.to_string(), peer_row(p, pieces)))
        .collect();
    let rid = params.int("rid").ok().flatten().unwrap_or(0) + 1;
    Json(json!({
        "rid": rid,
        "full_update": true,
        "show_flags": true,
        "peers": peers,
    }))
    .into_response()
}

/// The state now.
async fn snapshot(qbt: &Qbt) -> Snapshot {
    let torrents = qbt
        .manager()
        .list()
        .await
        .iter()
        .map(|t| {
            let mut row = info(t, None);
            if let Some(map) = row.as_object_mut() {
                map.remove("hash");
            }
            (t.info_hash.clone(), row)
        })
        .collect();
    Snapshot {
        torrents,
        categories: categories_map(qbt).await,
        tags: qbt.manager().labels().await.tags.into_iter().collect(),
        server_state: transfer_map(qbt).await,
    }
}

/// The fields of `now` that differ from `before`.
fn changed(before: &Map<String, Value>, now: &Map<String, Value>) -> Map<String, Value> {
    now.iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The reply that takes a client from `before` (none: a full update) to `now`, as `rid`.
pub(super) fn diff(before: Option<&Snapshot>, now: &Snapshot, rid: u64) -> Value {
    let Some(before) = before else {
        return json!({
            "rid": rid,
            "full_update": true,
            "torrents": now.torrents,
            "categories": now.categories,
            "tags": now.tags,
            "server_state": now.server_state,
        });
    };
    let mut reply = Map::new();
    reply.insert("rid".into(), rid.into());
    let mut torrents = Map::new();
    for (hash, row) in &now.torrents {
        let delta = match (before.torrents.get(hash), row) {
            (Some(Value::Object(old)), Value::Object(new)) => changed(old, new),
            (_, Value::Object(new)) => new.clone(),
            _ => continue,
        };
        if !delta.is_empty() {
            torrents.insert(hash.clone(), Value::Object(delta));
        }
    }
    if !torrents.is_empty() {
        reply.insert("torrents".into(), Value::Object(torrents));
    }
    let removed: Vec<&String> = before
        .torrents
        .keys()
        .filter(|h| !now.torrents.contains_key(*h))
        .collect();
    if !removed.is_empty() {
        reply.insert("torrents_removed".into(), json!(removed));
    }
    let categories = changed(&before.categories, &now.categories);
    if !categories.is_empty() {
        reply.insert("categories".into(), Value::Object(categories));
    }
    let gone: Vec<&String> = before
        .categories
        .keys()
        .filter(|c| !now.categories.contains_key(*c))
        .collect();
    if !gone.is_empty() {
        reply.insert("categories_removed".into(), json!(gone));
    }
    let new_tags: Vec<&String> = now
        .tags
        .iter()
        .filter(|t| !before.tags.contains(t))
        .collect();
    if !new_tags.is_empty() {
        reply.insert("tags".into(), json!(new_tags));
    }
    let gone_tags: Vec<&String> = before
        .tags
        .iter()
        .filter(|t| !now.tags.contains(t))
        .collect();
    if !gone_tags.is_empty() {
        reply.insert("tags_removed".into(), json!(gone_tags));
    }
    let server = changed(&before.server_state, &now.server_state);
    if !server.is_empty() {
        reply.insert("server_state".into(), Value::Object(server));
    }
    Value::Object(reply)
}

/// `sync/maindata` (`rid`).
pub(super) async fn maindata(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let rid = params.int("rid").ok().flatten().unwrap_or(0);
    let before = u64::try_from(rid)
        .ok()
        .filter(|r| *r > 0)
        .and_then(|r| qbt.snapshot(r));
    let now = snapshot(&qbt).await;
    let reply_rid = qbt.keep_snapshot(now.clone());
    Json(diff(before.as_deref(), &now, reply_rid)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(torrents: Value, tags: &[&str]) -> Snapshot {
        Snapshot {
            torrents: torrents.as_object().unwrap().clone(),
            categories: Map::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            server_state: json!({ "dl_info_speed": 0 }).as_object().unwrap().clone(),
        }
    }

    #[test]
    fn diffs_carry_only_changes() {
        let a = snap(
            json!({ "aa": { "progress": 0.1, "name": "x" }, "bb": { "name": "y" } }),
            &["t1"],
        );
        let b = snap(
            json!({ "aa": { "progress": 0.5, "name": "x" }, "cc": { "name": "z" } }),
            &["t2"],
        );
        let full = diff(None, &a, 1);
        assert_eq!(full["full_update"], true);
        assert_eq!(full["torrents"]["bb"]["name"], "y");
        let d = diff(Some(&a), &b, 2);
        assert_eq!(d["rid"], 2);
        assert!(d.get("full_update").is_none());
        assert_eq!(
            d["torrents"],
            json!({ "aa": { "progress": 0.5 }, "cc": { "name": "z" } })
        );
        assert_eq!(d["torrents_removed"], json!(["bb"]));
        assert_eq!(d["tags"], json!(["t2"]));
        assert_eq!(d["tags_removed"], json!(["t1"]));
        assert!(d.get("server_state").is_none());
        assert_eq!(diff(Some(&b), &b, 3), json!({ "rid": 3 }));
    }
}
