//! A collection of documents, declared before use (`collection-{name}`):
//! its unique fields and whether every write must name the version it was
//! decided on.
//!
//! The unique fields are fixed when the collection is declared: adding one
//! later would need every existing document's value claimed first, and
//! dropping one would leave its claims behind. Whether writes need a
//! precondition can change at any time.

use serde::{Deserialize, Serialize};

use strata_store::{Classify, ErrorKind};

use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::domain::document::fields::{escape, overlaps, tokens};

/// The longest collection name, in bytes.
pub const MAX_COLLECTION_NAME: usize = 64;
/// The most unique fields a collection may declare.
pub const MAX_UNIQUE_FIELDS: usize = 16;

/// A field whose value no two documents of a collection may share.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UniqueField {
    /// Its JSON Pointer, e.g. `/email`.
    pub field: String,
    /// Whether strings are compared case-insensitively (by their lower-case form).
    #[serde(default)]
    pub case_insensitive: bool,
}

impl UniqueField {
    /// A unique field from what a client names: a JSON Pointer (`/contact/email`)
    /// or a top-level member name (`email`, the same as `/email`).
    pub fn parse(field: &str, case_insensitive: bool) -> Result<UniqueField, CollectionRefusal> {
        let pointer = if field.starts_with('/') {
            field.to_string()
        } else {
            format!("/{}", escape(field))
        };
        let invalid = |reason: &str| CollectionRefusal::InvalidField {
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let Some(tokens) = tokens(&pointer) else {
            return Err(invalid("not a JSON Pointer (a `~` must be followed by 0 or 1)"));
        };
        if field.is_empty() {
            return Err(invalid("a field must be named"));
        }
        if tokens.first().is_some_and(|t| t == "_version") {
            return Err(invalid("`_version` is the document's version, not a field"));
        }
        if pointer.len() > 256 || field.chars().any(char::is_control) {
            return Err(invalid("at most 256 bytes, no control characters"));
        }
        Ok(UniqueField {
            field: pointer,
            case_insensitive,
        })
    }
}

/// What a collection is declared with.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// The unique fields (fixed once declared).
    pub unique: Vec<UniqueField>,
    /// Whether every write must name its version (`If-Match`,
    /// `If-Unmodified-Since`, `_version`, `If-None-Match: *` for a create,
    /// or a merge base); one that does not is refused.
    pub require_precondition: bool,
}

/// The events of a collection's stream. Variants are only ever added at the end.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum CollectionEvent {
    /// The collection was declared.
    CollectionDeclared {
        /// Its name.
        name: String,
        /// Its declaration.
        spec: CollectionSpec,
        /// Who declared it.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// Whether writes must carry a precondition changed.
    PreconditionsChanged {
        /// The new setting.
        require_precondition: bool,
        /// Who changed it.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

impl DomainEvent for CollectionEvent {
    fn event_type(&self) -> &'static str {
        match self {
            CollectionEvent::CollectionDeclared { .. } => "CollectionDeclared",
            CollectionEvent::PreconditionsChanged { .. } => "CollectionPreconditionsChanged",
        }
    }
}

/// What a collection is asked to do.
#[derive(Clone, PartialEq, Debug)]
pub enum CollectionCommand {
    /// Declare it, or change whether writes need a precondition (the same
    /// declaration again changes nothing).
    Declare {
        /// Its name (must be the aggregate id).
        name: String,
        /// The declaration.
        spec: CollectionSpec,
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

/// Why a collection refused a declaration. Nothing was written.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionRefusal {
    /// The name cannot name a collection.
    ///
    /// Handling: fix the name. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidName {
        /// The name, as sent.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A unique field that cannot be one.
    ///
    /// Handling: fix the field. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid unique field {field:?}: {reason}")]
    InvalidField {
        /// The field, as sent.
        field: String,
        /// Why.
        reason: String,
    },
    /// The collection exists with other unique fields, which are fixed.
    ///
    /// Handling: declare a new collection instead. Kind:
    /// [`ErrorKind::Conflict`].
    #[error("the unique fields of a collection are fixed when it is declared")]
    UniqueFieldsFixed {
        /// What it was declared with.
        declared: Vec<UniqueField>,
        /// What was asked.
        requested: Vec<UniqueField>,
    },
}

impl Classify for CollectionRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            CollectionRefusal::InvalidName { .. } | CollectionRefusal::InvalidField { .. } => ErrorKind::InvalidInput,
            CollectionRefusal::UniqueFieldsFixed { .. } => ErrorKind::Conflict,
        }
    }
}

