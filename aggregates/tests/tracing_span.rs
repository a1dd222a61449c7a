//! Every execute runs in a `strata.execute` span that records the stream,
//! the expected and resulting version, the retries and the outcome.
//! (Its own test binary: the capturing subscriber is the only one around.)

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use common::{Counter, CounterCommand, CounterEvent, RacingStore};
use strata_aggregates::{Format, Repository, RetryPolicy, encode};
use strata_store::MemoryStore;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = BTreeMap<String, String>;

/// Records every span's name and fields.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<(String, Fields)>>>,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push((attrs.metadata().name().into(), fields));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        let (_, fields) = &mut spans[span.into_u64() as usize - 1];
        values.record(&mut Visitor(fields));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn execute_spans(&self) -> Vec<Fields> {
        self.spans_named("strata.execute")
    }

    fn spans_named(&self, name: &str) -> Vec<Fields> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn execute_records_stream_versions_retries_and_outcome() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let memory = MemoryStore::new();
    let racing = RacingStore::new(memory.clone(), "counter-c", 2, || {
        encode(
            &CounterEvent::Added {
                amount: 1,
                note: String::new(),
            },
            Format::Bincode,
        )
        .unwrap()
    });
    let repo = Repository::<Counter>::new(Arc::new(racing))
        .with_retry_policy(RetryPolicy::default().with_backoff(std::time::Duration::ZERO, std::time::Duration::ZERO));
    // Two other writers get in first: two retries, then version 3.
    repo.execute("c", CounterCommand::Add(5), None).await.unwrap();
    // A stale version: a conflict at version 3.
    repo.execute("c", CounterCommand::Add(5), Some(1)).await.unwrap_err();

    let spans = capture.execute_spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let get = |i: usize, k: &str| spans[i].get(k).cloned();
    assert_eq!(get(0, "stream").as_deref(), Some("counter-c"));
    assert_eq!(get(0, "kind").as_deref(), Some("counter"));
    assert_eq!(get(0, "expected"), None, "no expected version was named");
    assert_eq!(get(0, "version").as_deref(), Some("3"));
    assert_eq!(get(0, "retries").as_deref(), Some("2"));
    assert_eq!(get(0, "outcome").as_deref(), Some("appended"));

    assert_eq!(get(1, "expected").as_deref(), Some("1"));
    assert_eq!(get(1, "version").as_deref(), Some("3"));
    assert_eq!(get(1, "retries").as_deref(), Some("0"));
    assert_eq!(get(1, "outcome").as_deref(), Some("conflict"));
}

/// A refusal reached after a retry still records the version it was
/// decided on and the retry.
#[tokio::test(flavor = "current_thread")]
async fn a_refusal_records_the_version_it_read_and_its_retries() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let memory = MemoryStore::new();
    let setup = Repository::<Counter>::new(Arc::new(memory.clone()));
    setup.execute("c", CounterCommand::Add(5), None).await.unwrap();
    // Another writer resets the counter just before our append: deciding
    // again on version 2, our reset is refused.
    let racing = RacingStore::new(memory.clone(), "counter-c", 1, || {
        encode(&CounterEvent::Reset, Format::Bincode).unwrap()
    });
    let repo = Repository::<Counter>::new(Arc::new(racing))
        .with_retry_policy(RetryPolicy::default().with_backoff(std::time::Duration::ZERO, std::time::Duration::ZERO));
    repo.execute("c", CounterCommand::Reset, None).await.unwrap_err();

    let spans = capture.execute_spans();
    let refused = spans.last().unwrap();
    assert_eq!(refused.get("outcome").map(String::as_str), Some("rejected"));
    assert_eq!(refused.get("version").map(String::as_str), Some("2"), "{refused:?}");
    assert_eq!(refused.get("retries").map(String::as_str), Some("1"), "{refused:?}");
}

/// The order service's span records the expected and resulting version,
/// the retries and the outcome, whatever the outcome.
#[tokio::test(flavor = "current_thread")]
async fn the_order_service_span_records_every_outcome() {
    use strata_aggregates::domain::order::OrderLine;
    use strata_aggregates::domain::service::OrderService;
    use strata_aggregates::domain::stock::StockCommand;

    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let service = OrderService::new(Arc::new(MemoryStore::new()));
    let register = StockCommand::Register {
        sku: "tea".into(),
        name: "Tea".into(),
    };
    service.stock().execute("tea", register, None).await.unwrap();
    service
        .stock()
        .execute("tea", StockCommand::Receive { quantity: 2 }, None)
        .await
        .unwrap();
    let line = |quantity| {
        vec![OrderLine {
            sku: "tea".into(),
            quantity,
            unit_price_cents: 10,
        }]
    };
    service.place("o-1", "ada", line(2)).await.unwrap();
    service.place("o-2", "bob", line(1)).await.unwrap_err(); // insufficient stock
    service.pay("o-1", 20, Some(0)).await.unwrap_err(); // stale version
    service.pay("o-1", 20, Some(1)).await.unwrap();

    let spans = capture.spans_named("strata.order_service");
    assert_eq!(spans.len(), 4, "{spans:?}");
    let get = |i: usize, k: &str| spans[i].get(k).cloned();
    let row = |i: usize| {
        (
            get(i, "outcome"),
            get(i, "expected"),
            get(i, "version"),
            get(i, "retries"),
        )
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(row(0), (s("appended"), None, s("1"), s("0")));
    assert_eq!(
        row(1),
        (s("rejected"), None, s("0"), s("0")),
        "a refusal of a new order"
    );
    assert_eq!(row(2), (s("conflict"), s("0"), s("1"), s("0")));
    assert_eq!(row(3), (s("appended"), s("1"), s("2"), s("0")));
    assert!(get(3, "position").is_some());
}
