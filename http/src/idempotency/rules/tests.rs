//! The rules alone: keys, fingerprints, every judgement, the purge's
//! choice, what is remembered, and the stored form.

use axum::http::HeaderValue;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const T0: u64 = 1_000_000_000;

fn rules(clock: &Clock) -> Rules {
    Rules::with_clock(HOUR, clock.clone())
}

fn done(rules: &Rules, fingerprint: Fingerprint) -> Record {
    Record::Done(rules.response(fingerprint, StatusCode::CREATED, vec![], b"{}".to_vec()))
}

#[test]
fn keys_are_validated() {
    let h = |v: &[u8]| {
        let mut m = HeaderMap::new();
        m.insert(IDEMPOTENCY_KEY, HeaderValue::from_bytes(v).unwrap());
        parse_key(&m).map(|k| k.map(|k| k.as_str().to_string()))
    };
    assert_eq!(h(b"abc-123").unwrap().as_deref(), Some("abc-123"));
    assert_eq!(
        h(b"\"abc\"").unwrap().as_deref(),
        Some("abc"),
        "a structured-field string"
    );
    assert_eq!(h(&[b'x'; 255]).unwrap().map(|k| k.len()), Some(255));
    for bad in [
        &b""[..],
        b"\"\"",
        b"a b",
        b"a\\b",
        b"a\"b",
        &[b'x'; 256],
        "\u{e9}".as_bytes(),
    ] {
        assert!(
            matches!(h(bad), Err(HttpError::InvalidIdempotencyKey { .. })),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(parse_key(&HeaderMap::new()).unwrap().is_none());
    let mut twice = HeaderMap::new();
    twice.append(IDEMPOTENCY_KEY, HeaderValue::from_static("a"));
    twice.append(IDEMPOTENCY_KEY, HeaderValue::from_static("a"));
    assert!(parse_key(&twice).is_err(), "sent more than once");
}

#[test]
fn the_fingerprint_covers_method_target_preconditions_and_body() {
    let none = HeaderMap::new();
    let mut with_if_match = HeaderMap::new();
    with_if_match.insert(header::IF_MATCH, HeaderValue::from_static("\"1\""));
    let mut with_type = HeaderMap::new();
    with_type.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let with = |name: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static("1"));
        h
    };
    let base = Fingerprint::of(&Method::POST, "/a", &none, b"{}");
    assert_eq!(base, Fingerprint::of(&Method::POST, "/a", &none, b"{}"));
    for other in [
        Fingerprint::of(&Method::PUT, "/a", &none, b"{}"),
        Fingerprint::of(&Method::POST, "/b", &none, b"{}"),
        Fingerprint::of(&Method::POST, "/a?x=1", &none, b"{}"),
        Fingerprint::of(&Method::POST, "/a", &none, b"{ }"),
        Fingerprint::of(&Method::POST, "/a", &with_if_match, b"{}"),
        Fingerprint::of(&Method::POST, "/a", &with_type, b"{}"),
        Fingerprint::of(&Method::POST, "/a", &with("if-unmodified-since"), b"{}"),
        Fingerprint::of(&Method::POST, "/a", &with("strata-merge-base"), b"{}"),
        Fingerprint::of(&Method::POST, "/a", &with("strata-actor"), b"{}"),
    ] {
        assert_ne!(base, other);
    }
    assert_eq!(Fingerprint::from_hex(&base.to_hex()), Some(base));
    assert_eq!(Fingerprint::from_hex("00"), None);
}

