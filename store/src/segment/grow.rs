//! Growing the segment being written, ahead of the writer.
//!
//! A segment is not zero-filled to its full size when it is created: only
//! its first `segment_growth_bytes` (16 MiB by default). Once fewer than
//! half of that are left ahead of the writer, a thread zero-fills and
//! syncs the next slice and only then publishes the new length
//! (`Segment::allocated`). The writer never writes past the published
//! length: when it gets there first, it waits for the slice in flight, and
//! grows the file itself if that was not enough (or failed). So a fresh
//! store takes one slice of disk, not a whole segment, and every record
//! still lands in blocks that are already written, which keeps
//! `fdatasync` from journaling an allocation per append.
//!
//! Crash safety: a slice holds nothing but zeros until the writer writes
//! records into it after it was synced, and a file cut anywhere inside a
//! slice by a crash reads as zeros up to where it ends: the end of the log
//! there, as recovery expects.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use tracing::warn;

use super::log::Segment;

/// Zeros written at a time.
const ZERO_CHUNK: usize = 1 << 20;

/// The growth of the current segment: one slice in flight at most.
pub(crate) struct Grower {
    step: u64,
    job: Option<(Arc<Segment>, JoinHandle<io::Result<()>>)>,
}

/// Zero-fills `segment` from what was published up to `target`, syncs,
/// then publishes the length. The zeros are written again even where an
/// earlier, failed attempt wrote them: after a failed sync their state is
/// unknown.
fn extend(segment: &Segment, target: u64) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut at = segment.allocated();
    while at < target {
        let n = (target - at).min(ZERO_CHUNK as u64) as usize;
        segment.file.write_at(&zeros[..n], at)?;
        at += n as u64;
    }
    segment.file.sync_data()?;
    segment.allocated.fetch_max(target, Ordering::AcqRel);
    Ok(())
}

impl Grower {
    /// Grows segments by `step` bytes at a time.
    pub(crate) fn new(step: u64) -> Grower {
        Grower {
            step: step.max(1),
            job: None,
        }
    }

    /// Makes `segment` at least `need` bytes long (at most its capacity):
    /// waits for the slice in flight, then grows it here if still short.
    pub(crate) fn ensure(&mut self, segment: &Arc<Segment>, need: u64) -> io::Result<()> {
        if segment.allocated() >= need {
            return Ok(());
        }
        self.finish();
        let allocated = segment.allocated();
        if allocated >= need {
            return Ok(());
        }
        let target = allocated
            .saturating_add(self.step)
            .max(need)
            .min(segment.capacity.max(need));
        extend(segment, target)
    }

    /// Starts zero-filling the next slice in the background once fewer
    /// than half a step is left after `offset`.
    pub(crate) fn ahead(&mut self, segment: &Arc<Segment>, offset: u64) {
        if self.job.as_ref().is_some_and(|(_, job)| !job.is_finished()) {
            return;
        }
        let allocated = segment.allocated();
        if allocated >= segment.capacity || allocated.saturating_sub(offset) > self.step / 2 {
            return;
        }
        self.finish();
        let target = allocated.saturating_add(self.step).min(segment.capacity);
        let job_segment = segment.clone();
        match std::thread::Builder::new()
            .name("strata-grow".into())
            .spawn(move || extend(&job_segment, target))
        {
            Ok(job) => self.job = Some((segment.clone(), job)),
            // The writer grows the segment itself when it gets there.
            Err(e) => warn!(error = %e, "could not start a thread to grow the segment ahead of the writer"),
        }
    }

    /// Waits for the slice in flight, if any. A failure is only logged:
    /// the writer grows the file itself when it needs the room, and fails
    /// the store if that fails too.
    pub(crate) fn finish(&mut self) {
        if let Some((segment, job)) = self.job.take() {
            let result = job
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the thread growing it panicked")));
            if let Err(e) = result {
                warn!(segment = segment.seq, error = %e, "growing the segment ahead of the writer failed");
            }
        }
    }
}
