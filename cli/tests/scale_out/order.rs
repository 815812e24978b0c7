//! What the scale-out test checks the run against: the commit order the producers' outboxes
//! kept, the monitor's view, `sagactl verify`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use testkit::effects::count;
use testkit::eventually_async;
use uuid::Uuid;

use crate::system::{BALANCE, COUPON, MONITOR, ORDER, PRODUCT, System};

/// One committed event: its producer's database, its outbox id (commit order within a saga),
/// its saga.
#[derive(Debug, Clone)]
pub struct Commit {
    pub producer: &'static str,
    pub id: i64,
    pub saga_id: i64,
}

/// Every saga event the producers committed, by event id; all of them published.
pub async fn committed(s: &System) -> HashMap<Uuid, Commit> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = SqlUuid)]
        event_id: Uuid,
        #[diesel(sql_type = BigInt)]
        saga_id: i64,
    }
    let mut commits = HashMap::new();
    for producer in [ORDER, PRODUCT, COUPON, BALANCE] {
        let mut conn = s.dbs[producer].connect().await;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT id, event_id, saga_id FROM outbox \
             WHERE saga_id IS NOT NULL AND published_at IS NOT NULL",
        )
        .load(&mut conn)
        .await
        .unwrap();
        for row in rows {
            let commit = Commit {
                producer,
                id: row.id,
                saga_id: row.saga_id,
            };
            commits.insert(row.event_id, commit);
        }
    }
    commits
}

/// How an applied log compares with the commit order.
#[derive(Debug, Default)]
pub struct Report {
    /// Committed events never applied.
    pub missing: usize,
    /// Events applied more than once.
    pub duplicates: usize,
    /// Sagas with an event applied before an earlier one of the same producer, no retry forced.
    pub out_of_order: Vec<i64>,
    /// Sagas where that happened after a forced retry.
    pub overtaken: usize,
}

/// Compares `log` (saga, event id in the order applied) with `commits`: within one saga, the
/// events of one producer must be applied in its commit order, except in `forced` sagas.
pub fn compare(
    commits: &HashMap<Uuid, Commit>,
    log: &[(i64, Uuid)],
    forced: fn(i64) -> bool,
) -> Report {
    let mut report = Report::default();
    let mut applied = HashSet::new();
    let mut last: HashMap<(i64, &str), i64> = HashMap::new();
    let mut swapped = HashSet::new();
    for (saga, event_id) in log {
        if !applied.insert(*event_id) {
            report.duplicates += 1;
            continue;
        }
        let Some(commit) = commits.get(event_id) else {
            continue;
        };
        assert_eq!(commit.saga_id, *saga, "event {event_id} under its saga");
        let previous = last.entry((*saga, commit.producer)).or_insert(commit.id);
        if commit.id < *previous {
            swapped.insert(*saga);
        }
        *previous = (*previous).max(commit.id);
    }
    report.missing = commits.keys().filter(|id| !applied.contains(*id)).count();
    for saga in swapped {
        if forced(saga) {
            report.overtaken += 1;
        } else {
            report.out_of_order.push(saga);
        }
    }
    report.out_of_order.sort_unstable();
    report
}

/// Makes the monitor's first attempt at some sagas' `OrderCompleted` fail (its retry comes
/// 50 ms later at the earliest and passes), so that their `BalanceRestorationRequested` can
/// overtake it there: the monitor must still end those sagas `cancelled`.
pub async fn force_a_retry_at_the_monitor(s: &System) {
    let mut conn = s.dbs[MONITOR].connect().await;
    for statement in [
        "CREATE FUNCTION force_retry() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF NEW.event_type = 'OrderCompleted' AND NEW.saga_id % 10 = 3 \
              AND clock_timestamp() - NEW.occurred_at < interval '40 milliseconds' THEN \
             RAISE EXCEPTION 'forced retry'; \
           END IF; \
           RETURN NEW; \
         END $$",
        "CREATE TRIGGER force_retry BEFORE INSERT ON saga_events \
         FOR EACH ROW EXECUTE FUNCTION force_retry()",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// Sagas whose `OrderCompleted` the monitor recorded after their `BalanceRestorationRequested`.
pub async fn reordered_at_monitor(s: &System) -> i64 {
    count(
        &s.dbs[MONITOR],
        "SELECT count(*) AS count FROM saga_events c JOIN saga_events r USING (saga_id) \
         WHERE c.event_type = 'OrderCompleted' AND r.event_type = 'BalanceRestorationRequested' \
         AND c.recorded_at > r.recorded_at",
    )
    .await
}

/// Waits until the monitor shows every saga of `ids` in `state`.
pub async fn assert_monitor_ended_every_saga(s: &System, ids: &[i64], state: &str) {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let wanted = i64::try_from(ids.len()).unwrap();
    eventually_async(
        Duration::from_secs(60),
        &format!("the monitor shows {wanted} sagas {state}"),
        || async {
            let mut conn = s.dbs[MONITOR].connect().await;
            let found = diesel::sql_query(
                "SELECT count(*) AS count FROM sagas WHERE state = $1 AND saga_id = ANY($2)",
            )
            .bind::<Text, _>(state)
            .bind::<diesel::sql_types::Array<BigInt>, _>(ids)
            .get_result::<Count>(&mut conn)
            .await
            .unwrap()
            .count;
            (found == wanted).then_some(())
        },
    )
    .await;
}
