//! Identifiers: quoting, and the schema that qualifies every name.

use crate::error::StoreError;

/// `name` as a quoted SQL identifier: in double quotes, each `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer
/// ones are cut, and a `NOTIFY` channel that long is refused.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The longest schema name accepted, leaving room in channel names.
const MAX_SCHEMA_BYTES: usize = 40;

/// A schema name, checked: 1..=40 bytes of lower-case ASCII letters,
/// digits and `_`, not starting with a digit. It is spliced into SQL
/// (always quoted) and into `NOTIFY` channel names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Schema {
    name: String,
    quoted: String,
}

impl Schema {
    /// Checks `name`; a bad one is [`StoreError::InvalidLimits`] (it comes
    /// from the options).
    pub fn new(name: &str) -> Result<Schema, StoreError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_SCHEMA_BYTES
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(StoreError::InvalidLimits {
                reason: format!(
                    "schema name {name:?} must be 1..={MAX_SCHEMA_BYTES} bytes of lower-case ASCII letters, \
                     digits and '_', not starting with a digit"
                ),
            });
        }
        Ok(Schema {
            name: name.to_string(),
            quoted: quote_ident(name),
        })
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name quoted for SQL.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    /// `table` in this schema, both quoted: `"schema"."table"`.
    pub fn table(&self, table: &str) -> String {
        format!("{}.{}", self.quoted, quote_ident(table))
    }

    /// `template` with every `{schema}` replaced by the quoted name (the
    /// form [`MigrationSet`](super::MigrationSet) migrations are written in).
    pub fn render(&self, template: &str) -> String {
        template.replace("{schema}", &self.quoted)
    }

    /// The `NOTIFY` channel `strata.<schema>.<topic>`, so that stores on
    /// different schemas of one database do not hear each other. Listen to
    /// it with [`Listener`](super::Listener); send on it with
    /// `pg_notify($1, payload)`. A name longer than PostgreSQL's 63-byte
    /// identifiers is [`StoreError::InvalidLimits`].
    pub fn channel(&self, topic: &str) -> Result<String, StoreError> {
        let channel = format!("strata.{}.{topic}", self.name);
        if channel.len() > MAX_IDENTIFIER_BYTES {
            return Err(StoreError::InvalidLimits {
                reason: format!("the channel name {channel:?} is longer than {MAX_IDENTIFIER_BYTES} bytes"),
            });
        }
        Ok(channel)
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("strata"), "\"strata\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn schema_names_are_checked() {
        for good in ["strata", "_x", "a1_b", &"s".repeat(40)] {
            assert_eq!(Schema::new(good).unwrap().name(), good);
        }
        for bad in ["", "1a", "Upper", "a-b", "a\"b", "a b", &"s".repeat(41)] {
            assert!(
                matches!(Schema::new(bad), Err(StoreError::InvalidLimits { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_in_a_schema_are_qualified_and_quoted() {
        let s = Schema::new("shop").unwrap();
        assert_eq!(s.quoted(), "\"shop\"");
        assert_eq!(s.table("events"), "\"shop\".\"events\"");
        assert_eq!(
            s.render("CREATE TABLE {schema}.t (); DROP TABLE {schema}.u;"),
            "CREATE TABLE \"shop\".t (); DROP TABLE \"shop\".u;"
        );
        assert_eq!(s.to_string(), "shop");
    }

    #[test]
    fn channels_fit_postgres_identifiers() {
        let longest = Schema::new(&"s".repeat(40)).unwrap();
        assert_eq!(longest.channel("models").unwrap().len(), 54);
        assert!(longest.channel(&"t".repeat(16)).is_err());
        assert!(longest.channel(&"t".repeat(15)).is_ok());
    }
}
