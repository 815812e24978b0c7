//! The guard of the one operation: what a replay or purge must satisfy before anything is read
//! or moved. [`super::execute`] checks it first, so no front end can skip it; a front end may
//! check it earlier as well, to refuse before it connects to anything or asks a question.

use super::class;
use super::message::Filter;
use super::operation::{Action, Request};

/// Why the guard refused a request. Each front end words it in its own terms (`--all`,
/// `all=true`); [`Refusal::field`] names the request field at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The filter narrows nothing and `all` was not given.
    #[error("an empty filter selects every dead letter")]
    Unfiltered,
    /// A replay rate that is not a positive, finite number of messages per second.
    #[error("the rate must be a positive number of messages per second")]
    Rate,
    /// A purge that was not confirmed.
    #[error("a purge deletes messages and was not confirmed")]
    Unconfirmed,
    /// A group that is not shaped like a group id (a typo, a class pasted instead of its id).
    #[error("a group id is the {} hex digits a summary shows", class::GROUP_ID_LEN)]
    Group,
}

impl Refusal {
    /// The request field at fault: `all`, `rate`, `confirm` or `group`.
    pub fn field(self) -> &'static str {
        match self {
            Self::Unfiltered => "all",
            Self::Rate => "rate",
            Self::Unconfirmed => "confirm",
            Self::Group => "group",
        }
    }
}

/// Refuses a selection that narrows nothing unless `all` consents to every dead letter. Naming
/// queues does not narrow: a queue's every dead letter is still every dead letter of it.
pub fn selection(filter: &Filter, all: bool) -> Result<(), Refusal> {
    if filter
        .group
        .as_deref()
        .is_some_and(|g| !class::is_group_id(g))
    {
        return Err(Refusal::Group);
    }
    if filter.is_everything() && !all {
        return Err(Refusal::Unfiltered);
    }
    Ok(())
}

impl Request {
    /// The guard, in this order: the selection ([`selection`]), a replay's rate, a purge's
    /// confirmation (a restore needs none: it only puts messages back where they were).
    pub fn check(&self) -> Result<(), Refusal> {
        selection(&self.filter, self.all)?;
        match &self.action {
            Action::Replay(options) => {
                if options
                    .rate
                    .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
                {
                    return Err(Refusal::Rate);
                }
                Ok(())
            }
            Action::Purge { confirmed, .. } => {
                if !confirmed {
                    return Err(Refusal::Unconfirmed);
                }
                Ok(())
            }
            Action::Restore => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::ReplayOptions;

    fn request(filter: Filter, all: bool, action: Action) -> Request {
        Request {
            actor: "test".into(),
            filter,
            all,
            action,
        }
    }

    fn replay(rate: Option<f64>) -> Action {
        Action::Replay(ReplayOptions {
            dry_run: false,
            rate,
        })
    }

    fn purge(confirmed: bool) -> Action {
        Action::Purge {
            dump: None,
            confirmed,
        }
    }

    fn one_order() -> Filter {
        Filter {
            order_id: Some(7),
            ..Filter::default()
        }
    }

    #[test]
    fn an_unfiltered_request_needs_all_and_queues_alone_do_not_narrow() {
        let queues_only = Filter {
            queues: vec!["order".into()],
            ..Filter::default()
        };
        for filter in [Filter::default(), queues_only] {
            assert_eq!(
                request(filter.clone(), false, replay(None)).check(),
                Err(Refusal::Unfiltered)
            );
            assert_eq!(request(filter, true, replay(None)).check(), Ok(()));
        }
        assert_eq!(request(one_order(), false, replay(None)).check(), Ok(()));
        assert_eq!(
            request(Filter::default(), false, purge(true)).check(),
            Err(Refusal::Unfiltered),
            "the selection is checked before the confirmation"
        );
    }

    #[test]
    fn a_replay_rate_is_a_positive_finite_number() {
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert_eq!(
                request(one_order(), false, replay(Some(bad))).check(),
                Err(Refusal::Rate),
                "{bad}"
            );
        }
        assert_eq!(
            request(one_order(), false, replay(Some(0.5))).check(),
            Ok(())
        );
    }

    #[test]
    fn a_purge_needs_confirmation() {
        assert_eq!(
            request(one_order(), false, purge(false)).check(),
            Err(Refusal::Unconfirmed)
        );
        assert_eq!(request(one_order(), false, purge(true)).check(), Ok(()));
        assert_eq!(Refusal::Unconfirmed.field(), "confirm");
    }

    #[test]
    fn a_group_narrows_the_selection_and_must_look_like_a_group_id() {
        let group = |id: &str| Filter {
            group: Some(id.into()),
            ..Filter::default()
        };
        assert_eq!(
            request(group("3FA2C91B0D"), false, replay(None)).check(),
            Ok(())
        );
        for bad in ["3fa2", "rejected: x", "3fa2c91b0dzz"] {
            assert_eq!(
                request(group(bad), true, Action::Restore).check(),
                Err(Refusal::Group),
                "{bad}"
            );
        }
    }
}
