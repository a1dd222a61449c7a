//! Given/when/then: replaying history in tests.
//!
//! State the past events, a command, and the events or the error expected.
//! Everything is synchronous (an aggregate decides without I/O), no runtime
//! is started, and failures point at the line of the test (`#[track_caller]`).
//!
//! ```
//! use strata_aggregates::given;
//! use strata_aggregates::domain::order::{
//!     Order, OrderCommand, OrderCommandKind, OrderError, OrderEvent, OrderLine, OrderStatus,
//! };
//!
//! let placed = OrderEvent::OrderPlaced {
//!     order_id: "o-1".into(),
//!     customer: "ada".into(),
//!     lines: vec![OrderLine { sku: "tea".into(), quantity: 2, unit_price_cents: 250 }],
//!     total_cents: 500,
//! };
//!
//! given::<Order>([placed.clone()])
//!     .when(OrderCommand::Pay { amount_cents: 500 })
//!     .then_expect([OrderEvent::OrderPaid { amount_cents: 500 }]);
//!
//! given::<Order>([placed.clone()])
//!     .when(OrderCommand::Ship { tracking: None })
//!     .then_error(OrderError::InvalidTransition { from: OrderStatus::Placed, command: OrderCommandKind::Ship });
//!
//! given::<Order>([placed])
//!     .when(OrderCommand::Cancel { reason: None })
//!     .then_assert(|result, after| {
//!         assert!(result.is_ok());
//!         assert_eq!(after.status(), OrderStatus::Cancelled);
//!     });
//! ```

use std::fmt::Debug;
use std::marker::PhantomData;

use crate::aggregate::Aggregate;
use crate::codec::{DomainEvent, Format, decode, encode};

/// Starts a test from the events `A` has in its history.
///
/// Each event is first sent through the codec (bincode and JSON) and must
/// come back equal, so the history a test states is one the store can hold.
#[track_caller]
pub fn given<A: Aggregate>(events: impl Into<Vec<A::Event>>) -> Given<A> {
    let events = events.into();
    let mut state = A::default();
    for event in &events {
        assert_round_trips(event);
        state.apply(event);
    }
    Given {
        state,
        _events: PhantomData,
    }
}

/// Starts a test from an aggregate with no history.
pub fn given_no_events<A: Aggregate>() -> Given<A> {
    Given {
        state: A::default(),
        _events: PhantomData,
    }
}

#[track_caller]
fn assert_round_trips<E: DomainEvent>(event: &E) {
    for format in [Format::Bincode, Format::Json] {
        let stored = encode(event, format).unwrap_or_else(|e| panic!("given event {event:?} does not encode: {e}"));
        let recorded = strata_store::RecordedEvent {
            stream_id: strata_store::StreamId::new("given-when-then").expect("valid"),
            version: 1,
            position: 1,
            id: stored.id,
            event_type: stored.event_type,
            payload: stored.payload,
            metadata: stored.metadata,
            recorded_at: std::time::SystemTime::UNIX_EPOCH,
        };
        let back: E =
            decode(&recorded).unwrap_or_else(|e| panic!("given event {event:?} does not decode from {format:?}: {e}"));
        assert_eq!(&back, event, "given event changes through the {format:?} codec");
    }
}

/// An aggregate with a history, waiting for a command.
#[must_use = "a given/when/then test does nothing until `when(..).then_..(..)`"]
pub struct Given<A: Aggregate> {
    state: A,
    _events: PhantomData<fn() -> A::Event>,
}

impl<A: Aggregate> Given<A> {
    /// The state the history folds into.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides `command` on that state.
    pub fn when(self, command: A::Command) -> When<A> {
        let result = self.state.handle(&command);
        When {
            state: self.state,
            result,
        }
    }
}

/// The outcome of a command, waiting to be checked.
#[must_use = "a given/when/then test checks nothing until `then_..(..)`"]
pub struct When<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> When<A> {
    /// Asserts that the command decided exactly these events (an empty list:
    /// that it changed nothing).
    #[track_caller]
    pub fn then_expect(self, expected: impl Into<Vec<A::Event>>) {
        let expected = expected.into();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "the command decided other events"),
            Err(e) => panic!("expected events {expected:?}, the command was refused: {e:?}"),
        }
    }

    /// Asserts that the command was refused with exactly this error.
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Ok(events) => panic!("expected the error {expected:?}, the command decided {events:?}"),
            Err(e) => assert_eq!(e, expected, "the command was refused with another error"),
        }
    }

    /// Hands the result and the state after it (the events applied, or the
    /// unchanged state when refused) to `check`.
    #[track_caller]
    pub fn then_assert(self, check: impl FnOnce(&Result<Vec<A::Event>, A::Error>, &A)) {
        let mut after = self.state;
        if let Ok(events) = &self.result {
            for event in events {
                after.apply(event);
            }
        }
        check(&self.result, &after);
    }

    /// The result, for checks the other methods do not cover.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}

impl<A: Aggregate> Debug for When<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("When")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::stock::{StockCommand, StockError, StockEvent, StockItem};

    fn registered() -> StockEvent {
        StockEvent::StockItemRegistered {
            sku: "tea".into(),
            name: "Tea".into(),
        }
    }

    #[test]
    #[should_panic(expected = "the command decided other events")]
    fn then_expect_fails_on_other_events() {
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: 2 })
            .then_expect([StockEvent::StockReceived { quantity: 3 }]);
    }

    #[test]
    #[should_panic(expected = "the command was refused")]
    fn then_expect_fails_on_a_refusal() {
        given_no_events::<StockItem>()
            .when(StockCommand::Receive { quantity: 2 })
            .then_expect([StockEvent::StockReceived { quantity: 2 }]);
    }

    #[test]
    #[should_panic(expected = "expected the error")]
    fn then_error_fails_on_success() {
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: 2 })
            .then_error(StockError::EmptyName);
    }

    #[test]
    #[should_panic(expected = "refused with another error")]
    fn then_error_fails_on_another_error() {
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: 0 })
            .then_error(StockError::EmptyName);
    }

    #[test]
    fn then_assert_sees_the_state_after_the_events() {
        let mut seen = None;
        given::<StockItem>([registered()])
            .when(StockCommand::Receive { quantity: 2 })
            .then_assert(|result, after| seen = Some((result.is_ok(), after.on_hand())));
        assert_eq!(seen, Some((true, 2)));
    }
}
