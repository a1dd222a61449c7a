//! How domain events become store events and back.
//!
//! A domain event is a serde enum. Its payload is the whole enum encoded with
//! bincode 2 (the default) or JSON; the store event's type is
//! [`DomainEvent::event_type`], and two metadata entries record the format
//! and the shape version, so any reader (a projection, the HTTP API) can
//! decode an event whatever format its writer chose.
//!
//! With bincode, enum variants are identified by their index: add variants at
//! the end, never reorder or remove them; change a variant's fields by
//! raising [`DomainEvent::event_version`] and upcasting the old shape.

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_store::{
    Classify, ErrorKind, EventId, Metadata, NewEvent, RecordedEvent, StoreError, from_bincode, to_bincode,
};

/// The metadata key that records a payload's [`Format`].
pub const FORMAT_KEY: &str = "strata.format";
/// The metadata key that records the event's shape version.
pub const EVENT_VERSION_KEY: &str = "strata.event_version";

/// A payload encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Format {
    /// bincode 2, standard configuration (the default: compact and fast).
    #[default]
    Bincode,
    /// JSON (human readable; what the HTTP API shows as is).
    Json,
}

impl Format {
    /// The name stored under [`FORMAT_KEY`].
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Bincode => "bincode",
            Format::Json => "json",
        }
    }

    /// Parses a name stored under [`FORMAT_KEY`].
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "bincode" => Some(Format::Bincode),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// An event of an aggregate: a serde type that names itself and the version
/// of its shape.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// The type name stored with the event, e.g. `OrderPlaced`.
    fn event_type(&self) -> &'static str;

    /// The version of this event's current shape (default 1). Raise it when a
    /// variant's fields change, and turn the older shape into the new one in
    /// [`DomainEvent::upcast`].
    fn event_version(&self) -> u32 {
        1
    }

    /// Turns an event stored with an older shape (`stored.version()` below the
    /// current one) into the current shape. The default knows no older shape.
    fn upcast(stored: &StoredShape<'_>) -> Result<Self, CodecError> {
        Err(CodecError::UnknownVersion {
            event_type: stored.event_type().to_string(),
            version: stored.version(),
        })
    }
}

/// An event as stored, before it is decoded: what an upcaster reads.
#[derive(Clone, Copy, Debug)]
pub struct StoredShape<'a> {
    event_type: &'a str,
    version: u32,
    format: Format,
    payload: &'a [u8],
}

impl<'a> StoredShape<'a> {
    /// The stored type name.
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The shape version it was stored with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The payload's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Decodes the payload as `T` (typically the old shape of the event).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        match self.format {
            Format::Bincode => {
                from_bincode(self.payload, || format!("{} payload", self.event_type)).map_err(|e| CodecError::Payload {
                    event_type: self.event_type.to_string(),
                    detail: e.to_string(),
                })
            }
            Format::Json => serde_json::from_slice(self.payload).map_err(|e| CodecError::Payload {
                event_type: self.event_type.to_string(),
                detail: e.to_string(),
            }),
        }
    }
}

/// A domain event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload does not decode as the expected shape.
    ///
    /// Handling: the stream holds an event this code does not understand.
    /// Kind: [`ErrorKind::Corrupt`].
    #[error("cannot decode {event_type} payload: {detail}")]
    Payload {
        /// The stored type name.
        event_type: String,
        /// The decoder's message.
        detail: String,
    },
    /// The event was stored with a shape version this code has no upcaster for.
    ///
    /// Handling: add an upcaster, or run the code version that wrote it.
    /// Kind: [`ErrorKind::Incompatible`].
    #[error("no upcaster for {event_type} version {version}")]
    UnknownVersion {
        /// The stored type name.
        event_type: String,
        /// The stored shape version.
        version: u32,
    },
    /// The metadata names a format or version this code cannot read.
    ///
    /// Handling: the event was written by other software. Kind:
    /// [`ErrorKind::Incompatible`].
    #[error("event {event_id} has unreadable codec metadata: {detail}")]
    Metadata {
        /// The event.
        event_id: EventId,
        /// What is wrong.
        detail: String,
    },
    /// Encoding failed.
    ///
    /// Handling: a bug in the event type. Kind: [`ErrorKind::Internal`].
    #[error("cannot encode event: {0}")]
    Encode(#[source] StoreError),
}

