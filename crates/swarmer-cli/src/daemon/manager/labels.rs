//! Categories and tags, as qBittorrent has them (and the Transmission RPC shows as `labels`): the
//! set of categories (each with an optional save path) and of tags, kept in the store's small-values
//! table, and the edits the APIs ask for. A torrent's own category and tags live in its record.
//!
//! The rules are qBittorrent's: a category must exist before a torrent is put in it (409 otherwise),
//! adding a tag to a torrent creates it, and removing a category or deleting a tag takes it off
//! every torrent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::daemon::download_dir::DownloadDir;
use crate::daemon::store::{Store, StoreError, TorrentRecord};

/// The store key of the categories.
const CATEGORIES: &str = "categories";
/// The store key of the tags.
const TAGS: &str = "tags";
/// Longest category or tag name, in bytes.
const MAX_NAME: usize = 256;
/// Most categories, and most tags.
const MAX_LABELS: usize = 10_000;

/// Why a label edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LabelError {
    /// An unknown category where one must exist, or an existing one where it must not.
    #[error("{0}")]
    Conflict(String),
    /// A bad name, or too many labels.
    #[error("{0}")]
    Invalid(String),
}

/// One category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Category {
    /// Where its torrents go unless an add names a directory; `None`: the default directory.
    pub(crate) save_path: Option<DownloadDir>,
}

/// Every category and tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Labels {
    /// Categories by name.
    pub(crate) categories: BTreeMap<String, Category>,
    /// Tags.
    pub(crate) tags: BTreeSet<String>,
}

/// A change to the categories and tags, or to torrents' labels.
#[derive(Debug, Clone)]
pub(crate) enum LabelEdit {
    /// A new category; 409 if it exists.
    CreateCategory(String, Option<DownloadDir>),
    /// A category's new save path; 409 if it does not exist.
    EditCategory(String, Option<DownloadDir>),
    /// Removes categories (taken off their torrents); unknown names are ignored.
    RemoveCategories(Vec<String>),
    /// New tags; existing ones are ignored.
    CreateTags(Vec<String>),
    /// Deletes tags (taken off every torrent).
    DeleteTags(Vec<String>),
    /// Puts torrents in a category (`None`: in none); 409 for an unknown category.
    SetCategory(Vec<u64>, Option<String>),
    /// Adds tags to torrents, creating the tags.
    AddTags(Vec<u64>, Vec<String>),
    /// Removes tags from torrents (an empty list: all of their tags).
    RemoveTags(Vec<u64>, Vec<String>),
}

impl Labels {
    /// The labels saved in `store`.
    ///
    /// Errors: the store cannot be read.
    pub(crate) fn load(store: &Store) -> Result<Labels, StoreError> {
        Ok(Labels {
            categories: store.get_meta(CATEGORIES)?.unwrap_or_default(),
            tags: store.get_meta(TAGS)?.unwrap_or_default(),
        })
    }

    /// Saves the labels in `store`.
    ///
    /// Errors: the store cannot be written.
    pub(crate) fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.put_meta(CATEGORIES, &self.categories)?;
        store.put_meta(TAGS, &self.tags)
    }

    /// A category's save path, if it has one.
    pub(crate) fn save_path(&self, category: &str) -> Option<&DownloadDir> {
        self.categories.get(category)?.save_path.as_ref()
    }

    /// Applies `edit` to the labels and to `records` (every torrent's), and returns the ids of
    /// the records it changed.
    ///
    /// Errors: [`LabelError::Conflict`] for an unknown or existing category,
    /// [`LabelError::Invalid`] for a bad name or too many labels.
    pub(crate) fn apply<'a>(
        &mut self,
        edit: LabelEdit,
        records: impl Iterator<Item = &'a mut TorrentRecord>,
    ) -> Result<Vec<u64>, LabelError> {
        let mut changed = Vec::new();
        match edit {
            LabelEdit::CreateCategory(name, save_path) => {
                check_name(&name, "category")?;
                if self.categories.contains_key(&name) {
                    return Err(LabelError::Conflict(format!("category {name:?} exists")));
                }
                self.room(self.categories.len())?;
                self.categories.insert(name, Category { save_path });
            }
            LabelEdit::EditCategory(name, save_path) => {
                let Some(category) = self.categories.get_mut(&name) else {
                    return Err(LabelError::Conflict(format!("no category {name:?}")));
                };
                category.save_path = save_path;
            }
            LabelEdit::RemoveCategories(names) => {
                for name in &names {
                    self.categories.remove(name);
                }
                for r in records {
                    if r.category.as_ref().is_some_and(|c| names.contains(c)) {
                        r.category = None;
                        changed.push(r.id);
                    }
                }
            }
            LabelEdit::CreateTags(tags) => self.create_tags(&tags)?,
            LabelEdit::DeleteTags(tags) => {
                for tag in &tags {
                    self.tags.remove(tag);
                }
                for r in records {
                    let before = r.tags.len();
                    r.tags.retain(|t| !tags.contains(t));
                    if r.tags.len() != before {
                        changed.push(r.id);
                    }
                }
            }
            LabelEdit::SetCategory(ids, category) => {
                if let Some(c) = &category {
                    if !self.categories.contains_key(c) {
                        return Err(LabelError::Conflict(format!("no category {c:?}")));
                    }
                }
                for r in records.filter(|r| ids.contains(&r.id)) {
                    if r.category != category {
                        r.category.clone_from(&category);
                        changed.push(r.id);
                    }
                }
            }
            LabelEdit::AddTags(ids, tags) => {
                self.create_tags(&tags)?;
                for r in records.filter(|r| ids.contains(&r.id)) {
                    let before = r.tags.len();
                    for tag in &tags {
                        if !r.tags.contains(tag) {
                            r.tags.push(tag.clone());
                        }
                    }
                    if r.tags.len() != before {
                        r.tags.sort();
                        changed.push(r.id);
                    }
                }
            }
            LabelEdit::RemoveTags(ids, tags) => {
                for r in records.filter(|r| ids.contains(&r.id)) {
                    let before = r.tags.len();
                    r.tags.retain(|t| !tags.is_empty() && !tags.contains(t));
                    if r.tags.len() != before {
                        changed.push(r.id);
                    }
                }
            }
        }
        Ok(changed)
    }

    fn create_tags(&mut self, tags: &[String]) -> Result<(), LabelError> {
        for tag in tags {
            check_name(tag, "tag")?;
            if !self.tags.contains(tag) {
                self.room(self.tags.len())?;
                self.tags.insert(tag.clone());
            }
        }
        Ok(())
    }

    fn room(&self, len: usize) -> Result<(), LabelError> {
        if len >= MAX_LABELS {
            return Err(LabelError::Invalid(format!(
                "at most {MAX_LABELS} categories and {MAX_LABELS} tags"
            )));
        }
        Ok(())
    }
}

