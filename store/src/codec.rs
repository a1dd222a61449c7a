//! Every bincode call of the workspace goes through here: bincode 2 with an
//! explicit decode limit. (The segment log's records have a format of their
//! own, `segment/format.rs`.)
//!
//! bincode is unmaintained (RUSTSEC-2025-0141); keeping every call in this one
//! module lets it be replaced without touching the backends.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The largest record the decoder accepts. bincode's default is to allocate
/// whatever a length prefix claims; this bound keeps a damaged prefix from
/// allocating more than this.
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes a serde value with bincode 2 in the configuration the store uses
/// (standard, varint). Every bincode call of the workspace goes through this
/// and [`from_bincode`].
pub fn to_bincode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StoreError::Corrupt {
        location: "record being encoded".into(),
        detail: e.to_string(),
    })
}

/// The length of `value` as [`to_bincode`] encodes it, counted without
/// building the bytes; fails where and as [`to_bincode`] fails.
pub fn bincode_len<T: Serialize>(value: &T) -> Result<usize, StoreError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config()).map_err(|e| StoreError::Corrupt {
        location: "record being encoded".into(),
        detail: e.to_string(),
    })?;
    Ok(size.bytes_written)
}

/// Decodes a serde value written by [`to_bincode`], with an explicit size
/// limit (64 MiB) so a damaged length prefix cannot make it allocate more,
/// and refusing trailing bytes. Failures are [`StoreError::Corrupt`] naming
/// `location()`.
pub fn from_bincode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    location: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    match bincode::serde::decode_from_slice::<T, _>(bytes, config()) {
        Ok((value, read)) if read == bytes.len() => Ok(value),
        Ok((_, read)) => Err(StoreError::Corrupt {
            location: location(),
            detail: format!("{} trailing bytes after the record", bytes.len() - read),
        }),
        Err(e) => Err(StoreError::Corrupt {
            location: location(),
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_a_length_prefix_past_the_limit() {
        // A string whose varint length prefix claims u64::MAX bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let r: Result<String, _> = from_bincode(&bytes, || "test".into());
        assert!(matches!(r, Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn decode_refuses_trailing_bytes() {
        let mut bytes = to_bincode(&7u32).unwrap();
        bytes.push(0);
        let r: Result<u32, _> = from_bincode(&bytes, || "test".into());
        assert!(matches!(r, Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn bincode_len_is_the_encoded_length_and_fails_as_the_encoder() {
        let value = (
            "order-1".to_string(),
            300u64,
            vec![1u8, 2, 3],
            std::time::SystemTime::UNIX_EPOCH,
        );
        assert_eq!(bincode_len(&value).unwrap(), to_bincode(&value).unwrap().len());
        let before_epoch = std::time::SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1);
        let (
            Err(StoreError::Corrupt { location, detail }),
            Err(StoreError::Corrupt {
                location: l2,
                detail: d2,
            }),
        ) = (bincode_len(&before_epoch), to_bincode(&before_epoch))
        else {
            panic!("a time before the epoch does not encode");
        };
        assert_eq!((location, detail), (l2, d2));
    }
}
