//! The rules of a persistent subscription group, written once (in
//! `suite`) and run on every backend (the `groups!` lines at the bottom):
//! what a group delivers, in which order, what happens to refused and
//! forgotten events, what a restart keeps, and that a group stops reading
//! the log when its consumers do not keep up.

mod common;

mod suite {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use strata_store::EventFilter;
    use strata_subscriptions::{Created, GroupSettings, NackAction, StartFrom, Strategy, SubscriptionError};

    use crate::common::{Fixture, LONG, consumer, group};

    fn settings(filter: EventFilter) -> GroupSettings {
        GroupSettings {
            filter,
            ack_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_millis(1),
            max_retry_delay: Duration::from_millis(5),
            max_retries: 2,
            ..GroupSettings::default()
        }
    }

    pub async fn a_group_delivers_what_its_filter_selects_in_order(fx: Fixture) {
        let g = group("orders");
        fx.subs
            .create_group(&g, settings(EventFilter::all().category("order")))
            .await
            .unwrap();
        let mut wanted = Vec::new();
        for i in 0..20 {
            let p = fx.append(&format!("order-{}", i % 4), "OrderPlaced").await;
            wanted.push(p);
            fx.append(&format!("sku-{i}"), "StockReceived").await;
        }
        let c = consumer("c1");
        let mut got = Vec::new();
        while got.len() < wanted.len() {
            let batch = fx.subs.read(&g, &c, 7, LONG).await.unwrap();
            assert!(!batch.is_empty() && batch.len() <= 7);
            for d in &batch {
                assert_eq!(d.attempt, 1);
                assert_eq!(d.token.position, d.event.position);
                assert!(d.event.stream_id.as_str().starts_with("order-"));
                got.push(d.event.position);
            }
            let tokens: Vec<_> = batch.iter().map(|d| d.token).collect();
            let settled = fx.subs.ack(&g, &tokens).await.unwrap();
            assert_eq!((settled.settled, settled.stale.len()), (tokens.len(), 0));
        }
        assert_eq!(got, wanted, "round robin to one consumer: oldest first");
        let none = fx.subs.read(&g, &c, 10, Duration::ZERO).await.unwrap();
        assert!(none.is_empty());
        let info = fx.subs.group(&g).await.unwrap();
        assert_eq!((info.pending, info.in_flight, info.parked), (0, 0, 0));
        assert_eq!(info.checkpoint, info.head, "the unrelated tail counts as examined");
        assert_eq!((info.lag, info.counters.acked, info.counters.delivered), (0, 20, 20));
    }

    pub async fn the_checkpoint_moves_over_events_that_do_not_match(fx: Fixture) {
        let g = group("rare");
        fx.subs
            .create_group(&g, settings(EventFilter::all().event_type("Rare")))
            .await
            .unwrap();
        for i in 0..50 {
            fx.append(&format!("noise-{i}"), "Noise").await;
        }
        assert!(
            fx.subs
                .read(&g, &consumer("c"), 10, Duration::from_millis(200))
                .await
                .unwrap()
                .is_empty()
        );
        let info = fx.subs.group(&g).await.unwrap();
        assert_eq!((info.examined, info.checkpoint, info.lag), (50, 50, 0));
    }

    pub async fn creating_again_is_idempotent_and_other_settings_conflict(fx: Fixture) {
        let g = group("twice");
        let s = settings(EventFilter::all());
        assert_eq!(fx.subs.create_group(&g, s.clone()).await.unwrap(), Created::New);
        assert_eq!(fx.subs.create_group(&g, s.clone()).await.unwrap(), Created::Existed);
        let other = GroupSettings {
            strategy: Strategy::PinnedPerStream,
            ..s.clone()
        };
        assert!(matches!(
            fx.subs.create_group(&g, other).await,
            Err(SubscriptionError::GroupExists { .. })
        ));
        let bad = GroupSettings { buffer_size: 0, ..s };
        assert!(matches!(
            fx.subs.create_group(&group("bad"), bad).await,
            Err(SubscriptionError::InvalidSettings { .. })
        ));
        let names: Vec<String> = fx
            .subs
            .groups()
            .await
            .unwrap()
            .iter()
            .map(|i| i.name.to_string())
            .collect();
        assert_eq!(names, vec!["twice"]);
        assert!(fx.subs.delete_group(&g).await.unwrap());
        assert!(!fx.subs.delete_group(&g).await.unwrap());
        assert!(matches!(
            fx.subs.read(&g, &consumer("c"), 1, Duration::ZERO).await,
            Err(SubscriptionError::GroupNotFound { .. })
        ));
        assert!(matches!(
            fx.subs.group(&g).await,
            Err(SubscriptionError::GroupNotFound { .. })
        ));
        assert!(matches!(
            fx.subs.ack(&g, &[]).await,
            Err(SubscriptionError::GroupNotFound { .. })
        ));
    }

