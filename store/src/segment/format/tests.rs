//! The record format's round trips, shorthands and refusals.

use super::*;

/// The header of an events record holding `body`.
fn events_header(body: &[u8], first_position: u64, event_count: u32) -> RecordHeader {
    RecordHeader {
        body_len: body.len() as u32,
        first_position,
        synced_to: 0,
        event_count,
        body_crc: crc32c::crc32c(body),
        kind: KIND_EVENTS,
    }
}

fn sample() -> (RecordHeader, Bytes) {
    sample_in(SEGMENT_VERSION)
}

fn sample_in(version: u32) -> (RecordHeader, Bytes) {
    let a = StreamId::new("a").unwrap();
    let b = StreamId::new("b-1").unwrap();
    let mut meta = Metadata {
        correlation_id: Some("c".into()),
        ..Metadata::default()
    };
    meta.extra.insert("k".into(), "v".into());
    let ea = vec![
        NewEvent::new("A", "one"),
        NewEvent::new("A", "two").with_metadata(meta.clone()),
        NewEvent::new("A", "three").with_metadata(meta.clone()),
    ];
    let eb = vec![
        NewEvent::new("A", vec![0u8, 1, 2]).with_metadata(meta),
        NewEvent::new("B", vec![3u8]),
    ];
    let mut body = Vec::new();
    encode_body(
        &mut body,
        123,
        &[
            PartIn {
                stream: &a,
                first_version: 4,
                events: &ea,
            },
            PartIn {
                stream: &b,
                first_version: 1,
                events: &eb,
            },
        ],
        version,
    );
    let header = events_header(&body, 10, 5);
    (header, Bytes::from(body))
}

#[test]
fn a_record_round_trips_in_both_formats() {
    let mut lens = Vec::new();
    for version in [1, 2] {
        let (header, body) = sample_in(version);
        lens.push(body.len());
        let decoded = RecordHeader::decode(&header.encode()).unwrap();
        assert_eq!(decoded, header);
        decoded.check_body(&body).unwrap();
        let (parts, events) = decode_events(&decoded, &body, version).unwrap();
        assert_eq!(parts.len(), 2);
        let got: Vec<_> = events
            .iter()
            .map(|e| (e.stream_id.as_str(), e.version, e.position, e.event_type.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 4, 10, "A"),
                ("a", 5, 11, "A"),
                ("a", 6, 12, "A"),
                ("b-1", 1, 13, "A"),
                ("b-1", 2, 14, "B")
            ]
        );
        assert!(events[0].metadata.is_empty());
        for e in &events[1..4] {
            assert_eq!(e.metadata.extra["k"], "v", "{version}");
            assert_eq!(e.metadata.correlation_id.as_deref(), Some("c"));
        }
        assert!(events[4].metadata.is_empty());
        assert_eq!(&events[3].payload[..], &[0, 1, 2]);
    }
    // Format 2 leaves out each repeated type (3 times "A", 1 byte) and
    // metadata (2 times the 21 bytes after its flag: correlation id
    // 1 + 4 + 1, no causation id 1, one pair 4 + (4 + 1) + (4 + 1)).
    assert_eq!(lens[0] - lens[1], 3 + 2 * 21);
}

/// Format 1 had no shorthands: a type of exactly 0xFFFF bytes there is
/// that type, not "the previous event's".
#[test]
fn format_1_reads_a_65535_byte_type_as_itself() {
    let stream = StreamId::new("a").unwrap();
    let events = vec![NewEvent::new("T".repeat(0xFFFF), "x")];
    let mut body = Vec::new();
    let part = PartIn {
        stream: &stream,
        first_version: 1,
        events: &events,
    };
    encode_body(&mut body, 1, &[part], 1);
    let header = events_header(&body, 1, 1);
    let body = Bytes::from(body);
    let (_, decoded) = decode_events(&header, &body, 1).unwrap();
    assert_eq!(decoded[0].event_type.len(), 0xFFFF);
    assert!(decode_events(&header, &body, 2).is_err());
}

#[test]
fn a_shorthand_with_nothing_before_it_is_an_error() {
    let stream = StreamId::new("a").unwrap();
    for shorthand in ["type", "metadata"] {
        let mut body = Vec::new();
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(stream.as_str().as_bytes());
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&[7u8; 16]);
        if shorthand == "type" {
            body.extend_from_slice(&SAME_TYPE.to_le_bytes());
        } else {
            body.extend_from_slice(&1u16.to_le_bytes());
            body.push(b'A');
        }
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(if shorthand == "type" { 0 } else { SAME_METADATA });
        let header = events_header(&body, 1, 1);
        let err = decode_events(&header, &Bytes::from(body), SEGMENT_VERSION).unwrap_err();
        assert!(err.contains("previous"), "{shorthand}: {err}");
    }
}

#[test]
fn every_truncation_and_flip_is_an_error_not_a_panic() {
    let (header, body) = sample();
    for n in 0..body.len() {
        assert!(
            decode_events(&header, &body.slice(..n), SEGMENT_VERSION).is_err(),
            "truncated at {n}"
        );
    }
    let enc = header.encode();
    for i in 0..enc.len() * 8 {
        let mut bad = enc;
        bad[i / 8] ^= 1 << (i % 8);
        assert!(RecordHeader::decode(&bad).is_err(), "header bit {i}");
    }
    for i in 0..body.len() * 8 {
        let mut bad = body.to_vec();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(header.check_body(&bad).is_err(), "body bit {i}");
    }
    assert_eq!(RecordHeader::decode(&[0u8; 40]), Err(HeaderError::Zero));
}

#[test]
fn segment_header_and_names() {
    for version in [1, SEGMENT_VERSION] {
        let h = SegmentHeader {
            seq: 7,
            first_position: 99,
            version,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()).unwrap(), h);
    }
    let newer = SegmentHeader {
        seq: 7,
        first_position: 99,
        version: SEGMENT_VERSION + 1,
    };
    let err = SegmentHeader::decode(&newer.encode()).unwrap_err();
    assert!(err.contains("format version 3, this build reads 1 to 2"), "{err}");
    let h = SegmentHeader {
        seq: 7,
        first_position: 99,
        version: SEGMENT_VERSION,
    };
    let mut bad = h.encode();
    bad[20] ^= 1;
    assert!(SegmentHeader::decode(&bad).is_err());
    assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
    assert_eq!(parse_segment_name("42.seg"), None);
    assert_eq!(split_address(address(3, 4096)), (3, 4096));
    assert_eq!(record_len(1), 48);
}
