//! `service.toml`: read with spans, every key checked against the table of rows, every
//! value kept as the text the same row reads from the environment. The serde way stops
//! at the first unknown key, and a file with four mistakes must report four.
//!
//! The file is read only with the `toml` feature (the supervisor's), by
//! `ServiceFile::read` (the `toml` feature), which the listener never calls: it reads the environment alone,
//! so its binary holds no TOML parser even when a workspace build turns the feature on.

use std::collections::BTreeMap;

use super::problem::Problem;
use super::table::Raw;

/// What `service.toml` said, as text in the same form as the environment's, and what is
/// wrong with the file itself (syntax, unknown keys, types), reported with the values'
/// problems by [`super::Settings::load`].
#[derive(Debug, Default)]
pub struct ServiceFile {
    /// Label of the file for messages.
    label: Option<String>,
    /// By key (`on_demand.listen`).
    values: BTreeMap<String, Raw>,
    pub(super) exec: Option<Vec<String>>,
    pub(super) problems: Vec<Problem>,
}

impl ServiceFile {
    /// The file's name in messages, when there is a file.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub(super) fn value(&self, key: &str) -> Option<&Raw> {
        self.values.get(key)
    }
}

#[cfg(feature = "toml")]
mod toml_file {
    use std::ops::Range;
    use std::path::Path;

    use toml::de::{DeTable, DeValue};

    use super::super::keys::ROWS;
    use super::super::problem::{Origin, Problem, ProblemKind};
    use super::super::table::{FileType, Raw};
    use super::ServiceFile;

    impl ServiceFile {
        /// Reads and checks the file; a missing file is no error (everything can come
        /// from the environment), anything else wrong with it is.
        pub fn read(path: &Path) -> ServiceFile {
            let label = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(text) => ServiceFile::parse(&label, &text),
                Err(e) => ServiceFile {
                    problems: if e.kind() == std::io::ErrorKind::NotFound {
                        Vec::new()
                    } else {
                        let at = Origin::File {
                            at: label.clone(),
                            key: None,
                        };
                        vec![Problem::new(
                            Some(at),
                            ProblemKind::Unreadable(e.to_string()),
                        )]
                    },
                    label: Some(label),
                    ..ServiceFile::default()
                },
            }
        }