/// Checks a collection name: 1..=64 bytes of ASCII letters, digits, `_`
/// and `-`, starting with a letter or a digit.
pub fn validate_collection_name(name: &str) -> Result<(), CollectionRefusal> {
    let reason = if name.is_empty() || name.len() > MAX_COLLECTION_NAME {
        Some("must be 1 to 64 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("may only hold ASCII letters, digits, `_` and `-`")
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Some("must start with a letter or a digit")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CollectionRefusal::InvalidName {
            name: name.chars().filter(|c| !c.is_control()).take(80).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_spec(spec: &CollectionSpec) -> Result<(), CollectionRefusal> {
    if spec.unique.len() > MAX_UNIQUE_FIELDS {
        return Err(CollectionRefusal::InvalidField {
            field: spec.unique[MAX_UNIQUE_FIELDS].field.clone(),
            reason: format!("at most {MAX_UNIQUE_FIELDS} unique fields"),
        });
    }
    for (i, a) in spec.unique.iter().enumerate() {
        if let Some(b) = spec.unique[..i].iter().find(|b| overlaps(&a.field, &b.field)) {
            return Err(CollectionRefusal::InvalidField {
                field: a.field.clone(),
                reason: format!(
                    "overlaps {:?}: a unique field's value is a string, number or boolean",
                    b.field
                ),
            });
        }
    }
    Ok(())
}

/// A collection's state: its declaration, once declared.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Collection {
    spec: Option<CollectionSpec>,
}

impl Collection {
    /// The declaration, if the collection is declared.
    pub fn spec(&self) -> Option<&CollectionSpec> {
        self.spec.as_ref()
    }
}

impl Aggregate for Collection {
    const KIND: &'static str = "collection";
    type Command = CollectionCommand;
    type Event = CollectionEvent;
    type Error = CollectionRefusal;

    fn handle(&self, command: &CollectionCommand) -> Result<Vec<CollectionEvent>, CollectionRefusal> {
        let CollectionCommand::Declare {
            name,
            spec,
            actor,
            at_ms,
        } = command;
        validate_collection_name(name)?;
        validate_spec(spec)?;
        match &self.spec {
            None => Ok(vec![CollectionEvent::CollectionDeclared {
                name: name.clone(),
                spec: spec.clone(),
                actor: actor.clone(),
                at_ms: *at_ms,
            }]),
            Some(declared) if declared.unique != spec.unique => Err(CollectionRefusal::UniqueFieldsFixed {
                declared: declared.unique.clone(),
                requested: spec.unique.clone(),
            }),
            Some(declared) if declared.require_precondition != spec.require_precondition => {
                Ok(vec![CollectionEvent::PreconditionsChanged {
                    require_precondition: spec.require_precondition,
                    actor: actor.clone(),
                    at_ms: *at_ms,
                }])
            }
            Some(_) => Ok(Vec::new()),
        }
    }

    fn apply(&mut self, event: &CollectionEvent) {
        match event {
            CollectionEvent::CollectionDeclared { spec, .. } => self.spec = Some(spec.clone()),
            CollectionEvent::PreconditionsChanged {
                require_precondition, ..
            } => {
                if let Some(spec) = &mut self.spec {
                    spec.require_precondition = *require_precondition;
                }
            }
        }
    }

    fn command_id(command: &CollectionCommand) -> Option<&str> {
        let CollectionCommand::Declare { name, .. } = command;
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::given;

    fn users(require: bool) -> CollectionSpec {
        CollectionSpec {
            unique: vec![UniqueField::parse("email", true).unwrap()],
            require_precondition: require,
        }
    }

    fn declare(spec: CollectionSpec) -> CollectionCommand {
        CollectionCommand::Declare {
            name: "users".into(),
            spec,
            actor: None,
            at_ms: 5,
        }
    }

    fn declared(spec: CollectionSpec) -> CollectionEvent {
        CollectionEvent::CollectionDeclared {
            name: "users".into(),
            spec,
            actor: None,
            at_ms: 5,
        }
    }

    #[test]
    fn declares_once_then_only_the_precondition_setting_changes() {
        given::<Collection>([])
            .when(declare(users(false)))
            .then_expect([declared(users(false))]);
        given::<Collection>([declared(users(false))])
            .when(declare(users(false)))
            .then_expect([]);
        given::<Collection>([declared(users(false))])
            .when(declare(users(true)))
            .then_expect([CollectionEvent::PreconditionsChanged {
                require_precondition: true,
                actor: None,
                at_ms: 5,
            }]);
        given::<Collection>([declared(users(false))])
            .when(declare(CollectionSpec::default()))
            .then_error(CollectionRefusal::UniqueFieldsFixed {
                declared: users(false).unique,
                requested: vec![],
            });
    }

    #[test]
    fn names_and_fields_are_checked() {
        for bad in ["", "-a", "a/b", "a b", "ü", &"a".repeat(65)] {
            assert!(validate_collection_name(bad).is_err(), "{bad:?}");
        }
        for good in ["users", "a", "Bookings_2026", "x-y"] {
            validate_collection_name(good).unwrap();
        }
        assert_eq!(UniqueField::parse("a/b", false).unwrap().field, "/a~1b");
        assert_eq!(
            UniqueField::parse("/contact/email", false).unwrap().field,
            "/contact/email"
        );
        for bad in ["", "/a~2", "_version", "/_version"] {
            assert!(UniqueField::parse(bad, false).is_err(), "{bad:?}");
        }
        let overlapping = CollectionSpec {
            unique: vec![
                UniqueField::parse("/a", false).unwrap(),
                UniqueField::parse("/a/b", false).unwrap(),
            ],
            require_precondition: false,
        };
        given::<Collection>([])
            .when(declare(overlapping))
            .then_assert(|r, _| assert!(matches!(r, Err(CollectionRefusal::InvalidField { .. }))));
    }
}
