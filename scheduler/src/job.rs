//! One delivery to make, pure data: a fire of a schedule line ([`Job::new`]) or the
//! notification of a fire's outcome ([`crate::alert::notice`]), with what its delivery, its
//! record and its notifications need to know.

use chrono::{DateTime, Utc};

use crate::fanout;
use crate::schedule::{Entry, Options};
use crate::state::FireKeys;

/// One fire, or one notification.
#[derive(Debug, Clone)]
pub struct Job {
    /// The daemon's run counter, for the log.
    pub run: u64,
    /// [`Entry::key`]: the line's identity, naming its files in the state directory.
    pub line_key: String,
    /// The fire key, sent as `@KEY`.
    pub key: String,
    pub due: DateTime<Utc>,
    pub line: usize,
    pub service: String,
    pub action: String,
    pub user: Option<String>,
    /// The request line, key included, without its `\n`.
    pub request: String,
    /// The line's settings: who is told of the outcome (`ON_FAILURE=`, `ON_SUCCESS=`)...
    pub options: Options,
    /// This is a notification, not a run of a line: its outcome is only logged.
    pub notice: bool,
    /// The instance of an `@each` leg (its `CONCURRENCY=` slot's); `None` for a line's one
    /// delivery and for notifications.
    pub instance: Option<u32>,
}

impl Job {
    /// The fire of line `e` due at `due`, keyed under `keys`.
    pub fn new(keys: &FireKeys, run: u64, e: &Entry, due: DateTime<Utc>) -> Job {
        Job::leg(keys, run, e, due, None)
    }

    /// The leg of instance `instance` of an `@each` fire of line `e` ([`crate::fanout`]):
    /// keyed `<fire key>:<n>` and sent to `php.<n>`; with `None`, the line's one delivery.
    pub fn leg(
        keys: &FireKeys,
        run: u64,
        e: &Entry,
        due: DateTime<Utc>,
        instance: Option<u32>,
    ) -> Job {
        let line_key = e.key();
        let key = fanout::leg_key(&keys.fire(&line_key, due), instance);
        let service = match instance {
            Some(n) => e.dest().at(n).to_string(),
            None => e.service.clone(),
        };
        Job {
            run,
            request: e.request(Some(key.clone())).to_string(),
            line_key,
            key,
            due,
            line: e.line,
            service,
            action: e.action.clone(),
            user: e.user.clone(),
            options: e.options.clone(),
            notice: false,
            instance,
        }
    }

    /// The request line without its `@KEY`, for the log.
    pub fn unkeyed(&self) -> &str {
        self.request
            .split_once(' ')
            .map_or(self.request.as_str(), |(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_keyed() {
        let s =
            crate::schedule::parse("t", b"0 3 * * * forum db backup\n", chrono_tz::UTC).unwrap();
        let keys = FireKeys::random().unwrap();
        let due = DateTime::from_timestamp(1_764_821_100, 0).unwrap();
        let job = Job::new(&keys, 1, &s.entries[0], due);
        assert_eq!(job.request, format!("@{} forum backup", job.key));
        assert_eq!(job.unkeyed(), "forum backup");
        assert!(!job.notice);
        let s =
            crate::schedule::parse("t", b"0 3 * * * php@each rotate\n", chrono_tz::UTC).unwrap();
        let leg = Job::leg(&keys, 2, &s.entries[0], due, Some(3));
        let whole = Job::new(&keys, 2, &s.entries[0], due);
        assert_eq!(leg.key, format!("{}:3", whole.key));
        assert_eq!(leg.request, format!("@{} rotate", leg.key));
        assert_eq!(
            (leg.service.as_str(), whole.service.as_str()),
            ("php.3", "php@each")
        );
        assert_eq!(leg.line_key, whole.line_key);
    }
}
