//! The unique values a write takes and gives up: the appends to their
//! streams that go into the write's own atomic append.

use futures::future::try_join_all;
use strata_store::{Direction, ExpectedVersion, Metadata, StoreError, StreamAppend, StreamId};

use crate::aggregate::Aggregate;
use crate::codec::decode;
use crate::domain::document::collection::CollectionSpec;
use crate::domain::document::doc::{Document, DocumentStatus};
use crate::domain::document::error::DocumentError;
use crate::domain::document::fields::get;
use crate::domain::document::request::WriteRequest;
use crate::domain::document::service::DocumentService;
use crate::domain::document::unique::{UniqueCommand, UniqueRefusal, UniqueValue, unique_id, unique_key};
use crate::repository::Repository;

impl DocumentService {
    /// The appends to the unique values' streams that take the document
    /// from `before` to `after`: a release of each value it gives up, a
    /// claim of each it takes (a unique violation when another holds it).
    pub(super) async fn unique_appends(
        &self,
        request: &WriteRequest,
        spec: &CollectionSpec,
        before: &Document,
        after: &Document,
        metadata: &Metadata,
    ) -> Result<Vec<StreamAppend>, DocumentError> {
        let mut commands = Vec::new();
        for field in &spec.unique {
            let old = (before.status() == DocumentStatus::Live)
                .then(|| get(before.body(), &field.field))
                .flatten();
            let new = (after.status() == DocumentStatus::Live)
                .then(|| get(after.body(), &field.field))
                .flatten();
            // A stored value always has a valid key; a new one may not.
            let old_key = unique_key(field, old).ok().flatten();
            let new_key = unique_key(field, new).map_err(|reason| DocumentError::InvalidDocument { reason })?;
            if old_key == new_key {
                continue;
            }
            if let Some(key) = old_key {
                commands.push((
                    unique_id(&request.collection, field, &key),
                    UniqueCommand::Release {
                        holder: request.id.clone(),
                    },
                ));
            }
            if let (Some(key), Some(value)) = (new_key, new) {
                commands.push((
                    unique_id(&request.collection, field, &key),
                    UniqueCommand::Claim {
                        collection: request.collection.clone(),
                        field: field.field.clone(),
                        value: value.clone(),
                        holder: request.id.clone(),
                    },
                ));
            }
        }
        let loaded = try_join_all(commands.iter().map(|(id, _)| self.load_unique(id))).await?;
        let mut appends = Vec::new();
        for ((_, command), (stream, value, version)) in commands.iter().zip(loaded) {
            let events = value.handle(command).map_err(|refusal| match (refusal, command) {
                (UniqueRefusal::Held { holder }, UniqueCommand::Claim { field, value, .. }) => {
                    DocumentError::UniqueViolation {
                        collection: request.collection.clone(),
                        field: field.clone(),
                        value: value.clone(),
                        holder,
                    }
                }
                (UniqueRefusal::Held { holder }, UniqueCommand::Release { .. }) => {
                    DocumentError::Store(StoreError::Corrupt {
                        location: format!("stream {stream}"),
                        detail: format!("a release refused: held by {holder}"),
                    })
                }
            })?;
            if events.is_empty() {
                continue;
            }
            let encoded = events
                .iter()
                .map(|e| self.encode(&stream, e, metadata))
                .collect::<Result<Vec<_>, _>>()?;
            appends.push(StreamAppend::new(
                stream,
                ExpectedVersion::Exact(version).normalized(),
                encoded,
            ));
        }
        Ok(appends)
    }

    async fn load_unique(&self, id: &str) -> Result<(StreamId, UniqueValue, u64), DocumentError> {
        let stream = Repository::<UniqueValue>::stream_id(id)?;
        let (value, version) = self.unique_at(&stream).await?;
        Ok((stream, value, version))
    }

    /// A unique value as its stream's last event leaves it, and that
    /// event's version (0 when the stream reads as empty).
    pub(super) async fn unique_at(&self, stream: &StreamId) -> Result<(UniqueValue, u64), DocumentError> {
        let last = self.store.read_stream(stream, u64::MAX, Direction::Backward, 1).await?;
        let mut value = UniqueValue::default();
        let mut version = 0;
        if let Some(r) = last.first() {
            let event = decode(r).map_err(|source| DocumentError::Decode {
                stream: stream.clone(),
                version: r.version,
                source,
            })?;
            value.apply(&event);
            version = r.version;
        }
        Ok((value, version))
    }
}
