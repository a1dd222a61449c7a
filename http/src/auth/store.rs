//! The seam between the service and where its tokens are kept: the token
//! file of a data directory ([`TokenFile`]) or the table of a PostgreSQL
//! schema (`PgTokens`), one trait and one conformance suite
//! (`conformance.rs`) for both.

use std::sync::Arc;

use async_trait::async_trait;

use super::{IssuedToken, Scope, StoredToken, TokenFile, TokenInfo};
use crate::error::HttpError;

/// Where a service's tokens are kept.
///
/// Contract (checked by the conformance suite on every implementation):
/// names are unique ([`HttpError::AlreadyExists`] for a taken one,
/// [`HttpError::InvalidId`] for an invalid one); only the hash of a secret
/// is kept; a created or revoked token is seen by every later `load`,
/// from this handle or another on the same place (another process), and
/// survives a restart; `load` lists the tokens oldest first (ties by
/// name) and refuses damaged contents ([`HttpError::TokensDamaged`]).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Every token, with its hash.
    async fn load(&self) -> Result<Vec<StoredToken>, HttpError>;
    /// Every token, without its hash.
    async fn list(&self) -> Result<Vec<TokenInfo>, HttpError> {
        Ok(self.load().await?.into_iter().map(|t| t.info).collect())
    }
    /// Creates a token; its secret is returned and kept nowhere.
    async fn create(&self, name: &str, scope: Scope) -> Result<IssuedToken, HttpError>;
    /// Removes a token ([`HttpError::NotFound`] when there is none of this name).
    async fn revoke(&self, name: &str) -> Result<TokenInfo, HttpError>;
    /// Where they are, for logs.
    fn describe(&self) -> String;
}

/// A store of tokens, shared.
pub(crate) type TokenSource = Arc<dyn TokenStore>;

/// Runs a blocking call of the token file off the runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HttpError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| HttpError::Internal {
        reason: format!("the token file task failed: {e}"),
    })?
}

#[async_trait]
impl TokenStore for TokenFile {
    async fn load(&self) -> Result<Vec<StoredToken>, HttpError> {
        let file = self.clone();
        blocking(move || file.load()).await
    }

    async fn create(&self, name: &str, scope: Scope) -> Result<IssuedToken, HttpError> {
        let (file, name) = (self.clone(), name.to_string());
        blocking(move || TokenFile::create(&file, &name, scope)).await
    }

    async fn revoke(&self, name: &str) -> Result<TokenInfo, HttpError> {
        let (file, name) = (self.clone(), name.to_string());
        blocking(move || TokenFile::revoke(&file, &name)).await
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

#[cfg(feature = "postgres")]
#[async_trait]
impl TokenStore for super::PgTokens {
    async fn load(&self) -> Result<Vec<StoredToken>, HttpError> {
        super::PgTokens::load(self).await
    }

    async fn create(&self, name: &str, scope: Scope) -> Result<IssuedToken, HttpError> {
        super::PgTokens::create(self, name, scope).await
    }

    async fn revoke(&self, name: &str) -> Result<TokenInfo, HttpError> {
        super::PgTokens::revoke(self, name).await
    }

    fn describe(&self) -> String {
        self.table()
    }
}
