//! Server-rendered SVG charts. Only numbers and fixed labels go into the markup (never
//! data from Intercom), and styling comes from the stylesheet's classes, so the strict
//! CSP (no inline style) holds.

use chrono::{DateTime, Utc};
use std::fmt::Write;

/// One point of a series: when, and a value in 0..=max.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
}

fn xy(
    points: &[Point],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: f64,
    w: f64,
    h: f64,
    pad: f64,
) -> Vec<(f64, f64)> {
    let span = (to - from).num_seconds().max(1) as f64;
    points
        .iter()
        .map(|p| {
            let x = pad + (p.at - from).num_seconds() as f64 / span * (w - 2.0 * pad);
            let y = h - pad - (p.value.clamp(0.0, max) / max) * (h - 2.0 * pad);
            (x, y)
        })
        .collect()
}

fn polyline(pts: &[(f64, f64)], class: &str) -> String {
    let mut d = String::new();
    for (x, y) in pts {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    format!(r#"<polyline class="{class}" points="{}"/>"#, d.trim_end())
}

/// A 30-day score sparkline (0..100) with an accessible title.
pub fn sparkline(points: &[Point], now: DateTime<Utc>) -> String {
    let (w, h) = (120.0, 28.0);
    let from = now - chrono::Duration::days(30);
    let pts = xy(points, from, now, 100.0, w, h, 2.0);
    let title = match (points.first(), points.last()) {
        (Some(a), Some(b)) => format!(
            "Posture score over 30 days: from {:.0} to {:.0}",
            a.value, b.value
        ),
        _ => "No succeeded scan in the last 30 days".to_string(),
    };
    format!(
        r#"<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{title}"><title>{title}</title>{}</svg>"#,
        polyline(&pts, "line score")
    )
}

/// A trend chart of score (0..100) and coverage (0..1, drawn as %) with axes and labels.
pub fn trend(
    title: &str,
    score: &[Point],
    coverage: &[Point],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> String {
    let (w, h, pad) = (640.0, 220.0, 36.0);
    let s = xy(score, from, to, 100.0, w, h, pad);
    let cov: Vec<Point> = coverage
        .iter()
        .map(|p| Point {
            at: p.at,
            value: p.value * 100.0,
        })
        .collect();
    let c = xy(&cov, from, to, 100.0, w, h, pad);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="trend" viewBox="0 0 {w} {h}" role="img" aria-label="{title}"><title>{title}</title>"#
    );
    for v in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let y = h - pad - v / 100.0 * (h - 2.0 * pad);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{pad}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}">{v:.0}</text>"#,
            w - pad,
            pad - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        out,
        r#"<text class="axis" x="{pad}" y="{:.1}">{}</text><text class="axis end" x="{:.1}" y="{:.1}">{}</text>"#,
        h - 8.0,
        from.format("%Y-%m-%d"),
        w - pad,
        h - 8.0,
        to.format("%Y-%m-%d")
    );
    out.push_str(&polyline(&s, "line score"));
    out.push_str(&polyline(&c, "line coverage"));
    for (x, y) in &s {
        let _ = write!(
            out,
            r#"<circle class="dot score" cx="{x:.1}" cy="{y:.1}" r="2.5"/>"#
        );
    }
    let _ = write!(
        out,
        r#"<text class="legend score" x="{pad}" y="16">— score (0–100)</text><text class="legend coverage" x="{:.1}" y="16">— coverage (%)</text></svg>"#,
        pad + 150.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_titles_and_only_numbers() {
        let now = Utc::now();
        let pts = [
            Point {
                at: now - chrono::Duration::days(10),
                value: 40.0,
            },
            Point {
                at: now,
                value: 90.0,
            },
        ];
        let s = sparkline(&pts, now);
        assert!(
            s.starts_with("<svg")
                && s.contains("<title>Posture score over 30 days: from 40 to 90</title>")
        );
        assert!(!s.contains("style="));
        let t = trend(
            "Score and coverage",
            &pts,
            &pts,
            now - chrono::Duration::days(30),
            now,
        );
        assert!(t.contains("polyline") && t.contains(">100<") && t.contains("coverage"));
        assert!(sparkline(&[], now).contains("No succeeded scan"));
    }
}
