//! What both load-test workloads share: their options, the loopback-only
//! target check, the error they report, and request latencies.

use std::net::IpAddr;
use std::time::Duration;

use strata_client::reqwest::Url;

/// The most clients one run may start.
pub const MAX_CLIENTS: usize = 4096;
/// The most stock items or documents one run may use.
pub const MAX_RESOURCES: usize = 100_000;
/// The longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// What both workloads are given.
#[derive(Clone, Debug)]
pub struct Options {
    /// Every process, the first the one set-up and the final check use
    /// (each ends with `/`).
    pub urls: Vec<Url>,
    /// Concurrent clients.
    pub clients: usize,
    /// How long they run.
    pub duration: Duration,
    /// Hot items or documents.
    pub resources: usize,
    /// Attempts per update.
    pub max_attempts: u32,
    /// Idempotency-Key on every stock write.
    pub idempotency_keys: bool,
    /// The timeout of one request.
    pub request_timeout: Duration,
    /// `Bearer <secret>` for a service that requires tokens (marked
    /// sensitive: `Debug` does not show it).
    pub bearer: Option<strata_client::reqwest::header::HeaderValue>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            urls: vec![Url::parse("http://127.0.0.1:8080/").expect("a valid URL")],
            clients: 16,
            duration: Duration::from_secs(10),
            resources: 1,
            max_attempts: 50,
            idempotency_keys: false,
            request_timeout: Duration::from_secs(10),
            bearer: None,
        }
    }
}

/// `Authorization: Bearer <secret>`, marked sensitive.
pub(crate) fn bearer(secret: &str) -> Result<strata_client::reqwest::header::HeaderValue, LoadError> {
    let mut value = strata_client::reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}"))
        .map_err(|_| fail("--token holds a character a header cannot carry"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Why a run could not be made or checked.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "load test: {}", self.0)
    }
}

impl std::error::Error for LoadError {}

pub(crate) fn fail(reason: impl Into<String>) -> LoadError {
    LoadError(reason.into())
}

/// Refuses any target but this machine's loopback.
pub(crate) fn loopback_url(url: &str) -> Result<Url, LoadError> {
    let mut parsed = Url::parse(url).map_err(|e| fail(format!("invalid --url {url:?}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(fail("only http:// URLs are supported"));
    }
    let host = parsed.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(fail(format!(
            "{url} is not a loopback address: the load test only targets this machine (127.0.0.0/8, ::1, localhost)"
        )));
    }
    if !parsed.path().ends_with('/') {
        parsed.set_path(&format!("{}/", parsed.path()));
    }
    Ok(parsed)
}

impl Options {
    pub(crate) fn check(&self) -> Result<(), LoadError> {
        if !(1..=MAX_CLIENTS).contains(&self.clients) || !(1..=MAX_RESOURCES).contains(&self.resources) {
            return Err(fail(format!(
                "clients must be 1..={MAX_CLIENTS} and resources 1..={MAX_RESOURCES}"
            )));
        }
        if self.duration > MAX_DURATION || self.duration.is_zero() {
            return Err(fail(format!(
                "the duration must be above 0 and at most {MAX_DURATION:?}"
            )));
        }
        if self.urls.is_empty() {
            return Err(fail("--url names no service"));
        }
        Ok(())
    }

    /// The HTTP client every workload uses: pooled for the clients, no
    /// redirects (one could lead off this machine).
    pub(crate) fn http(&self) -> Result<strata_client::reqwest::Client, LoadError> {
        let mut headers = strata_client::reqwest::header::HeaderMap::new();
        if let Some(bearer) = &self.bearer {
            headers.insert(strata_client::reqwest::header::AUTHORIZATION, bearer.clone());
        }
        strata_client::reqwest::Client::builder()
            .default_headers(headers)
            .timeout(self.request_timeout)
            .redirect(strata_client::reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(self.clients)
            .build()
            .map_err(|e| fail(e.to_string()))
    }
}

/// Request latencies in microseconds, and their percentiles.
#[derive(Default)]
pub(crate) struct Latencies(pub Vec<u32>);

impl Latencies {
    pub(crate) fn record(&mut self, d: Duration) {
        self.0.push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    /// Sorts, then gives p50, p99 and the maximum.
    pub(crate) fn summary(mut self) -> (Duration, Duration, Duration) {
        self.0.sort_unstable();
        let pct = |p: f64| -> Duration {
            if self.0.is_empty() {
                return Duration::ZERO;
            }
            let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
            Duration::from_micros(u64::from(self.0[i]))
        };
        let max = Duration::from_micros(self.0.last().copied().map(u64::from).unwrap_or(0));
        (pct(0.50), pct(0.99), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:1/",
            "http://localhost:80",
            "http://[::1]:8080",
        ] {
            assert!(loopback_url(ok).unwrap().path().ends_with('/'), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://192.168.1.2",
            "http://example.com",
            "https://127.0.0.1",
            "nonsense",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentiles() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let (p50, p99, max) = l.summary();
        assert_eq!(
            (p50, p99, max),
            (
                Duration::from_millis(50),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
    }
}
