//! A strict parser for the Prometheus text exposition the daemon serves at `/metrics`.

use std::collections::BTreeMap;

/// One sample line of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// `a="x",b="y\"z"}rest` -> labels and `rest`.
fn parse_labels(body: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let b = body.as_bytes();
    let mut labels = BTreeMap::new();
    let mut i = 0;
    loop {
        // `}` right away, or after a trailing comma, ends the set.
        if b.get(i) == Some(&b'}') {
            return Ok((labels, &body[i + 1..]));
        }
        let eq = body[i..].find('=').ok_or("label without =")? + i;
        let name = &body[i..eq];
        if !valid_label_name(name) {
            return Err("bad label name");
        }
        if b.get(eq + 1) != Some(&b'"') {
            return Err("label value not quoted");
        }
        let mut j = eq + 2;
        let mut value = String::new();
        loop {
            match b.get(j) {
                None => return Err("unterminated label value"),
                Some(b'\\') => {
                    value.push(match b.get(j + 1) {
                        Some(b'n') => '\n',
                        Some(b'\\') => '\\',
                        Some(b'"') => '"',
                        _ => return Err("bad escape in label value"),
                    });
                    j += 2;
                }
                Some(b'"') => {
                    j += 1;
                    break;
                }
                Some(_) => {
                    let c = body[j..].chars().next().ok_or("bad utf-8")?;
                    value.push(c);
                    j += c.len_utf8();
                }
            }
        }
        if labels.insert(name.to_string(), value).is_some() {
            return Err("a label appears twice");
        }
        match b.get(j) {
            Some(b',') => i = j + 1,
            Some(b'}') => return Ok((labels, &body[j + 1..])),
            _ => return Err("expected , or } after a label"),
        }
    }
}

/// Parses the Prometheus text format (0.0.4) strictly enough to catch a broken exposition:
/// metric and label names, quoted and escaped label values, numeric values, one TYPE per
/// family declared before its samples, and histogram/summary suffixes only on such
/// families.
pub fn parse_prometheus(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_metric_name(name) {
                        return Err(err("bad metric name in TYPE".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err(format!("unknown type {kind}")));
                    }
                    if out.types.insert(name.into(), kind.into()).is_some() {
                        return Err(err("second TYPE line for one family".into()));
                    }
                }
                (Some("HELP"), Some(name), _) if valid_metric_name(name) => {}
                (Some("HELP"), _, _) => return Err(err("bad HELP line".into())),
                _ => {} // other comments are allowed
            }
            continue;
        }
        // name{labels} value [timestamp]
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(err("no value".into())),
        };
        if !valid_metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(body) => parse_labels(body).map_err(|m| err(m.into()))?,
            None => (BTreeMap::new(), rest),
        };
        let mut fields = rest.split_whitespace();
        let value =
            parse_value(fields.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|e| err(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        // The family this sample belongs to must be declared, with a matching type.
        let family = out
            .types
            .get_key_value(name)
            .map(|(k, t)| (k.clone(), t.clone()))
            .or_else(|| {
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let base = name.strip_suffix(suffix)?;
                    let t = out.types.get(base)?;
                    (t == "histogram" || (t == "summary" && *suffix != "_bucket"))
                        .then(|| (base.to_string(), t.clone()))
                })
            });
        let Some((_, kind)) = family else {
            return Err(err("sample of an undeclared family".into()));
        };
        if kind == "histogram" && name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(err("histogram bucket without le".into()));
        }
        if kind == "counter" && value < 0.0 {
            return Err(err("negative counter".into()));
        }
        out.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[test]
fn prometheus_parser_accepts_valid_and_rejects_broken_text() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{region=\"us\",outcome=\"x\\\"y\"} 3\n\
              # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
    let e = parse_prometheus(ok).unwrap();
    assert_eq!(e.sum("a_total", &[("region", "us")]), 3.0);
    assert_eq!(e.samples[0].labels["outcome"], "x\"y");
    assert_eq!(e.sum("h_count", &[]), 2.0);
    for bad in [
        "a_total 1\n",                               // undeclared family
        "# TYPE a counter\na{x=1} 1\n",              // unquoted label
        "# TYPE a counter\na{x=\"1\"} one\n",        // bad value
        "# TYPE a counter\na{x=\"1\" 1\n",           // unterminated labels
        "# TYPE 1a counter\n",                       // bad name
        "# TYPE a gauge\na_bucket{le=\"1\"} 1\n",    // bucket of a gauge
        "# TYPE a counter\n# TYPE a counter\na 1\n", // duplicate TYPE
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}
