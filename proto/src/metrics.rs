//! The Prometheus text exposition format (0.0.4), written in one place: the `metrics`
//! built-in (supervisor and listener parts) and the scheduler's metrics file use it.
//!
//! A [`Family`] is one metric name with its HELP, TYPE and samples; [`render`] writes
//! families one after the other, so a family's samples are always together, and escapes
//! what the format says to escape: `\` and newline in HELP text, `\`, `"` and newline in
//! label values. Pure: strings in, a string out.

use std::fmt::Write as _;

/// A metric family's TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
    Histogram,
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
            Kind::Histogram => "histogram",
            Kind::Untyped => "untyped",
        }
    }
}

/// One sample line: `<family name><suffix>{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Appended to the family's name: `""`, or `_sum`, `_count`, `_bucket` of a summary or
    /// histogram.
    pub suffix: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// One metric family: a name (with its `bosun_` prefix), HELP, TYPE and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: Kind) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with these labels (name, value).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Family {
        self.sample_with("", labels, value)
    }

    /// Adds a sample of `<name><suffix>` (`_sum`, `_count`, `_bucket`).
    pub fn sample_with(
        &mut self,
        suffix: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut Family {
        self.samples.push(Sample {
            suffix,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
        self
    }
}

/// `families` with the label `name="value"` first on every sample (a replica's
/// `instance`, DESIGN.md section 10).
pub fn with_label(mut families: Vec<Family>, name: &str, value: &str) -> Vec<Family> {
    for s in families.iter_mut().flat_map(|f| f.samples.iter_mut()) {
        s.labels.insert(0, (name.to_string(), value.to_string()));
    }
    families
}

/// Writes `families` in the text format, each with its HELP and TYPE lines, one line per
/// sample, every line ended by a newline.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        render_head(f, &mut out);
        render_samples(f, &mut out);
    }
    out
}

/// A family's HELP and TYPE lines.
pub fn render_head(f: &Family, out: &mut String) {
    out.push_str("# HELP ");
    out.push_str(&f.name);
    out.push(' ');
    escape_help(&f.help, out);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
}

/// A family's sample lines: a writer that keeps the samples of a part of a family (one
/// target's, say) and puts the family together later writes them with this, after
/// [`render_head`].
pub fn render_samples(f: &Family, out: &mut String) {
    for s in &f.samples {
        out.push_str(&f.name);
        out.push_str(s.suffix);
        if !s.labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label(v, out);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        value(s.value, out);
        out.push('\n');
    }
}

/// A label value: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
pub fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: `\` -> `\\`, newline -> `\n`.
pub fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A value as Go's ParseFloat reads it: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
fn value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_with_help_type_and_labels() {
        let mut c = Family::new("bosun_x_total", "Runs.", Kind::Counter);
        c.sample(&[("action", "a"), ("result", "ok")], 3.0)
            .sample(&[("action", "a"), ("result", "failed")], 0.0);
        let mut g = Family::new("bosun_up", "1 when up.", Kind::Gauge);
        g.sample(&[], 1.0);
        let mut s = Family::new("bosun_d_seconds", "Durations.", Kind::Summary);
        s.sample_with("_sum", &[("action", "a")], 1.5).sample_with(
            "_count",
            &[("action", "a")],
            2.0,
        );
        assert_eq!(
            render(&[c, g, s]),
            "# HELP bosun_x_total Runs.\n\
             # TYPE bosun_x_total counter\n\
             bosun_x_total{action=\"a\",result=\"ok\"} 3\n\
             bosun_x_total{action=\"a\",result=\"failed\"} 0\n\
             # HELP bosun_up 1 when up.\n\
             # TYPE bosun_up gauge\n\
             bosun_up 1\n\
             # HELP bosun_d_seconds Durations.\n\
             # TYPE bosun_d_seconds summary\n\
             bosun_d_seconds_sum{action=\"a\"} 1.5\n\
             bosun_d_seconds_count{action=\"a\"} 2\n"
        );
    }

    #[test]
    fn escaping() {
        let mut f = Family::new("bosun_e", "back\\slash and\nnewline \"kept\"", Kind::Gauge);
        f.sample(&[("action", "a\"b\\c\nd")], 1.0);
        assert_eq!(
            render(&[f]),
            "# HELP bosun_e back\\\\slash and\\nnewline \"kept\"\n\
             # TYPE bosun_e gauge\n\
             bosun_e{action=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn values() {
        let mut s = String::new();
        for v in [
            0.0,
            -2.0,
            0.25,
            1.7e9,
            1e20,
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
        ] {
            value(v, &mut s);
            s.push(' ');
        }
        assert_eq!(
            s,
            "0 -2 0.25 1700000000 100000000000000000000 NaN +Inf -Inf "
        );
    }

    #[test]
    fn empty() {
        assert_eq!(render(&[]), "");
        let f = Family::new("bosun_none", "No samples.", Kind::Counter);
        assert_eq!(
            render(&[f]),
            "# HELP bosun_none No samples.\n# TYPE bosun_none counter\n"
        );
    }
}
