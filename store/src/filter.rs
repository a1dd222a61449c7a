//! [`EventFilter`]: which events a filtered read or subscription returns,
//! and [`FilteredRead`], what one filtered read examined.
//!
//! A filter is a value every backend applies in its own read path: it only
//! looks at an event's stream id and type ([`EventFilter::matches`]), so a
//! backend can test it before it decodes the rest of a record, and
//! PostgreSQL runs the same conditions in SQL.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::types::{MAX_STREAM_ID_BYTES, RecordedEvent, StreamId};

/// The most conditions (types, prefixes, streams, categories together) one
/// filter may hold.
pub const MAX_FILTER_CONDITIONS: usize = 64;

/// The longest event type, prefix or category a filter accepts, in bytes.
pub const MAX_FILTER_TERM_BYTES: usize = MAX_STREAM_ID_BYTES;

/// How many events a filtered read examines at most before it returns,
/// even when it found fewer matches than asked for: so a read over a long
/// stretch of unrelated events returns soon, with the position it reached
/// ([`FilteredRead::examined`]), and a subscription reports progress.
pub const FILTER_SCAN_WINDOW: usize = 4096;

/// Which events a filtered read or subscription returns: conditions on the
/// event type and on the stream, combined.
///
/// - **Event type:** one of the exact types, or starting with one of the
///   type prefixes. No type condition: any type.
/// - **Stream:** one of the exact streams, or starting with one of the
///   stream prefixes, or in one of the categories. A stream's category is
///   the part of its id before the first `-` (`order-42` is in `order`; a
///   stream without `-` is in no category). No stream condition: any
///   stream.
/// - An event matches when it satisfies the type part **and** the stream
///   part. [`EventFilter::all`] matches everything.
///
/// Terms are 1..=256 bytes without control characters, a category holds
/// no `-`, and a filter holds at most [`MAX_FILTER_CONDITIONS`] terms;
/// [`EventFilter::check`] says which rule a filter breaks (the reads and
/// subscriptions refuse such a filter with [`StoreError::InvalidFilter`]).
///
/// ```
/// use strata_store::{EventFilter, StreamId};
/// let filter = EventFilter::all().category("order").event_type_prefix("Order");
/// assert!(filter.matches_parts("order-42", "OrderPlaced"));
/// assert!(!filter.matches_parts("order-42", "StockReserved"));
/// assert!(!filter.matches_parts("orders-1", "OrderPlaced"));
/// assert!(!filter.matches_parts("order", "OrderPlaced")); // no `-`: no category
/// assert!(filter.check().is_ok());
/// assert!(EventFilter::all().category("a-b").check().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FilterTerms", into = "FilterTerms")]
pub struct EventFilter {
    terms: FilterTerms,
}

/// The terms of a filter, as they are serialized (and checked when read back).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FilterTerms {
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    event_type_prefixes: Vec<String>,
    #[serde(default)]
    streams: Vec<StreamId>,
    #[serde(default)]
    stream_prefixes: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
}

impl TryFrom<FilterTerms> for EventFilter {
    type Error = StoreError;
    fn try_from(terms: FilterTerms) -> Result<Self, Self::Error> {
        let filter = EventFilter { terms };
        filter.check()?;
        Ok(filter)
    }
}

impl From<EventFilter> for FilterTerms {
    fn from(filter: EventFilter) -> Self {
        filter.terms
    }
}

/// The category of a stream id: the part before its first `-`, or `None`
/// when it has no `-`.
///
/// ```
/// assert_eq!(strata_store::category_of("order-42-a"), Some("order"));
/// assert_eq!(strata_store::category_of("order"), None);
/// ```
pub fn category_of(stream: &str) -> Option<&str> {
    stream.split_once('-').map(|(category, _)| category)
}

impl EventFilter {
    /// The filter that matches every event.
    pub fn all() -> EventFilter {
        EventFilter::default()
    }