impl CodecError {
    /// What kind of failure this is: a payload that does not decode is
    /// [`ErrorKind::Corrupt`]; a shape version without an upcaster or
    /// metadata of an unknown format is [`ErrorKind::Incompatible`] (other
    /// software, or another version, wrote it); an event that cannot be
    /// encoded is [`ErrorKind::Internal`] (a bug in the event type).
    pub fn kind(&self) -> ErrorKind {
        match self {
            CodecError::Payload { .. } => ErrorKind::Corrupt,
            CodecError::UnknownVersion { .. } | CodecError::Metadata { .. } => ErrorKind::Incompatible,
            CodecError::Encode(_) => ErrorKind::Internal,
        }
    }
}

impl Classify for CodecError {
    fn kind(&self) -> ErrorKind {
        CodecError::kind(self)
    }
}

/// Encodes a domain event as a store event with a fresh id.
pub fn encode<E: DomainEvent>(event: &E, format: Format) -> Result<NewEvent, CodecError> {
    let payload = match format {
        Format::Bincode => to_bincode(event).map_err(CodecError::Encode)?,
        Format::Json => serde_json::to_vec(event).map_err(|e| {
            // e.g. a map with non-string keys: JSON cannot say it.
            CodecError::Encode(StoreError::Corrupt {
                location: format!("{} being encoded as JSON", event.event_type()),
                detail: e.to_string(),
            })
        })?,
    };
    let mut metadata = Metadata::default();
    metadata
        .extra
        .insert(FORMAT_KEY.to_string(), format.as_str().to_string());
    metadata
        .extra
        .insert(EVENT_VERSION_KEY.to_string(), event.event_version().to_string());
    Ok(NewEvent::new(event.event_type(), payload).with_metadata(metadata))
}

/// [`encode`], with `metadata`'s correlation and causation ids and its extra
/// values added (the codec's own entries win).
pub(crate) fn encode_with<E: DomainEvent>(
    event: &E,
    format: Format,
    metadata: &Metadata,
) -> Result<NewEvent, CodecError> {
    let mut new = encode(event, format)?;
    new.metadata.correlation_id.clone_from(&metadata.correlation_id);
    new.metadata.causation_id.clone_from(&metadata.causation_id);
    for (k, v) in &metadata.extra {
        new.metadata.extra.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(new)
}

/// Decodes a stored event as `E`, upcasting older shapes. Events with no
/// codec metadata are read as JSON, version 1 (as written by hand through the
/// HTTP log API).
pub fn decode<E: DomainEvent>(recorded: &RecordedEvent) -> Result<E, CodecError> {
    let extra = &recorded.metadata.extra;
    let format = match extra.get(FORMAT_KEY) {
        None => Format::Json,
        Some(f) => Format::parse(f).ok_or_else(|| CodecError::Metadata {
            event_id: recorded.id,
            detail: format!("unknown format {f:?}"),
        })?,
    };
    let version = match extra.get(EVENT_VERSION_KEY) {
        None => 1,
        Some(v) => v.parse().map_err(|_| CodecError::Metadata {
            event_id: recorded.id,
            detail: format!("invalid event version {v:?}"),
        })?,
    };
    let shape = StoredShape {
        event_type: &recorded.event_type,
        version,
        format,
        payload: &recorded.payload,
    };
    let event: E = match shape.decode::<E>() {
        Ok(e) if e.event_version() == version => return Ok(e),
        Ok(e) if e.event_version() < version => {
            return Err(CodecError::UnknownVersion {
                event_type: recorded.event_type.clone(),
                version,
            });
        }
        Ok(_) | Err(_) => E::upcast(&shape)?,
    };
    Ok(event)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    /// An event JSON cannot represent: a map with tuple keys.
    #[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
    struct TupleKeys(BTreeMap<(u8, u8), u8>);

    impl DomainEvent for TupleKeys {
        fn event_type(&self) -> &'static str {
            "TupleKeys"
        }
    }

    #[test]
    fn an_event_json_cannot_hold_is_an_encode_error_not_a_panic() {
        let event = TupleKeys(BTreeMap::from([((1, 2), 3)]));
        assert!(matches!(encode(&event, Format::Json), Err(CodecError::Encode(_))));
        let stored = encode(&event, Format::Bincode).unwrap();
        assert_eq!(stored.metadata.extra[FORMAT_KEY], "bincode");
    }
}
