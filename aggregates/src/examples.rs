//! One error of every variant of the crate's error enums, for tests of a
//! mapping of errors (strata-http's): adding a variant fails to compile
//! here until it has an example (see `strata_store::one_of_each!`). Not
//! part of the stable API.

use strata_store::{EventId, Example, StoreError, StreamId, one_of_each};

use crate::aggregate::Aggregate;
use crate::codec::CodecError;
use crate::domain::order::{Order, OrderCommandKind, OrderError, OrderStatus};
use crate::domain::service::OrderServiceError;
use crate::domain::stock::{MAX_ON_HAND, MAX_QUANTITY, StockCommandKind, StockError};
use crate::error::{Conflict, RepositoryError};

fn stream(s: &str) -> StreamId {
    StreamId::new(s).expect("a valid stream id")
}

fn conflict<A: Aggregate>(stream_id: &str) -> Conflict<A> {
    Conflict {
        stream: stream(stream_id),
        expected: 2,
        current: 3,
        state: A::default(),
        events_since: Vec::new(),
        events_since_complete: true,
        attempts: 1,
    }
}

fn store_error() -> StoreError {
    StoreError::Unavailable {
        reason: "the store is closed".into(),
    }
}

fn payload_error() -> CodecError {
    CodecError::Payload {
        event_type: "OrderPlaced".into(),
        detail: "unexpected end of input".into(),
    }
}

impl OrderError {
    /// One refusal of every variant. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples() -> Vec<Example<OrderError>> {
        one_of_each!(OrderError;
            AlreadyExists => OrderError::AlreadyExists {
                order_id: "o-1".into(),
                status: OrderStatus::Paid,
            },
            InvalidTransition => OrderError::InvalidTransition {
                from: OrderStatus::Placed,
                command: OrderCommandKind::Ship,
            },
            PaymentMismatch => OrderError::PaymentMismatch {
                total_cents: 500,
                amount_cents: 400,
            },
            InvalidOrderId => OrderError::InvalidOrderId {
                order_id: String::new(),
                reason: "must not be empty",
            },
            EmptyCustomer => OrderError::EmptyCustomer,
            NoLines => OrderError::NoLines,
            TooManyLines => OrderError::TooManyLines { count: 101, max: 100 },
            ZeroQuantity => OrderError::ZeroQuantity { sku: "tea".into() },
            InvalidSku => OrderError::InvalidSku {
                sku: String::new(),
                reason: "must not be empty",
            },
            DuplicateSku => OrderError::DuplicateSku { sku: "tea".into() },
            ServiceOnly => OrderError::ServiceOnly {
                command: OrderCommandKind::Place,
            },
            TotalOverflow => OrderError::TotalOverflow,
        )
    }
}

impl StockError {
    /// One refusal of every variant. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples() -> Vec<Example<StockError>> {
        one_of_each!(StockError;
            AlreadyRegistered => StockError::AlreadyRegistered { sku: "tea".into() },
            NotRegistered => StockError::NotRegistered {
                command: StockCommandKind::Receive,
            },
            InvalidSku => StockError::InvalidSku {
                sku: String::new(),
                reason: "must not be empty",
            },
            InvalidOrderId => StockError::InvalidOrderId {
                order_id: String::new(),
                reason: "must not be empty",
            },
            EmptyName => StockError::EmptyName,
            ZeroQuantity => StockError::ZeroQuantity {
                command: StockCommandKind::Receive,
            },
            Overflow => StockError::Overflow,
            ServiceOnly => StockError::ServiceOnly {
                command: StockCommandKind::Reserve,
            },
            QuantityTooLarge => StockError::QuantityTooLarge {
                command: StockCommandKind::Receive,
                quantity: MAX_QUANTITY + 1,
                max: MAX_QUANTITY,
            },
            OnHandLimit => StockError::OnHandLimit {
                on_hand: MAX_ON_HAND + 1,
                max: MAX_ON_HAND,
            },
            InsufficientStock => StockError::InsufficientStock {
                requested: 5,
                available: 2,
            },
            AlreadyReserved => StockError::AlreadyReserved {
                order_id: "o-1".into(),
                reserved: 3,
            },
            NoReservation => StockError::NoReservation { order_id: "o-1".into() },
            BelowReserved => StockError::BelowReserved {
                counted: 1,
                reserved: 3,
            },
        )
    }
}

impl CodecError {
    /// One error of every variant. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples() -> Vec<Example<CodecError>> {
        one_of_each!(CodecError;
            Payload => payload_error(),
            UnknownVersion => CodecError::UnknownVersion {
                event_type: "OrderPlaced".into(),
                version: 9,
            },
            Metadata => CodecError::Metadata {
                event_id: serde_json::from_str::<EventId>("\"00000000-0000-0000-0000-000000000007\"")
                    .expect("a UUID"),
                detail: "unknown format \"xml\"".into(),
            },
            Encode => CodecError::Encode(StoreError::Corrupt {
                location: "OrderPlaced being encoded as JSON".into(),
                detail: "key must be a string".into(),
            }),
        )
    }
}

