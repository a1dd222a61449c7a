//! The document listing read model: every live document of every
//! collection, by collection and id, a page at a time.
//!
//! The model keeps a small entry per document (its version, the log
//! position of that version, when and by whom it last changed, and the
//! size of its JSON), not the document itself: the document is in the log,
//! whole, in the event that made that version (see `docs/documents.md`),
//! so a page reads the entries from the model and each document from its
//! event. Why not keep the documents in the model: a document may be up
//! to the log's payload limit (1 MiB by default), and a write set holds
//! its batch's values in memory (a rebuild folds up to 65,536 changed keys
//! into one), as does every process's copy of a PostgreSQL model; entries
//! of a few dozen bytes keep all three small, and the event read back is
//! exactly the version listed.

use std::io;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use strata_aggregates::decode;
use strata_aggregates::domain::document::{DocumentEvent, check_id, validate_collection_name};
use strata_store::{Direction, EventStore, RecordedEvent, StreamId};
use tracing::warn;

use crate::codec::{corrupt, decode_value, prefix_end};
use crate::error::ProjectionError;
use crate::model::store::ModelStore;
use crate::model::write_set::WriteSet;
use crate::projection::Projection;

/// The name of the document listing projection (and of its storage).
pub const DOCUMENT_LISTING: &str = "document_listing";

/// The byte budget of a page when none is given (1 MiB): see
/// [`DocumentQuery::max_bytes`].
pub const DEFAULT_PAGE_BYTES: u64 = 1024 * 1024;

/// The stream id prefix of documents (`doc-{collection}/{id}`).
const DOC_PREFIX: &str = "doc-";

/// The listing's model version (see [`Projection::model_version`]): 1,
/// the first layout.
const MODEL_VERSION: u64 = 1;

/// How many documents of a page are read from the log at once.
const READ_CONCURRENCY: usize = 16;

// Keys: `d` collection, 0, id → Entry. Collection names are ASCII letters,
// digits, `_` and `-` and ids hold no control character, so the 0 byte
// ends the collection and one collection's keys never run into another's;
// within a collection the keys sort by id (the bytes of its UTF-8).
const DOCUMENT: u8 = b'd';

/// What the model keeps per document.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
struct Entry {
    version: u64,
    position: u64,
    modified_ms: u64,
    modified_by: Option<String>,
    size: u64,
}

/// One document as the listing shows it (without its body: see
/// [`DocumentListing::read_documents`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ListedDocument {
    /// The document's id.
    pub id: String,
    /// Its version (the `ETag` of `GET /docs/{collection}/{id}`).
    pub version: u64,
    /// The log position of the event that made this version.
    pub position: u64,
    /// When it last changed, in milliseconds since the Unix epoch (the
    /// document's own time, as `Last-Modified` shows it).
    pub modified_ms: u64,
    /// Who changed it last (`Strata-Actor`), if anyone said.
    pub modified_by: Option<String>,
    /// The length of the document's JSON, in bytes (compact, without
    /// `_version`).
    pub size: u64,
}

/// What a page of one collection asks for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DocumentQuery {
    /// Only ids greater than this one (the `next` of the previous page).
    pub after: Option<String>,
    /// Only ids that start with this.
    pub prefix: Option<String>,
    /// The most documents on the page (at least 1).
    pub limit: usize,
    /// The most bytes of documents (their [`size`](ListedDocument::size))
    /// on the page: a page ends before the document that would take it
    /// past this, and has a `next`. A page always holds at least one
    /// document when there is one, however large.
    pub max_bytes: u64,
}

impl Default for DocumentQuery {
    /// The whole collection from the start, 100 documents and
    /// [`DEFAULT_PAGE_BYTES`] a page.
    fn default() -> Self {
        DocumentQuery {
            after: None,
            prefix: None,
            limit: 100,
            max_bytes: DEFAULT_PAGE_BYTES,
        }
    }
}

/// One page of a collection, read from one generation of the model.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DocumentPage {
    /// The documents, in id order.
    pub documents: Vec<ListedDocument>,
    /// Where the next page starts (the last id of this one): pass it as
    /// `after`. `None` on the last page.
    pub next: Option<String>,
    /// The model's checkpoint when the page was read: every event up to
    /// it is in the page.
    pub position: u64,
    /// The generation the page was read from.
    pub generation: u64,
}

fn collection_prefix(collection: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.len() + 2);
    k.push(DOCUMENT);
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k
}

