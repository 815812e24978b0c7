//! The text output of `sagactl dlq`: tables of dead letters and of their groups, one dead letter
//! in full, and an operation's report.

use chrono::{DateTime, Utc};
use shared::dlq::{Archived, DeadLetter, Listing, OperationReport, Summary};

/// Every queue's depth and its matching dead letters as a table.
pub fn listings(listings: &[Listing]) {
    for listing in listings {
        println!(
            "{}  depth {}  matching {}",
            listing.queue,
            listing.depth,
            listing.messages.len()
        );
        if !listing.messages.is_empty() {
            table(&listing.messages);
        }
    }
}

/// The groups as a table, largest first; the class last, as it is the longest.
pub fn summary(summary: &Summary) {
    println!(
        "{} dead letter(s) matching in {} group(s), {} in the queues read",
        summary.matched,
        summary.groups.len(),
        summary.depth
    );
    if summary.groups.is_empty() {
        return;
    }
    println!(
        "  {:<10}  {:<28}  {:<26}  {:>6}  {:<20}  {:<20}  CLASS",
        "GROUP", "QUEUE", "TYPE", "COUNT", "FIRST SEEN", "LAST SEEN"
    );
    for g in &summary.groups {
        println!(
            "  {:<10}  {:<28}  {:<26}  {:>6}  {:<20}  {:<20}  {}",
            g.id,
            g.queue,
            g.event_type.as_deref().unwrap_or("-"),
            g.count,
            time(g.first_seen),
            time(g.last_seen),
            g.class
        );
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".into(),
        |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The archived messages as a table, newest purge first.
pub fn archived(archived: &[Archived]) {
    println!("{} archived message(s)", archived.len());
    if archived.is_empty() {
        return;
    }
    println!(
        "  {:>6}  {:<36}  {:<28}  {:<26}  {:>6}  {:<10}  {:<20}  {:<20}  PURGED BY",
        "ID", "EVENT ID", "QUEUE", "TYPE", "ORDER", "GROUP", "PURGED", "RESTORED"
    );
    for a in archived {
        let m = &a.letter;
        println!(
            "  {:>6}  {:<36}  {:<28}  {:<26}  {:>6}  {:<10}  {:<20}  {:<20}  {}",
            a.archive_id,
            m.event_id,
            m.queue,
            m.event_type.as_deref().unwrap_or("-"),
            m.saga_id.map_or_else(|| "-".into(), |id| id.to_string()),
            a.group,
            time(Some(a.purged_at)),
            time(a.restored_at),
            a.purged_by,
        );
    }
}

/// What `operation` (`replay`, `purge` or `restore`) moved, would move, or failed to move.
pub fn report(operation: &str, report: &OperationReport) {
    let verb = if report.dry_run {
        "would move"
    } else {
        "moved"
    };
    println!(
        "{operation}: scanned {}, matched {}, {verb} {}, failed {}",
        report.scanned,
        report.matched,
        report.moved.len(),
        report.failed.len()
    );
    for moved in &report.moved {
        println!("  {}  {} -> {}", moved.event_id, moved.from, moved.to);
    }
    for (id, why) in &report.failed {
        println!("  FAILED {id}: {why}");
    }
}

fn table(messages: &[DeadLetter]) {
    println!(
        "  {:<36}  {:<26}  {:>6}  {:<20}  {:>3}  {:<25}  ERROR",
        "EVENT ID", "TYPE", "ORDER", "REASON", "TRY", "DEAD-LETTERED"
    );
    for m in messages {
        println!(
            "  {:<36}  {:<26}  {:>6}  {:<20}  {:>3}  {:<25}  {}",
            m.event_id,
            m.event_type.as_deref().unwrap_or("-"),
            m.saga_id.map_or_else(|| "-".into(), |id| id.to_string()),
            m.reason.as_deref().unwrap_or("-"),
            m.attempts.map_or_else(|| "-".into(), |n| n.to_string()),
            time(m.dead_lettered_at),
            m.error
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect::<String>(),
        );
    }
}

/// One dead letter: where it is, why, its headers and its body (pretty-printed when JSON).
pub fn letter(letter: &DeadLetter) {
    println!("event id:        {}", letter.event_id);
    println!("queue:           {}", letter.queue);
    println!(
        "original queue:  {}",
        letter.original_queue.as_deref().unwrap_or("-")
    );
    println!(
        "reason:          {}",
        letter.reason.as_deref().unwrap_or("-")
    );
    println!(
        "error:           {}",
        letter.error.as_deref().unwrap_or("-")
    );
    if let Some(by) = &letter.sealed_by {
        println!("sealed by:       {by} (signature verified)");
    }
    if let Some(error) = &letter.seal_error {
        println!("seal:            does not open: {error}");
    }
    if let Some(payload) = &letter.payload {
        println!("payload (decrypted):");
        println!(
            "{}",
            serde_json::to_string_pretty(payload).unwrap_or_default()
        );
    }
    println!("headers:");
    for (key, value) in &letter.headers {
        println!("  {key}: {value}");
    }
    println!("body:");
    match letter
        .body
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        Some(Ok(json)) => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
        Some(Err(_)) => println!("{}", letter.body.as_deref().unwrap_or_default()),
        None => println!(
            "(binary, base64) {}",
            letter.body_base64.as_deref().unwrap_or_default()
        ),
    }
}
