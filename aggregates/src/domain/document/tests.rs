//! The document service over the in-memory log: preconditions, merges,
//! unique values under concurrency.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use strata_store::{EventStore, MemoryStore, Metadata};

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn service(unique: &[&str], require: bool) -> (Arc<MemoryStore>, DocumentService) {
    let store = Arc::new(MemoryStore::new());
    let docs = DocumentService::new(store.clone());
    let spec = CollectionSpec {
        unique: unique.iter().map(|f| UniqueField::parse(f, true).unwrap()).collect(),
        require_precondition: require,
    };
    docs.declare("users", spec, None, None, 0, &Metadata::default())
        .await
        .unwrap();
    (store, docs)
}

fn request(id: &str, change: Change, preconditions: Preconditions) -> WriteRequest {
    WriteRequest {
        collection: "users".into(),
        id: id.into(),
        change,
        preconditions,
        actor: Some("ada".into()),
        at_ms: 1_000,
        require_precondition: false,
    }
}

fn put(body: Value) -> Change {
    Change::Put(obj(body))
}

fn if_match(v: u64) -> Preconditions {
    Preconditions {
        if_match: Some(IfMatch::Versions(vec![v])),
        ..Preconditions::default()
    }
}

fn base(v: u64) -> Preconditions {
    Preconditions {
        merge_base: Some(v),
        ..Preconditions::default()
    }
}

async fn write(
    docs: &DocumentService,
    id: &str,
    change: Change,
    pre: Preconditions,
) -> Result<DocumentWrite, DocumentError> {
    docs.write(request(id, change, pre), &Metadata::default()).await
}

