//! One error of every variant of [`ProjectionError`], for tests of a
//! mapping of errors (strata-http's): adding a variant fails to compile
//! here until it has an example (see `strata_store::one_of_each!`). Not
//! part of the stable API.

use std::time::Duration;

use strata_aggregates::CodecError;
use strata_store::{EventId, Example, StoreError, StreamId, one_of_each};

use crate::error::ProjectionError;

impl ProjectionError {
    /// One error of every variant. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples() -> Vec<Example<ProjectionError>> {
        let projection = || "order_summary".to_string();
        let stream = || StreamId::new("order-o-1").expect("a valid stream id");
        let decode = || ProjectionError::Decode {
            stream: stream(),
            event_type: "OrderPlaced".into(),
            source: CodecError::Payload {
                event_type: "OrderPlaced".into(),
                detail: "unexpected end of input".into(),
            },
        };
        let unavailable = || StoreError::Unavailable {
            reason: "the store is closed".into(),
        };
        let event_id = |n: u128| EventId::from_uuid(uuid::Uuid::from_u128(n));
        one_of_each!(ProjectionError;
            Apply => ProjectionError::Apply {
                projection: projection(),
                position: 42,
                stream: stream(),
                event_type: "OrderPlaced".into(),
                source: Box::new(decode()),
            },
            Decode => decode(),
            Inconsistent => ProjectionError::Inconsistent {
                stream: stream(),
                event_type: "OrderPaid".into(),
                reason: "the order was never placed".into(),
            },
            Store => ProjectionError::Store {
                projection: projection(),
                source: unavailable(),
            },
            Storage => ProjectionError::Storage {
                projection: projection(),
                source: sled::Error::Unsupported("an example".into()),
            },
            Database => ProjectionError::Database {
                projection: projection(),
                source: unavailable(),
            },
            Corrupt => ProjectionError::Corrupt {
                projection: projection(),
                key: "o\u{0}o-1".into(),
                detail: "truncated value".into(),
            },
            CheckpointAhead => ProjectionError::CheckpointAhead {
                projection: projection(),
                checkpoint: 9,
                head: 7,
            },
            CheckpointMismatch => ProjectionError::CheckpointMismatch {
                projection: projection(),
                checkpoint: 9,
                expected: event_id(1),
                found: Some(event_id(2)),
            },
            ModelVersionMismatch => ProjectionError::ModelVersionMismatch {
                projection: projection(),
                stored: 0,
                expected: 1,
            },
            InvalidCursor => ProjectionError::InvalidCursor {
                cursor: "x".into(),
                expected: "an order id",
            },
            OutOfOrder => ProjectionError::OutOfOrder {
                projection: projection(),
                expected: 8,
                got: 7,
            },
            Timeout => ProjectionError::Timeout {
                projection: projection(),
                position: 9,
                applied: 3,
                timeout: Duration::from_millis(5),
            },
            NotRunning => ProjectionError::NotRunning {
                projection: projection(),
                position: 9,
                applied: 3,
                failure: None,
            },
            AlreadyRunning => ProjectionError::AlreadyRunning { projection: projection() },
            InvalidName => ProjectionError::InvalidName { name: "a b".into() },
            DuplicateModel => ProjectionError::DuplicateModel { projection: projection() },
            NameMismatch => ProjectionError::NameMismatch {
                model: "stock_levels".into(),
                projection: projection(),
            },
        )
    }
}
