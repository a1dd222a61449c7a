//! strata-aggregates: aggregates on the strata log.
//!
//! (Being written: see issue 3. The codec and the domain events below are
//! fixed so that projections can be written against them.)

mod codec;
pub mod domain;

pub use codec::{CodecError, DomainEvent, EVENT_VERSION_KEY, FORMAT_KEY, Format, StoredShape, decode, encode};
