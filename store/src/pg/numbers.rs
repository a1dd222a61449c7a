//! Numbers across the boundary: strata counts in `u64`, PostgreSQL stores
//! `bigint` (`i64`).

use crate::error::StoreError;

/// `value` as a `bigint`, for a number that is stored: one beyond
/// `i64::MAX` is [`StoreError::OutOfRange`] naming `what`, never cut.
pub fn to_db(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange {
        what: what.to_string(),
        value,
        max: i64::MAX as u64,
    })
}

/// `value` as a `bigint` bound of a query, where anything beyond
/// `i64::MAX` means the same as `i64::MAX` (e.g. `u64::MAX` for "up to the
/// newest", or a limit larger than any table).
pub fn to_db_saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored `bigint` as a `u64`; a negative one is damage,
/// [`StoreError::Corrupt`] at `what`.
pub fn from_db(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        location: what.to_string(),
        detail: format!("negative value {value}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_up_to_i64_max() {
        for v in [0, 1, 42, i64::MAX as u64] {
            assert_eq!(from_db(to_db(v, "v").unwrap(), "v").unwrap(), v);
        }
    }

    #[test]
    fn numbers_beyond_bigint_are_errors_or_saturate() {
        let e = to_db(i64::MAX as u64 + 1, "event position").unwrap_err();
        assert!(
            matches!(&e, StoreError::OutOfRange { what, value, max } if what == "event position" && *value == i64::MAX as u64 + 1 && *max == i64::MAX as u64),
            "{e:?}"
        );
        assert!(e.to_string().contains("event position"), "{e}");
        assert_eq!(to_db_saturating(u64::MAX), i64::MAX);
        assert_eq!(to_db_saturating(7), 7);
    }

    #[test]
    fn a_negative_bigint_is_corrupt() {
        assert!(matches!(
            from_db(-1, "head position"),
            Err(StoreError::Corrupt { location, .. }) if location == "head position"
        ));
    }
}
