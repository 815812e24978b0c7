//! Purge: the matching dead letters of a queue are kept in the archive (one committed
//! transaction) and, when asked, written to a file (JSON lines, synced to disk), and only then
//! acked.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use diesel_async::AsyncPgConnection;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;

use super::archive;
use super::message::{DeadLetter, Filter, parse};
use super::operation::{Moved, OperationReport};
use super::operator::Operator;
use super::snapshot::Snapshot;

/// Where a purge keeps what it removes, besides the archive.
pub(super) struct Purge<'a> {
    /// Who purges, as the archive records it.
    pub(super) actor: &'a str,
    /// A file to write the messages to as well (JSON lines).
    pub(super) dump: Option<&'a Path>,
    /// Runs between the archive's commit and the first ack, with the number archived.
    pub(super) after_archive: &'a (dyn Fn(usize) + Sync),
}

impl Operator {
    /// Removes every matching dead letter, archiving each (and writing it to the dump file)
    /// before it is acked.
    pub(super) async fn purge(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &Filter,
        purge: &Purge<'_>,
    ) -> anyhow::Result<OperationReport> {
        let mut file = purge
            .dump
            .map(|dump| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dump)
                    .with_context(|| format!("opening {}", dump.display()))
            })
            .transpose()?;
        let mut report = OperationReport::default();
        let to = match purge.dump {
            Some(dump) => format!("dlq_archive, {}", dump.display()),
            None => "dlq_archive".to_owned(),
        };
        for queue in self.queues(filter) {
            let snapshot = Snapshot::take(&self.connection, &queue).await?;
            report.scanned += snapshot.deliveries.len();
            let chosen: Vec<(&Delivery, DeadLetter)> = snapshot
                .deliveries
                .iter()
                .map(|d| (d, parse(&queue, &d.properties, &d.data)))
                .filter(|(_, letter)| filter.matches(letter))
                .collect();
            report.matched += chosen.len();
            if !chosen.is_empty() {
                let messages: Vec<_> = chosen
                    .iter()
                    .map(|(d, letter)| (letter, &d.properties, d.data.as_slice()))
                    .collect();
                archive::keep(conn, purge.actor, &messages).await?;
            }
            if let (Some(file), Some(dump)) = (file.as_mut(), purge.dump) {
                for (_, letter) in &chosen {
                    serde_json::to_writer(&mut *file, letter)?;
                    file.write_all(b"\n")?;
                }
                file.sync_all()
                    .with_context(|| format!("syncing {}", dump.display()))?;
            }
            (purge.after_archive)(chosen.len());
            let kept = snapshot.deliveries.len() - chosen.len();
            for (delivery, letter) in chosen {
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .context("acking a purged dead letter")?;
                report.moved.push(Moved {
                    event_id: letter.event_id,
                    from: queue.clone(),
                    to: to.clone(),
                });
            }
            snapshot.release(&self.connection, kept).await;
        }
        Ok(report)
    }
}
