//! The rules of `Idempotency-Key`, apart from where records are kept and
//! from the middleware: which keys are valid, what makes two requests the
//! same (the fingerprint), the two records a key can hold (a request in
//! flight, a completed response), how long they are kept, and what a
//! request with a key does given the record under it.
//!
//! Nothing here stores anything or reads the network; time comes from the
//! rules' [`Clock`], which tests set by hand.

#[cfg(test)]
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_store::{StoreError, from_bincode, to_bincode};

use crate::error::HttpError;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header on a replayed response.
pub const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";
/// The longest key accepted.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// A valid key: 1..=255 visible ASCII characters other than `"` and `\`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Key(String);

impl Key {
    /// Checks a key as sent, bare or as a structured-field string (`"..."`).
    pub(crate) fn parse(raw: &[u8]) -> Result<Key, HttpError> {
        let inner = match raw {
            [b'"', inner @ .., b'"'] => inner,
            other => other,
        };
        if inner.is_empty() || inner.len() > MAX_KEY_LEN {
            return Err(HttpError::InvalidIdempotencyKey {
                reason: format!("must be 1 to {MAX_KEY_LEN} characters, got {}", inner.len()),
            });
        }
        if let Some(bad) = inner
            .iter()
            .find(|b| !(0x21..=0x7e).contains(*b) || **b == b'"' || **b == b'\\')
        {
            return Err(HttpError::InvalidIdempotencyKey {
                reason: format!(
                    "character 0x{bad:02x} is not allowed: use visible ASCII without quotes or backslashes"
                ),
            });
        }
        // Visible ASCII: always UTF-8.
        Ok(Key(String::from_utf8_lossy(inner).into_owned()))
    }

    /// The key.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request's key: absent, or valid (see [`Key`]); sent twice is invalid.
pub(crate) fn parse_key(headers: &HeaderMap) -> Result<Option<Key>, HttpError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HttpError::InvalidIdempotencyKey {
            reason: "sent more than once".into(),
        });
    }
    Key::parse(value.as_bytes()).map(Some)
}

/// What makes two requests with one key the same request: a SHA-256 of
/// the method, path and query, the preconditions (with the document
/// routes' `If-Unmodified-Since`, `Strata-Merge-Base` and `Strata-Actor`
/// when present), the content type and the body.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a request.
    pub(crate) fn of(method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(method.as_str().as_bytes());
        h.update([0]);
        h.update(target.as_bytes());
        for name in [header::IF_MATCH, header::IF_NONE_MATCH, header::CONTENT_TYPE] {
            h.update([0]);
            for v in headers.get_all(name) {
                h.update(v.as_bytes());
                h.update([1]);
            }
        }
        // Headers only the document routes read, hashed only when present, so
        // the fingerprints of requests without them are those of earlier versions.
        for name in ["if-unmodified-since", "strata-merge-base", "strata-actor"] {
            let mut values = headers.get_all(name).iter().peekable();
            if values.peek().is_some() {
                h.update([2]);
                h.update(name.as_bytes());
                for v in values {
                    h.update([1]);
                    h.update(v.as_bytes());
                }
            }
        }
        h.update([0]);
        h.update(body);
        Fingerprint(h.finalize().into())
    }

    /// The fingerprint of the same request made with the token named
    /// `token`: a key is then bound to the token that first sent it (another
    /// token sending it is answered `idempotency-key-reused`, never the
    /// first one's response). Without a token (an open service) the
    /// fingerprint is left as it is.
    pub(crate) fn with_token(self, token: Option<&str>) -> Fingerprint {
        let Some(token) = token else { return self };
        let mut h = Sha256::new();
        h.update(self.0);
        h.update([3]);
        h.update(b"token");
        h.update([0]);
        h.update(token.as_bytes());
        Fingerprint(h.finalize().into())
    }

    /// Lower-case hex, as recorded in the metadata of the request's events.
    pub(crate) fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// From [`Fingerprint::to_hex`]; `None` unless 64 hex digits.
    #[cfg(test)]
    pub(crate) fn from_hex(hex: &str) -> Option<Fingerprint> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Fingerprint(bytes))
    }

    /// A made-up fingerprint, for tests.
    #[cfg(test)]
    pub(crate) fn test(byte: u8) -> Fingerprint {
        Fingerprint([byte; 32])
    }
}

