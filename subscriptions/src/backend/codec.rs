//! How the embedded backend frames what it stores (and the PostgreSQL
//! backend its header): bincode through strata-store's codec, behind a
//! CRC-32 that covers the key too, so a damaged or misplaced record is
//! reported, never used.

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_store::{from_bincode, to_bincode};

use crate::error::SubscriptionError;

fn checksum(key: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&(key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(body);
    h.finalize()
}

/// `[crc32 le][bincode of value]`, the crc over `key` and the body.
pub(crate) fn seal<T: Serialize>(key: &[u8], value: &T) -> Result<Vec<u8>, SubscriptionError> {
    let body = to_bincode(value)?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&checksum(key, &body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks and decodes what [`seal`] wrote under `key`.
pub(crate) fn unseal<T: DeserializeOwned>(
    key: &[u8],
    value: &[u8],
    location: impl Fn() -> String,
) -> Result<T, SubscriptionError> {
    let corrupt = |detail: String| SubscriptionError::Corrupt {
        location: location(),
        detail,
    };
    if value.len() < 4 {
        return Err(corrupt(format!(
            "record of {} bytes is shorter than its checksum",
            value.len()
        )));
    }
    let (crc, body) = value.split_at(4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let actual = checksum(key, body);
    if stored != actual {
        return Err(corrupt(format!(
            "checksum mismatch: stored {stored:08x}, computed {actual:08x}"
        )));
    }
    from_bincode(body, &location).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_bit_or_another_key_is_corrupt() {
        let sealed = seal(b"k", &("hello".to_string(), 7u64)).unwrap();
        let back: (String, u64) = unseal(b"k", &sealed, String::new).unwrap();
        assert_eq!(back, ("hello".to_string(), 7));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert!(unseal::<(String, u64)>(b"k", &bad, String::new).is_err());
        }
        assert!(unseal::<(String, u64)>(b"other", &sealed, String::new).is_err());
        assert!(unseal::<(String, u64)>(b"k", &sealed[..2], String::new).is_err());
    }
}
