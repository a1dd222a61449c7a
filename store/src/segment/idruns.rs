//! The ids of an index entry: runs of ids with consecutive versions and
//! positions, encoded compactly (see [`encode_runs`]), and read back with
//! every length and sum checked, since the bytes come from disk.

use super::index::{be, unseal};
use crate::decide::IdEntry;
use crate::error::StoreError;
use crate::types::EventId;

/// An id key: `i`, tag, bucket (u64), stream hash (u64), first position (u64).
pub(crate) const ID_KEY_BYTES: usize = 26;

/// Runs of consecutive ids (consecutive versions and positions too).
pub(crate) struct Run {
    pub(crate) first_version: u64,
    pub(crate) first_position: u64,
    pub(crate) ids: Vec<EventId>,
}

/// Encodes an id entry's runs, oldest first, each as varints (LEB128):
/// the gap in versions and in positions after the previous run's end (the
/// first run's from version 0 and from the entry key's first position),
/// the number of ids, then the ids (16 bytes each). Ids that do not
/// follow one another (random ids spread over hash buckets) then cost
/// about 20 bytes rather than 36. `None` if a run does not come after the
/// one before it (the caller starts a new entry there) or runs past the
/// largest position.
pub(crate) fn encode_runs(first_position: u64, runs: &[Run]) -> Option<Vec<u8>> {
    let mut v = Vec::with_capacity(runs.iter().map(|r| 6 + 16 * r.ids.len()).sum());
    let (mut version, mut position) = (0u64, first_position);
    for r in runs {
        put_varint(&mut v, r.first_version.checked_sub(version)?);
        put_varint(&mut v, r.first_position.checked_sub(position)?);
        put_varint(&mut v, r.ids.len() as u64);
        for id in &r.ids {
            v.extend_from_slice(id.as_bytes());
        }
        version = r.first_version.checked_add(r.ids.len() as u64)?;
        position = r.first_position.checked_add(r.ids.len() as u64)?;
    }
    Some(v)
}

