//! Restore: archived messages go back into the dead-letter queue they were purged from, exactly
//! as they were (body, properties, headers; the `user_id` becomes the operator's, as the broker
//! demands), from where they can be listed, summarized and replayed like any dead letter.
//!
//! Each message is restored in a transaction of its own that locks its archive row: the copy is
//! published to the dead-letter exchange and confirmed, and only then is the row marked
//! restored and the transaction committed. Killed between the confirm and the commit, the row
//! is still unrestored and a later restore puts the message back a second time: a duplicate in
//! the dead-letter queue, which a replay hands to the consumer's inbox, which absorbs it. The
//! other order (mark, then publish) could lose it. A concurrent restore skips a locked row
//! instead of publishing it again, and a restored row is never taken again until a purge
//! archives the message anew.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::archive::dlq_archive;
use super::message::{Filter, parse};
use super::operation::{Moved, OperationReport};
use super::operator::Operator;
use crate::amqp::publish::{Outcome, Outgoing, confirm_channel, publish_one};

/// What became of one archived message.
enum Restored {
    /// Its copy is confirmed in its dead-letter queue and its row marked.
    Done,
    /// Another restore holds it or has restored it meanwhile.
    Skipped,
    /// The broker did not confirm the copy: it stays archived, unrestored.
    Failed(String),
}

impl Operator {
    /// Puts every archived, not yet restored message `filter` selects back into its
    /// dead-letter queue, oldest purge first.
    pub(super) async fn restore(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &Filter,
        actor: &str,
    ) -> anyhow::Result<OperationReport> {
        let rows = self.archive_rows(conn, filter, false).await?;
        let mut report = OperationReport {
            scanned: rows.len(),
            ..OperationReport::default()
        };
        let mut chosen = Vec::new();
        for row in rows.into_iter().rev() {
            let letter = parse(&row.queue, &row.properties()?, &row.body);
            if filter.matches(&letter) {
                chosen.push((row, letter.event_id));
            }
        }
        report.matched = chosen.len();
        let publisher = confirm_channel(&self.connection).await?;
        let exchange = self.topology.dead_letter_exchange();
        for (row, event_id) in chosen {
            let outgoing = Outgoing {
                exchange: &exchange,
                // The dead-letter queue's binding: the consumer it belongs to.
                routing_key: row.queue.trim_end_matches(".dlq"),
                body: &row.body,
                properties: row.properties()?,
                user_id: &self.user,
            };
            match restore_one(conn, &publisher, row.id, &outgoing, actor).await? {
                Restored::Done => report.moved.push(Moved {
                    event_id,
                    from: "dlq_archive".to_owned(),
                    to: row.queue.clone(),
                }),
                Restored::Skipped => {}
                Restored::Failed(why) => report.failed.push((event_id, why)),
            }
        }
        let _ = publisher.close(200, "restore done".into()).await;
        Ok(report)
    }
}

/// Restores archive row `id` as `outgoing`, in one transaction holding the row's lock.
async fn restore_one(
    conn: &mut AsyncPgConnection,
    publisher: &lapin::Channel,
    id: i64,
    outgoing: &Outgoing<'_>,
    actor: &str,
) -> anyhow::Result<Restored> {
    use dlq_archive::dsl;
    let restored = conn
        .transaction(async |tx| {
            let pending: Option<i64> = dsl::dlq_archive
                .select(dsl::id)
                .filter(dsl::id.eq(id))
                .filter(dsl::restored_at.is_null())
                .for_update()
                .skip_locked()
                .first(tx)
                .await
                .optional()?;
            if pending.is_none() {
                return Ok(Restored::Skipped);
            }
            match publish_one(publisher, outgoing).await {
                Outcome::Confirmed => {
                    diesel::update(dsl::dlq_archive.filter(dsl::id.eq(id)))
                        .set((
                            dsl::restored_by.eq(actor),
                            dsl::restored_at.eq(diesel::dsl::now),
                        ))
                        .execute(tx)
                        .await?;
                    Ok::<_, diesel::result::Error>(Restored::Done)
                }
                Outcome::Rejected(why) | Outcome::Unknown(why) => Ok(Restored::Failed(why)),
            }
        })
        .await?;
    Ok(restored)
}
