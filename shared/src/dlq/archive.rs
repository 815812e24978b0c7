//! The dead-letter archive: the `dlq_archive` table of the monitor's database, where a purge
//! keeps every message it removes (body and properties exactly as they were on the queue) and
//! from which a restore ([`super::restore`]) puts them back. This is the table's only reader
//! and writer.
//!
//! An archived message is read back as the dead letter it was ([`super::message::parse`] of
//! its stored properties and body), so the archive is filtered by the same [`Filter`] as the
//! queues, groups included.

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lapin::BasicProperties;
use serde::Serialize;

use super::class;
use super::message::{DeadLetter, Filter, parse};
use super::operator::Operator;

diesel::table! {
    dlq_archive (id) {
        id -> BigInt,
        queue -> Text,
        event_id -> Text,
        event_type -> Nullable<Text>,
        saga_id -> Nullable<BigInt>,
        group_id -> Text,
        reason -> Nullable<Text>,
        error -> Nullable<Text>,
        dead_lettered_at -> Nullable<Timestamptz>,
        body -> Bytea,
        properties -> Jsonb,
        purged_by -> Text,
        purged_at -> Timestamptz,
        restored_by -> Nullable<Text>,
        restored_at -> Nullable<Timestamptz>,
    }
}

/// Rows a statement of [`keep`] inserts (11 parameters each).
const ARCHIVE_CHUNK: usize = 1_000;

/// One archived message: the dead letter it was, and who purged (and restored) it when.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Archived {
    /// The archive row's id.
    pub archive_id: i64,
    /// The summary group it belonged to when it was purged.
    pub group: String,
    pub purged_by: String,
    pub purged_at: DateTime<Utc>,
    /// `null` while it is in the archive only.
    pub restored_by: Option<String>,
    pub restored_at: Option<DateTime<Utc>>,
    /// The dead letter, as `list` shows it (`queue` is the queue it was purged from).
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// Which archived messages to list.
#[derive(Debug, Clone, Default)]
pub struct ArchiveQuery {
    pub filter: Filter,
    /// Also those restored already.
    pub restored: bool,
    /// At most this many, newest purge first.
    pub limit: usize,
}

/// A row as read, before it is turned back into a dead letter.
#[derive(Queryable)]
pub(super) struct Row {
    pub(super) id: i64,
    pub(super) queue: String,
    group_id: String,
    pub(super) body: Vec<u8>,
    properties: serde_json::Value,
    purged_by: String,
    purged_at: DateTime<Utc>,
    restored_by: Option<String>,
    restored_at: Option<DateTime<Utc>>,
}

impl Row {
    /// The AMQP properties as they were on the queue.
    pub(super) fn properties(&self) -> anyhow::Result<BasicProperties> {
        serde_json::from_value(self.properties.clone())
            .with_context(|| format!("the properties of archived message {}", self.id))
    }

    fn archived(&self) -> anyhow::Result<Archived> {
        Ok(Archived {
            archive_id: self.id,
            group: self.group_id.clone(),
            purged_by: self.purged_by.clone(),
            purged_at: self.purged_at,
            restored_by: self.restored_by.clone(),
            restored_at: self.restored_at,
            letter: parse(&self.queue, &self.properties()?, &self.body),
        })
    }
}

/// Keeps `messages` (queue, properties, body) purged by `actor`, in one transaction, before any
/// of them is acked. A message archived before (a purge killed before its ack, or one restored
/// and dead-lettered again) replaces its row and is restorable again.
pub(super) async fn keep(
    conn: &mut AsyncPgConnection,
    actor: &str,
    messages: &[(&DeadLetter, &BasicProperties, &[u8])],
) -> anyhow::Result<()> {
    use crate::dlq::archive::dlq_archive::dsl::*;
    let rows = messages
        .iter()
        .map(|(letter, props, data)| {
            Ok((
                queue.eq(letter.queue.clone()),
                event_id.eq(key(letter, data)),
                event_type.eq(letter.event_type.clone()),
                saga_id.eq(letter.saga_id),
                group_id.eq(class::group_of(letter)),
                reason.eq(letter.reason.clone()),
                error.eq(letter.error.clone()),
                dead_lettered_at.eq(letter.dead_lettered_at),
                body.eq(data.to_vec()),
                properties.eq(serde_json::to_value(props)?),
                purged_by.eq(actor.to_owned()),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // In chunks, under PostgreSQL's 65,535 bind parameters a statement; in one transaction,
    // so that a purge acks only what is all committed.
    conn.transaction(async |conn| {
        for chunk in rows.chunks(ARCHIVE_CHUNK) {
            diesel::insert_into(dlq_archive)
                .values(chunk)
                .on_conflict((queue, event_id))
                .do_update()
                .set((
                    event_type.eq(excluded(event_type)),
                    saga_id.eq(excluded(saga_id)),
                    group_id.eq(excluded(group_id)),
                    reason.eq(excluded(reason)),
                    error.eq(excluded(error)),
                    dead_lettered_at.eq(excluded(dead_lettered_at)),
                    body.eq(excluded(body)),
                    properties.eq(excluded(properties)),
                    purged_by.eq(excluded(purged_by)),
                    purged_at.eq(diesel::dsl::now),
                    restored_by.eq(None::<String>),
                    restored_at.eq(None::<DateTime<Utc>>),
                ))
                .execute(conn)
                .await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await
    .context("archiving purged dead letters")
}

/// The archive's key of a message: its event id, or for one without (`-`) a digest of its body.
fn key(letter: &DeadLetter, data: &[u8]) -> String {
    if letter.event_id != "-" {
        return letter.event_id.clone();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Operator {
    /// The archived messages `query` selects, newest purge first, bodies opened when the
    /// operator holds the keys.
    pub async fn archived(
        &self,
        conn: &mut AsyncPgConnection,
        query: &ArchiveQuery,
    ) -> anyhow::Result<Vec<Archived>> {
        let mut listed = Vec::new();
        let rows = self
            .archive_rows(conn, &query.filter, query.restored)
            .await?;
        for row in rows {
            if listed.len() >= query.limit {
                break;
            }
            let mut archived = row.archived()?;
            if !query.filter.matches(&archived.letter) {
                continue;
            }
            if let Some(keys) = &self.keys {
                archived.letter.open_with(keys, &row.body);
            }
            listed.push(archived);
        }
        Ok(listed)
    }

    /// The rows `filter` may select, newest purge first: narrowed in SQL by what the table
    /// holds in columns; [`Filter::matches`] decides the rest.
    pub(super) async fn archive_rows(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &Filter,
        restored: bool,
    ) -> anyhow::Result<Vec<Row>> {
        use crate::dlq::archive::dlq_archive::dsl::*;
        let mut select = dlq_archive
            .select((
                id,
                queue,
                group_id,
                body,
                properties,
                purged_by,
                purged_at,
                restored_by,
                restored_at,
            ))
            .filter(queue.eq_any(self.queues(filter)))
            .order((purged_at.desc(), id.desc()))
            .into_boxed();
        if !restored {
            select = select.filter(restored_at.is_null());
        }
        if let Some(wanted) = &filter.event_type {
            select = select.filter(event_type.eq(wanted.clone()));
        }
        if let Some(order) = filter.order_id {
            select = select.filter(saga_id.eq(order));
        }
        if let Some(group) = &filter.group {
            select = select.filter(group_id.eq(group.to_lowercase()));
        }
        if !filter.ids.is_empty() {
            select = select.filter(event_id.eq_any(filter.ids.clone()));
        }
        select
            .load(conn)
            .await
            .context("reading the dead-letter archive")
    }
}
