//! The fold of one page of events into every model being rebuilt.
//!
//! The models are independent (each folds into a write set of its own),
//! so with several models and more than one core they fold side by side:
//! each page, the models are dealt to lanes (this thread and up to one
//! scoped thread per further core, see `threads::side_by_side`), the
//! costliest model first, each to the lane with the least work so far,
//! by what each model's last page cost. In the bench's rebuild the order
//! summary takes about three quarters of the fold's work: it gets a lane
//! of its own, and the stock levels and the document listing share the
//! other with the read-ahead.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use strata_store::RecordedEvent;

use super::{Target, check_and_apply};
use crate::backend::Checkpoint;
use crate::error::ProjectionError;
use crate::threads::{cores, side_by_side};

/// A page shorter than this folds on one thread: a thread costs more
/// than it saves there. (Under test, every page of two events or more
/// folds in lanes, and there are at least two cores, so the tests run
/// that path.)
const LANES_MIN_EVENTS: usize = if cfg!(test) { 2 } else { 512 };

impl Target<'_> {
    /// Folds `events` (which follow position `done` and end at `last`)
    /// into this model's pending write set, timing it.
    fn fold(&mut self, events: &[RecordedEvent], done: u64, last: Checkpoint) -> Result<(), ProjectionError> {
        let started = Instant::now();
        let mut ws = match self.pending.take() {
            Some((ws, _)) => ws,
            None => self.building.write_set(self.projection.model_version()),
        };
        let mut previous = done;
        for event in events {
            check_and_apply(self.projection, event, previous, &mut ws)?;
            previous = event.position;
        }
        self.pending = Some((ws, last));
        self.cost = started.elapsed();
        Ok(())
    }
}

/// Folds `events` (which follow position `done` and end at `last`) into
/// every model's pending write set, in lanes when it pays. If models fail,
/// the error is the first failed model's, in the order of `models`.
pub(super) fn fold_page(
    models: &mut [Target<'_>],
    events: &[RecordedEvent],
    done: u64,
    last: Checkpoint,
) -> Result<(), ProjectionError> {
    let lanes = cores().min(models.len());
    if lanes < 2 || events.len() < LANES_MIN_EVENTS {
        return models.iter_mut().try_for_each(|t| t.fold(events, done, last));
    }
    let costs: Vec<Duration> = models.iter().map(|t| t.cost).collect();
    let mut dealt: Vec<Vec<(usize, &mut Target<'_>)>> = (0..lanes).map(|_| Vec::new()).collect();
    let lane_of = deal(&costs, lanes);
    for (i, t) in models.iter_mut().enumerate() {
        dealt[lane_of[i]].push((i, t));
    }
    let folded = side_by_side("strata-lane", dealt, |lane| {
        lane.into_iter()
            .map(|(i, t)| (i, t.fold(events, done, last)))
            .collect::<Vec<_>>()
    });
    let mut results: Vec<_> = folded.into_iter().flatten().collect();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().try_for_each(|(_, r)| r)
}

/// Which of `lanes` lanes each model (by index) folds in: the costliest
/// first, each to the lane with the least cost so far. Models of equal
/// cost (all zero, on the first page) are dealt round robin, in order.
fn deal(costs: &[Duration], lanes: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by_key(|&i| (Reverse(costs[i]), i));
    let mut load = vec![(Duration::ZERO, 0usize); lanes];
    let mut lane_of = vec![0; costs.len()];
    for i in order {
        // The least loaded lane; of those, the one with the fewest models.
        let (lane, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(lane, (cost, models))| (*cost, *models, *lane))
            .expect("at least one lane");
        load[lane].0 += costs[i];
        load[lane].1 += 1;
        lane_of[i] = lane;
    }
    lane_of
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn the_costliest_model_gets_a_lane_of_its_own() {
        // The order summary costs three times the rest together.
        assert_eq!(deal(&ms(&[900, 270, 10]), 2), vec![0, 1, 1]);
        assert_eq!(deal(&ms(&[10, 270, 900]), 2), vec![1, 1, 0]);
        // Two heavy models apart, the light ones with the lighter of them.
        assert_eq!(deal(&ms(&[500, 400, 50, 60]), 2), vec![0, 1, 1, 1]);
    }

    #[test]
    fn models_of_no_cost_yet_are_dealt_round_robin() {
        assert_eq!(deal(&ms(&[0, 0, 0]), 2), vec![0, 1, 0]);
        assert_eq!(deal(&ms(&[0, 0, 0, 0]), 4), vec![0, 1, 2, 3]);
        assert_eq!(deal(&ms(&[0]), 1), vec![0]);
    }
}