    /// Also matches events of type `event_type` (exactly).
    pub fn event_type(mut self, event_type: impl Into<String>) -> EventFilter {
        self.terms.event_types.push(event_type.into());
        self
    }

    /// Also matches events whose type starts with `prefix`.
    pub fn event_type_prefix(mut self, prefix: impl Into<String>) -> EventFilter {
        self.terms.event_type_prefixes.push(prefix.into());
        self
    }

    /// Also matches events of stream `stream`.
    pub fn stream(mut self, stream: StreamId) -> EventFilter {
        self.terms.streams.push(stream);
        self
    }

    /// Also matches events of streams whose id starts with `prefix`.
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> EventFilter {
        self.terms.stream_prefixes.push(prefix.into());
        self
    }

    /// Also matches events of streams in category `category` (the part of
    /// the stream id before its first `-`).
    pub fn category(mut self, category: impl Into<String>) -> EventFilter {
        self.terms.categories.push(category.into());
        self
    }

    /// The exact event types.
    pub fn event_types(&self) -> &[String] {
        &self.terms.event_types
    }

    /// The event type prefixes.
    pub fn event_type_prefixes(&self) -> &[String] {
        &self.terms.event_type_prefixes
    }

    /// The exact streams.
    pub fn streams(&self) -> &[StreamId] {
        &self.terms.streams
    }

    /// The stream prefixes.
    pub fn stream_prefixes(&self) -> &[String] {
        &self.terms.stream_prefixes
    }

    /// The categories.
    pub fn categories(&self) -> &[String] {
        &self.terms.categories
    }

    /// Whether the filter matches every event (it has no condition).
    pub fn is_all(&self) -> bool {
        self.terms.event_types.is_empty() && self.terms.event_type_prefixes.is_empty() && !self.has_stream_terms()
    }

    fn has_stream_terms(&self) -> bool {
        !(self.terms.streams.is_empty() && self.terms.stream_prefixes.is_empty() && self.terms.categories.is_empty())
    }

    /// Whether an event of stream `stream` and type `event_type` matches.
    pub fn matches_parts(&self, stream: &str, event_type: &str) -> bool {
        let t = &self.terms;
        let type_ok = (t.event_types.is_empty() && t.event_type_prefixes.is_empty())
            || t.event_types.iter().any(|x| x == event_type)
            || t.event_type_prefixes.iter().any(|p| event_type.starts_with(p.as_str()));
        type_ok
            && (!self.has_stream_terms()
                || t.streams.iter().any(|s| s.as_str() == stream)
                || t.stream_prefixes.iter().any(|p| stream.starts_with(p.as_str()))
                || category_of(stream).is_some_and(|c| t.categories.iter().any(|x| x == c)))
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.matches_parts(event.stream_id.as_str(), &event.event_type)
    }

    /// Checks the filter's rules: every term 1..=256 bytes without control
    /// characters, no `-` in a category, at most [`MAX_FILTER_CONDITIONS`]
    /// terms. Errors: [`StoreError::InvalidFilter`] naming the rule.
    pub fn check(&self) -> Result<(), StoreError> {
        let t = &self.terms;
        let count = t.event_types.len()
            + t.event_type_prefixes.len()
            + t.streams.len()
            + t.stream_prefixes.len()
            + t.categories.len();
        if count > MAX_FILTER_CONDITIONS {
            return Err(StoreError::InvalidFilter {
                reason: format!("{count} terms, more than the limit of {MAX_FILTER_CONDITIONS}"),
            });
        }
        let groups: [(&str, &[String]); 4] = [
            ("event type", &t.event_types),
            ("event type prefix", &t.event_type_prefixes),
            ("stream prefix", &t.stream_prefixes),
            ("category", &t.categories),
        ];
        for (what, terms) in groups {
            for term in terms {
                let shown = || term.chars().take(64).filter(|c| !c.is_control()).collect::<String>();
                let broken = if term.is_empty() {
                    Some("must not be empty".to_string())
                } else if term.len() > MAX_FILTER_TERM_BYTES {
                    Some(format!("must be at most {MAX_FILTER_TERM_BYTES} bytes"))
                } else if term.chars().any(char::is_control) {
                    Some("must not contain control characters".to_string())
                } else if what == "category" && term.contains('-') {
                    Some("must not contain `-` (a category is the stream id before its first `-`)".to_string())
                } else {
                    None
                };
                if let Some(rule) = broken {
                    return Err(StoreError::InvalidFilter {
                        reason: format!("{what} {:?} {rule}", shown()),
                    });
                }
            }
        }
        Ok(())
    }
}

