//! The event store: its retention (`MONITOR_RETENTION`: off by default; when set, ended sagas
//! idle past it are deleted with their events, in batches, and everything else is kept), and
//! its deduplication (`store/dedup.rs`); and the binary's command line (`store/command_line.rs`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

// The other tests of this binary live in `tests/store/` (no `main.rs` there, so cargo builds no
// second target).
#[path = "store/command_line.rs"]
mod command_line;
#[path = "store/dedup.rs"]
mod dedup;

use std::time::Duration;

use shared::config::InboxSettings;
use shared::service::ServiceSettings;
use testkit::effects::{count, execute};
use testkit::service::Setup;
use testkit::{TestDb, eventually_async};

/// More old ended sagas than one batch deletes.
const OLD_ENDED: i64 = 2_500;

/// The monitor cleaning up every 50 ms, built by `build` (retention on or off).
async fn start(
    build: impl AsyncFnOnce(&ServiceSettings) -> anyhow::Result<shared::service::Application>,
) -> Setup {
    Setup::start(
        monitor_service::NAME,
        monitor_service::MIGRATIONS,
        async |settings| {
            let mut settings = settings.clone();
            settings.inbox = InboxSettings {
                window: Duration::from_secs(3600),
                cleanup_interval: Duration::from_millis(50),
            };
            build(&settings).await
        },
    )
    .await
}

/// Sagas `from..=to` in `state`, last moved `age` ago, three events each: one statement, as
/// the monitor records a saga's row and its event in one transaction.
async fn sagas(db: &TestDb, (from, to): (i64, i64), state: &str, age: &str) {
    execute(
        db,
        &format!(
            "WITH planted AS ( \
               INSERT INTO sagas (saga_id, state, started_at, last_event_at, last_event_type) \
               SELECT n, '{state}', now() - interval '{age}', now() - interval '{age}', 'X' \
               FROM generate_series({from}, {to}) AS n RETURNING saga_id) \
             INSERT INTO saga_events (event_id, saga_id, event_type, occurred_at, recorded_at, payload) \
             SELECT gen_random_uuid(), saga_id, 'X', now() - interval '{age}', now() - interval '{age}', '{{}}' \
             FROM planted, generate_series(1, 3)"
        ),
    )
    .await;
}

/// The store as the test plants it: old ended sagas (completed, failed, cancelled), an old
/// saga still in flight and one cancelling, recent ended sagas, and events outside any saga.
async fn plant(db: &TestDb) {
    sagas(db, (1, OLD_ENDED - 2), "completed", "3 days").await;
    sagas(db, (OLD_ENDED - 1, OLD_ENDED - 1), "failed", "3 days").await;
    sagas(db, (OLD_ENDED, OLD_ENDED), "cancelled", "3 days").await;
    sagas(db, (10_001, 10_001), "in_flight", "3 days").await;
    sagas(db, (10_002, 10_002), "cancelling", "3 days").await;
    sagas(db, (20_001, 20_010), "completed", "23 hours").await;
    for age in ["3 days", "1 hour"] {
        execute(
            db,
            &format!(
                "INSERT INTO saga_events (event_id, saga_id, event_type, occurred_at, recorded_at, payload) \
                 VALUES (gen_random_uuid(), NULL, 'Loose', now() - interval '{age}', now() - interval '{age}', '{{}}')"
            ),
        )
        .await;
    }
}

async fn counts(db: &TestDb) -> (i64, i64) {
    (
        count(db, "SELECT count(*) AS count FROM sagas").await,
        count(db, "SELECT count(*) AS count FROM saga_events").await,
    )
}

#[tokio::test]
async fn retention_deletes_ended_sagas_past_it_with_their_events_and_keeps_the_rest() {
    let s = start(async |settings| {
        let day = Duration::from_secs(24 * 3600);
        monitor_service::build_with(settings, None, Some(day)).await
    })
    .await;
    plant(&s.db).await;
    // Left: the two unfinished old sagas and the ten recent ones (3 events each), and the
    // recent loose event.
    let kept = (12, 12 * 3 + 1);
    eventually_async(Duration::from_secs(20), "the old sagas deleted", || async {
        (counts(&s.db).await == kept).then_some(())
    })
    .await;
    let unfinished = "SELECT count(*) AS count FROM sagas WHERE saga_id IN (10001, 10002)";
    assert_eq!(
        count(&s.db, unfinished).await,
        2,
        "unfinished sagas are kept"
    );
    let recent = "SELECT count(*) AS count FROM saga_events WHERE saga_id BETWEEN 20001 AND 20010";
    assert_eq!(
        count(&s.db, recent).await,
        30,
        "recent sagas keep their events"
    );
    let loose = "SELECT count(*) AS count FROM saga_events WHERE saga_id IS NULL";
    assert_eq!(count(&s.db, loose).await, 1, "the recent loose event");
}

#[tokio::test]
async fn without_a_retention_the_event_store_keeps_everything() {
    // The environment's setting: none, so the default.
    let s = start(monitor_service::build).await;
    plant(&s.db).await;
    let planted = counts(&s.db).await;
    // The housekeeping timer has ticked twice after the planting once two expired inbox claims
    // planted one after the other are gone; a retention would have run on the same timer.
    for _ in 0..2 {
        execute(
            &s.db,
            "INSERT INTO inbox (consumer, message_id, event_type, processed_at) \
             VALUES ('monitor', gen_random_uuid(), 'Sentinel', now() - interval '2 hours')",
        )
        .await;
        eventually_async(Duration::from_secs(20), "the cleanup to tick", || async {
            let sentinel = "SELECT count(*) AS count FROM inbox WHERE event_type = 'Sentinel'";
            (count(&s.db, sentinel).await == 0).then_some(())
        })
        .await;
    }
    assert_eq!(counts(&s.db).await, planted, "nothing deleted");
}