        /// Checks the text of a `service.toml` named `label` in messages.
        pub fn parse(label: &str, text: &str) -> ServiceFile {
            let mut cx = Ctx {
                label,
                text,
                out: ServiceFile {
                    label: Some(label.to_string()),
                    ..ServiceFile::default()
                },
            };
            let (table, syntax) = DeTable::parse_recoverable(text);
            for e in &syntax {
                let msg = ProblemKind::Syntax(e.message().trim().replace('\n', " "));
                match e.span() {
                    Some(s) => cx.bad(s, None, msg),
                    None => {
                        let at = Origin::File {
                            at: label.to_string(),
                            key: None,
                        };
                        cx.out.problems.push(Problem::new(Some(at), msg));
                    }
                }
            }
            for (k, v) in table.get_ref() {
                match (k.get_ref().as_ref(), v.get_ref()) {
                    ("exec", DeValue::Array(items)) => cx.exec(items),
                    ("exec", _) => cx.bad(
                        v.span(),
                        Some("exec"),
                        ProblemKind::Type("an array of strings, as [\"cmd\", \"arg\"]"),
                    ),
                    ("on_demand", DeValue::Table(t)) => {
                        for (k, v) in t {
                            let key = format!("on_demand.{}", k.get_ref());
                            cx.key(&key, k.span(), v, true);
                        }
                    }
                    ("on_demand", _) => cx.bad(
                        v.span(),
                        Some("on_demand"),
                        ProblemKind::Type("a table ([on_demand])"),
                    ),
                    (key, _) => cx.key(key, k.span(), v, false),
                }
            }
            cx.out
        }
    }

    /// Checks the text of a `service.toml`, reporting every problem of the file itself
    /// (syntax, unknown keys, wrong types) as `FILE:LINE:COL: message`. Values are checked
    /// later, after the environment's overrides. Public for the fuzz target.
    pub fn check_text(label: &str, text: &str) -> Vec<String> {
        ServiceFile::parse(label, text)
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    struct Ctx<'a> {
        label: &'a str,
        text: &'a str,
        out: ServiceFile,
    }

    type Spanned<'a> = toml::Spanned<DeValue<'a>>;

    impl Ctx<'_> {
        fn origin(&self, span: Range<usize>, key: Option<&str>) -> Origin {
            let (l, c) = line_col(self.text, span.start);
            Origin::File {
                at: format!("{}:{l}:{c}", self.label),
                key: key.map(str::to_string),
            }
        }

        fn bad(&mut self, span: Range<usize>, key: Option<&str>, kind: ProblemKind) {
            let at = self.origin(span, key);
            self.out.problems.push(Problem::new(Some(at), kind));
        }

        fn exec(&mut self, items: &[Spanned<'_>]) {
            let mut argv = Vec::new();
            for i in items {
                match i.get_ref() {
                    DeValue::String(s) => argv.push(s.to_string()),
                    _ => self.bad(i.span(), Some("exec"), ProblemKind::Type("a string")),
                }
            }
            self.out.exec = Some(argv);
        }

        /// A key of the table of rows (`on_demand.` ones from `[on_demand]`), its value
        /// as the row's text.
        fn key(&mut self, key: &str, key_span: Range<usize>, v: &Spanned<'_>, sub: bool) {
            // A top-level key is never a table's (`"on_demand.listen" = ...` quoted).
            let row = ROWS.iter().find(|r| r.spec.key == key);
            let Some(row) = row.filter(|_| sub || !key.contains('.')) else {
                let shown = key.escape_debug().to_string();
                let kind = if sub {
                    ProblemKind::UnknownSubKey {
                        key: shown,
                        known: known(true),
                    }
                } else {
                    ProblemKind::UnknownKey {
                        key: shown,
                        known: known(false),
                    }
                };
                return self.bad(key_span, None, kind);
            };
            if let Some(text) = self.text_of(key, row.file, v) {
                let origin = self.origin(v.span(), Some(key));
                self.out
                    .values
                    .insert(key.to_string(), Raw { text, origin });
            }
        }

        /// The value in the form the environment writes it, or a type problem.
        fn text_of(&mut self, key: &str, file: FileType, v: &Spanned<'_>) -> Option<String> {
            match (file, v.get_ref()) {
                (_, DeValue::String(s)) => Some(s.to_string()),
                (FileType::Number, DeValue::Integer(n)) => Some(integer(n, false)),
                (FileType::Mode, DeValue::Integer(n)) => Some(integer(n, true)),
                (FileType::Ids, DeValue::Array(items)) => {
                    let mut ids = Vec::new();
                    for i in items.iter() {
                        match i.get_ref() {
                            DeValue::Integer(n) => ids.push(integer(n, false)),
                            DeValue::String(s) => ids.push(s.to_string()),
                            _ => {
                                self.bad(i.span(), Some(key), ProblemKind::Type("an id or a name"))
                            }
                        }
                    }
                    Some(ids.join(","))
                }
                (FileType::Timeouts, DeValue::Table(t)) => {
                    let mut items = Vec::new();
                    for (k, v) in t {
                        match v.get_ref() {
                            DeValue::String(d) => items.push(format!("{}={d}", k.get_ref())),
                            _ => {
                                let item = format!("{key}.{}", k.get_ref().escape_debug());
                                let kind = ProblemKind::Type("a duration string like \"5m\"");
                                self.bad(v.span(), Some(&item), kind);
                            }
                        }
                    }
                    Some(items.join(","))
                }
                _ => {
                    self.bad(v.span(), Some(key), ProblemKind::Type("a string"));
                    None
                }
            }
        }
    }

    /// The keys a file may hold: at the top (`exec` and `on_demand` among them, in the
    /// rows' order), or in `[on_demand]`.
    fn known(sub: bool) -> String {
        let mut keys: Vec<&str> = Vec::new();
        for row in ROWS {
            let key = match (sub, row.spec.key.split_once('.')) {
                (true, Some((_, k))) => k,
                (true, None) => continue,
                (false, Some((table, _))) => table,
                (false, None) => row.spec.key,
            };
            if !keys.contains(&key) {
                keys.push(key);
            }
            if key == "service" {
                keys.push("exec");
            }
        }
        keys.join(", ")
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// The integer's text; a mode written `0o660` stays octal, one written `660` is read
    /// as the octal digits it looks like.
    fn integer(n: &toml::de::DeInteger<'_>, octal: bool) -> String {
        match (n.radix(), octal) {
            (10, _) => n.as_str().to_string(),
            (r, true) => i64::from_str_radix(n.as_str(), r)
                .map_or(n.as_str().to_string(), |v| format!("{v:o}")),
            (r, false) => {
                i64::from_str_radix(n.as_str(), r).map_or(n.as_str().to_string(), |v| v.to_string())
            }
        }
    }
}

#[cfg(feature = "toml")]
pub use toml_file::check_text;
