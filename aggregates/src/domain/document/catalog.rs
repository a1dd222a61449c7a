//! Collections as the document service keeps them: declared in the log,
//! read through a cache checked against the stream's version.

use strata_store::Metadata;

use crate::domain::document::collection::{CollectionCommand, CollectionSpec};
use crate::domain::document::error::DocumentError;
use crate::domain::document::request::{ACTOR_KEY, CollectionInfo, CollectionWrite};
use crate::domain::document::service::{DocumentService, check_collection, collection_refusal, repository_error};
use crate::error::RepositoryError;

impl DocumentService {
    /// Declares collection `name` (or changes whether its writes need a
    /// precondition; its unique fields are fixed). `expected` is the
    /// collection's version the caller read (`Some(0)`: it must not exist).
    pub async fn declare(
        &self,
        name: &str,
        spec: CollectionSpec,
        expected: Option<u64>,
        actor: Option<String>,
        at_ms: u64,
        metadata: &Metadata,
    ) -> Result<CollectionWrite, DocumentError> {
        check_collection(name)?;
        let command = CollectionCommand::Declare {
            name: name.to_string(),
            spec,
            actor: actor.clone(),
            at_ms,
        };
        let mut metadata = metadata.clone();
        if let Some(actor) = actor {
            metadata.extra.insert(ACTOR_KEY.into(), actor);
        }
        let done = self
            .collections
            .execute_with(name, &command, expected, &metadata)
            .await
            .map_err(|e| match e {
                RepositoryError::Conflict(c) => DocumentError::CollectionStale {
                    collection: name.to_string(),
                    expected: c.expected,
                    current_version: c.current,
                    current: c.state.spec().cloned(),
                },
                RepositoryError::Rejected(refusal) => collection_refusal(name, refusal),
                other => repository_error(other),
            })?;
        let spec = done.state.spec().cloned().unwrap_or_default();
        let info = CollectionInfo {
            spec,
            version: done.version,
        };
        self.cache_put(name, &info);
        Ok(CollectionWrite {
            created: done.version == 1 && done.append.is_some(),
            position: done.append.map(|a| a.last_position),
            info,
        })
    }

    /// Collection `name` as declared, `None` when it is not. A cached
    /// declaration is used while the collection's stream has not moved
    /// (one version look-up), so every process sees a change at once.
    pub async fn collection(&self, name: &str) -> Result<Option<CollectionInfo>, DocumentError> {
        let stream = Self::collection_stream(name)?;
        let version = self.store.stream_version(&stream).await?;
        if version == 0 {
            return Ok(None);
        }
        if let Some(info) = self.cache.lock().expect("cache lock").get(name)
            && info.version == version
        {
            return Ok(Some(info.clone()));
        }
        let loaded = self.collections.load(name).await.map_err(repository_error)?;
        let Some(spec) = loaded.state.spec() else {
            return Ok(None);
        };
        let info = CollectionInfo {
            spec: spec.clone(),
            version: loaded.version,
        };
        self.cache_put(name, &info);
        Ok(Some(info))
    }

    fn cache_put(&self, name: &str, info: &CollectionInfo) {
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.get(name).is_none_or(|c| c.version < info.version) {
            cache.insert(name.to_string(), info.clone());
        }
    }

    pub(super) async fn declared(&self, collection: &str) -> Result<CollectionInfo, DocumentError> {
        self.collection(collection)
            .await?
            .ok_or_else(|| DocumentError::CollectionNotDeclared {
                collection: collection.to_string(),
            })
    }
}
