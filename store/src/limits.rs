//! Size limits of an append, and their validation.

use std::collections::HashSet;

use crate::codec::MAX_RECORD_BYTES;
use crate::error::StoreError;
use crate::types::StreamAppend;

/// Limits on what one append may carry. Exceeding any of them is an error
/// with its own variant, and nothing is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limits {
    /// Largest payload of one event (default 1 MiB).
    pub max_payload_bytes: usize,
    /// Most events in one append, counted over all streams of an
    /// `append_multi` (default 10,000).
    pub max_events_per_append: usize,
    /// Longest event type, in bytes (default 256; at most 65,534 on every
    /// backend, what the embedded log's record format holds, so that a log
    /// can move between backends).
    pub max_event_type_bytes: usize,
    /// Largest metadata of one event, as counted by [`crate::Metadata::size`] (default 64 KiB).
    pub max_metadata_bytes: usize,
    /// Largest total of payload and metadata bytes in one append (default 64 MiB).
    pub max_append_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_events_per_append: 10_000,
            max_event_type_bytes: 256,
            max_metadata_bytes: 64 * 1024,
            max_append_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Checks that every limit is positive and that one event at the limits
    /// fits in what the store's decoder accepts.
    pub fn validate(&self) -> Result<(), StoreError> {
        let fields = [
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_events_per_append", self.max_events_per_append),
            ("max_event_type_bytes", self.max_event_type_bytes),
            ("max_metadata_bytes", self.max_metadata_bytes),
            ("max_append_bytes", self.max_append_bytes),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| *v == 0) {
            return Err(StoreError::InvalidLimits {
                reason: format!("{name} must be positive"),
            });
        }
        if self.max_event_type_bytes > crate::segment::MAX_EVENT_TYPE_BYTES {
            return Err(StoreError::InvalidLimits {
                reason: format!(
                    "max_event_type_bytes is {}; event types are at most {} bytes on every backend (the embedded log's record format)",
                    self.max_event_type_bytes,
                    crate::segment::MAX_EVENT_TYPE_BYTES
                ),
            });
        }
        // stream id + type + metadata + payload + framing must decode.
        let record = self.max_payload_bytes + self.max_metadata_bytes + self.max_event_type_bytes + 4096;
        if record > MAX_RECORD_BYTES {
            return Err(StoreError::InvalidLimits {
                reason: format!(
                    "one event at the limits takes {record} bytes; the store decodes at most {MAX_RECORD_BYTES}"
                ),
            });
        }
        Ok(())
    }

    /// Checks one append (one or several streams) against the limits and the
    /// rules every backend shares: no empty stream part, no stream twice, no
    /// event id twice within a stream's part, valid event types.
    pub(crate) fn check(&self, appends: &[StreamAppend]) -> Result<(), StoreError> {
        let mut streams = HashSet::with_capacity(appends.len());
        let mut total_events = 0usize;
        let mut total_bytes = 0usize;
        for append in appends {
            let stream = &append.stream;
            if !streams.insert(stream) {
                return Err(StoreError::DuplicateStream { stream: stream.clone() });
            }
            if append.events.is_empty() {
                return Err(StoreError::EmptyAppend { stream: stream.clone() });
            }
            total_events += append.events.len();
            if total_events > self.max_events_per_append {
                return Err(StoreError::TooManyEvents {
                    stream: stream.clone(),
                    count: total_events,
                    limit: self.max_events_per_append,
                });
            }
            let mut ids = HashSet::with_capacity(append.events.len());
            for event in &append.events {
                if event.payload.len() > self.max_payload_bytes {
                    return Err(StoreError::PayloadTooLarge {
                        stream: stream.clone(),
                        event_id: event.id,
                        size: event.payload.len(),
                        limit: self.max_payload_bytes,
                    });
                }
                let meta = event.metadata.size();
                if meta > self.max_metadata_bytes {
                    return Err(StoreError::MetadataTooLarge {
                        stream: stream.clone(),
                        event_id: event.id,
                        size: meta,
                        limit: self.max_metadata_bytes,
                    });
                }
                let ty = &event.event_type;
                let bad_type = if ty.is_empty() {
                    Some("must not be empty".to_string())
                } else if ty.len() > self.max_event_type_bytes {
                    Some(format!(
                        "{} bytes, more than the limit of {}",
                        ty.len(),
                        self.max_event_type_bytes
                    ))
                } else if ty.chars().any(char::is_control) {
                    Some("must not contain control characters".to_string())
                } else {
                    None
                };
                if let Some(reason) = bad_type {
                    return Err(StoreError::InvalidEventType {
                        stream: stream.clone(),
                        event_id: event.id,
                        reason,
                    });
                }
                if !ids.insert(event.id) {
                    return Err(StoreError::DuplicateEventId {
                        stream: stream.clone(),
                        event_id: event.id,
                        existing_version: None,
                    });
                }
                total_bytes += event.payload.len() + meta;
            }
        }
        if total_bytes > self.max_append_bytes {
            return Err(StoreError::AppendTooLarge {
                size: total_bytes,
                limit: self.max_append_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_longer_than_the_record_format_holds_are_refused() {
        let at_most = Limits {
            max_event_type_bytes: crate::segment::MAX_EVENT_TYPE_BYTES,
            ..Limits::default()
        };
        assert!(at_most.validate().is_ok());
        let over = Limits {
            max_event_type_bytes: crate::segment::MAX_EVENT_TYPE_BYTES + 1,
            ..Limits::default()
        };
        let err = over.validate().unwrap_err().to_string();
        assert!(err.contains("event types are at most 65534 bytes"), "{err}");
    }
}