/// The fingerprint of a known request does not move: events written by
/// earlier versions record it, and a retry after a crash looks for it.
#[test]
fn the_fingerprint_of_a_request_is_stable() {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let fp = Fingerprint::of(&Method::POST, "/stock/tea/receive", &headers, br#"{"quantity":4}"#);
    let mut h = Sha256::new();
    h.update(b"POST\0/stock/tea/receive\0\0\0application/json\x01\0{\"quantity\":4}");
    let expected: [u8; 32] = h.finalize().into();
    assert_eq!(fp, Fingerprint(expected));
}

#[test]
fn a_free_key_is_claimed() {
    let clock = Clock::manual(T0);
    let r = rules(&clock);
    assert_eq!(
        r.judge(None, Fingerprint::test(1), false),
        Judged::Claim { after_crash: false }
    );
}

#[test]
fn a_completed_response_replays_to_the_same_request_only() {
    let clock = Clock::manual(T0);
    let r = rules(&clock);
    let (a, b) = (Fingerprint::test(1), Fingerprint::test(2));
    let record = done(&r, a);
    let Record::Done(stored) = &record else { unreachable!() };
    assert_eq!(
        r.judge(Some(&record), a, false),
        Judged::Answer(Begin::Replay(stored.clone()))
    );
    assert_eq!(r.judge(Some(&record), b, false), Judged::Answer(Begin::Mismatch));
    // Another run replays it too (a restart, another process).
    let later = rules(&clock);
    assert_eq!(
        later.judge(Some(&record), a, true),
        Judged::Answer(Begin::Replay(stored.clone()))
    );
}

#[test]
fn this_runs_marker_is_in_flight_whatever_its_age() {
    let clock = Clock::manual(T0);
    let r = rules(&clock);
    let (a, b) = (Fingerprint::test(1), Fingerprint::test(2));
    let marker = r.marker(a);
    assert!(marker.is_marker_of(r.boot()));
    assert_eq!(r.holder(&marker), None, "no other run to ask about");
    assert_eq!(r.judge(Some(&marker), a, false), Judged::Answer(Begin::InFlight));
    assert_eq!(r.judge(Some(&marker), b, false), Judged::Answer(Begin::Mismatch));
    clock.advance(HOUR * 2);
    assert_eq!(
        r.judge(Some(&marker), a, false),
        Judged::Answer(Begin::InFlight),
        "a request of this run holds its key until it ends"
    );
    assert!(!r.purgeable(&marker));
}

#[test]
fn a_live_runs_marker_is_in_flight_a_dead_ones_is_recovered() {
    let clock = Clock::manual(T0);
    let (first, second) = (rules(&clock), rules(&clock));
    let (a, b) = (Fingerprint::test(1), Fingerprint::test(2));
    let marker = first.marker(a);
    assert_eq!(second.holder(&marker), Some(first.boot()));
    // Alive (another process serving the same database).
    assert_eq!(second.judge(Some(&marker), a, true), Judged::Answer(Begin::InFlight));
    assert_eq!(second.judge(Some(&marker), b, true), Judged::Answer(Begin::Mismatch));
    // Dead: the same request runs again, told to look for its write.
    assert_eq!(
        second.judge(Some(&marker), a, false),
        Judged::Claim { after_crash: true }
    );
    assert_eq!(second.judge(Some(&marker), b, false), Judged::Answer(Begin::Mismatch));
    assert!(!second.purgeable(&marker), "kept within the retention");
}

#[test]
fn expired_records_free_their_key_and_are_purged() {
    let clock = Clock::manual(T0);
    let (first, second) = (rules(&clock), rules(&clock));
    let (a, b) = (Fingerprint::test(1), Fingerprint::test(2));
    let response = done(&first, a);
    let marker = first.marker(a);
    clock.advance(HOUR);
    assert!(!second.purgeable(&response), "exactly the retention: still kept");
    assert!(!second.purgeable(&marker));
    clock.advance(Duration::from_millis(1));
    for record in [&response, &marker] {
        assert_eq!(second.holder(record), None);
        assert_eq!(
            second.judge(Some(record), b, true),
            Judged::Claim { after_crash: false },
            "{record:?}"
        );
        assert_eq!(
            second.judge(Some(record), a, false),
            Judged::Claim { after_crash: false },
            "{record:?}"
        );
        assert!(second.purgeable(record), "{record:?}");
    }
    assert!(first.purgeable(&response), "a response expires for its own run too");
    assert!(!first.purgeable(&marker), "but not that run's marker");
    assert_eq!(second.cutoff_ms(), T0 + 1);
}

#[test]
fn a_clock_before_the_retention_expires_nothing() {
    let clock = Clock::manual(5);
    let r = rules(&clock);
    assert_eq!(r.cutoff_ms(), 0);
    assert!(!r.purgeable(&Record::Done(StoredResponse {
        fingerprint: Fingerprint::test(1),
        created_ms: 0,
        status: 200,
        headers: vec![],
        body: vec![],
    })));
}

#[test]
fn successes_and_conflicts_are_remembered_other_answers_release_the_key() {
    for status in [200, 201, 204, 409, 412] {
        assert!(remembered(StatusCode::from_u16(status).unwrap()), "{status}");
    }
    for status in [400, 404, 413, 415, 422, 428, 500, 503] {
        assert!(!remembered(StatusCode::from_u16(status).unwrap()), "{status}");
    }
    assert!(kept_header(&header::ETAG));
    assert!(kept_header(&header::LOCATION));
    for name in [
        header::CONTENT_LENGTH,
        header::DATE,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
    ] {
        assert!(!kept_header(&name), "{name}");
    }
    assert!(!kept_header(&HeaderName::from_static("x-request-id")));
}

/// The records as earlier versions wrote them (plain arrays where the
/// rules now have types of their own): the stored form is the same bytes.
#[test]
fn records_keep_the_stored_form_of_earlier_versions() {
    #[derive(Serialize)]
    enum Before {
        InFlight {
            fingerprint: [u8; 32],
            boot: [u8; 16],
            started_ms: u64,
        },
        Done(BeforeResponse),
    }
    #[derive(Serialize)]
    struct BeforeResponse {
        fingerprint: [u8; 32],
        created_ms: u64,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    }
    let marker = Record::InFlight {
        fingerprint: Fingerprint::test(3),
        boot: Boot::test(7),
        started_ms: T0,
    };
    let before = Before::InFlight {
        fingerprint: [3; 32],
        boot: [7; 16],
        started_ms: T0,
    };
    assert_eq!(marker.encode().unwrap(), to_bincode(&before).unwrap());
    let response = Record::Done(StoredResponse {
        fingerprint: Fingerprint::test(4),
        created_ms: T0,
        status: 201,
        headers: vec![("etag".into(), b"\"1\"".to_vec())],
        body: b"{}".to_vec(),
    });
    let before = Before::Done(BeforeResponse {
        fingerprint: [4; 32],
        created_ms: T0,
        status: 201,
        headers: vec![("etag".into(), b"\"1\"".to_vec())],
        body: b"{}".to_vec(),
    });
    let bytes = response.encode().unwrap();
    assert_eq!(bytes, to_bincode(&before).unwrap());
    assert_eq!(Record::decode("k", &bytes).unwrap(), response);
}

#[test]
fn damaged_records_are_corrupt_not_a_panic() {
    let bytes = Record::Done(StoredResponse {
        fingerprint: Fingerprint::test(4),
        created_ms: T0,
        status: 201,
        headers: vec![],
        body: vec![1; 64],
    })
    .encode()
    .unwrap();
    for cut in [0, 1, 10, bytes.len() - 1] {
        assert!(
            matches!(Record::decode("k", &bytes[..cut]), Err(StoreError::Corrupt { .. })),
            "cut at {cut}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Record::decode("k", &trailing),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        Record::decode("k", &[9, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Err(StoreError::Corrupt { .. })
    ));
}
