//! Who may do what: bearer tokens with a scope, kept hashed, and the
//! middleware that checks them.
//!
//! - A token's secret is `strata_` and 64 hex digits (32 random bytes);
//!   it is shown once, when created, and kept only as its SHA-256
//!   ([`secret`]).
//! - Scopes are ordered, `read` ⊂ `write` ⊂ `admin` ([`Scope`]); the one
//!   table [`scopes`] says which scope each route needs.
//! - Tokens live in `<data>/auth/tokens` beside an embedded store
//!   ([`TokenFile`]) or in the table `http_tokens` of a PostgreSQL store's
//!   schema (`PgTokens`), managed by `strata token`.
//! - [`access`] decides at start whether the service is open (a loopback
//!   address and no tokens), refuses to start (another address and no
//!   tokens, unless `insecure`), or checks every request.
//!
//! See `docs/security.md`.

pub(crate) mod access;
#[cfg(test)]
mod conformance;
mod file;
pub(crate) mod openapi;
#[cfg(feature = "postgres")]
mod postgres;
pub(crate) mod scopes;
mod secret;
pub(crate) mod store;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use file::{MAX_TOKENS, TokenFile};
#[cfg(feature = "postgres")]
pub use postgres::PgTokens;
pub use secret::Secret;
pub use secret::StoredToken;
pub use store::TokenStore;

use crate::error::HttpError;

/// What a token allows, each scope including the ones below it:
/// `read` ⊂ `write` ⊂ `admin`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET`: resources, the log, views, live streams, metrics.
    Read,
    /// `read`, and appends, commands, document writes, collection
    /// declarations, group reads and acknowledgements.
    Write,
    /// `write`, and what changes or removes more than one resource's
    /// history: group creation and deletion, replay of parked events (and
    /// stream deletion, retention and scavenging when they come).
    Admin,
}

impl Scope {
    /// Every scope, lowest first.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// `read`, `write` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Whether a token of this scope may do what needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scope {
    type Err = HttpError;

    fn from_str(s: &str) -> Result<Scope, HttpError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.name() == s)
            .ok_or_else(|| HttpError::InvalidParameter {
                reason: format!("unknown scope {:?}: read, write or admin", s.escape_debug().to_string()),
            })
    }
}

/// A token as listed: never its secret or its hash.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct TokenInfo {
    /// Its name, unique: 1..=64 characters of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// What it allows.
    pub scope: Scope,
    /// When it was created, in seconds since the Unix epoch.
    pub created_at: u64,
}

/// A token just created: its description and its secret, which is shown
/// this once and kept nowhere.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token.
    pub info: TokenInfo,
    /// What a client sends as `Authorization: Bearer <secret>`.
    pub secret: Secret,
}

/// The longest token name, in bytes.
pub const MAX_NAME: usize = 64;

/// Checks a token name: 1..=64 characters of `A-Z a-z 0-9 . _ -`.
pub(crate) fn check_name(name: &str) -> Result<(), HttpError> {
    let invalid = |reason: &str| HttpError::InvalidId {
        id: name.escape_debug().to_string(),
        reason: reason.into(),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid("a token name is 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid("a token name holds only A-Z, a-z, 0-9, '.', '_' and '-'"));
    }
    Ok(())
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_include_the_ones_below() {
        assert!(Scope::Admin.allows(Scope::Write) && Scope::Admin.allows(Scope::Read));
        assert!(Scope::Write.allows(Scope::Read) && !Scope::Write.allows(Scope::Admin));
        assert!(!Scope::Read.allows(Scope::Write));
        for s in Scope::ALL {
            assert_eq!(s.name().parse::<Scope>().unwrap(), s);
        }
        assert!("Admin".parse::<Scope>().is_err());
    }

    #[test]
    fn names_are_checked() {
        for ok in ["ci", "a.b_c-9", &"x".repeat(64)] {
            check_name(ok).unwrap();
        }
        for bad in ["", "a b", "ä", "a/b", &"x".repeat(65), "a\n"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
