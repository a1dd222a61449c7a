//! The service's side of the tokens: what it decides at start, the keyring
//! it checks requests against (reloaded while it runs), and the
//! middleware.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::scopes::{self, Need};
use super::secret::{find, hash_presented};
use super::store::TokenSource;
use super::{Scope, StoredToken};
use crate::error::{HttpError, TokenRefusal};

/// Who may do what: nobody is asked (open, `None`), or every request is
/// checked against the keyring. An open service becomes guarded when a
/// reload finds a token (one way: a revocation never opens it). Cheap to
/// clone.
#[derive(Clone, Default)]
pub(crate) struct Access(Arc<RwLock<Option<Arc<[StoredToken]>>>>);

impl Access {
    /// Decides at start, from the tokens `source` holds and the address
    /// served:
    ///
    /// - tokens: every request is checked (until the service stops, even
    ///   if every token is revoked meanwhile: then nothing is accepted);
    /// - none, on a loopback address: open, as before tokens existed;
    /// - none, on another address: [`HttpError::InsecureBind`], unless
    ///   `insecure` (then open, with a warning).
    pub(crate) async fn start(
        source: Option<&TokenSource>,
        addr: SocketAddr,
        insecure: bool,
    ) -> Result<Access, HttpError> {
        let tokens = match source {
            Some(source) => source.load().await?,
            None => Vec::new(),
        };
        if !tokens.is_empty() {
            info!(tokens = tokens.len(), "bearer tokens required");
            return Ok(Access(Arc::new(RwLock::new(Some(tokens.into())))));
        }
        if addr.ip().is_loopback() {
            return Ok(Access::default());
        }
        if insecure {
            warn!(%addr, "serving without tokens on a non-loopback address (--insecure): anyone who reaches it may write");
            return Ok(Access::default());
        }
        Err(HttpError::InsecureBind { addr })
    }

    /// Whether requests are checked.
    pub(crate) fn required(&self) -> bool {
        self.ring().is_some()
    }

    /// The keyring now: `None` while the service is open.
    fn ring(&self) -> Option<Arc<[StoredToken]>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the keyring with what `source` holds now.
    async fn reload(&self, source: &TokenSource) -> Result<(), HttpError> {
        let tokens = source.load().await?;
        let mut ring = self.0.write().unwrap_or_else(|e| e.into_inner());
        match &*ring {
            None if tokens.is_empty() => {}
            None => {
                warn!(
                    tokens = tokens.len(),
                    "a bearer token was created while serving open: every request needs one from now on"
                );
                *ring = Some(tokens.into());
            }
            Some(old) => {
                if old.len() != tokens.len() || old.iter().zip(&tokens).any(|(a, b)| a != b) {
                    info!(tokens = tokens.len(), "bearer tokens reloaded");
                    *ring = Some(tokens.into());
                }
            }
        }
        Ok(())
    }

    /// The name of the request's token, if it has one of at least `needed`.
    fn check(&self, headers: &HeaderMap, needed: Scope) -> Result<TokenName, HttpError> {
        let Some(ring) = self.ring() else {
            return Ok(TokenName("-".into()));
        };
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(HttpError::Unauthorized {
                reason: if headers.contains_key(header::AUTHORIZATION) {
                    TokenRefusal::Malformed
                } else {
                    TokenRefusal::Missing
                },
            });
        };
        let bytes = value.as_bytes();
        let presented = match bytes.iter().position(|b| *b == b' ') {
            Some(i) if bytes[..i].eq_ignore_ascii_case(b"bearer") => bytes[i + 1..].trim_ascii(),
            _ => {
                return Err(HttpError::Unauthorized {
                    reason: TokenRefusal::Malformed,
                });
            }
        };
        let unknown = || HttpError::Unauthorized {
            reason: TokenRefusal::Unknown,
        };
        let hash = hash_presented(presented).ok_or_else(unknown)?;
        let token = find(&ring, &hash).ok_or_else(unknown)?;
        if token.info.scope.allows(needed) {
            Ok(TokenName(token.info.name.clone()))
        } else {
            Err(HttpError::InsufficientScope {
                token: token.info.name.clone(),
                scope: token.info.scope,
                needed,
            })
        }
    }
}

/// A response extension: the name of the token the request was let in
/// with, for the access log (never the secret).
#[derive(Clone, Debug)]
pub(crate) struct TokenName(pub String);

/// Reloads the keyring every `every` (at least 100 ms) until `stop`, so
/// tokens created or revoked while the service runs take effect (the
/// first token created makes an open service guarded). A failed reload
/// keeps the tokens loaded last, and says so.
pub(crate) async fn refresh_loop(access: Access, source: TokenSource, every: Duration, stop: CancellationToken) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = access.reload(&source).await {
            warn!(error = %e, tokens = %source.describe(), "reloading the bearer tokens failed: the ones loaded last stay in force");
        }
    }
}

/// The middleware: answers 401 or 403 (before anything else runs, so a
/// refused request writes nothing and records no Idempotency-Key) unless
/// the route is open or the request's token has the scope it needs.
pub(crate) async fn authorize(State(access): State<Access>, req: Request, next: Next) -> Response {
    if !access.required() {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    match scopes::need(req.method(), route) {
        Need::Open => next.run(req).await,
        Need::Scope(needed) => match access.check(req.headers(), needed) {
            Ok(token) => {
                let mut response = next.run(req).await;
                response.extensions_mut().insert(token);
                response
            }
            Err(refused) => refused.into_response(),
        },
    }
}
