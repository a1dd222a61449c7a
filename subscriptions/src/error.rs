//! The one error type of the persistent subscriptions.

use strata_store::{Classify, ErrorKind, Example, StoreError};

use crate::settings::GroupName;

/// Everything that can go wrong with a persistent subscription group.
///
/// Each variant carries what a caller needs to act on it; "Handling" says
/// how, and [`SubscriptionError::kind`] what kind of failure it is. A call
/// that fails changes nothing in the group: its state is written in one
/// atomic step per call, or not at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// A group or consumer name that breaks the naming rule
    /// ([`crate::NAME_PATTERN`]).
    ///
    /// Handling: bad input, fix the name. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `group` or `consumer`.
        what: &'static str,
        /// The name (its first 64 characters, control characters removed).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// Group settings out of their ranges, or a filter that breaks its rules.
    ///
    /// Handling: bad input, fix the field named in `reason`. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("invalid group settings: {reason}")]
    InvalidSettings {
        /// The field and why.
        reason: String,
    },

    /// A delivery token that does not parse.
    ///
    /// Handling: send back the tokens exactly as they were received. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("invalid delivery token {token:?}: {reason}")]
    InvalidToken {
        /// The token (its first 64 characters).
        token: String,
        /// Why it does not parse.
        reason: &'static str,
    },

    /// More events asked for, or more tokens sent, than one call takes.
    ///
    /// Handling: split the call. Kind: [`ErrorKind::TooLarge`].
    #[error("{count} {what} in one call, more than the limit of {limit}")]
    BatchTooLarge {
        /// `events` or `tokens`.
        what: &'static str,
        /// How many were asked for or sent.
        count: usize,
        /// The limit.
        limit: usize,
    },

    /// No group of this name.
    ///
    /// Handling: create it first, or check the name. Kind:
    /// [`ErrorKind::NotFound`].
    #[error("no persistent subscription group {group}")]
    GroupNotFound {
        /// The name asked for.
        group: GroupName,
    },

    /// A group of this name exists with other settings (creating it again
    /// with the same settings is not an error).
    ///
    /// Handling: delete the group first, or pick another name. Kind:
    /// [`ErrorKind::Conflict`].
    #[error("persistent subscription group {group} already exists with other settings")]
    GroupExists {
        /// The name.
        group: GroupName,
    },

    /// Several processes kept changing the group's state at the same time
    /// (PostgreSQL), and this call lost every round of the retries.
    ///
    /// Handling: transient; retry. Kind: [`ErrorKind::Unavailable`].
    #[error("persistent subscription group {group} is changed by others too often: gave up after {attempts} attempts")]
    Contention {
        /// The group.
        group: GroupName,
        /// How many times the call tried.
        attempts: u32,
    },

    /// The group's stored state is damaged or does not decode.
    ///
    /// Handling: delete and create the group again (its consumers then get
    /// its events again from where it starts). Kind: [`ErrorKind::Corrupt`].
    #[error("corrupt subscription state ({location}): {detail}")]
    Corrupt {
        /// Which record.
        location: String,
        /// What is wrong with it.
        detail: String,
    },

    /// Reading the log, or writing the group's state, failed.
    ///
    /// Handling: see [`StoreError`]. Kind: the store error's.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SubscriptionError {
    /// What kind of failure this is (each variant's doc names its kind).
    pub fn kind(&self) -> ErrorKind {
        match self {
            SubscriptionError::InvalidName { .. }
            | SubscriptionError::InvalidSettings { .. }
            | SubscriptionError::InvalidToken { .. } => ErrorKind::InvalidInput,
            SubscriptionError::BatchTooLarge { .. } => ErrorKind::TooLarge,
            SubscriptionError::GroupNotFound { .. } => ErrorKind::NotFound,
            SubscriptionError::GroupExists { .. } => ErrorKind::Conflict,
            SubscriptionError::Contention { .. } => ErrorKind::Unavailable,
            SubscriptionError::Corrupt { .. } => ErrorKind::Corrupt,
            SubscriptionError::Store(e) => e.kind(),
        }
    }

    /// One error of every variant, for tests of a mapping of errors
    /// (strata-http's): adding a variant fails to compile here until it has
    /// an example. Not part of the stable API.
    #[doc(hidden)]
    pub fn examples() -> Vec<Example<SubscriptionError>> {
        let group = || GroupName::new("billing").expect("a valid name");
        strata_store::one_of_each!(SubscriptionError;
            InvalidName => SubscriptionError::InvalidName {
                what: "group",
                name: "a/b".into(),
                reason: "may hold only ASCII letters, digits, `.`, `_` and `-`",
            },
            InvalidSettings => SubscriptionError::InvalidSettings {
                reason: "buffer_size 0 is not within 1..=100000".into(),
            },
            InvalidToken => SubscriptionError::InvalidToken {
                token: "x".into(),
                reason: "expected <position>.<delivery>",
            },
            BatchTooLarge => SubscriptionError::BatchTooLarge {
                what: "tokens",
                count: 10_001,
                limit: 10_000,
            },
            GroupNotFound => SubscriptionError::GroupNotFound { group: group() },
            GroupExists => SubscriptionError::GroupExists { group: group() },
            Contention => SubscriptionError::Contention {
                group: group(),
                attempts: 50,
            },
            Corrupt => SubscriptionError::Corrupt {
                location: "group billing".into(),
                detail: "checksum mismatch".into(),
            },
            Store => SubscriptionError::Store(StoreError::Unavailable {
                reason: "the store is closed".into(),
            }),
        )
    }
}

impl Classify for SubscriptionError {
    fn kind(&self) -> ErrorKind {
        SubscriptionError::kind(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_an_example_and_a_kind() {
        let examples = SubscriptionError::examples();
        let kinds: Vec<_> = examples.iter().map(|e| (e.variant, e.error.kind())).collect();
        assert!(kinds.contains(&("GroupNotFound", ErrorKind::NotFound)));
        assert!(kinds.contains(&("GroupExists", ErrorKind::Conflict)));
        assert!(kinds.contains(&("Contention", ErrorKind::Unavailable)));
        assert!(kinds.contains(&("Store", ErrorKind::Unavailable)));
    }
}
