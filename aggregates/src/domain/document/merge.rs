//! Conflicts and merges: what changed since the version a write started
//! from, which of its fields overlap, and the document a merge produces.

use serde_json::{Map, Value};
use strata_store::{Direction, StreamId};

use crate::domain::document::doc::{DocumentCommand, DocumentStatus};
use crate::domain::document::error::{ChangeRecord, ConflictReason, DocumentConflict, DocumentError, Expected};
use crate::domain::document::fields::{apply_changes, changes, overlapping};
use crate::domain::document::patch::merge_patch;
use crate::domain::document::request::{Change, WriteRequest};
use crate::domain::document::service::{
    Decision, DocumentService, LoadedDoc, change_record, decided, decode_doc, kind_of, valid_body,
};

impl DocumentService {
    /// A write with merge base `base` onto the document at a later version:
    /// its changes (from the document at `base`) carried onto the current
    /// document when none of them overlaps a change made since.
    pub(super) async fn merge(
        &self,
        request: &WriteRequest,
        stream: &StreamId,
        current: &LoadedDoc,
        base: u64,
    ) -> Result<Option<Decision>, DocumentError> {
        let analysis = self.analyse(request, stream, current, Some(base)).await?;
        let overlap = |fields: Option<Vec<String>>, analysis: Analysis| {
            self.conflict_from(
                ConflictReason::Overlap,
                Expected::Versions(vec![base]),
                request,
                current,
                analysis,
                fields,
            )
        };
        let (Some(conflicting), Some(merged)) = (analysis.conflicting.clone(), analysis.merged.clone()) else {
            let fields = analysis.conflicting.clone();
            return Err(overlap(fields, analysis));
        };
        if !conflicting.is_empty() {
            return Err(overlap(Some(conflicting), analysis));
        }
        let state = &current.state;
        let (actor, at_ms) = (request.actor.clone(), request.at_ms);
        let command = match &request.change {
            Change::Put(_) => DocumentCommand::Put {
                body: valid_body(merged)?,
                actor,
                at_ms,
                merge_base: Some(base),
            },
            Change::MergePatch(_) | Change::JsonPatch(_) => DocumentCommand::Patch {
                body: valid_body(merged)?,
                actor,
                at_ms,
                merge_base: Some(base),
            },
            Change::Delete => DocumentCommand::Delete { actor, at_ms },
        };
        decided(state, command, Some(current.version)).map_err(|r| self.refusal(request, current, r))
    }

