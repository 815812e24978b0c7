//! `shared::db::cached`: a statement diesel would prepare again on every run stays prepared on
//! its connection, once.

use diesel::sql_types::{BigInt, Integer};
use diesel_async::RunQueryDsl;
use testkit::TestDb;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

async fn prepared_updates(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS count FROM pg_prepared_statements WHERE statement LIKE 'UPDATE counters%'",
    )
    .get_result::<Count>(conn)
    .await
    .unwrap()
    .count
}

fn bump(n: i32) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg> {
    diesel::sql_query("UPDATE counters SET n = n + $1 WHERE id = 1").bind::<Integer, _>(n)
}

#[tokio::test]
async fn a_cached_statement_is_prepared_once_per_connection_and_kept() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    diesel::sql_query("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("INSERT INTO counters VALUES (1, 0)")
        .execute(&mut conn)
        .await
        .unwrap();

    // Without it, diesel prepares the statement, runs it and closes it: nothing stays.
    for n in 1..=3 {
        diesel::sql_query("UPDATE counters SET n = n + $1 WHERE id = 1")
            .bind::<Integer, _>(n)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(prepared_updates(&mut conn).await, 0);

    for n in 1..=3 {
        let updated = shared::db::cached(bump(n))
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(updated, 1);
    }
    assert_eq!(prepared_updates(&mut conn).await, 1, "one statement, kept");
}

/// Statements kept prepared on `conn` whose text starts with `prefix`.
async fn prepared(conn: &mut diesel_async::AsyncPgConnection, prefix: &str) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS count FROM pg_prepared_statements WHERE starts_with(statement, $1)",
    )
    .bind::<diesel::sql_types::Text, _>(prefix)
    .get_result::<Count>(conn)
    .await
    .unwrap()
    .count
}

/// Every event of a saga step goes through one outbox insert: it must stay prepared, one
/// statement for events with a saga and one for those without, however many are written.
#[tokio::test]
async fn the_outbox_insert_of_one_event_stays_prepared() {
    use shared::envelope::Envelope;
    use shared::outbox::{OutboxMessage, enqueue};
    use testkit::effects::Ping;

    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let keys = testkit::keys::dev(Some("order"));
    for n in 0..6 {
        let saga = (n % 2 == 0).then_some(n);
        let envelope = Envelope::new(&Ping { n }, saga).unwrap();
        enqueue(&mut conn, &keys, &[OutboxMessage::of::<Ping>(envelope)])
            .await
            .unwrap();
    }
    assert_eq!(
        shared::outbox::unpublished(&mut conn, std::time::Duration::ZERO)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        prepared(&mut conn, "INSERT INTO \"outbox\"").await,
        2,
        "one prepared insert with a saga id, one without"
    );
}