fn conflict(e: DocumentError) -> DocumentConflict {
    match e {
        DocumentError::Conflict(c) => *c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stale_write_names_the_fields_and_proposes_the_merge() {
    let (_, docs) = service(&[], false).await;
    let v1 = write(
        &docs,
        "1",
        put(json!({"name": "a", "city": "x", "n": 1})),
        Preconditions::default(),
    )
    .await
    .unwrap();
    assert_eq!((v1.version, v1.kind), (1, Some(ChangeKind::Created)));
    write(&docs, "1", put(json!({"name": "a", "city": "y", "n": 1})), if_match(1))
        .await
        .unwrap();

    // Another field, decided on version 1: no overlap, the merge is proposed.
    let c = conflict(
        write(&docs, "1", put(json!({"name": "b", "city": "x", "n": 1})), if_match(1))
            .await
            .unwrap_err(),
    );
    assert_eq!((c.reason, c.current_version), (ConflictReason::Stale, 2));
    assert_eq!(c.changes_since.len(), 1);
    assert_eq!(c.changes_since[0].changed, vec!["/city"]);
    assert_eq!(c.changes_since[0].actor.as_deref(), Some("ada"));
    assert_eq!(c.conflicting_fields, Some(vec![]));
    assert_eq!(c.merged, Some(obj(json!({"name": "b", "city": "y", "n": 1}))));

    // The same field: it conflicts, and nothing is proposed.
    let c = conflict(
        write(&docs, "1", put(json!({"name": "a", "city": "z", "n": 1})), if_match(1))
            .await
            .unwrap_err(),
    );
    assert_eq!(c.conflicting_fields, Some(vec!["/city".to_string()]));
    assert_eq!(c.merged, None);
}

#[tokio::test]
async fn a_merge_base_write_is_applied_onto_the_current_version_or_refused() {
    let (_, docs) = service(&[], false).await;
    write(
        &docs,
        "1",
        put(json!({"a": 1, "b": 1, "tags": ["x"]})),
        Preconditions::default(),
    )
    .await
    .unwrap();
    write(&docs, "1", Change::MergePatch(json!({"a": 2})), if_match(1))
        .await
        .unwrap();
    // Decided on version 1, changes /b: merged onto 2.
    let merged = write(&docs, "1", put(json!({"a": 1, "b": 5, "tags": ["x"]})), base(1))
        .await
        .unwrap();
    assert_eq!((merged.version, merged.merged_onto), (3, Some(2)));
    assert_eq!(merged.body, Some(obj(json!({"a": 2, "b": 5, "tags": ["x"]}))));
    // A patch from version 1 that touches /a, changed since: refused with the field.
    let c = conflict(
        write(&docs, "1", Change::MergePatch(json!({"a": 9})), base(1))
            .await
            .unwrap_err(),
    );
    assert_eq!(c.reason, ConflictReason::Overlap);
    assert_eq!(c.conflicting_fields, Some(vec!["/a".to_string()]));
    // Arrays are one field: two writers changing different elements overlap.
    write(&docs, "1", Change::MergePatch(json!({"tags": ["x", "y"]})), if_match(3))
        .await
        .unwrap();
    let c = conflict(
        write(&docs, "1", Change::MergePatch(json!({"tags": ["z"]})), base(3))
            .await
            .unwrap_err(),
    );
    assert_eq!(c.conflicting_fields, Some(vec!["/tags".to_string()]));
    // A JSON Patch from an old base, on a field nobody touched: merged.
    let ops = JsonPatch::from_value(json!([{"op": "add", "path": "/c", "value": true}])).unwrap();
    let merged = write(&docs, "1", Change::JsonPatch(ops), base(2)).await.unwrap();
    assert_eq!(merged.merged_onto, Some(4));
    assert_eq!(merged.body.unwrap()["c"], json!(true));
    // The base is the current version: applied as is.
    let same = write(&docs, "1", Change::MergePatch(json!({"d": 1})), base(5))
        .await
        .unwrap();
    assert_eq!((same.version, same.merged_onto), (6, Some(5)));
    // A base from the future is stale.
    let c = conflict(
        write(&docs, "1", Change::MergePatch(json!({"d": 2})), base(9))
            .await
            .unwrap_err(),
    );
    assert_eq!(c.reason, ConflictReason::Stale);
}

#[tokio::test]
async fn every_precondition_form_is_checked() {
    let (_, docs) = service(&[], false).await;
    let created = write(&docs, "1", put(json!({"a": 1})), Preconditions::default())
        .await
        .unwrap();
    let t = created.modified_ms;
    let ok = |pre: Preconditions| {
        let docs = &docs;
        async move { write(docs, "1", Change::MergePatch(json!({"a": rand_n()})), pre).await }
    };
    // If-Match: a list holding the current version, and *.
    let w = ok(Preconditions {
        if_match: Some(IfMatch::Versions(vec![7, 1])),
        ..Preconditions::default()
    })
    .await
    .unwrap();
    assert_eq!(w.version, 2);
    ok(Preconditions {
        if_match: Some(IfMatch::Any),
        ..Preconditions::default()
    })
    .await
    .unwrap();
    // _version in the body.
    assert!(matches!(
        ok(Preconditions {
            body_version: Some(1),
            ..Preconditions::default()
        })
        .await,
        Err(DocumentError::Conflict(_))
    ));
    ok(Preconditions {
        body_version: Some(3),
        ..Preconditions::default()
    })
    .await
    .unwrap();
    // If-Unmodified-Since: a time at or after the last change passes, one before it fails.
    let last = docs.get("users", "1", None).await.unwrap().modified_ms;
    ok(Preconditions {
        if_unmodified_since_ms: Some(last),
        ..Preconditions::default()
    })
    .await
    .unwrap();
    let c = conflict(
        ok(Preconditions {
            if_unmodified_since_ms: Some(t - 1),
            ..Preconditions::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(c.expected, Expected::UnmodifiedSince(t - 1));
    // If-Match wins over If-Unmodified-Since (RFC 9110 section 13.2.2).
    ok(Preconditions {
        if_match: Some(IfMatch::Versions(vec![5])),
        if_unmodified_since_ms: Some(0),
        ..Preconditions::default()
    })
    .await
    .unwrap();
    // Contradictions are refused before anything is read.
    assert!(matches!(
        ok(Preconditions {
            if_match: Some(IfMatch::Versions(vec![6])),
            body_version: Some(5),
            ..Preconditions::default()
        })
        .await,
        Err(DocumentError::InvalidPreconditions { .. })
    ));
    assert!(matches!(
        ok(Preconditions {
            if_match: Some(IfMatch::Versions(vec![6])),
            merge_base: Some(6),
            ..Preconditions::default()
        })
        .await,
        Err(DocumentError::InvalidPreconditions { .. })
    ));
}

fn rand_n() -> u64 {
    rand::random::<u64>() >> 12
}

#[tokio::test]
async fn create_only_delete_and_tombstones() {
    let (store, docs) = service(&[], false).await;
    let create = Preconditions {
        if_none_match: true,
        ..Preconditions::default()
    };
    write(&docs, "1", put(json!({"a": 1})), create.clone()).await.unwrap();
    let c = conflict(
        write(&docs, "1", put(json!({"a": 2})), create.clone())
            .await
            .unwrap_err(),
    );
    assert_eq!((c.reason, c.expected), (ConflictReason::Exists, Expected::Absent));
    // If-Match on a document that never existed fails; _version 0 creates.
    let c = conflict(write(&docs, "2", put(json!({"a": 1})), if_match(1)).await.unwrap_err());
    assert_eq!(c.current_version, 0);
    write(
        &docs,
        "2",
        put(json!({"a": 1})),
        Preconditions {
            body_version: Some(0),
            ..Preconditions::default()
        },
    )
    .await
    .unwrap();
    // Delete, then every write but a create is told it was deleted.
    let deleted = write(&docs, "1", Change::Delete, if_match(1)).await.unwrap();
    assert_eq!((deleted.version, deleted.body), (2, None));
    for (change, pre) in [
        (put(json!({"a": 3})), Preconditions::default()),
        (Change::MergePatch(json!({"a": 3})), Preconditions::default()),
        (Change::Delete, if_match(2)),
    ] {
        assert!(matches!(
            write(&docs, "1", change, pre).await,
            Err(DocumentError::Deleted { version: 2, .. })
        ));
    }
    assert!(matches!(
        docs.get("users", "1", None).await,
        Err(DocumentError::Deleted { version: 2, .. })
    ));
    assert_eq!(
        docs.get("users", "1", Some(1)).await.unwrap().body,
        obj(json!({"a": 1}))
    );
    let again = write(&docs, "1", put(json!({"b": 1})), create).await.unwrap();
    assert_eq!((again.version, again.kind), (3, Some(ChangeKind::Created)));
    let history = docs.history("users", "1", 1, 10).await.unwrap();
    let kinds: Vec<_> = history.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [ChangeKind::Created, ChangeKind::Deleted, ChangeKind::Created]);
    assert_eq!(history.changes[1].changed, vec![String::new()]);
    // Absent documents cannot be patched or deleted.
    assert!(matches!(
        write(&docs, "9", Change::Delete, Preconditions::default()).await,
        Err(DocumentError::NotFound { .. })
    ));
    assert!(
        store
            .stream_version(&DocumentService::document_stream("users", "9").unwrap())
            .await
            .unwrap()
            == 0
    );
}

#[tokio::test]
async fn a_collection_that_requires_preconditions_refuses_writes_without() {
    let (_, docs) = service(&[], true).await;
    assert!(matches!(
        write(&docs, "1", put(json!({"a": 1})), Preconditions::default()).await,
        Err(DocumentError::PreconditionRequired { .. })
    ));
    let star = Preconditions {
        if_match: Some(IfMatch::Any),
        ..Preconditions::default()
    };
    assert!(matches!(
        write(&docs, "1", put(json!({"a": 1})), star).await,
        Err(DocumentError::PreconditionRequired { .. })
    ));
    let create = Preconditions {
        if_none_match: true,
        ..Preconditions::default()
    };
    write(&docs, "1", put(json!({"a": 1})), create).await.unwrap();
}

#[tokio::test]
async fn unique_values_are_claimed_released_and_compared_case_insensitively() {
    let (_, docs) = service(&["email"], false).await;
    write(&docs, "1", put(json!({"email": "Ada@x"})), Preconditions::default())
        .await
        .unwrap();
    match write(&docs, "2", put(json!({"email": "ada@X"})), Preconditions::default()).await {
        Err(DocumentError::UniqueViolation {
            field, value, holder, ..
        }) => {
            assert_eq!(
                (field.as_str(), value, holder.as_str()),
                ("/email", json!("ada@X"), "1")
            );
        }
        other => panic!("{other:?}"),
    }
    // The holder changes its value: the old one is free.
    write(
        &docs,
        "1",
        Change::MergePatch(json!({"email": "ada@y"})),
        Preconditions::default(),
    )
    .await
    .unwrap();
    write(&docs, "2", put(json!({"email": "ada@x"})), Preconditions::default())
        .await
        .unwrap();
    // A delete frees it too.
    write(&docs, "1", Change::Delete, Preconditions::default())
        .await
        .unwrap();
    write(&docs, "3", put(json!({"email": "ADA@Y"})), Preconditions::default())
        .await
        .unwrap();
    // An object where a unique value goes is refused.
    assert!(matches!(
        write(&docs, "4", put(json!({"email": {"a": 1}})), Preconditions::default()).await,
        Err(DocumentError::InvalidDocument { .. })
    ));
}

#[tokio::test]
async fn of_many_concurrent_claims_of_one_value_exactly_one_wins() {
    let (_, docs) = service(&["email"], false).await;
    let docs = Arc::new(docs);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let docs = docs.clone();
            tokio::spawn(async move {
                write(
                    &docs,
                    &format!("u{i}"),
                    put(json!({"email": "same@x", "i": i})),
                    Preconditions::default(),
                )
                .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut holders = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => winners.push(format!("u{i}")),
            Err(DocumentError::UniqueViolation { holder, .. }) => holders.push(holder),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(holders.len(), 31);
    assert!(holders.iter().all(|h| *h == winners[0]), "{holders:?}");
}

/// A log whose first `n` appends wait for each other, so `n` writers that
/// each loaded, decided and appended truly race at the append (a test
/// whose writers happen to run one after another proves nothing).
struct RacingStore {
    inner: MemoryStore,
    barrier: tokio::sync::Barrier,
    calls: std::sync::atomic::AtomicUsize,
    n: usize,
}

#[async_trait::async_trait]
impl EventStore for RacingStore {
    async fn append_multi(
        &self,
        appends: Vec<strata_store::StreamAppend>,
    ) -> Result<Vec<strata_store::AppendResult>, strata_store::StoreError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < self.n {
            self.barrier.wait().await;
        }
        self.inner.append_multi(appends).await
    }
    async fn read_stream(
        &self,
        stream: &strata_store::StreamId,
        from: u64,
        direction: strata_store::Direction,
        limit: usize,
    ) -> Result<Vec<strata_store::RecordedEvent>, strata_store::StoreError> {
        self.inner.read_stream(stream, from, direction, limit).await
    }
    async fn read_all(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<strata_store::RecordedEvent>, strata_store::StoreError> {
        self.inner.read_all(from, limit).await
    }
    async fn stream_version(&self, stream: &strata_store::StreamId) -> Result<u64, strata_store::StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn head_position(&self) -> Result<u64, strata_store::StoreError> {
        self.inner.head_position().await
    }
    fn subscribe_all(&self, after: u64) -> strata_store::EventSubscription {
        self.inner.subscribe_all(after)
    }
    fn subscribe_filtered(&self, after: u64, filter: strata_store::EventFilter) -> strata_store::FilteredSubscription {
        self.inner.subscribe_filtered(after, filter)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_that_race_at_the_append_claim_a_value_once() {
    let store = Arc::new(MemoryStore::new());
    let setup = DocumentService::new(store.clone());
    let spec = CollectionSpec {
        unique: vec![UniqueField::parse("email", false).unwrap()],
        require_precondition: false,
    };
    setup
        .declare("users", spec, None, None, 0, &Metadata::default())
        .await
        .unwrap();
    let n = 8;
    let racing = Arc::new(RacingStore {
        inner: (*store).clone(),
        barrier: tokio::sync::Barrier::new(n),
        calls: std::sync::atomic::AtomicUsize::new(0),
        n,
    });
    let docs = Arc::new(DocumentService::new(racing));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let docs = docs.clone();
            tokio::spawn(async move {
                write(
                    &docs,
                    &format!("r{i}"),
                    put(json!({"email": "same@x"})),
                    Preconditions::default(),
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(DocumentError::UniqueViolation { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1, "all {n} appended at once; the log let one through");
}

#[tokio::test]
async fn patches_that_do_not_apply_or_leave_no_object_are_refused() {
    let (_, docs) = service(&[], false).await;
    write(&docs, "1", put(json!({"a": 1})), Preconditions::default())
        .await
        .unwrap();
    let failing = JsonPatch::from_value(json!([{"op": "test", "path": "/a", "value": 2}])).unwrap();
    assert!(matches!(
        write(&docs, "1", Change::JsonPatch(failing), Preconditions::default()).await,
        Err(DocumentError::PatchFailed { .. })
    ));
    assert!(matches!(
        write(&docs, "1", Change::MergePatch(json!([1])), Preconditions::default()).await,
        Err(DocumentError::InvalidDocument { .. })
    ));
    let version = JsonPatch::from_value(json!([{"op": "add", "path": "/_version", "value": 3}])).unwrap();
    assert!(matches!(
        write(&docs, "1", Change::JsonPatch(version), Preconditions::default()).await,
        Err(DocumentError::InvalidDocument { .. })
    ));
    assert_eq!(
        docs.get("users", "1", None).await.unwrap().version,
        1,
        "nothing written"
    );
}
