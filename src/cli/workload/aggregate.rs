//! One long aggregate stream, for load-time measurements.

use std::sync::Arc;

use strata_aggregates::domain::stock::{StockCommand, StockEvent, StockItem};
use strata_aggregates::{Format, Repository, RepositoryError, encode};
use strata_store::{EventStore, ExpectedVersion, StoreError, StreamId};

/// Appends `count` `StockReceived` events to `stock-{sku}`, 5,000 per append.
pub async fn receive_raw(store: &dyn EventStore, sku: &str, count: u64) -> Result<(), StoreError> {
    let stream = StreamId::new(format!("stock-{sku}"))?;
    let mut left = count;
    while left > 0 {
        let n = left.min(5_000);
        let events = (0..n)
            .map(|_| encode(&StockEvent::StockReceived { quantity: 1 }, Format::Bincode).expect("encodes"))
            .collect();
        store.append(&stream, ExpectedVersion::Any, events).await?;
        left -= n;
    }
    Ok(())
}

/// Writes a stock item `sku` whose stream holds `events` events, with a
/// snapshot (as a repository with `with_snapshots(snapshot_every)` writes
/// it) `tail` events before the end. Loading it with that repository reads
/// the snapshot and `tail` events; without snapshots, all `events`.
pub async fn long_stock_stream(
    store: &Arc<dyn EventStore>,
    sku: &str,
    events: u64,
    snapshot_every: u64,
    tail: u64,
) -> Result<(), RepositoryError<StockItem>> {
    assert!(
        events > tail + 2 && events - tail - 1 > snapshot_every,
        "the stream must reach a snapshot"
    );
    let repo = Repository::<StockItem>::new(store.clone()).with_snapshots(snapshot_every);
    let register = StockCommand::Register {
        sku: sku.into(),
        name: sku.into(),
    };
    repo.execute(sku, register, Some(0)).await?;
    receive_raw(&**store, sku, events - tail - 2).await?;
    // Due for a snapshot (none yet, more than `snapshot_every` events): the
    // repository writes it with this command's event.
    repo.execute(sku, StockCommand::Receive { quantity: 1 }, None).await?;
    receive_raw(&**store, sku, tail).await?;
    Ok(())
}
