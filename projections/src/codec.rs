//! Values and keys as read models store them: bincode values through the
//! workspace's one codec module, fixed-width numbers, and key ranges.

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_store::{StoreError, from_bincode, to_bincode};

use crate::error::ProjectionError;

/// A key and its value, as read from a model.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A stored value or key of `projection` that is not what it should be.
pub(crate) fn corrupt(projection: &str, key: &[u8], detail: impl Into<String>) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: projection.to_string(),
        key: String::from_utf8_lossy(key).into_owned(),
        detail: detail.into(),
    }
}

/// A big-endian `u64` stored under `key`.
pub(crate) fn decode_u64(projection: &str, key: &[u8], value: &[u8]) -> Result<u64, ProjectionError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(projection, key, format!("expected 8 bytes, found {}", value.len())))
}

/// A value written by [`encode_value`] (or `WriteSet::put_value`).
pub(crate) fn decode_value<T: DeserializeOwned>(
    projection: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, ProjectionError> {
    from_bincode(bytes, String::new).map_err(|e| {
        corrupt(
            projection,
            key,
            match e {
                StoreError::Corrupt { detail, .. } => detail,
                other => other.to_string(),
            },
        )
    })
}

/// `value` as stored under `key`.
pub(crate) fn encode_value<T: Serialize>(projection: &str, key: &[u8], value: &T) -> Result<Vec<u8>, ProjectionError> {
    to_bincode(value).map_err(|e| encode_error(projection, key, e))
}

/// The error of [`encode_value`] for a value the encoder refused with `e`.
pub(crate) fn encode_error(projection: &str, key: &[u8], e: StoreError) -> ProjectionError {
    corrupt(projection, key, format!("cannot encode: {e}"))
}

/// The upper bound of the keys starting with `prefix`, if there is one
/// (none when the prefix is only `0xff` bytes: the range runs to the end).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_skips_trailing_max_bytes() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn numbers_of_the_wrong_width_are_corrupt() {
        assert_eq!(decode_u64("m", b"c", &7u64.to_be_bytes()).unwrap(), 7);
        assert!(matches!(
            decode_u64("m", b"c", &[1, 2, 3]),
            Err(ProjectionError::Corrupt { detail, .. }) if detail == "expected 8 bytes, found 3"
        ));
    }
}