fn put_varint(v: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        v.push((n as u8) | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
}

/// Reads a varint at `*at`; `None` if it is cut short or over 64 bits.
fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        let part = (byte & 0x7f) as u64;
        if shift == 63 && part > 1 {
            return None;
        }
        n |= part << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Calls `f` for every id of an id entry's runs.
pub(crate) fn for_each_in_runs(
    key: &[u8],
    value: &[u8],
    mut f: impl FnMut(EventId, IdEntry),
) -> Result<(), StoreError> {
    let body = unseal(key, value)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        location: format!("index entry {}", String::from_utf8_lossy(key)),
        detail: format!("{detail}; delete the index directory and reopen to rebuild it"),
    };
    if key.len() != ID_KEY_BYTES {
        return Err(corrupt(format!("an id key of {} bytes", key.len())));
    }
    let (mut version, mut position) = (0u64, be(key, ID_KEY_BYTES - 8));
    let mut at = 0;
    while at < body.len() {
        let mut next = || get_varint(body, &mut at).ok_or_else(|| corrupt("truncated run".into()));
        let (dv, dp, n) = (next()?, next()?, next()?);
        let overflow = || corrupt("a run past the largest position".into());
        version = version.checked_add(dv).ok_or_else(overflow)?;
        position = position.checked_add(dp).ok_or_else(overflow)?;
        if (((body.len() - at) / 16) as u64) < n {
            return Err(corrupt(format!("a run of {n} ids runs past the entry")));
        }
        let (end_version, end_position) = (
            version.checked_add(n).ok_or_else(overflow)?,
            position.checked_add(n).ok_or_else(overflow)?,
        );
        let n = n as usize;
        for i in 0..n {
            let id = EventId::from_uuid(uuid::Uuid::from_bytes(
                body[at + 16 * i..at + 16 * (i + 1)].try_into().expect("16 bytes"),
            ));
            f(
                id,
                IdEntry {
                    version: version + i as u64,
                    position: position + i as u64,
                },
            );
        }
        at += 16 * n;
        (version, position) = (end_version, end_position);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::index::seal;

    fn key(first_position: u64) -> Vec<u8> {
        let mut k = vec![b'i', b'H'];
        k.extend_from_slice(&7u64.to_be_bytes());
        k.extend_from_slice(&9u64.to_be_bytes());
        k.extend_from_slice(&first_position.to_be_bytes());
        k
    }

    fn decode(k: &[u8], v: &[u8]) -> Result<Vec<(EventId, u64, u64)>, StoreError> {
        let mut out = Vec::new();
        for_each_in_runs(k, v, |id, e| out.push((id, e.version, e.position)))?;
        Ok(out)
    }

    #[test]
    fn varints_round_trip_and_refuse_overlong_input() {
        for n in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut v = Vec::new();
            put_varint(&mut v, n);
            let mut at = 0;
            assert_eq!(get_varint(&v, &mut at), Some(n));
            assert_eq!(at, v.len());
            let mut at = 0;
            assert_eq!(get_varint(&v[..v.len() - 1], &mut at), None, "cut short: {n}");
        }
        let mut at = 0;
        assert_eq!(get_varint(&[0xff; 10], &mut at), None, "over 64 bits");
        let mut at = 0;
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], &mut at),
            None
        );
    }

    #[test]
    fn runs_round_trip_with_gaps() {
        let ids: Vec<EventId> = (0..7).map(|_| EventId::new()).collect();
        let runs = vec![
            Run {
                first_version: 5,
                first_position: 1000,
                ids: ids[..3].to_vec(),
            },
            Run {
                first_version: 300,
                first_position: 70_000,
                ids: ids[3..4].to_vec(),
            },
            Run {
                first_version: 301,
                first_position: 70_001,
                ids: ids[4..].to_vec(),
            },
        ];
        let k = key(1000);
        let v = seal(&k, encode_runs(1000, &runs).unwrap());
        let got = decode(&k, &v).unwrap();
        let want: Vec<(EventId, u64, u64)> = vec![
            (ids[0], 5, 1000),
            (ids[1], 6, 1001),
            (ids[2], 7, 1002),
            (ids[3], 300, 70_000),
            (ids[4], 301, 70_001),
            (ids[5], 302, 70_002),
            (ids[6], 303, 70_003),
        ];
        assert_eq!(got, want);
        // Random ids one per run cost about 20 bytes each, not 36.
        let single: Vec<Run> = (0..100)
            .map(|i| Run {
                first_version: 1 + 256 * i,
                first_position: 10 + 300 * i,
                ids: vec![EventId::new()],
            })
            .collect();
        let body = encode_runs(10, &single).unwrap();
        assert!(body.len() <= 100 * 21, "{} bytes", body.len());
    }

    #[test]
    fn runs_that_do_not_ascend_are_not_encoded() {
        let run = |v, p| Run {
            first_version: v,
            first_position: p,
            ids: vec![EventId::new(), EventId::new()],
        };
        assert!(
            encode_runs(10, &[run(5, 10), run(6, 20)]).is_none(),
            "version goes back"
        );
        assert!(
            encode_runs(10, &[run(5, 10), run(9, 11)]).is_none(),
            "position goes back"
        );
        assert!(encode_runs(11, &[run(5, 10)]).is_none(), "before the key's position");
    }

    #[test]
    fn damaged_entries_are_corrupt_never_a_panic() {
        let ids: Vec<EventId> = (0..3).map(|_| EventId::new()).collect();
        let k = key(u64::MAX - 1);
        assert!(
            encode_runs(
                u64::MAX - 1,
                &[Run {
                    first_version: 1,
                    first_position: u64::MAX - 1,
                    ids: ids.clone()
                }]
            )
            .is_none()
        );
        // The sum runs past u64: corrupt.
        let mut past = Vec::new();
        put_varint(&mut past, 1);
        put_varint(&mut past, 0);
        put_varint(&mut past, 3);
        ids.iter().for_each(|id| past.extend_from_slice(id.as_bytes()));
        assert!(matches!(decode(&k, &seal(&k, past)), Err(StoreError::Corrupt { .. })));
        let k = key(40);
        let body = encode_runs(
            40,
            &[Run {
                first_version: 1,
                first_position: 40,
                ids,
            }],
        )
        .unwrap();
        for cut in 0..body.len() {
            let r = decode(&k, &seal(&k, body[..cut].to_vec()));
            assert!(
                cut == 0 || matches!(r, Err(StoreError::Corrupt { .. })),
                "cut at {cut}: {r:?}"
            );
        }
        // A count far past the entry.
        let mut huge = Vec::new();
        put_varint(&mut huge, 1);
        put_varint(&mut huge, 0);
        put_varint(&mut huge, u64::MAX);
        assert!(matches!(decode(&k, &seal(&k, huge)), Err(StoreError::Corrupt { .. })));
        // A key of the wrong size.
        assert!(matches!(
            decode(&k[..20], &seal(&k[..20], body.clone())),
            Err(StoreError::Corrupt { .. })
        ));
        // A flipped bit fails the checksum.
        let mut v = seal(&k, body);
        v[0] ^= 1;
        assert!(matches!(decode(&k, &v), Err(StoreError::Corrupt { .. })));
    }
}
