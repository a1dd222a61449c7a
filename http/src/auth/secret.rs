//! Token secrets: made from 32 random bytes, shown once, kept only as
//! their SHA-256, compared in constant time.

use std::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::TokenInfo;
use crate::error::HttpError;

/// What every secret starts with, so a leaked one is recognisable (by
/// secret scanners, in a diff).
pub(crate) const PREFIX: &str = "strata_";

/// The length of a secret: the prefix and 64 hex digits.
pub(crate) const SECRET_LEN: usize = PREFIX.len() + 64;

/// The SHA-256 of a secret: what is stored.
pub type Hash = [u8; 32];

/// A token's secret. Its `Debug` does not show it; [`Secret::expose`]
/// does, for the one place that prints it (`strata token create`) and for
/// clients that send it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Thirty-two bytes from the operating system's random source.
    pub(crate) fn generate() -> Result<Secret, HttpError> {
        let mut bytes = [0u8; 32];
        OsRng.try_fill_bytes(&mut bytes).map_err(|e| HttpError::Internal {
            reason: format!("the operating system's random source failed: {e}"),
        })?;
        Ok(Secret(format!("{PREFIX}{}", hex(&bytes))))
    }

    /// The secret itself, to print once or to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored of it.
    pub(crate) fn hash(&self) -> Hash {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 lower-case hex digits as 32 bytes; `None` otherwise.
pub(crate) fn unhex(text: &str) -> Option<Hash> {
    let t = text.as_bytes();
    if t.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (digit(t[2 * i])? << 4) | digit(t[2 * i + 1])?;
    }
    Some(out)
}

/// The hash of a presented secret, or `None` when it is not of the shape
/// this service issues (then no stored token can match it).
pub(crate) fn hash_presented(presented: &[u8]) -> Option<Hash> {
    let ok = presented.len() == SECRET_LEN
        && presented.starts_with(PREFIX.as_bytes())
        && presented[PREFIX.len()..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| Sha256::digest(presented).into())
}

/// A token as it is kept: its description and the SHA-256 of its secret
/// (which cannot be turned back into the secret).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredToken {
    /// Its name, scope and creation time.
    pub info: TokenInfo,
    /// The SHA-256 of its secret.
    pub hash: Hash,
}

/// Equal in a time that does not depend on where the hashes differ.
fn same(a: &Hash, b: &Hash) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The token whose hash is `hash`, looking at every token whatever it
/// finds (so the time taken says nothing of which matched).
pub(crate) fn find<'a>(tokens: &'a [StoredToken], hash: &Hash) -> Option<&'a StoredToken> {
    let mut found = None;
    for t in tokens {
        if same(&t.hash, hash) {
            found = Some(t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    #[test]
    fn a_secret_hashes_as_presented_and_hides_in_debug() {
        let s = Secret::generate().unwrap();
        assert_eq!(s.expose().len(), SECRET_LEN);
        assert_eq!(hash_presented(s.expose().as_bytes()), Some(s.hash()));
        assert!(!format!("{s:?}").contains(&s.expose()[PREFIX.len()..]));
        assert_ne!(Secret::generate().unwrap(), s);
        let upper = s.expose().to_uppercase();
        assert_eq!(hash_presented(upper.as_bytes()), None);
        assert_eq!(hash_presented(&s.expose().as_bytes()[1..]), None);
        assert_eq!(hash_presented(b""), None);
    }

    #[test]
    fn hex_round_trips_and_refuses_other_text() {
        let h = Secret::generate().unwrap().hash();
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex(&hex(&h).to_uppercase()), None);
        assert_eq!(unhex("00"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }

    #[test]
    fn find_matches_only_the_same_hash() {
        let tokens: Vec<StoredToken> = (0..3)
            .map(|i| StoredToken {
                info: TokenInfo {
                    name: format!("t{i}"),
                    scope: Scope::Read,
                    created_at: 0,
                },
                hash: Secret::generate().unwrap().hash(),
            })
            .collect();
        assert_eq!(find(&tokens, &tokens[1].hash).unwrap().info.name, "t1");
        let mut other = tokens[1].hash;
        other[31] ^= 1;
        assert!(find(&tokens, &other).is_none());
    }
}
