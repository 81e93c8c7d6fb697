//! Settings as rows: one [`Row`] per `service.toml` key / `BOSUN_*` variable, saying its
//! names, its default, what TOML type the file writes it as, how its text is read into the
//! settings and how it is written back as text. Loading ([`read`]), the file's key check
//! and `to_env` ([`show`]) are loops over a table of rows, so that a key is one row and
//! cannot be read by one rule and written back by another.
//!
//! One value rule for every program: a variable of the environment wins over the file;
//! the text is trimmed; unset or blank is the default (the default's own text, read by the
//! same parser). Rows that must tell "set but empty" from "unset" ([`Read::AsWritten`])
//! get the text untrimmed.

use std::collections::BTreeMap;
use std::fmt::Display;

use super::file::ServiceFile;
use super::problem::{Origin, Problem, ProblemKind, ValueError};

/// The names and the default of a setting.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The key in `service.toml` (`stop_timeout`, `on_demand.listen` for a table's).
    pub key: &'static str,
    /// The variable that overrides it: `BOSUN_` and the key in capitals, `.` as `_`.
    pub env: &'static str,
    /// The default, as text the row reads (for `Read::AsWritten` rows, what unset means).
    pub default: &'static str,
    /// A valid value other than the default: the round-trip test sets it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub example: &'static str,
}

impl Spec {
    /// `Spec::new(key, env, default, example)`, as the rows are written.
    pub const fn new(
        key: &'static str,
        env: &'static str,
        default: &'static str,
        example: &'static str,
    ) -> Spec {
        Spec {
            key,
            env,
            default,
            example,
        }
    }
}

/// How `service.toml` may write a key; a string is always accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A string.
    Text,
    /// A string or an integer (`max_actions = 2`).
    Number,
    /// A string or an integer whose digits are octal (`0o660`, or `660` as it looks).
    Mode,
    /// A string, or an array of ids and names (`allow_uids = [0, "www-data"]`).
    Ids,
    /// A string, or a table of action = duration (`[action_timeouts]`).
    Timeouts,
}

/// How a row's text is read into `T`.
pub enum Read<T> {
    /// The trimmed text; unset or blank is the default's text.
    Text(fn(&mut T, &str) -> Result<(), ValueError>),
    /// The text as written, `None` when unset (blank is not unset here).
    AsWritten(fn(&mut T, Option<&str>) -> Result<(), ValueError>),
}

/// One setting: read into the draft `T`, shown from the finished `S`.
pub struct Row<T, S = T> {
    pub spec: Spec,
    /// Read only where `service.toml` is (the `toml` feature, the supervisor's).
    #[cfg_attr(not(feature = "toml"), allow(dead_code))]
    pub file: FileType,
    pub read: Read<T>,
    /// The value as text that `read` takes back, for `BOSUN_*`; `None`: not written.
    pub show: fn(&S) -> Option<String>,
}

/// A value as written, with where it came from.
#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub text: String,
    pub origin: Origin,
}

/// Where values come from: the environment, then the file.
pub(super) struct Values<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub file: Option<&'a ServiceFile>,
}

impl Values<'_> {
    fn get(&self, spec: &Spec) -> Option<Raw> {
        match (self.env)(spec.env) {
            Some(text) => Some(Raw {
                text,
                origin: Origin::Env(spec.env),
            }),
            None => self.file.and_then(|f| f.value(spec.key)).cloned(),
        }
    }

    /// `set KEY in FILE or BOSUN_KEY`, or `set BOSUN_KEY` without a file.
    fn where_to_set(&self, spec: &Spec) -> String {
        match self.file.and_then(ServiceFile::label) {
            Some(l) => format!("set `{}` in {l} or {}", spec.key, spec.env),
            None => format!("set {}", spec.env),
        }
    }
}

/// Reads every row into `into`; every bad value becomes a problem (and the default is
/// kept). Returns where each value that was set came from, by key.
pub(super) fn read<T, S>(
    rows: &[Row<T, S>],
    into: &mut T,
    values: &Values<'_>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<&'static str, Origin> {
    let mut origins = BTreeMap::new();
    for row in rows {
        let raw = values.get(&row.spec);
        let result = match row.read {
            Read::Text(f) => match raw.as_ref().filter(|r| !r.text.trim().is_empty()) {
                None => f(into, row.spec.default),
                Some(r) => f(into, r.text.trim()).inspect_err(|_| {
                    // The default stands in, so that what depends on it is still checked.
                    let _ = f(into, row.spec.default);
                }),
            },
            Read::AsWritten(f) => f(into, raw.as_ref().map(|r| r.text.as_str())),
        };
        if let Err(e) = result {
            problems.push(match e {
                ValueError::Missing { what, why } => Problem::new(
                    None,
                    ProblemKind::Missing {
                        what,
                        why,
                        hint: values.where_to_set(&row.spec),
                    },
                ),
                e => Problem::new(
                    Some(
                        raw.as_ref()
                            .map_or(Origin::Env(row.spec.env), |r| r.origin.clone()),
                    ),
                    e,
                ),
            });
        }
        if let Some(r) = raw {
            origins.insert(row.spec.key, r.origin);
        }
    }
    origins
}

/// Every row's value as the variable that gives it, in the rows' order.
pub(super) fn show<T, S>(rows: &[Row<T, S>], from: &S) -> Vec<(String, String)> {
    rows.iter()
        .filter_map(|r| (r.show)(from).map(|v| (r.spec.env.to_string(), v)))
        .collect()
}

/// The environment alone through `rows` (no file), for the programs that have none.
pub(super) fn read_env<T>(
    rows: &[Row<T>],
    into: &mut T,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    read(rows, into, &Values { env, file: None }, &mut problems);
    problems
}

/// Stores a parsed value: the rows' `read` is `|d, t| set(&mut d.field, parse(t))`.
pub(super) fn set<V, E: Into<ValueError>>(slot: &mut V, v: Result<V, E>) -> Result<(), ValueError> {
    *slot = v.map_err(Into::into)?;
    Ok(())
}

/// An optional value: empty is `None` (the default of every optional row is "").
pub(super) fn opt<V, E>(t: &str, parse: impl Fn(&str) -> Result<V, E>) -> Result<Option<V>, E> {
    if t.is_empty() {
        Ok(None)
    } else {
        parse(t).map(Some)
    }
}

/// An optional value as its row reads it back: `None` is empty.
pub(super) fn show_opt<V: Display>(v: &Option<V>) -> Option<String> {
    Some(v.as_ref().map_or(String::new(), ToString::to_string))
}
