//! The service's side of the tokens: what it decides at start, the keyring
//! it checks requests against (reloaded while it runs), and the
//! middleware, which also ends a streamed response (a live SSE stream)
//! once the token it was let in with is revoked, or, for one let in while
//! the service was open, once the first token is created.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::scopes::{self, Need};
use super::secret::{Hash, find, hash_presented};
use super::store::TokenSource;
use super::{Scope, StoredToken};
use crate::error::{HttpError, TokenRefusal};

/// Who may do what: nobody is asked (open, `None`), or every request is
/// checked against the keyring. An open service becomes guarded when a
/// reload finds a token (one way: a revocation never opens it). Cheap to
/// clone. The keyring is a watch channel, so a streamed response learns of
/// a reload as it happens.
#[derive(Clone)]
pub(crate) struct Access {
    ring: Arc<watch::Sender<Option<Arc<[StoredToken]>>>>,
    /// Open because it serves a loopback address: while it stays open, a
    /// request must name a loopback host (against DNS rebinding).
    loopback_open: bool,
}

impl Default for Access {
    /// Open, with no Host check (a router served by its embedder).
    fn default() -> Access {
        Access::with(None)
    }
}

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
            return Ok(Access::with(Some(tokens.into())));
        }
        if addr.ip().is_loopback() {
            return Ok(Access {
                loopback_open: true,
                ..Access::default()
            });
        }
        if insecure {
            warn!(%addr, "serving without tokens on a non-loopback address (--insecure): anyone who reaches it may write");
            return Ok(Access::default());
        }
        Err(HttpError::InsecureBind { addr })
    }

    fn with(ring: Option<Arc<[StoredToken]>>) -> Access {
        Access {
            ring: Arc::new(watch::Sender::new(ring)),
            loopback_open: false,
        }
    }

    /// Whether requests are checked.
    pub(crate) fn required(&self) -> bool {
        self.ring().is_some()
    }

    /// The keyring now: `None` while the service is open.
    fn ring(&self) -> Option<Arc<[StoredToken]>> {
        self.ring.borrow().clone()
    }

    /// Replaces the keyring with what `source` holds now.
    async fn reload(&self, source: &TokenSource) -> Result<(), HttpError> {
        let tokens = source.load().await?;
        // Watchers (streamed responses) are woken only by a change.
        self.ring.send_if_modified(|ring| match ring {
            None if tokens.is_empty() => false,
            None => {
                warn!(
                    tokens = tokens.len(),
                    "a bearer token was created while serving open: every request needs one from now on"
                );
                *ring = Some(tokens.into());
                true
            }
            Some(old) => {
                if old.len() != tokens.len() || old.iter().zip(&tokens).any(|(a, b)| a != b) {
                    info!(tokens = tokens.len(), "bearer tokens reloaded");
                    *ring = Some(tokens.into());
                    true
                } else {
                    false
                }
            }
        });
        Ok(())
    }

    /// The request's token, if it has one of at least `needed` (`None`
    /// while the service is open).
    fn check(&self, headers: &HeaderMap, needed: Scope) -> Result<Option<Admitted>, HttpError> {
        let Some(ring) = self.ring() else {
            return Ok(None);
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
            Ok(Some(Admitted {
                name: TokenName(token.info.name.clone()),
                hash,
                needed,
            }))
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

/// The token a request was let in with: its name, the hash it is found
/// by, and the scope the route needed.
struct Admitted {
    name: TokenName,
    hash: Hash,
    needed: Scope,
}

/// Whether `ring` lets the token of `hash` in for what needs `needed`
/// (false once it is revoked, or re-created with a lower scope).
fn allowed(ring: Option<&Arc<[StoredToken]>>, hash: &Hash, needed: Scope) -> bool {
    ring.and_then(|ring| find(ring, hash))
        .is_some_and(|token| token.info.scope.allows(needed))
}

/// A streamed response (a body of no known length: the live SSE streams,
/// the web console's live tail) ends at the first reload of the keyring
/// that no longer lets its token in; nothing is sent after it. A body of
/// known length is left as it is: it ends on its own.
fn end_when_revoked(response: Response, access: &Access, admitted: &Admitted) -> Response {
    let (hash, needed) = (admitted.hash, admitted.needed);
    end_when(response, access, move |ring| allowed(ring, &hash, needed))
}

/// A streamed response let in while the service was open (no token asked)
/// ends when the first token is created: from then on the service is
/// guarded, and an anonymous stream would go on reading what only a token
/// may read. As [`end_when_revoked`], a body of known length is left as it
/// is.
fn end_when_guarded(response: Response, access: &Access) -> Response {
    end_when(response, access, |ring| ring.is_none())
}

/// Ends a streamed `response` at the first state of the keyring (the one
/// now included) for which `admits` is false; a body of known length is
/// left as it is.
fn end_when(
    response: Response,
    access: &Access,
    admits: impl Fn(Option<&Arc<[StoredToken]>>) -> bool + Send + 'static,
) -> Response {
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    let mut keyring = access.ring.subscribe();
    let refused = async move {
        loop {
            if !admits(keyring.borrow_and_update().as_ref()) {
                return;
            }
            if keyring.changed().await.is_err() {
                // The service is stopping: its shutdown ends the stream.
                std::future::pending::<()>().await;
            }
        }
    };
    let (parts, body) = response.into_parts();
    let body = Body::from_stream(body.into_data_stream().take_until(Box::pin(refused)));
    Response::from_parts(parts, body)
}

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

/// Checks that a request to a service open on loopback names a loopback
/// host: `localhost`, an address of `127.0.0.0/8` or `[::1]`, with any port
/// (a request without a Host, which no browser sends, is let through). A
/// page of another site that its DNS points at 127.0.0.1 (DNS rebinding)
/// sends its own name, and is refused.
///
/// The host named is the request target's authority when it has one, and
/// the Host header only otherwise: an absolute-form target
/// (`GET http://host/path`) replaces the Host header, which the server
/// must then ignore (RFC 9112 §3.2.2), and an HTTP/2 request names its
/// host in `:authority`. hyper keeps either in the request's URI.
fn loopback_host(req: &Request) -> Result<(), HttpError> {
    let host = match req.uri().authority() {
        // Any userinfo (`user@`) is not part of the host.
        Some(authority) => authority.as_str().rsplit('@').next().unwrap_or_default().to_string(),
        None => {
            let mut values = req.headers().get_all(header::HOST).iter();
            match (values.next(), values.next()) {
                (None, _) => return Ok(()),
                (Some(value), None) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
                (Some(_), Some(_)) => {
                    return Err(HttpError::ForeignHost {
                        host: "(more than one Host header)".into(),
                    });
                }
            }
        }
    };
    if is_loopback_host(&host) {
        Ok(())
    } else {
        Err(HttpError::ForeignHost {
            host: host.escape_debug().to_string(),
        })
    }
}

/// Whether `host` (a Host header's value: a name or address and an
/// optional port) names this machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let port = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(port);
        return port_ok && inner.parse::<std::net::Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    let name = match host.rsplit_once(':') {
        Some((name, p)) if port(p) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The middleware: answers 421 to a request for another host while the
/// service is open on loopback (see [`loopback_host`]), and 401 or 403 (before anything else runs, so a
/// refused request writes nothing and records no Idempotency-Key) unless
/// the route is open or the request's token has the scope it needs.
pub(crate) async fn authorize(State(access): State<Access>, req: Request, next: Next) -> Response {
    if !access.required() {
        if access.loopback_open
            && let Err(refused) = loopback_host(&req)
        {
            return refused.into_response();
        }
        let response = next.run(req).await;
        return end_when_guarded(response, &access);
    }
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    match scopes::need(req.method(), route) {
        Need::Open => next.run(req).await,
        Need::Scope(needed) => match access.check(req.headers(), needed) {
            Ok(None) => next.run(req).await,
            Ok(Some(admitted)) => {
                // For the Idempotency-Key middleware, which binds keys to it.
                let mut req = req;
                req.extensions_mut().insert(admitted.name.clone());
                let response = next.run(req).await;
                let mut response = end_when_revoked(response, &access, &admitted);
                response.extensions_mut().insert(admitted.name);
                response
            }
            Err(refused) => refused.into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts_are_told_from_the_others() {
        for ok in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:9",
            "127.1.2.3:65535",
            "[::1]",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]:1",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "0.0.0.0:80",
            "[::2]:80",
            "[::ffff:127.0.0.1]",
            "[::1",
            "::1",
            "localhost:",
            "localhost:80:80",
            "localhost:port",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