/// One run of a process (a "boot"): its in-flight markers carry its id, so
/// that a later run, or another process, can tell a marker of a request
/// that died with its process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct Boot([u8; 16]);

impl Boot {
    /// A new run's id.
    pub(crate) fn new() -> Boot {
        Boot(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The id as a UUID (how PostgreSQL stores it).
    #[cfg(feature = "postgres")]
    pub(crate) fn uuid(self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.0)
    }

    /// A made-up id, for tests.
    #[cfg(test)]
    pub(crate) fn test(byte: u8) -> Boot {
        Boot([byte; 16])
    }
}

/// A response as remembered for replays.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct StoredResponse {
    /// The request it answered.
    pub fingerprint: Fingerprint,
    /// When it was recorded (ms since the epoch, by the rules' clock).
    pub created_ms: u64,
    /// Its status.
    pub status: u16,
    /// The headers worth replaying (see [`kept_header`]), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its body.
    pub body: Vec<u8>,
}

/// What a key holds. The stored form (bincode of this enum) is shared by
/// every backend and must keep decoding what earlier versions wrote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) enum Record {
    /// A request with this key is running (or died running) in run `boot`.
    InFlight {
        /// The request's fingerprint.
        fingerprint: Fingerprint,
        /// The run that holds the key.
        boot: Boot,
        /// When it started (ms since the epoch).
        started_ms: u64,
    },
    /// The request completed with this response.
    Done(StoredResponse),
}

impl Record {
    /// The stored form.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        to_bincode(self)
    }

    /// A record read back from under `key`: damage is [`StoreError::Corrupt`].
    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Record, StoreError> {
        from_bincode(bytes, || format!("idempotency record {key:?}"))
    }

    /// Whether this is an in-flight marker of run `boot`.
    pub(crate) fn is_marker_of(&self, boot: Boot) -> bool {
        matches!(self, Record::InFlight { boot: b, .. } if *b == boot)
    }
}

/// What a request with a key does.
#[derive(Debug, PartialEq)]
pub(crate) enum Begin {
    /// Run it: an in-flight marker is written; `complete` or `abandon` follows.
    Proceed {
        /// The same request started in an earlier run of the process, which
        /// died before recording its answer: its write may have landed, and
        /// the handler must look for it before writing again.
        after_crash: bool,
    },
    /// Answer with the first response.
    Replay(StoredResponse),
    /// The first request with this key is still running.
    InFlight,
    /// The key was used for another request.
    Mismatch,
}

/// What to do about the record found under a request's key.
#[derive(Debug, PartialEq)]
pub(crate) enum Judged {
    /// Answer without running the request.
    Answer(Begin),
    /// Write this run's marker (replacing what is there) and run it.
    Claim {
        /// See [`Begin::Proceed`].
        after_crash: bool,
    },
}

/// Where the rules read the time.
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    /// The system's clock.
    System,
    /// A clock tests set by hand (ms since the epoch), shared by clones.
    #[cfg(test)]
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A clock set by hand, starting at `ms`.
    #[cfg(test)]
    pub(crate) fn manual(ms: u64) -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(ms)))
    }

    /// Moves a hand-set clock on by `by`.
    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        if let Clock::Manual(ms) = self {
            ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            #[cfg(test)]
            Clock::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }
}

/// The rules as one run of the process applies them: its boot id, how long
/// records are kept, and its clock.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    boot: Boot,
    retention: Duration,
    clock: Clock,
}

impl Rules {
    /// A new run's rules: a new boot id, records kept for `retention`, the
    /// system clock.
    pub(crate) fn new(retention: Duration) -> Rules {
        Rules::with_clock(retention, Clock::System)
    }

    /// A new run's rules on `clock`.
    pub(crate) fn with_clock(retention: Duration, clock: Clock) -> Rules {
        Rules {
            boot: Boot::new(),
            retention,
            clock,
        }
    }

    /// This run's id.
    pub(crate) fn boot(&self) -> Boot {
        self.boot
    }

    /// Now, by the rules' clock (ms since the epoch).
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Records written before this (ms since the epoch) are expired.
    pub(crate) fn cutoff_ms(&self) -> u64 {
        self.now_ms().saturating_sub(self.retention_ms())
    }