fn document_key(collection: &str, id: &str) -> Vec<u8> {
    let mut k = collection_prefix(collection);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The collection and id of a document stream, if `stream` is one the
/// document service could have written.
fn document_of(stream: &str) -> Option<(&str, &str)> {
    let (collection, id) = stream.strip_prefix(DOC_PREFIX)?.split_once('/')?;
    (validate_collection_name(collection).is_ok() && check_id(id).is_ok()).then_some((collection, id))
}

/// The length of `body` as compact JSON, without building it.
fn json_len(body: &Map<String, Value>) -> u64 {
    struct Count(u64);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A map of JSON values with string keys always serializes, and the
    // writer never fails.
    let _ = serde_json::to_writer(&mut count, body);
    count.0
}

/// Projects the `doc-*` streams into the document listing.
///
/// A create, replace or patch lists the document at that version (every
/// document event carries the whole document, so the entry depends on the
/// last event only); a delete removes it, and a create after the delete
/// lists it again. A stream named `doc-...` that is not
/// `doc-{collection}/{id}` with a valid collection name and id (only a
/// program appending to the log itself could write one) is not a document
/// the API can serve: it is logged and skipped. An event of a document
/// stream that does not decode stops the runner
/// ([`ProjectionError::Decode`]), as in the other read models.
#[derive(Clone, Copy, Debug, Default)]
pub struct DocumentListingProjection;

impl Projection for DocumentListingProjection {
    fn name(&self) -> &str {
        DOCUMENT_LISTING
    }

    /// A document whose stream is deleted (an erasure) leaves the listing.
    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        if let Some(deleted) = crate::projection::deleted_stream(event) {
            if let Some((collection, id)) = document_of(deleted.as_str()) {
                ws.delete(document_key(collection, id));
            }
            return Ok(());
        }
        if !event.stream_id.as_str().starts_with(DOC_PREFIX) {
            return Ok(());
        }
        let Some((collection, id)) = document_of(event.stream_id.as_str()) else {
            warn!(stream = %event.stream_id, "a doc- stream that names no collection and document id; not listed");
            return Ok(());
        };
        let decoded: DocumentEvent = decode(event).map_err(|source| ProjectionError::Decode {
            stream: event.stream_id.clone(),
            event_type: event.event_type.clone(),
            source,
        })?;
        let key = document_key(collection, id);
        match decoded.body() {
            None => {
                ws.delete(key);
                Ok(())
            }
            Some(body) => ws.put_value(
                key,
                &Entry {
                    version: event.version,
                    position: event.position,
                    modified_ms: decoded.at_ms(),
                    modified_by: decoded.actor().map(str::to_string),
                    size: json_len(body),
                },
            ),
        }
    }

    fn model_version(&self) -> u64 {
        MODEL_VERSION
    }
}

/// Reads the document listing (what `GET /docs/{collection}` serves).
#[derive(Clone, Debug)]
pub struct DocumentListing {
    model: ModelStore,
}

impl DocumentListing {
    /// Reads the listing kept in `model` (opened under [`DOCUMENT_LISTING`]).
    pub fn new(model: ModelStore) -> DocumentListing {
        DocumentListing { model }
    }

    /// The storage underneath (checkpoint, `wait_for`).
    pub fn model(&self) -> &ModelStore {
        &self.model
    }

    /// Document `id` of `collection`, if it is listed (created and not
    /// deleted).
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<ListedDocument>, ProjectionError> {
        Ok(self
            .model
            .get_value::<Entry>(&document_key(collection, id))?
            .map(|e| listed(id.to_string(), e)))
    }

    /// One page of `collection`, in id order (the bytes of the ids'
    /// UTF-8): the documents after `query.after` whose id starts with
    /// `query.prefix`, at most `query.limit` (at least 1) of them and no
    /// more than `query.max_bytes` of documents (but at least one), and
    /// the id to pass as `after` for the next page. Reads at most `limit`
    /// + 1 entries of one key range, from one generation.
    pub fn page(&self, collection: &str, query: &DocumentQuery) -> Result<DocumentPage, ProjectionError> {
        let limit = query.limit.max(1);
        let reader = self.model.reader();
        let position = reader.checkpoint()?;
        let start = document_key(collection, query.prefix.as_deref().unwrap_or(""));
        let end = prefix_end(&start);
        let from = match &query.after {
            Some(after) => {
                let mut k = document_key(collection, after);
                k.push(0);
                k.max(start)
            }
            None => start,
        };
        let entries = reader.range_limit(&from, end.as_deref(), limit.saturating_add(1))?;
        let skip = collection_prefix(collection).len();
        let mut documents = Vec::with_capacity(entries.len().min(limit));
        let mut bytes = 0u64;
        let mut more = false;
        for (key, value) in &entries {
            let entry: Entry = decode_value(DOCUMENT_LISTING, key, value)?;
            let full = documents.len() == limit
                || (!documents.is_empty() && bytes.saturating_add(entry.size) > query.max_bytes);
            if full {
                more = true;
                break;
            }
            let id = String::from_utf8(key[skip..].to_vec())
                .map_err(|_| corrupt(DOCUMENT_LISTING, key, "a document id that is not UTF-8"))?;
            bytes = bytes.saturating_add(entry.size);
            documents.push(listed(id, entry));
        }
        Ok(DocumentPage {
            next: if more {
                documents.last().map(|d| d.id.clone())
            } else {
                None
            },
            documents,
            position,
            generation: reader.generation(),
        })
    }

