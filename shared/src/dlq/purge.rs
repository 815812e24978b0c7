//! Purge: each matching dead letter is written to a file (JSON lines), the file synced to disk,
//! and only then acked.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;

use super::message::{DeadLetter, Filter, parse};
use super::operation::{Moved, OperationReport};
use super::operator::Operator;
use super::snapshot::Snapshot;

impl Operator {
    /// Removes every matching dead letter, writing each to `dump` (JSON lines, synced to disk)
    /// before it is acked.
    pub(super) async fn purge(
        &self,
        filter: &Filter,
        dump: &Path,
    ) -> anyhow::Result<OperationReport> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dump)
            .with_context(|| format!("opening {}", dump.display()))?;
        let mut report = OperationReport::default();
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
            for (_, letter) in &chosen {
                serde_json::to_writer(&mut file, letter)?;
                file.write_all(b"\n")?;
            }
            file.sync_all()
                .with_context(|| format!("syncing {}", dump.display()))?;
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
                    to: dump.display().to_string(),
                });
            }
            snapshot.release(&self.connection, kept).await;
        }
        Ok(report)
    }
}