    fn retention_ms(&self) -> u64 {
        u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX)
    }

    fn expired(&self, at_ms: u64) -> bool {
        at_ms < self.cutoff_ms()
    }

    /// The marker this run writes for a request with `fingerprint`.
    pub(crate) fn marker(&self, fingerprint: Fingerprint) -> Record {
        Record::InFlight {
            fingerprint,
            boot: self.boot,
            started_ms: self.now_ms(),
        }
    }

    /// The response to remember for a request with `fingerprint`, recorded now.
    pub(crate) fn response(
        &self,
        fingerprint: Fingerprint,
        status: StatusCode,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    ) -> StoredResponse {
        StoredResponse {
            fingerprint,
            created_ms: self.now_ms(),
            status: status.as_u16(),
            headers,
            body,
        }
    }

    /// The run whose liveness decides what `current` means: another run's
    /// unexpired in-flight marker. A backend that may be shared by live
    /// processes asks whether that run is alive before it [judges](Rules::judge).
    pub(crate) fn holder(&self, current: &Record) -> Option<Boot> {
        match current {
            Record::InFlight { boot, started_ms, .. } if *boot != self.boot && !self.expired(*started_ms) => {
                Some(*boot)
            }
            _ => None,
        }
    }

    /// What a request with `fingerprint` does about `current`, the record
    /// under its key; `holder_alive` says whether the run that wrote another
    /// run's in-flight marker ([`Rules::holder`]) is alive.
    ///
    /// - A completed response within the retention: replayed to the same
    ///   request, refused (mismatch) to another.
    /// - A marker of this run, or of a live one: the same request is in
    ///   flight, another is a mismatch.
    /// - A marker of a dead run within the retention: the request died with
    ///   its process, and its write may have landed. The same request runs
    ///   again, told to look for that write first; another is refused.
    /// - Nothing, or an expired record: the request runs.
    pub(crate) fn judge(&self, current: Option<&Record>, fingerprint: Fingerprint, holder_alive: bool) -> Judged {
        let same = |f: &Fingerprint| *f == fingerprint;
        let Some(record) = current else {
            return Judged::Claim { after_crash: false };
        };
        match record {
            Record::Done(r) if !self.expired(r.created_ms) => Judged::Answer(if same(&r.fingerprint) {
                Begin::Replay(r.clone())
            } else {
                Begin::Mismatch
            }),
            Record::InFlight {
                fingerprint: f, boot, ..
            } if *boot == self.boot || (holder_alive && self.holder(record).is_some()) => {
                Judged::Answer(if same(f) { Begin::InFlight } else { Begin::Mismatch })
            }
            Record::InFlight {
                fingerprint: f,
                started_ms,
                ..
            } if !self.expired(*started_ms) => {
                if same(f) {
                    Judged::Claim { after_crash: true }
                } else {
                    Judged::Answer(Begin::Mismatch)
                }
            }
            // Expired.
            _ => Judged::Claim { after_crash: false },
        }
    }

    /// Whether the purge removes `record`: an expired response, or an
    /// expired marker of another run. A dead run's marker is kept within the
    /// retention (a retry must learn that its write may have landed), and
    /// this run's markers are its requests in flight.
    pub(crate) fn purgeable(&self, record: &Record) -> bool {
        match record {
            Record::Done(r) => self.expired(r.created_ms),
            Record::InFlight { boot, started_ms, .. } => *boot != self.boot && self.expired(*started_ms),
        }
    }
}

/// Whether a response is remembered under its key: a success (the write
/// happened) or a conflict with the resource's state (409/412, the answer
/// of the request as decided). Other refusals wrote nothing and did not
/// depend on state (malformed or invalid input, a missing precondition, an
/// unknown resource), and server errors may be retried: their key is
/// released, so the corrected request can use it.
pub(crate) fn remembered(status: StatusCode) -> bool {
    status.is_success() || matches!(status, StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED)
}

/// Whether a response header is replayed: not the connection's, nor one
/// recomputed for every response.
pub(crate) fn kept_header(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "content-length" | "date" | "connection" | "transfer-encoding" | "x-request-id"
    )
}

#[cfg(test)]
mod tests;