    /// The documents of `page` (of `collection`), in its order, each as
    /// it was at the version listed: read from the event that made that
    /// version, at most 16 reads at a time. An event the log does not hold
    /// (a model ahead of its log) is [`ProjectionError::Corrupt`]: rebuild
    /// the model.
    pub async fn read_documents(
        &self,
        store: &dyn EventStore,
        collection: &str,
        page: &DocumentPage,
    ) -> Result<Vec<Map<String, Value>>, ProjectionError> {
        // Owned arguments: a stream of futures borrowing the page's items
        // is not `Send` for every lifetime, which a handler needs.
        let reads = page
            .documents
            .iter()
            .map(|d| {
                (
                    document_key(collection, &d.id),
                    format!("{DOC_PREFIX}{collection}/{}", d.id),
                    d.version,
                )
            })
            .collect::<Vec<_>>();
        futures::stream::iter(reads)
            .map(|(key, stream, version)| read_document(store, key, stream, version))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }
}

fn listed(id: String, e: Entry) -> ListedDocument {
    ListedDocument {
        id,
        version: e.version,
        position: e.position,
        modified_ms: e.modified_ms,
        modified_by: e.modified_by,
        size: e.size,
    }
}

/// The body of the document of `stream` at `version`, from the log (`key`
/// names it in the model, for errors).
async fn read_document(
    store: &dyn EventStore,
    key: Vec<u8>,
    stream: String,
    version: u64,
) -> Result<Map<String, Value>, ProjectionError> {
    let stream = StreamId::new(stream).map_err(|e| corrupt(DOCUMENT_LISTING, &key, format!("names no stream: {e}")))?;
    let found = store
        .read_stream(&stream, version, Direction::Forward, 1)
        .await
        .map_err(|e| ProjectionError::store(DOCUMENT_LISTING, e))?;
    let missing = |what: &str| {
        corrupt(
            DOCUMENT_LISTING,
            &key,
            format!("the listing names version {version} of {stream}, {what}; rebuild the read model"),
        )
    };
    let event = match found.into_iter().next() {
        Some(event) if event.version == version => event,
        _ => return Err(missing("which the log does not hold")),
    };
    let decoded: DocumentEvent = decode(&event).map_err(|source| ProjectionError::Decode {
        stream: event.stream_id.clone(),
        event_type: event.event_type.clone(),
        source,
    })?;
    match decoded {
        DocumentEvent::DocumentCreated { body, .. }
        | DocumentEvent::DocumentReplaced { body, .. }
        | DocumentEvent::DocumentPatched { body, .. } => Ok(body.0),
        DocumentEvent::DocumentDeleted { .. } => Err(missing("which deleted it")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_streams_name_a_collection_and_an_id() {
        assert_eq!(document_of("doc-items/42"), Some(("items", "42")));
        assert_eq!(document_of("doc-items/a/b"), Some(("items", "a/b")));
        for not in [
            "doc-items",
            "doc-/42",
            "doc-it ems/42",
            "doc-items/",
            "doc-items/ ",
            "order-1",
        ] {
            assert_eq!(document_of(not), None, "{not:?}");
        }
    }

    #[test]
    fn keys_of_one_collection_sort_by_id_and_stay_apart_from_the_next() {
        let mut keys = vec![
            document_key("a", "b"),
            document_key("a-b", "a"),
            document_key("a", "a"),
            document_key("a", "a\u{e9}"),
            document_key("a", "~"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                document_key("a", "a"),
                document_key("a", "a\u{e9}"),
                document_key("a", "b"),
                document_key("a", "~"),
                document_key("a-b", "a"),
            ]
        );
        let end = prefix_end(&collection_prefix("a")).unwrap();
        assert!(document_key("a", "\u{10ffff}") < end && end <= document_key("a-b", ""));
    }

    #[test]
    fn json_len_is_the_compact_json() {
        let body = serde_json::json!({"b": [1, 2], "a": "é\"", "c": {"d": null}});
        let body = body.as_object().unwrap();
        assert_eq!(json_len(body), serde_json::to_vec(body).unwrap().len() as u64);
    }
}
