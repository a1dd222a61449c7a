//! The domain strata ships with: an order state machine and stock per SKU.

pub mod order;
pub mod stock;