/// A category or tag name: not empty, not too long, no control characters, no comma (qBittorrent
/// separates lists of them with commas), no leading or trailing space.
fn check_name(name: &str, what: &str) -> Result<(), LabelError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME
        || name.trim() != name
        || name.contains(',')
        || name.chars().any(char::is_control);
    if bad {
        return Err(LabelError::Invalid(format!("invalid {what} name {name:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_proto::InfoHash;

    fn record(id: u64) -> TorrentRecord {
        TorrentRecord {
            id,
            info_hash: InfoHash([id as u8; 20]),
            magnet: None,
            name: "x".into(),
            download_dir: DownloadDir::new("/d").unwrap(),
            paused: false,
            added_at: 0,
            priorities: Vec::new(),
            max_upload_rate: None,
            max_download_rate: None,
            queue_position: 0,
            category: None,
            tags: Vec::new(),
            display_name: None,
            completed_at: None,
            trust_data: false,
            sequential: false,
            first_last_piece: false,
        }
    }

    #[test]
    fn categories_and_tags_follow_qbittorrent() {
        let mut labels = Labels::default();
        let mut records = [record(1), record(2)];
        let mut apply = |labels: &mut Labels, edit| labels.apply(edit, records.iter_mut());
        assert!(matches!(
            apply(
                &mut labels,
                LabelEdit::SetCategory(vec![1], Some("tv".into()))
            ),
            Err(LabelError::Conflict(_))
        ));
        apply(&mut labels, LabelEdit::CreateCategory("tv".into(), None)).unwrap();
        assert!(matches!(
            apply(&mut labels, LabelEdit::CreateCategory("tv".into(), None)),
            Err(LabelError::Conflict(_))
        ));
        assert!(matches!(
            apply(&mut labels, LabelEdit::CreateCategory("a,b".into(), None)),
            Err(LabelError::Invalid(_))
        ));
        let changed = apply(
            &mut labels,
            LabelEdit::SetCategory(vec![1], Some("tv".into())),
        );
        assert_eq!(changed.unwrap(), [1]);
        let changed = apply(
            &mut labels,
            LabelEdit::AddTags(vec![1, 2], vec!["hd".into(), "new".into()]),
        );
        assert_eq!(changed.unwrap(), [1, 2]);
        assert_eq!(labels.tags.len(), 2, "adding tags creates them");
        apply(&mut labels, LabelEdit::DeleteTags(vec!["new".into()])).unwrap();
        apply(&mut labels, LabelEdit::RemoveCategories(vec!["tv".into()])).unwrap();
        assert_eq!(records[0].category, None);
        assert_eq!(records[0].tags, ["hd"]);
        assert_eq!(records[1].tags, ["hd"]);
        labels
            .apply(
                LabelEdit::RemoveTags(vec![2], Vec::new()),
                records.iter_mut(),
            )
            .unwrap();
        assert!(
            records[1].tags.is_empty(),
            "an empty list removes every tag"
        );
    }
}