/// What one filtered read returns: the matching events, and how far it
/// looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilteredRead {
    /// The matching events, in position order.
    pub events: Vec<RecordedEvent>,
    /// The newest position the read examined: every matching event from
    /// the read's start up to this position is in `events`. One less than
    /// the start when there was nothing to examine (the read started past
    /// the head). Resume with the next read from `examined + 1`.
    pub examined: u64,
}

/// Filters `events` (read in position order from `from`) the way every
/// backend's filtered read must: at most `limit` matches, `examined` the
/// position of the last match when the limit cut the read short, else the
/// last event read. Used by the backends that read whole events anyway.
pub(crate) fn filter_read(events: Vec<RecordedEvent>, from: u64, limit: usize, filter: &EventFilter) -> FilteredRead {
    let mut examined = from.max(1) - 1;
    let mut out = Vec::new();
    for event in events {
        examined = event.position;
        if filter.matches(&event) {
            out.push(event);
            if out.len() == limit {
                break;
            }
        }
    }
    FilteredRead { events: out, examined }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_and_stream_parts_combine() {
        let f = EventFilter::all()
            .event_type("A")
            .event_type_prefix("Stock")
            .stream_prefix("ord")
            .category("sku");
        assert!(f.matches_parts("order-1", "A"));
        assert!(f.matches_parts("sku-9", "StockReserved"));
        assert!(!f.matches_parts("sku-9", "B"), "type part fails");
        assert!(!f.matches_parts("cart-1", "A"), "stream part fails");
        assert!(!f.matches_parts("sku", "A"), "no `-`: no category");
        assert!(f.matches_parts("ord", "A"), "a prefix needs no `-`");
        let exact = EventFilter::all().stream(StreamId::new("a-1").unwrap());
        assert!(exact.matches_parts("a-1", "X"));
        assert!(!exact.matches_parts("a-10", "X"));
        assert!(EventFilter::all().matches_parts("x", "y"));
        assert!(EventFilter::all().is_all() && !exact.is_all());
    }

    #[test]
    fn bad_terms_are_refused_with_the_rule() {
        let long = "x".repeat(MAX_FILTER_TERM_BYTES + 1);
        for bad in [
            EventFilter::all().event_type(""),
            EventFilter::all().event_type_prefix(long),
            EventFilter::all().stream_prefix("a\nb"),
            EventFilter::all().category("a-b"),
        ] {
            assert!(matches!(bad.check(), Err(StoreError::InvalidFilter { .. })), "{bad:?}");
        }
        let mut many = EventFilter::all();
        for i in 0..=MAX_FILTER_CONDITIONS {
            many = many.event_type(format!("T{i}"));
        }
        assert!(many.check().is_err());
    }

    #[test]
    fn serde_round_trips_and_checks_what_it_reads() {
        let f = EventFilter::all().category("order").event_type("A");
        let bytes = crate::codec::to_bincode(&f).unwrap();
        let back: EventFilter = crate::codec::from_bincode(&bytes, String::new).unwrap();
        assert_eq!(back, f);
        let bad: Result<EventFilter, _> = crate::codec::from_bincode(
            &crate::codec::to_bincode(&FilterTerms {
                categories: vec!["a-b".into()],
                ..FilterTerms::default()
            })
            .unwrap(),
            String::new,
        );
        assert!(bad.is_err(), "a stored filter that breaks the rules is refused");
    }
}