impl OrderServiceError {
    /// One error of every variant. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples() -> Vec<Example<OrderServiceError>> {
        one_of_each!(OrderServiceError;
            Conflict => OrderServiceError::Conflict(Box::new(conflict::<Order>("order-o-1"))),
            Rejected => OrderServiceError::Rejected(OrderError::NoLines),
            UnknownSku => OrderServiceError::UnknownSku { sku: "tea".into() },
            StockRejected => OrderServiceError::StockRejected {
                sku: "tea".into(),
                source: StockError::InsufficientStock {
                    requested: 5,
                    available: 2,
                },
            },
            StockContention => OrderServiceError::StockContention {
                sku: "tea".into(),
                attempts: 10,
            },
            Decode => OrderServiceError::Decode {
                stream: stream("order-o-1"),
                version: 2,
                source: payload_error(),
            },
            Encode => OrderServiceError::Encode {
                stream: stream("order-o-1"),
                source: CodecError::Encode(StoreError::Corrupt {
                    location: "OrderPlaced being encoded as JSON".into(),
                    detail: "key must be a string".into(),
                }),
            },
            Store => OrderServiceError::Store(store_error()),
        )
    }
}

impl<A: Aggregate> RepositoryError<A> {
    /// One error of every variant, with `rejection` as the aggregate's
    /// refusal. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples(rejection: A::Error) -> Vec<Example<RepositoryError<A>>> {
        let stream_id = format!("{}-x-1", A::KIND);
        one_of_each!(RepositoryError;
            Conflict => RepositoryError::Conflict(Box::new(conflict::<A>(&stream_id))),
            Rejected => RepositoryError::Rejected(rejection),
            Decode => RepositoryError::Decode {
                stream: stream(&stream_id),
                version: 2,
                source: payload_error(),
            },
            Encode => RepositoryError::Encode {
                stream: stream(&stream_id),
                source: CodecError::Encode(StoreError::Corrupt {
                    location: "an event being encoded as JSON".into(),
                    detail: "key must be a string".into(),
                }),
            },
            IdMismatch => RepositoryError::IdMismatch {
                stream: stream(&stream_id),
                id: "x-1".into(),
                named: "x-2".into(),
            },
            Store => RepositoryError::Store(store_error()),
        )
    }
}

#[cfg(test)]
mod tests {
    use strata_store::{Classify, ErrorKind};

    use super::*;
    use crate::domain::stock::StockItem;

    fn kinds<E: Classify>(examples: Vec<Example<E>>) -> Vec<(&'static str, ErrorKind)> {
        examples.into_iter().map(|e| (e.variant, e.error.kind())).collect()
    }

    #[test]
    fn every_domain_error_says_its_kind() {
        use ErrorKind::*;
        assert_eq!(
            kinds(OrderError::examples()),
            [
                ("AlreadyExists", Conflict),
                ("InvalidTransition", Conflict),
                ("PaymentMismatch", InvalidInput),
                ("InvalidOrderId", InvalidInput),
                ("EmptyCustomer", InvalidInput),
                ("NoLines", InvalidInput),
                ("TooManyLines", InvalidInput),
                ("ZeroQuantity", InvalidInput),
                ("InvalidSku", InvalidInput),
                ("DuplicateSku", InvalidInput),
                ("ServiceOnly", InvalidInput),
                ("TotalOverflow", InvalidInput),
            ]
        );
        let missing = OrderError::InvalidTransition {
            from: OrderStatus::New,
            command: OrderCommandKind::Pay,
        };
        assert_eq!(missing.kind(), NotFound, "a command to an order that does not exist");
        assert_eq!(
            kinds(StockError::examples()),
            [
                ("AlreadyRegistered", Conflict),
                ("NotRegistered", NotFound),
                ("InvalidSku", InvalidInput),
                ("InvalidOrderId", InvalidInput),
                ("EmptyName", InvalidInput),
                ("ZeroQuantity", InvalidInput),
                ("Overflow", InvalidInput),
                ("ServiceOnly", InvalidInput),
                ("QuantityTooLarge", InvalidInput),
                ("OnHandLimit", InvalidInput),
                ("InsufficientStock", Conflict),
                ("AlreadyReserved", Conflict),
                ("NoReservation", Conflict),
                ("BelowReserved", Conflict),
            ]
        );
        assert_eq!(
            kinds(CodecError::examples()),
            [
                ("Payload", Corrupt),
                ("UnknownVersion", Incompatible),
                ("Metadata", Incompatible),
                ("Encode", Internal),
            ]
        );
        assert_eq!(
            kinds(OrderServiceError::examples()),
            [
                ("Conflict", Conflict),
                ("Rejected", InvalidInput),
                ("UnknownSku", InvalidInput),
                ("StockRejected", Conflict),
                ("StockContention", Unavailable),
                ("Decode", Corrupt),
                ("Encode", Internal),
                ("Store", Unavailable),
            ]
        );
        let unregistered = OrderServiceError::StockRejected {
            sku: "tea".into(),
            source: StockError::NotRegistered {
                command: StockCommandKind::Reserve,
            },
        };
        assert_eq!(unregistered.kind(), InvalidInput, "an order naming an unknown SKU");
        assert_eq!(
            kinds(RepositoryError::<StockItem>::examples(StockError::BelowReserved {
                counted: 1,
                reserved: 3
            })),
            [
                ("Conflict", Conflict),
                ("Rejected", Conflict),
                ("Decode", Corrupt),
                ("Encode", Internal),
                ("IdMismatch", InvalidInput),
                ("Store", Unavailable),
            ]
        );
    }
}
