//! Random document histories written through the document service
//! (PUT, merge PATCH, DELETE, create again), the listing they should
//! give, kept by a plain map, and the check of a listing against it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use strata_aggregates::domain::document::{
    Change, CollectionSpec, DocumentError, DocumentService, Preconditions, WriteRequest,
};
use strata_projections::{DocumentListing, DocumentQuery, ListedDocument};
use strata_store::{EventStore, Metadata};

/// The collections of a history.
pub const COLLECTIONS: [&str; 2] = ["items", "items-2"];

/// The ids a history picks from: some share a prefix, some hold `/`, a
/// space or a character beyond ASCII, so their byte order shows.
pub const IDS: [&str; 12] = ["a", "a/b", "ab", "b", "10", "9", "Z", "a b", "é", "zz", "a~", "0"];

/// What the listing should show of one document.
#[derive(Clone, PartialEq, Debug)]
pub struct Expected {
    pub version: u64,
    pub body: Map<String, Value>,
    pub modified_ms: u64,
    pub modified_by: Option<String>,
    pub position: u64,
}

/// The documents as the service keeps them, for one writer at a time.
#[derive(Default, Debug)]
pub struct DocWorld {
    /// Live documents, by collection and id.
    pub live: BTreeMap<(String, String), Expected>,
    /// Deleted ones (a plain PUT is refused; a create brings them back).
    pub deleted: BTreeMap<(String, String), u64>,
    clock: u64,
}

/// Declares the history's collections.
pub async fn declare(docs: &DocumentService) {
    for c in COLLECTIONS {
        docs.declare(c, CollectionSpec::default(), None, None, 0, &Metadata::default())
            .await
            .unwrap();
    }
}

impl DocWorld {
    /// Turns three random numbers into a write (a PUT, a merge patch, a
    /// delete, or a create after a delete), makes it through `docs`, and
    /// records what the listing should show. Does nothing when the write
    /// picked does not apply (a patch or delete of an absent document).
    pub async fn step(&mut self, docs: &DocumentService, kind: u8, a: u32, b: u32) {
        let collection = COLLECTIONS[(a % 2) as usize].to_string();
        let id = IDS[(b as usize / 2) % IDS.len()].to_string();
        let key = (collection.clone(), id.clone());
        self.clock += 1;
        let live = self.live.contains_key(&key);
        let deleted = self.deleted.contains_key(&key);
        let (change, create) = match kind % 4 {
            0 | 3 => {
                // A body whose size varies, so byte-bounded pages vary too.
                let filler = "x".repeat((a % 40) as usize);
                let body = json!({"n": b, "kind": kind, "filler": filler});
                (Change::Put(body.as_object().unwrap().clone()), deleted)
            }
            1 if live => (Change::MergePatch(json!({"m": a, "filler": null})), false),
            2 if live => (Change::Delete, false),
            _ => return,
        };
        let request = WriteRequest {
            collection: collection.clone(),
            id: id.clone(),
            change,
            preconditions: Preconditions {
                if_none_match: create,
                ..Preconditions::default()
            },
            actor: (!a.is_multiple_of(3)).then(|| format!("actor-{}", a % 5)),
            at_ms: 1_000 * self.clock,
            require_precondition: false,
        };
        let done = match docs.write(request.clone(), &Metadata::default()).await {
            Ok(done) => done,
            Err(e) => panic!("{request:?}: {e}"),
        };
        match done.body {
            Some(body) => {
                let position = match done.position {
                    Some(p) => p,
                    // Unchanged: nothing appended, the listing stays as it was.
                    None => self.live[&key].position,
                };
                self.deleted.remove(&key);
                self.live.insert(
                    key,
                    Expected {
                        version: done.version,
                        body,
                        modified_ms: done.modified_ms,
                        modified_by: done.modified_by,
                        position,
                    },
                );
            }
            None => {
                self.live.remove(&key);
                self.deleted.insert(key, done.version);
            }
        }
    }

