//! Compliance per framework: control -> checks -> pass / fail / not evaluated, counted
//! over every instance's latest succeeded scan (one aggregate query), plus a
//! per-instance matrix for the first instances by name (one more query).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use uuid::Uuid;

use crate::checks::{CIS_V8, ISO_27001, NIST_800_53, SOC2};
use crate::console::auth::Signed;
use crate::console::role::Role;
use crate::console::state::ConsoleState;
use crate::console::views::{self, Chrome};
use crate::db::Checked;
use crate::status::CheckStatus;

const CHECK_RESULTS: &str = "sspm.check_results";

const MATRIX_INSTANCES: i64 = 25;

pub const FRAMEWORKS: [(&str, &str); 4] = [
    ("cis-v8", CIS_V8),
    ("soc2", SOC2),
    ("iso-27001", ISO_27001),
    ("nist-800-53", NIST_800_53),
];

#[derive(Template)]
#[template(path = "console/compliance_index.html")]
struct IndexPage {
    chrome: Chrome,
    frameworks: [(&'static str, &'static str); 4],
}

pub async fn index(State(_s): State<Arc<ConsoleState>>, signed: Signed) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    views::page(&IndexPage {
        chrome: Chrome::for_user(&signed),
        frameworks: FRAMEWORKS,
    })
}

pub struct CheckLine {
    pub id: &'static str,
    pub title: &'static str,
    pub pass: i64,
    pub fail: i64,
    pub not_evaluated: i64,
    pub per_instance: Vec<&'static str>,
}

pub struct ControlView {
    pub control: String,
    pub coverage: String,
    pub checks: Vec<CheckLine>,
}

#[derive(Template)]
#[template(path = "console/compliance.html")]
struct FrameworkPage {
    chrome: Chrome,
    framework: &'static str,
    controls: Vec<ControlView>,
    instance_names: Vec<String>,
    more_instances: bool,
}

pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    signed: Signed,
    Path(slug): Path<String>,
) -> Response {
    if let Some(r) = signed.refuse_unless(Role::Viewer) {
        return r;
    }
    let Some((_, framework)) = FRAMEWORKS.iter().find(|(s, _)| *s == slug) else {
        return views::not_found(&signed, "framework");
    };
    // control id -> checks giving evidence for it, in catalog order.
    let mut controls: BTreeMap<&'static str, Vec<&'static crate::checks::CheckMeta>> =
        BTreeMap::new();
    for m in crate::checks::catalog() {
        for (fw, ids) in m.compliance {
            if fw == framework {
                for id in *ids {
                    controls.entry(id).or_default().push(m);
                }
            }
        }
    }
    let counts = match sqlx::query!(
        r#"SELECT cr.check_id, cr.status AS "status: Checked<CheckStatus>", count(*) AS "n!"
           FROM sspm.instances i
           JOIN LATERAL (SELECT s.id FROM sspm.scans s
                         WHERE s.instance_id = i.id AND s.status = 'succeeded'
                         ORDER BY s.started_at DESC, s.id DESC LIMIT 1) ls ON true
           JOIN sspm.check_results cr ON cr.scan_id = ls.id
           GROUP BY 1, 2"#
    )
    .fetch_all(&state.pool)
    .await
    {
        Ok(c) => c,
        Err(e) => return views::internal(e),
    };
    let mut by_check: HashMap<String, (i64, i64, i64)> = HashMap::new();
    for c in counts {
        // Grouped rows: the check id is all there is to name (its latest results).
        let status = match c
            .status
            .of(CHECK_RESULTS, format_args!("(check {})", c.check_id))
        {
            Ok(s) => s,
            Err(e) => return views::internal(e),
        };
        let e = by_check.entry(c.check_id).or_default();
        match status {
            CheckStatus::Pass => e.0 += c.n,
            CheckStatus::Fail => e.1 += c.n,
            CheckStatus::Error | CheckStatus::NotEvaluated => e.2 += c.n,
        }
    }
    let matrix = match sqlx::query!(
        r#"SELECT i.id, i.name, ls.id AS "scan_id?", cr.check_id AS "check_id?",
                  cr.status AS "status?: Checked<CheckStatus>"
           FROM (SELECT id, name FROM sspm.instances ORDER BY name LIMIT $1) i
           LEFT JOIN LATERAL (SELECT s.id FROM sspm.scans s
                              WHERE s.instance_id = i.id AND s.status = 'succeeded'
                              ORDER BY s.started_at DESC, s.id DESC LIMIT 1) ls ON true
           LEFT JOIN sspm.check_results cr ON cr.scan_id = ls.id
           ORDER BY i.name"#,
        MATRIX_INSTANCES + 1
    )
    .fetch_all(&state.pool)
    .await
    {
        Ok(m) => m,
        Err(e) => return views::internal(e),
    };
    let mut instance_ids: Vec<(Uuid, String)> = Vec::new();
    let mut cell: HashMap<(Uuid, String), CheckStatus> = HashMap::new();
    for r in matrix {
        if instance_ids.last().map(|l| l.0) != Some(r.id) {
            instance_ids.push((r.id, r.name.clone()));
        }
        if let (Some(c), Some(s)) = (r.check_id, r.status) {
            let key = format_args!("(scan {}, check {c})", r.scan_id.unwrap_or_default());
            match s.of(CHECK_RESULTS, key) {
                Ok(s) => cell.insert((r.id, c), s),
                Err(e) => return views::internal(e),
            };
        }
    }
    let more_instances = instance_ids.len() as i64 > MATRIX_INSTANCES;
    instance_ids.truncate(MATRIX_INSTANCES as usize);
    let controls = controls
        .into_iter()
        .map(|(control, metas)| {
            let checks: Vec<CheckLine> = metas
                .iter()
                .map(|m| {
                    let (pass, fail, not_evaluated) =
                        by_check.get(m.id).copied().unwrap_or_default();
                    CheckLine {
                        id: m.id,
                        title: m.title,
                        pass,
                        fail,
                        not_evaluated,
                        per_instance: instance_ids
                            .iter()
                            .map(|(id, _)| {
                                // No result in its latest scan: the check did not run there.
                                cell.get(&(*id, m.id.to_string()))
                                    .map(|s| s.as_str())
                                    .unwrap_or(CheckStatus::NotEvaluated.as_str())
                            })
                            .collect(),
                    }
                })
                .collect();
            let evaluated: i64 = checks.iter().map(|c| c.pass + c.fail).sum();
            let total: i64 = checks
                .iter()
                .map(|c| c.pass + c.fail + c.not_evaluated)
                .sum();
            ControlView {
                control: control.to_string(),
                coverage: if total == 0 {
                    "– (no scan results yet)".into()
                } else {
                    views::pct(Some(evaluated as f64 / total as f64))
                },
                checks,
            }
        })
        .collect();
    views::page(&FrameworkPage {
        chrome: Chrome::for_user(&signed),
        framework,
        controls,
        instance_names: instance_ids.into_iter().map(|(_, n)| n).collect(),
        more_instances,
    })
}
