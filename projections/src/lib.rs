//! strata-projections: read models folded from the strata log, exactly once.
//!
//! A [`Projection`] applies events to a read model through a [`WriteSet`];
//! the [`ProjectionRunner`] commits each batch's changes together with the
//! batch's last position (the checkpoint) in one atomic write to a
//! [`ModelStore`] (sled trees beside the log, or memory), so after a crash
//! a projection resumes exactly after the last event it applied: none twice,
//! none skipped. It catches up from the checkpoint, then follows the log
//! live; [`ModelStore::wait_for`] gives read-your-writes; [`rebuild`] (and
//! [`rebuild_all`], one pass for several models) replays the log into a
//! fresh generation and swaps it in whole.
//!
//! Three read models ship: the order summary ([`OrderSummaries`]), stock
//! levels ([`StockLevels`]), read whole or a bounded page at a time
//! through their indexes, and the document listing ([`DocumentListing`]),
//! every collection's documents a page at a time; [`Projections`] runs
//! them over one store. A
//! projection that changes what it stores raises its
//! [`Projection::model_version`], and models written before are rebuilt.
//! See `docs/projections.md` for the decisions behind it.

pub mod backend;
mod catch_up;
mod codec;
mod documents;
mod error;
mod examples;
mod handle;
mod model;
mod orders;
mod projection;
mod rebuild;
mod runner;
mod stock;
mod threads;

pub use codec::Entry;
pub use documents::{
    DEFAULT_PAGE_BYTES, DOCUMENT_LISTING, DocumentListing, DocumentListingProjection, DocumentPage, DocumentQuery,
    ListedDocument,
};
pub use error::ProjectionError;
pub use handle::Projections;
pub use model::reader::ModelReader;
pub use model::run_state::RunState;
pub use model::store::ModelStore;
pub use model::write_set::WriteSet;
pub use orders::{
    CUSTOMER_STATUS_SCAN_FACTOR, ORDER_SUMMARY, OrderFilter, OrderPage, OrderSummaries, OrderSummary,
    OrderSummaryProjection,
};
pub use projection::{Projection, deleted_stream};
pub use rebuild::{RebuildOptions, RebuildProgress, RebuildReport, rebuild, rebuild_all};
pub use runner::{ProjectionRunner, RunnerOptions};
pub use stock::{LowStockCursor, STOCK_LEVELS, StockLevel, StockLevels, StockLevelsProjection, StockPage};