    /// The ids of `collection` the listing should show, in its order.
    pub fn ids(&self, collection: &str) -> Vec<String> {
        self.live
            .keys()
            .filter(|(c, _)| c == collection)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

/// Follows `next` through `collection` from the start, with `query`'s
/// limit, byte budget and prefix; returns the pages.
pub fn walk(listing: &DocumentListing, collection: &str, query: &DocumentQuery) -> Vec<Vec<ListedDocument>> {
    let mut pages = Vec::new();
    let mut query = query.clone();
    loop {
        let page = listing.page(collection, &query).unwrap();
        assert!(page.documents.len() <= query.limit.max(1), "a page holds at most limit");
        if let Some(next) = &page.next {
            assert_eq!(
                page.documents.last().map(|d| &d.id),
                Some(next),
                "next is the page's last id"
            );
        }
        let bytes: u64 = page.documents.iter().map(|d| d.size).sum();
        assert!(
            bytes <= query.max_bytes || page.documents.len() == 1,
            "a page over its byte budget holds one document: {bytes} > {}",
            query.max_bytes
        );
        let next = page.next.clone();
        pages.push(page.documents);
        match next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        assert!(pages.len() < 10_000, "the walk does not end");
    }
    pages
}

/// Asserts that `listing` shows exactly the live documents of `world`:
/// each once, in id order, at every page size and byte budget, with its
/// version, time, actor and position, and (read back from `store`) its
/// body; a prefix shows only its ids. Also looks documents up one by one.
pub async fn assert_listing_matches(world: &DocWorld, listing: &DocumentListing, store: &Arc<dyn EventStore>) {
    for collection in COLLECTIONS {
        let expected = world.ids(collection);
        for (limit, max_bytes) in [(1, u64::MAX), (3, u64::MAX), (1000, u64::MAX), (1000, 60), (4, 1)] {
            let query = DocumentQuery {
                limit,
                max_bytes,
                ..DocumentQuery::default()
            };
            let pages = walk(listing, collection, &query);
            let ids: Vec<String> = pages.iter().flatten().map(|d| d.id.clone()).collect();
            assert_eq!(ids, expected, "{collection}, limit {limit}, {max_bytes} bytes");
            if max_bytes == 1 {
                assert!(pages.iter().all(|p| p.len() <= 1), "one document a page");
            }
        }
        for prefix in ["a", "a/", "é", "q"] {
            let query = DocumentQuery {
                prefix: Some(prefix.into()),
                limit: 2,
                ..DocumentQuery::default()
            };
            let ids: Vec<String> = walk(listing, collection, &query)
                .into_iter()
                .flatten()
                .map(|d| d.id)
                .collect();
            let with_prefix: Vec<String> = expected.iter().filter(|id| id.starts_with(prefix)).cloned().collect();
            assert_eq!(ids, with_prefix, "{collection}, prefix {prefix:?}");
        }
        let page = listing
            .page(
                collection,
                &DocumentQuery {
                    limit: 1000,
                    max_bytes: u64::MAX,
                    ..DocumentQuery::default()
                },
            )
            .unwrap();
        assert!(page.next.is_none());
        let bodies = listing.read_documents(&**store, collection, &page).await.unwrap();
        for (d, body) in page.documents.iter().zip(&bodies) {
            let e = &world.live[&(collection.to_string(), d.id.clone())];
            assert_eq!(
                (d.version, d.modified_ms, &d.modified_by, d.position),
                (e.version, e.modified_ms, &e.modified_by, e.position),
                "{collection}/{}",
                d.id
            );
            assert_eq!(body, &e.body, "{collection}/{}", d.id);
            assert_eq!(d.size, serde_json::to_vec(body).unwrap().len() as u64);
            assert_eq!(listing.get(collection, &d.id).unwrap().as_ref(), Some(d));
        }
        for ((c, id), _) in world.deleted.iter().filter(|((c, _), _)| c == collection) {
            assert_eq!(listing.get(c, id).unwrap(), None, "{c}/{id} was deleted");
        }
    }
}

/// The service's answer to a read of a document the world deleted: the
/// listing and the document agree.
pub async fn assert_deleted_documents_are_gone(world: &DocWorld, docs: &DocumentService) {
    for (c, id) in world.deleted.keys() {
        assert!(
            matches!(docs.get(c, id, None).await, Err(DocumentError::Deleted { .. })),
            "{c}/{id}"
        );
    }
}
