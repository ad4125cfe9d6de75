//! `intercom-sspm checks`: the check catalog.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::output;
use super::ListFormat;
use crate::checks;

#[derive(Debug, Args)]
pub struct ChecksArgs {
    #[arg(long, value_enum, default_value_t)]
    format: ListFormat,
}

pub fn run(args: ChecksArgs) -> anyhow::Result<ExitCode> {
    let catalog = checks::catalog();
    match args.format {
        ListFormat::Json => {
            let items: Vec<_> = catalog
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id,
                        "title": m.title,
                        "severity": m.severity.as_str(),
                        "category": m.category.as_str(),
                        "source": m.source.as_str(),
                        "description": m.description,
                        "risk": m.risk,
                        "remediation": m.remediation,
                        "compliance": m.compliance.iter()
                            .map(|(f, ids)| ((*f).to_string(), json!(ids)))
                            .collect::<serde_json::Map<_, _>>(),
                    })
                })
                .collect();
            outln!("{}", output::json(&items)?);
        }
        ListFormat::Table => {
            let rows = catalog
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        m.severity.as_str().to_string(),
                        m.source.as_str().to_string(),
                        m.category.as_str().to_string(),
                        m.title.to_string(),
                    ]
                })
                .collect();
            outln!(
                "{}",
                output::table(&["id", "severity", "source", "category", "title"], rows)
            );
            outln!(
                "{} checks; `--format json` adds risk, remediation and compliance references",
                catalog.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
