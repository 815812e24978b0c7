//! Summary: the dead letters a filter selects, grouped by dead-letter queue, event type and
//! error class ([`super::class`]), with counts and first and last seen. Read as `list` reads
//! (nothing is acked, everything returns in order), so it moves nothing and is not audited.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::class;
use super::message::{DeadLetter, Filter};
use super::operator::{Listing, Operator};

/// Event ids kept per group, so an operator can `show` one without listing them all.
pub const EXAMPLES: usize = 3;

/// The dead letters that failed the same way in the same queue.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    /// The group's id ([`class::group_id`]): what `--group` (`filter.group`) selects it by.
    pub id: String,
    /// The dead-letter queue.
    pub queue: String,
    /// `null` when the message names none.
    pub event_type: Option<String>,
    /// The reason and the error with numbers, ids and quoted values replaced by placeholders
    /// (`rejected: product <n> not found`).
    pub class: String,
    /// How many dead letters the group holds.
    pub count: usize,
    /// The earliest `dead_lettered_at` of the group (`null` when none carries one, as the
    /// broker's own dead letters do not).
    pub first_seen: Option<DateTime<Utc>>,
    /// The latest `dead_lettered_at` of the group.
    pub last_seen: Option<DateTime<Utc>>,
    /// The event ids of the group's first few dead letters, in queue order.
    pub examples: Vec<String>,
}

/// The groups of the dead letters a filter selects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Messages the selected queues held when they were read (a queue is read up to
    /// `MAX_PER_RUN` messages: past that, the groups count only those read).
    pub depth: u64,
    /// Those that matched the filter: the sum of the groups' counts.
    pub matched: usize,
    /// The groups, largest first; equal counts by queue, event type and class.
    pub groups: Vec<Group>,
}

/// Groups the dead letters of `listings` (those that matched their filter).
pub fn summarize(listings: &[Listing]) -> Summary {
    let mut groups: BTreeMap<(String, Option<String>, String), Group> = BTreeMap::new();
    for letter in listings.iter().flat_map(|listing| &listing.messages) {
        let key = (
            letter.queue.clone(),
            letter.event_type.clone(),
            class::of(letter),
        );
        groups
            .entry(key)
            .or_insert_with_key(|(queue, event_type, error_class)| Group {
                id: class::group_id(queue, event_type.as_deref(), error_class),
                queue: queue.clone(),
                event_type: event_type.clone(),
                class: error_class.clone(),
                count: 0,
                first_seen: None,
                last_seen: None,
                examples: Vec::new(),
            })
            .add(letter);
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    // Stable: equal counts keep the key order the map gave them.
    groups.sort_by_key(|group| std::cmp::Reverse(group.count));
    Summary {
        depth: listings.iter().map(|l| u64::from(l.depth)).sum(),
        matched: groups.iter().map(|g| g.count).sum(),
        groups,
    }
}

impl Group {
    fn add(&mut self, letter: &DeadLetter) {
        self.count += 1;
        if let Some(at) = letter.dead_lettered_at {
            self.first_seen = Some(self.first_seen.map_or(at, |first| first.min(at)));
            self.last_seen = Some(self.last_seen.map_or(at, |last| last.max(at)));
        }
        if self.examples.len() < EXAMPLES {
            self.examples.push(letter.event_id.clone());
        }
    }
}

impl Operator {
    /// The dead letters `filter` selects, grouped; moves nothing.
    pub async fn summary(&self, filter: &Filter) -> anyhow::Result<Summary> {
        // Not decrypted: a class is made of headers, never of the payload.
        Ok(summarize(&self.read(filter, false).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(queue: &str, kind: &str, error: &str, minute: u32) -> DeadLetter {
        let at = format!("2026-12-06T04:{minute:02}:00Z");
        DeadLetter {
            queue: queue.into(),
            event_id: format!("e-{queue}-{minute}"),
            event_type: Some(kind.into()),
            saga_id: Some(i64::from(minute)),
            original_queue: None,
            reason: Some("rejected".into()),
            error: Some(error.into()),
            attempts: Some(1),
            dead_lettered_at: DateTime::parse_from_rfc3339(&at)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
            occurred_at: None,
            replays: 0,
            headers: Default::default(),
            body: None,
            body_base64: None,
            sealed_by: None,
            payload: None,
            seal_error: None,
        }
    }

    fn listing(queue: &str, messages: Vec<DeadLetter>) -> Listing {
        Listing {
            queue: queue.into(),
            depth: u32::try_from(messages.len()).unwrap_or(u32::MAX) + 1,
            messages,
        }
    }

    #[test]
    fn dead_letters_failing_alike_form_one_group_with_first_and_last_seen() {
        let product = listing(
            "p.product.dlq",
            vec![
                letter(
                    "p.product.dlq",
                    "OrderProcessingStarted",
                    "product 17 gone",
                    5,
                ),
                letter("p.product.dlq", "CouponFailed", "product 17 gone", 6),
                letter(
                    "p.product.dlq",
                    "OrderProcessingStarted",
                    "product 42 gone",
                    3,
                ),
                letter(
                    "p.product.dlq",
                    "OrderProcessingStarted",
                    "product 9 gone",
                    9,
                ),
                letter(
                    "p.product.dlq",
                    "OrderProcessingStarted",
                    "product 8 gone",
                    7,
                ),
            ],
        );
        let order = listing(
            "p.order.dlq",
            vec![letter(
                "p.order.dlq",
                "OrderProcessingStarted",
                "product 1 gone",
                1,
            )],
        );
        let summary = summarize(&[product, order]);
        assert_eq!((summary.depth, summary.matched), (8, 6));
        let shape: Vec<(&str, Option<&str>, &str, usize)> = summary
            .groups
            .iter()
            .map(|g| {
                (
                    g.queue.as_str(),
                    g.event_type.as_deref(),
                    g.class.as_str(),
                    g.count,
                )
            })
            .collect();
        let class = "rejected: product <n> gone";
        assert_eq!(
            shape,
            vec![
                ("p.product.dlq", Some("OrderProcessingStarted"), class, 4),
                ("p.order.dlq", Some("OrderProcessingStarted"), class, 1),
                ("p.product.dlq", Some("CouponFailed"), class, 1),
            ],
            "by queue and event type as well as class; largest first"
        );
        let biggest = &summary.groups[0];
        let minute = |g: Option<DateTime<Utc>>| g.map(|at| at.format("%M").to_string());
        assert_eq!(minute(biggest.first_seen).as_deref(), Some("03"));
        assert_eq!(minute(biggest.last_seen).as_deref(), Some("09"));
        assert_eq!(
            biggest.examples,
            vec![
                "e-p.product.dlq-5",
                "e-p.product.dlq-3",
                "e-p.product.dlq-9"
            ],
            "the first {EXAMPLES}, in queue order"
        );
    }

    #[test]
    fn a_dead_letter_without_time_or_error_is_counted_in_its_reason_class() {
        let mut broker_made = letter("p.order.dlq", "X", "", 0);
        broker_made.reason = Some("delivery_limit".into());
        broker_made.error = None;
        broker_made.dead_lettered_at = None;
        let mut bare = broker_made.clone();
        bare.reason = None;
        let summary = summarize(&[listing("p.order.dlq", vec![broker_made, bare])]);
        let classes: Vec<(&str, usize, Option<DateTime<Utc>>)> = summary
            .groups
            .iter()
            .map(|g| (g.class.as_str(), g.count, g.first_seen))
            .collect();
        assert_eq!(
            classes,
            vec![("delivery_limit", 1, None), (class::UNKNOWN, 1, None)]
        );
    }
}
