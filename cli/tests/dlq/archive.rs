//! The archive: a purge keeps what it removes in the monitor's database before it acks (a purge
//! killed in between doubles nothing), `archive list` shows it, a restore puts it back into its
//! dead-letter queue once however often it is asked, and a replay then completes the saga.

use diesel_async::RunQueryDsl;
use serde_json::json;
use testkit::effects::count;

use super::admin_api::{TOKEN, admin_app, get, post};
use super::system::{BALANCE, MONITOR, System};
use super::{audit_rows, dlq_depth, sagactl, sagactl_json, wait_dlq_depth};

async fn archive_rows(s: &System) -> i64 {
    count(&s.dbs[MONITOR], "SELECT count(*) AS count FROM dlq_archive").await
}

#[tokio::test]
async fn a_purged_dead_letter_is_archived_restored_once_and_its_replay_completes_the_saga() {
    let s = System::start().await;
    let product = s.create_product("mouse", "10.00", 5).await;
    s.charge(1, "100.00").await;
    let mut balance_db = s.dbs[BALANCE].connect().await;
    diesel::sql_query(
        "ALTER TABLE balance_history ADD CONSTRAINT poison CHECK (kind <> 'PAYMENT')",
    )
    .execute(&mut balance_db)
    .await
    .unwrap();
    let id = s.place(1, &[(product, 1)], None).await;
    wait_dlq_depth(&s, BALANCE, 1).await;
    let order = id.to_string();
    let selection = ["--queue", BALANCE, "--order-id", order.as_str()];

    purge_killed_then_again(&s, &selection).await;

    let list = [&["dlq", "archive", "list"][..], &selection, &["--json"]].concat();
    let listed = sagactl_json(&s, &list).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let archived = &listed[0];
    assert_eq!(
        (archived["saga_id"].as_i64(), &archived["restored_at"]),
        (Some(id), &json!(null)),
        "{archived}"
    );
    assert!(
        archived["purged_by"]
            .as_str()
            .unwrap()
            .ends_with("(sagactl)")
    );
    let app = admin_app(&s).await;
    let query = format!("/admin/dlq/archive?queue={BALANCE}&order_id={id}");
    let (status, served) = get(&app, &query, Some(TOKEN)).await;
    let served = &served["messages"][0];
    assert_eq!(
        (status, &served["archive_id"], &served["body"]),
        (200, &archived["archive_id"], &archived["body"]),
        "the same message"
    );
    assert_eq!(
        served["sealed_by"], "coupon/coupon-dev",
        "still sealed, opened by the monitor"
    );

    diesel::sql_query("ALTER TABLE balance_history DROP CONSTRAINT poison")
        .execute(&mut balance_db)
        .await
        .unwrap();
    let filter = json!({"filter": {"queues": [BALANCE], "order_id": id}});
    let (status, restored) = post(&app, "archive/restore", filter).await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["moved"].as_array().unwrap().len(), 1, "{restored}");
    wait_dlq_depth(&s, BALANCE, 1).await;
    let restore = [&["dlq", "archive", "restore"][..], &selection, &["--json"]].concat();
    let again = sagactl_json(&s, &restore).await;
    assert_eq!(again["moved"], json!([]), "restored already: {again}");
    assert_eq!(dlq_depth(&s, BALANCE).await, 1, "not put back twice");
    let listed = sagactl_json(&s, &[&list[..], &["--restored"]].concat()).await;
    assert!(listed[0]["restored_at"].is_string(), "{listed}");
    assert_eq!(audit_rows(&s, "restore").await, 2);
    assert_bad_groups_are_refused(&app).await;
    app.stop().await;

    let replay = [&["dlq", "replay"][..], &selection, &["--json"]].concat();
    let report = sagactl_json(&s, &replay).await;
    assert_eq!(report["moved"].as_array().unwrap().len(), 1, "{report}");
    let order = s.wait_terminal(id).await;
    assert_eq!(order["status"], "COMPLETED", "{order}");
    assert_eq!(s.balance(1).await, "90.00", "paid exactly once");
    s.assert_settled().await;
    s.stop().await;
}

/// A purge of `selection` killed between the archive's commit and the ack leaves the dead letter
/// in its queue and archived once; purged again, it is gone and still archived once.
async fn purge_killed_then_again(s: &System, selection: &[&str]) {
    let purge = [&["dlq", "purge"][..], selection, &["--yes"]].concat();
    let crashed = sagactl(s, &purge, &[("SAGACTL_CRASH_AFTER_ARCHIVE", "1")]).await;
    assert_eq!(crashed.status.code(), Some(86), "{crashed:?}");
    wait_dlq_depth(s, BALANCE, 1).await;
    assert_eq!(archive_rows(s).await, 1);
    let purged = sagactl(s, &purge, &[]).await;
    assert!(purged.status.success(), "{purged:?}");
    assert_eq!(dlq_depth(s, BALANCE).await, 0);
    assert_eq!(archive_rows(s).await, 1, "purged again: the same row");
}

/// A group id that is malformed, or selects nothing, is a 422 naming `filter.group`.
async fn assert_bad_groups_are_refused(app: &testkit::service::TestApp) {
    for (group, why) in [
        ("rejected", "not a group id"),
        ("0000000000", "no such group"),
    ] {
        let body = json!({"filter": {"group": group}});
        let (status, answer) = post(app, "replay", body).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some("filter.group")),
            "{why}: {answer}"
        );
    }
    let (status, answer) = get(app, "/admin/dlq/archive?group=nope", Some(TOKEN)).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (422, Some("group"))
    );
}
