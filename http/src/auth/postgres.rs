//! The tokens of a PostgreSQL store: the table `http_tokens` in its
//! schema, shared by every process that serves the database.

use strata_store::PostgresStore;
use strata_store::deadpool_postgres::Pool;
use strata_store::pg::{MigrationSet, Schema, connection, error, from_db, to_db};

use super::secret::Hash;
use super::{IssuedToken, MAX_TOKENS, Scope, Secret, StoredToken, TokenInfo, check_name, now_secs};
use crate::error::HttpError;

/// The migrations of the tokens' table, in order; each runs once per
/// schema. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "bearer tokens",
    r#"
CREATE TABLE {schema}.http_tokens (
    name       text   COLLATE "C" NOT NULL,
    scope      text   NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    created_at bigint NOT NULL CHECK (created_at >= 0),
    hash       bytea  NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT http_tokens_pkey PRIMARY KEY (name)
);
COMMENT ON TABLE {schema}.http_tokens IS
    'strata-http bearer tokens: name, scope, creation time (Unix seconds) and the SHA-256 of the secret (never the secret).';
"#,
)];

/// The first key of the advisory lock that serialises these migrations ("STRT").
const MIGRATION_LOCK_CLASS: i32 = 0x5354_5254;

const LIST: &str = "SELECT name, scope, created_at, hash FROM {schema}.http_tokens ORDER BY created_at, name LIMIT $1";
const INSERT: &str = "INSERT INTO {schema}.http_tokens (name, scope, created_at, hash) \
                      SELECT $1, $2, $3, $4 WHERE (SELECT count(*) FROM {schema}.http_tokens) < $5 \
                      ON CONFLICT (name) DO NOTHING";
const EXISTS: &str = "SELECT 1 FROM {schema}.http_tokens WHERE name = $1";
const DELETE: &str = "DELETE FROM {schema}.http_tokens WHERE name = $1 RETURNING name, scope, created_at, hash";

/// The tokens in a PostgreSQL store's schema.
#[derive(Clone)]
pub struct PgTokens {
    pool: Pool,
    schema: Schema,
}

impl std::fmt::Debug for PgTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTokens").field("schema", &self.schema.name()).finish()
    }
}

impl PgTokens {
    /// The tokens of `store`'s database and schema (the table created or
    /// migrated when needed).
    pub async fn open(store: &PostgresStore) -> Result<PgTokens, HttpError> {
        let schema = store.schema().clone();
        let pool = store.pool().clone();
        let mut client = connection(&pool).await?;
        MigrationSet {
            table: "http_auth_migrations",
            label: "http auth",
            lock_class: MIGRATION_LOCK_CLASS,
            migrations: MIGRATIONS,
        }
        .apply(&mut client, schema.name())
        .await?;
        Ok(PgTokens { pool, schema })
    }

    /// The table, schema-qualified.
    pub(crate) fn table(&self) -> String {
        self.schema.table("http_tokens")
    }

    /// The tokens, oldest first, without their hashes.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, HttpError> {
        Ok(self.load().await?.into_iter().map(|t| t.info).collect())
    }

    /// Creates a token named `name` with `scope` and returns its secret
    /// (only its hash is stored). A name in use is
    /// [`HttpError::AlreadyExists`]; an invalid one [`HttpError::InvalidId`].
    pub async fn create(&self, name: &str, scope: Scope) -> Result<IssuedToken, HttpError> {
        check_name(name)?;
        let secret = Secret::generate()?;
        let info = TokenInfo {
            name: name.to_string(),
            scope,
            created_at: now_secs(),
        };
        let client = connection(&self.pool).await?;
        let created = to_db(info.created_at, "a token's creation time")?;
        let max = MAX_TOKENS as i64;
        let inserted = client
            .execute(
                &self.schema.render(INSERT),
                &[&name, &scope.name(), &created, &&secret.hash()[..], &max],
            )
            .await
            .map_err(|e| error("creating a token", e))?;
        if inserted == 0 {
            let exists = client
                .query_opt(&self.schema.render(EXISTS), &[&name])
                .await
                .map_err(|e| error("creating a token", e))?;
            return Err(match exists {
                Some(_) => HttpError::AlreadyExists {
                    resource: "token",
                    id: name.to_string(),
                },
                None => HttpError::ValidationFailed {
                    reason: format!("there are {MAX_TOKENS} tokens already: revoke some first"),
                },
            });
        }
        Ok(IssuedToken { info, secret })
    }

    /// Removes the token named `name` and returns it; an unknown name is
    /// [`HttpError::NotFound`].
    pub async fn revoke(&self, name: &str) -> Result<TokenInfo, HttpError> {
        let client = connection(&self.pool).await?;
        let row = client
            .query_opt(&self.schema.render(DELETE), &[&name])
            .await
            .map_err(|e| error("revoking a token", e))?;
        match row {
            Some(row) => Ok(self.decode(&row)?.info),
            None => Err(HttpError::NotFound {
                resource: "token",
                id: name.escape_debug().to_string(),
            }),
        }
    }

    /// The tokens with their hashes, each row checked.
    pub(crate) async fn load(&self) -> Result<Vec<StoredToken>, HttpError> {
        let client = connection(&self.pool).await?;
        let rows = client
            .query(&self.schema.render(LIST), &[&(MAX_TOKENS as i64 + 1)])
            .await
            .map_err(|e| error("reading the tokens", e))?;
        if rows.len() > MAX_TOKENS {
            return Err(self.damaged(format!("more than {MAX_TOKENS} tokens")));
        }
        rows.iter().map(|row| self.decode(row)).collect()
    }

    fn decode(&self, row: &strata_store::tokio_postgres::Row) -> Result<StoredToken, HttpError> {
        let name: String = row.get(0);
        let scope: String = row.get(1);
        let hash: Vec<u8> = row.get(3);
        check_name(&name).map_err(|e| self.damaged(format!("token {name:?}: {e}")))?;
        let hash: Hash = hash
            .try_into()
            .map_err(|_| self.damaged(format!("token {name}: a hash that is not 32 bytes")))?;
        Ok(StoredToken {
            info: TokenInfo {
                scope: scope
                    .parse()
                    .map_err(|_| self.damaged(format!("token {name}: unknown scope {scope:?}")))?,
                created_at: from_db(row.get(2), "a token's creation time").map_err(HttpError::from)?,
                name,
            },
            hash,
        })
    }

    fn damaged(&self, reason: String) -> HttpError {
        HttpError::TokensDamaged {
            place: self.table(),
            reason,
        }
    }
}