    pub async fn a_refused_event_is_retried_then_parked_and_can_be_replayed(fx: Fixture) {
        let g = group("retries");
        fx.subs.create_group(&g, settings(EventFilter::all())).await.unwrap();
        let p = fx.append("job-1", "Job").await;
        let c = consumer("c");
        // max_retries 2: three deliveries, then parked.
        for attempt in 1..=3 {
            let batch = fx.subs.read(&g, &c, 10, LONG).await.unwrap();
            assert_eq!(batch.len(), 1);
            assert_eq!((batch[0].token.position, batch[0].attempt), (p, attempt));
            let settled = fx
                .subs
                .nack(&g, &[batch[0].token], NackAction::Retry, "handler failed")
                .await
                .unwrap();
            assert_eq!(settled.settled, 1);
        }
        assert!(
            fx.subs
                .read(&g, &c, 10, Duration::from_millis(100))
                .await
                .unwrap()
                .is_empty()
        );
        let parked = fx.subs.parked(&g, 0, 10).await.unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!((parked[0].position, parked[0].attempts), (p, 3));
        assert!(parked[0].reason.contains("handler failed"), "{}", parked[0].reason);
        let info = fx.subs.group(&g).await.unwrap();
        assert_eq!((info.parked, info.checkpoint, info.counters.redelivered), (1, p, 2));
        // A replay delivers it again, its retries counted afresh.
        assert_eq!(fx.subs.replay_parked(&g, None).await.unwrap(), 1);
        assert_eq!(fx.subs.replay_parked(&g, None).await.unwrap(), 0, "marked once");
        let again = fx.subs.read(&g, &c, 10, LONG).await.unwrap();
        assert_eq!((again[0].token.position, again[0].attempt), (p, 1));
        assert!(fx.subs.parked(&g, 0, 10).await.unwrap().is_empty());
        fx.subs.ack(&g, &[again[0].token]).await.unwrap();
        // Parked at once by the consumer.
        let q = fx.append("job-2", "Job").await;
        let batch = fx.subs.read(&g, &c, 10, LONG).await.unwrap();
        fx.subs
            .nack(&g, &[batch[0].token], NackAction::Park, "poison")
            .await
            .unwrap();
        let parked = fx.subs.parked(&g, 0, 10).await.unwrap();
        assert_eq!((parked[0].position, parked[0].attempts), (q, 1));
        assert!(
            fx.subs.parked(&g, q, 10).await.unwrap().is_empty(),
            "after is exclusive"
        );
        // Only the positions named are replayed.
        assert_eq!(fx.subs.replay_parked(&g, Some(&[q + 100])).await.unwrap(), 0);
        assert_eq!(fx.subs.replay_parked(&g, Some(&[q])).await.unwrap(), 1);
    }

    pub async fn a_forgotten_event_is_delivered_again_after_the_ack_timeout(fx: Fixture) {
        let g = group("timeouts");
        let s = GroupSettings {
            ack_timeout: Duration::from_millis(300),
            ..settings(EventFilter::all())
        };
        fx.subs.create_group(&g, s).await.unwrap();
        let p = fx.append("job-1", "Job").await;
        let dead = fx.subs.read(&g, &consumer("dies"), 10, LONG).await.unwrap();
        assert_eq!(dead.len(), 1);
        // Nothing for another consumer while the lease holds; then it times out.
        let other = consumer("lives");
        let again = fx.subs.read(&g, &other, 10, LONG).await.unwrap();
        assert_eq!((again[0].token.position, again[0].attempt), (p, 2));
        let late = fx.subs.ack(&g, &[dead[0].token]).await.unwrap();
        assert_eq!(
            (late.settled, late.stale.clone()),
            (0, vec![dead[0].token]),
            "the dead consumer's lease is stale"
        );
        assert_eq!(fx.subs.ack(&g, &[again[0].token]).await.unwrap().settled, 1);
        let info = fx.subs.group(&g).await.unwrap();
        assert_eq!(
            (info.counters.timed_out, info.counters.acked, info.checkpoint),
            (1, 1, p)
        );
    }

