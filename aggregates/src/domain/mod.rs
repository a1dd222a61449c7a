//! The domain strata ships with: an order state machine, stock per SKU, the
//! order service that keeps the two consistent in atomic multi-stream
//! appends, and JSON documents in collections with unique values.

pub mod document;
pub mod order;
pub mod service;
pub mod stock;

/// Checks that `id` can name the stream `"{kind}-{id}"`: not blank, no
/// control characters, and short enough.
pub(crate) fn validate_id(id: &str, kind: &str) -> Result<(), &'static str> {
    if id.trim().is_empty() {
        Err("must not be empty")
    } else if id.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else if kind.len() + 1 + id.len() > strata_store::MAX_STREAM_ID_BYTES {
        Err("too long to name a stream")
    } else {
        Ok(())
    }
}
