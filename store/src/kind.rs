//! What kind of failure an error is, said without any transport: the
//! classification every error of strata's crates gives through [`Classify`].

use std::fmt;

macro_rules! error_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal,)*) => {
        /// What kind of failure an error is: what its caller can do about
        /// it, independent of how the error travels.
        ///
        /// Every error of strata's crates says its kind ([`Classify`]); a
        /// transport maps kinds to its own codes (strata-http to statuses
        /// and problem types, in one table there). The set follows the
        /// canonical codes of Google's APIs (gRPC) and the status classes of
        /// RFC 9110, folded to what strata's errors need. New kinds may be
        /// added: a match on a kind needs a wildcard arm, and
        /// [`ErrorKind::ALL`] lists every kind so that a mapping can be
        /// tested for completeness.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($(#[$doc])* $kind,)*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)*];

            /// A stable snake-case name, for logs and metrics labels.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => $name,)*
                }
            }
        }
    };
}

error_kinds! {
    /// The request contradicts the current state of what it names: the
    /// stream moved past the expected version, an id is taken, a state
    /// machine refuses the command, too little stock is left. Nothing was
    /// written. Re-read, decide again (or show the caller what changed)
    /// and retry. RFC 9110's "conflict with the current state of the
    /// target resource".
    Conflict => "conflict",
    /// What the request names does not exist.
    NotFound => "not_found",
    /// What the request names existed and was removed for good (a
    /// hard-deleted stream): it will never exist again. RFC 9110's 410.
    Gone => "gone",
    /// The request itself breaks a rule (a malformed id, an empty append,
    /// a zero quantity, a payment that does not match); the same request
    /// fails again whatever the state. Nothing was written. Fix the input.
    InvalidInput => "invalid_input",
    /// The request is larger than a configured limit of the store (events
    /// per append, payload, metadata or append bytes). Nothing was written.
    /// Split it, or raise the limit.
    TooLarge => "too_large",
    /// The store or a part of the service cannot answer now (it is closed,
    /// a connection was lost, a runner is not running, the retries ran out
    /// on a contended stream, a read model lags). Transient: the same
    /// request may succeed later; writes retried with the same event ids
    /// are answered without being applied twice.
    Unavailable => "unavailable",
    /// Stored data is damaged or does not match what it should be: a
    /// checksum fails, a record or payload does not decode, a read model
    /// holds what its log does not. Nothing damaged is served. Retrying
    /// does not help: restore or rebuild.
    Corrupt => "corrupt",
    /// Stored data or a schema was written by another version of strata
    /// (or other software) that this build cannot read: a newer format or
    /// migration, an event shape without an upcaster, a read model of
    /// another projection version. Run the version that wrote it, add the
    /// upcaster, or rebuild.
    Incompatible => "incompatible",
    /// The store or service cannot run as it is set up: invalid limits, a
    /// directory another process owns, a projection name or model that
    /// does not fit. An operator or the embedding program changes the
    /// setup; retrying unchanged does not help.
    Misconfigured => "misconfigured",
    /// The machine or the code failed: an I/O or database error, a bug
    /// (an event that cannot be encoded, a projection whose rules the log
    /// breaks, events delivered out of order). Look at the source error.
    Internal => "internal",
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error that says what kind of failure it is.
///
/// Implemented by every error enum of strata's crates (their inherent
/// `kind()` says the same). Generic code bounds on it, e.g.
/// `RepositoryError::kind` needs the aggregate's error to classify itself.
///
/// ```
/// use strata_store::{Classify, ErrorKind, StoreError};
///
/// fn retry_later<E: Classify>(e: &E) -> bool {
///     e.kind() == ErrorKind::Unavailable
/// }
/// assert!(retry_later(&StoreError::Unavailable { reason: "closed".into() }));
/// ```
pub trait Classify {
    /// The kind of this failure.
    fn kind(&self) -> ErrorKind;
}

/// One error of one variant, named: what the `examples()` of strata's error
/// enums return, so that a mapping of errors (strata-http's) can be tested
/// against every variant. Not part of the stable API.
#[doc(hidden)]
#[derive(Debug)]
pub struct Example<E> {
    /// The variant's name as written in its enum.
    pub variant: &'static str,
    /// An error of that variant.
    pub error: E,
}

/// Builds the `examples()` of an error enum: one error per variant, each
/// named by its variant.
///
/// `one_of_each!(Enum; Variant => expression, ...)` (with `#[cfg(..)]`
/// allowed before an entry). The names are matched against the enum in an
/// exhaustive `match`, so a variant added to the enum fails to compile
/// there until it has an example; and each example is checked, when built,
/// to be of the variant it is listed under.
#[doc(hidden)]
#[macro_export]
macro_rules! one_of_each {
    ($enum:ident; $($(#[$attr:meta])* $variant:ident => $example:expr),+ $(,)?) => {{
        let all = ::std::vec![$(
            $(#[$attr])*
            $crate::Example { variant: ::std::stringify!($variant), error: $example },
        )+];
        for example in &all {
            // Exhaustive on purpose: a new variant of the enum is a compile
            // error here until it is listed above with an example.
            let variant = match &example.error {
                $($(#[$attr])* $enum::$variant { .. } => ::std::stringify!($variant),)+
            };
            ::std::assert_eq!(variant, example.variant, "the example listed as {} is a {}", example.variant, variant);
        }
        all
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(ErrorKind::TooLarge.to_string(), "too_large");
    }
}