    pub async fn pinned_hands_out_one_event_per_stream_in_order(fx: Fixture) {
        let g = group("pinned");
        let s = GroupSettings {
            strategy: Strategy::PinnedPerStream,
            ..settings(EventFilter::all())
        };
        fx.subs.create_group(&g, s).await.unwrap();
        let mut by_stream: Vec<Vec<u64>> = vec![Vec::new(); 3];
        for i in 0..12 {
            by_stream[i % 3].push(fx.append(&format!("s-{}", i % 3), "E").await);
        }
        let (a, b) = (consumer("a"), consumer("b"));
        // One per stream, in as many reads as the group's feed takes to
        // bring the three streams' heads in.
        let mut first = read_exactly(&fx, &g, &a, 3).await;
        first.sort_by_key(|d| d.token.position);
        let heads: Vec<u64> = first.iter().map(|d| d.token.position).collect();
        assert_eq!(
            heads,
            vec![by_stream[0][0], by_stream[1][0], by_stream[2][0]],
            "one per stream"
        );
        assert!(
            fx.subs
                .read(&g, &b, 10, Duration::from_millis(100))
                .await
                .unwrap()
                .is_empty(),
            "every stream is busy"
        );
        fx.subs.ack(&g, &[first[1].token]).await.unwrap();
        let next = fx.subs.read(&g, &b, 10, LONG).await.unwrap();
        assert_eq!(
            next.iter().map(|d| d.token.position).collect::<Vec<_>>(),
            vec![by_stream[1][1]]
        );
        // A retried event keeps its stream: the next one waits for it.
        fx.subs
            .nack(&g, &[first[0].token], NackAction::Retry, "again")
            .await
            .unwrap();
        let retried = fx.subs.read(&g, &b, 10, LONG).await.unwrap();
        assert_eq!(
            retried
                .iter()
                .map(|d| (d.token.position, d.attempt))
                .collect::<Vec<_>>(),
            vec![(by_stream[0][0], 2)]
        );
    }

    /// Reads until `n` events are leased: a read returns as soon as some
    /// are due, which may be fewer than the group will have.
    async fn read_exactly(
        fx: &Fixture,
        g: &strata_subscriptions::GroupName,
        c: &strata_subscriptions::ConsumerName,
        n: usize,
    ) -> Vec<strata_subscriptions::Delivery> {
        let mut got = Vec::new();
        while got.len() < n {
            let batch = fx.subs.read(g, c, n - got.len(), LONG).await.unwrap();
            assert!(!batch.is_empty(), "{} of {n} events came within {LONG:?}", got.len());
            got.extend(batch);
        }
        got
    }

    pub async fn leases_retries_and_parked_events_survive_a_restart(fx: Fixture) {
        let g = group("durable");
        fx.subs.create_group(&g, settings(EventFilter::all())).await.unwrap();
        let mut positions = Vec::new();
        for i in 0..6 {
            positions.push(fx.append(&format!("j-{i}"), "Job").await);
        }
        let c = consumer("c");
        let batch = read_exactly(&fx, &g, &c, 4).await;
        fx.subs.ack(&g, &[batch[0].token]).await.unwrap();
        fx.subs
            .nack(&g, &[batch[1].token], NackAction::Park, "bad")
            .await
            .unwrap();
        let fx = fx.restart().await;
        // The leases of batch[2] and batch[3] are still theirs: acks count.
        let settled = fx.subs.ack(&g, &[batch[2].token, batch[3].token]).await.unwrap();
        assert_eq!(settled.settled, 2);
        let rest = read_exactly(&fx, &g, &c, 2).await;
        let rest_positions: Vec<u64> = rest.iter().map(|d| d.token.position).collect();
        assert_eq!(rest_positions, positions[4..].to_vec());
        assert!(
            rest.iter().all(|d| d.token.delivery > batch[3].token.delivery),
            "delivery numbers go on"
        );
        let parked = fx.subs.parked(&g, 0, 10).await.unwrap();
        assert_eq!(
            parked.iter().map(|p| p.position).collect::<Vec<_>>(),
            vec![positions[1]]
        );
        let info = fx.subs.group(&g).await.unwrap();
        assert_eq!((info.counters.acked, info.parked, info.in_flight), (3, 1, 2));
    }

