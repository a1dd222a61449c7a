//! One error of every variant of [`StoreError`], for tests of a mapping of
//! errors (strata-http's): adding a variant fails to compile here until it
//! has an example (see [`one_of_each!`](crate::one_of_each)). Not part of
//! the stable API.

use crate::error::StoreError;
use crate::kind::Example;
use crate::types::{EventId, ExpectedVersion, StreamId};

impl StoreError {
    /// One error of every variant (those of the enabled features), for
    /// tests of a mapping of store errors: adding a variant fails to compile
    /// here until it has an example. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples() -> Vec<Example<StoreError>> {
        let stream = || StreamId::new("account-7").expect("a valid stream id");
        let event_id = EventId::from_uuid(uuid::Uuid::from_u128(7));
        crate::one_of_each!(StoreError;
            WrongExpectedVersion => StoreError::WrongExpectedVersion {
                stream: stream(),
                expected: ExpectedVersion::Exact(2),
                actual: 3,
            },
            StreamDeleted => StoreError::StreamDeleted { stream: stream() },
            InvalidStreamOperation => StoreError::InvalidStreamOperation {
                stream: stream(),
                reason: "max_count must be at least 1".into(),
            },
            InvalidStreamId => StoreError::InvalidStreamId {
                stream: String::new(),
                reason: "must not be empty",
            },
            InvalidFilter => StoreError::InvalidFilter {
                reason: "category \"a-b\" must not contain `-`".into(),
            },
            EmptyAppend => StoreError::EmptyAppend { stream: stream() },
            TooManyEvents => StoreError::TooManyEvents {
                stream: stream(),
                count: 11,
                limit: 10,
            },
            AppendTooLarge => StoreError::AppendTooLarge { size: 2048, limit: 1024 },
            PayloadTooLarge => StoreError::PayloadTooLarge {
                stream: stream(),
                event_id,
                size: 2048,
                limit: 1024,
            },
            MetadataTooLarge => StoreError::MetadataTooLarge {
                stream: stream(),
                event_id,
                size: 2048,
                limit: 1024,
            },
            InvalidEventType => StoreError::InvalidEventType {
                stream: stream(),
                event_id,
                reason: "must not be empty".into(),
            },
            DuplicateEventId => StoreError::DuplicateEventId {
                stream: stream(),
                event_id,
                existing_version: Some(1),
            },
            DuplicateStream => StoreError::DuplicateStream { stream: stream() },
            Corrupt => StoreError::Corrupt {
                location: "event at position 42".into(),
                detail: "checksum mismatch".into(),
            },
            Locked => StoreError::Locked { path: "/data/strata".into() },
            IncompatibleFormat => StoreError::IncompatibleFormat {
                path: "/data/strata".into(),
                found: "9".into(),
                expected: "1".into(),
            },
            UnsupportedLayout => StoreError::UnsupportedLayout {
                path: "/data/strata".into(),
                layout: crate::DataLayout::Sled,
            },
            InvalidLimits => StoreError::InvalidLimits {
                reason: "max_events_per_append is 0".into(),
            },
            Unavailable => StoreError::Unavailable {
                reason: "the store is closed".into(),
            },
            Io => StoreError::Io {
                context: "fsyncing the log".into(),
                source: std::io::Error::other("disk full"),
            },
            Sled => StoreError::Sled(sled::Error::Unsupported("an example".into())),
            OutOfRange => StoreError::OutOfRange {
                what: "event position".into(),
                value: u64::MAX,
                max: i64::MAX as u64,
            },
            InvalidTableName => StoreError::InvalidTableName {
                name: "strata-log".into(),
                reason: "names starting with `strata-` are the log's",
            },
            #[cfg(feature = "postgres")]
            Postgres => StoreError::Postgres {
                context: "appending".into(),
                // A real driver error without a server: a configuration that does not parse.
                source: std::sync::Arc::new(
                    "port=none"
                        .parse::<tokio_postgres::Config>()
                        .expect_err("not a port"),
                ),
            },
            #[cfg(feature = "postgres")]
            IncompatibleSchema => StoreError::IncompatibleSchema {
                schema: "strata".into(),
                found: 9,
                supported: 1,
            },
        )
    }
}