    /// The request's change applied to `body` (a patch), as an object.
    pub(super) fn patched(
        &self,
        request: &WriteRequest,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>, DocumentError> {
        let doc = Value::Object(body.clone());
        let out = match &request.change {
            Change::Put(b) => Value::Object(b.clone()),
            Change::MergePatch(p) => merge_patch(&doc, p),
            Change::JsonPatch(p) => p.apply(&doc).map_err(|failure| DocumentError::PatchFailed {
                collection: request.collection.clone(),
                id: request.id.clone(),
                failure,
            })?,
            Change::Delete => Value::Object(Map::new()),
        };
        match out {
            Value::Object(m) => Ok(m),
            other => Err(DocumentError::InvalidDocument {
                reason: format!("a document is a JSON object; the patch makes it {}", kind_of(&other)),
            }),
        }
    }

    /// What a conflict or a merge needs: the changes since `base`, the
    /// fields the request changes from the document at `base`, those that
    /// overlap, and the merged document when none does.
    pub(super) async fn analyse(
        &self,
        request: &WriteRequest,
        stream: &StreamId,
        current: &LoadedDoc,
        base: Option<u64>,
    ) -> Result<Analysis, DocumentError> {
        let v = current.version;
        let mut analysis = Analysis::default();
        let Some(base) = base.filter(|b| *b <= v) else {
            return Ok(analysis);
        };
        let missing = v - base;
        let take = usize::try_from(missing)
            .unwrap_or(usize::MAX)
            .min(self.conflict_event_limit);
        let since = if take == 0 {
            Vec::new()
        } else {
            self.store
                .read_stream(stream, base + 1, Direction::Forward, take)
                .await?
        };
        for r in &since {
            analysis.changes.push(change_record(r, &decode_doc(r)?)?);
        }
        analysis.complete = analysis.changes.len() as u64 == missing;
        if !analysis.complete || current.state.status() != DocumentStatus::Live {
            return Ok(analysis);
        }
        let base_body = if base == 0 {
            Some(Map::new())
        } else {
            self.read_at(stream, base).await?.and_then(|e| e.body().cloned())
        };
        let Some(base_body) = base_body else {
            return Ok(analysis);
        };
        let ours = match &request.change {
            Change::Delete => None,
            _ => match self.patched(request, &base_body) {
                Ok(new) => Some(changes(&base_body, &new)),
                Err(_) => return Ok(analysis),
            },
        };
        let our_fields: Vec<String> = match &ours {
            Some(c) => c.iter().map(|c| c.pointer.clone()).collect(),
            None => vec![String::new()],
        };
        let theirs: Vec<String> = analysis
            .changes
            .iter()
            .flat_map(|c| c.changed.iter().cloned())
            .collect();
        let conflicting = overlapping(&our_fields, &theirs);
        if conflicting.is_empty() {
            analysis.merged = match &ours {
                Some(c) => apply_changes(current.state.body(), c),
                None => Some(Map::new()),
            };
            if analysis.merged.is_none() {
                return Ok(analysis);
            }
        }
        analysis.conflicting = Some(conflicting);
        Ok(analysis)
    }

    pub(super) async fn conflict(
        &self,
        reason: ConflictReason,
        expected: Expected,
        base: Option<u64>,
        request: &WriteRequest,
        stream: &StreamId,
        current: &LoadedDoc,
    ) -> DocumentError {
        match self.analyse(request, stream, current, base).await {
            Ok(analysis) => {
                let fields = analysis.conflicting.clone();
                self.conflict_from(reason, expected, request, current, analysis, fields)
            }
            Err(e) => e,
        }
    }

    pub(super) fn conflict_from(
        &self,
        reason: ConflictReason,
        expected: Expected,
        request: &WriteRequest,
        current: &LoadedDoc,
        analysis: Analysis,
        conflicting_fields: Option<Vec<String>>,
    ) -> DocumentError {
        let live = current.state.status() == DocumentStatus::Live;
        let merged = analysis
            .merged
            .filter(|_| conflicting_fields.as_ref().is_some_and(Vec::is_empty) && live);
        DocumentError::Conflict(Box::new(DocumentConflict {
            reason,
            collection: request.collection.clone(),
            id: request.id.clone(),
            expected,
            current_version: current.version,
            current: live.then(|| current.state.body().clone()),
            modified_ms: current.state.modified_ms(),
            changes_since: analysis.changes,
            changes_since_complete: analysis.complete,
            conflicting_fields,
            merged,
        }))
    }

    /// The newest version (at most `current`) whose change is not after
    /// `t`, looking back at most the conflict event limit; `None` beyond.
    pub(super) async fn version_at(
        &self,
        stream: &StreamId,
        t: u64,
        current: u64,
    ) -> Result<Option<u64>, DocumentError> {
        let recent = self
            .store
            .read_stream(stream, current, Direction::Backward, self.conflict_event_limit)
            .await?;
        for r in &recent {
            if decode_doc(r)?.at_ms() <= t {
                return Ok(Some(r.version));
            }
        }
        Ok((recent.len() as u64 == current).then_some(0))
    }
}

#[derive(Default)]
pub(super) struct Analysis {
    changes: Vec<ChangeRecord>,
    complete: bool,
    conflicting: Option<Vec<String>>,
    merged: Option<Map<String, Value>>,
}