    pub async fn a_group_starts_where_it_is_told(fx: Fixture) {
        let first = fx.append("a-1", "E").await;
        let second = fx.append("a-1", "E").await;
        fx.subs
            .create_group(
                &group("from-end"),
                GroupSettings {
                    start: StartFrom::End,
                    ..settings(EventFilter::all())
                },
            )
            .await
            .unwrap();
        fx.subs
            .create_group(
                &group("after"),
                GroupSettings {
                    start: StartFrom::After(first),
                    ..settings(EventFilter::all())
                },
            )
            .await
            .unwrap();
        let third = fx.append("a-1", "E").await;
        let c = consumer("c");
        let got = fx.subs.read(&group("from-end"), &c, 10, LONG).await.unwrap();
        assert_eq!(got.iter().map(|d| d.token.position).collect::<Vec<_>>(), vec![third]);
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(
                fx.subs
                    .read(&group("after"), &c, 10, LONG)
                    .await
                    .unwrap()
                    .iter()
                    .map(|d| d.token.position),
            );
        }
        assert_eq!(got, vec![second, third]);
    }

    pub async fn a_group_stops_reading_the_log_when_its_buffer_is_full(fx: Fixture) {
        let g = group("small");
        let s = GroupSettings {
            buffer_size: 10,
            ..settings(EventFilter::all())
        };
        fx.subs.create_group(&g, s).await.unwrap();
        let events: Vec<_> = (0..1000).map(|_| strata_store::NewEvent::new("E", "{}")).collect();
        fx.store
            .append(
                &crate::common::sid("bulk-1"),
                strata_store::ExpectedVersion::Any,
                events,
            )
            .await
            .unwrap();
        let c = consumer("never-acks");
        let mut held = BTreeSet::new();
        while held.len() < 10 {
            let batch = fx.subs.read(&g, &c, 3, LONG).await.unwrap();
            assert!(!batch.is_empty(), "stalled at {} held", held.len());
            for d in batch {
                held.insert(d.token.position);
            }
        }
        assert_eq!(held.len(), 10, "all it may hold");
        let more = fx.subs.read(&g, &c, 3, Duration::from_millis(200)).await.unwrap();
        assert!(more.is_empty(), "and no more: {more:?}");
        let info = fx.subs.group(&g).await.unwrap();
        assert_eq!(info.pending + info.in_flight, 10);
        assert!(
            info.examined <= 10,
            "read no further than its buffer: {}",
            info.examined
        );
        assert_eq!(info.lag, 1000);
    }

    pub async fn bad_input_is_refused(fx: Fixture) {
        let g = group("input");
        fx.subs.create_group(&g, settings(EventFilter::all())).await.unwrap();
        let c = consumer("c");
        assert!(matches!(
            fx.subs.read(&g, &c, 0, Duration::ZERO).await,
            Err(SubscriptionError::BatchTooLarge { .. })
        ));
        assert!(matches!(
            fx.subs
                .read(&g, &c, strata_subscriptions::MAX_READ_BATCH + 1, Duration::ZERO)
                .await,
            Err(SubscriptionError::BatchTooLarge { .. })
        ));
        let unknown = "9.9".parse().unwrap();
        let settled = fx.subs.ack(&g, &[unknown]).await.unwrap();
        assert_eq!(settled.stale, vec![unknown]);
    }
}

/// Instantiates every rule of `suite` as a test for one backend.
macro_rules! groups {
    ($backend:ident, $fixture:expr $(, $needs:ident)?) => {
        mod $backend {
            groups!(@tests [$($needs)?] $fixture;
                a_group_delivers_what_its_filter_selects_in_order,
                the_checkpoint_moves_over_events_that_do_not_match,
                creating_again_is_idempotent_and_other_settings_conflict,
                a_refused_event_is_retried_then_parked_and_can_be_replayed,
                a_forgotten_event_is_delivered_again_after_the_ack_timeout,
                pinned_hands_out_one_event_per_stream_in_order,
                leases_retries_and_parked_events_survive_a_restart,
                a_group_starts_where_it_is_told,
                a_group_stops_reading_the_log_when_its_buffer_is_full,
                bad_input_is_refused,
            );
        }
    };
    (@tests [] $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::$name($fixture).await;
            }
        )*
    };
    (@tests [needs_postgres] $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
            async fn $name() {
                crate::suite::$name($fixture).await;
            }
        )*
    };
}

groups!(sled, crate::common::Fixture::sled());
groups!(postgres, crate::common::Fixture::postgres().await, needs_postgres);
