//! The simulator's responses validated against the official Intercom OpenAPI 2.16 response
//! schemas of the operations the client uses (tests/fixtures/openapi/intercom-2.16.json,
//! vendored fragments with their source commit; see the README there).
//!
//! OpenAPI 3.0 is not JSON Schema: `nullable: true` is turned into a `null` alternative
//! here. The schemas are made strict (no undeclared keys) so the simulator cannot invent
//! fields, and the few places where the live API is known to differ from the spec are
//! relaxed explicitly, each with its reason (tests/fixtures/intercom/README.md, DEVIATION).

use intercom_sim::{Scenario, Simulator};
use reqwest::StatusCode;
use serde_json::{json, Value};

const UMBRELLA_TOKEN: &str = "sim_umbrella_us_5c1e9b7a3d2f4e68";
const INITECH_TOKEN: &str = "sim_initech_eu_0a9b8c7d6e5f4a3b";

fn spec() -> Value {
    let text = include_str!("../fixtures/openapi/intercom-2.16.json");
    serde_json::from_str(text).expect("vendored fragments are JSON")
}

/// OpenAPI 3.0 -> JSON Schema 2020-12, recursively.
fn to_json_schema(node: &mut Value) {
    match node {
        Value::Object(map) => {
            for v in map.values_mut() {
                to_json_schema(v);
            }
            // `example` values are documentation (and sometimes wrong, e.g. auto_changed).
            map.remove("example");
            let nullable = map.remove("nullable") == Some(Value::Bool(true));
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            if nullable {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(e)) = map.get_mut("enum") {
                        e.push(Value::Null);
                    }
                } else {
                    let inner = Value::Object(std::mem::take(map));
                    map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_json_schema),
        _ => {}
    }
}

/// The documented differences between the spec and the live API, applied on top.
fn apply_deviations(schemas: &mut Value) {
    // fern/openapi-overrides.yml: "The spec incorrectly labels avatar as a string type,
    // while server responses show it as an object."
    schemas["admin"]["properties"]["avatar"] = json!({
        "type": ["object", "null"],
        "properties": {"image_url": {"type": "string", "format": "uri"}},
        "additionalProperties": false
    });
    // `app.secure` is in every version's /me example but not declared in `app`.
    schemas["app"]["properties"]["secure"] = json!({"type": "boolean"});
    // Production connectors (Airbyte, PostHog) consume `pages.next` as a full URL string;
    // the spec declares the `starting_after_paging` object. Both shapes are served.
    let object = schemas["cursor_pages"]["properties"]["next"].take();
    schemas["cursor_pages"]["properties"]["next"] =
        json!({"anyOf": [object, {"type": "string", "format": "uri"}]});
    // Activity types are added over time (the 2.16 enum lacks inbox_bulk_action, which the
    // API sends); the client tolerates unknown values, so only the type is checked.
    let at = &mut schemas["activity_log"]["properties"]["activity_type"];
    at.as_object_mut().unwrap().remove("enum");
    let meta = &mut schemas["activity_log_metadata"];
    // The spec's own examples carry undeclared keys (`message`): metadata stays open.
    meta.as_object_mut().unwrap().remove("additionalProperties");
    // `before`/`after` are `object` in the schema but strings in its own examples.
    meta["properties"]["before"] = json!({});
    meta["properties"]["after"] = json!({});
    // `auto_changed` is `string` in the schema, boolean `false` in its own example.
    meta["properties"]["auto_changed"] = json!({"type": ["string", "boolean", "null"]});
}

struct Validators {
    doc: Value,
}

impl Validators {
    fn new() -> Self {
        let spec = spec();
        let mut schemas = spec["components"]["schemas"].clone();
        to_json_schema(&mut schemas);
        apply_deviations(&mut schemas);
        Self {
            doc: json!({"components": {"schemas": schemas}, "operations": spec["operations"]}),
        }
    }

    /// Validates `body` against the response schema of `GET path` for `status`.
    fn check(&self, path: &str, status: u16, body: &Value) -> Result<(), String> {
        let responses = &self.doc["operations"][path]["responses"];
        let reference = responses[status.to_string()]
            .get("$ref")
            .or_else(|| responses["401"].get("$ref").filter(|_| status >= 400))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("GET {path}: no {status} response in the spec"))?;
        let mut schema = self.doc.clone();
        schema
            .as_object_mut()
            .unwrap()
            .insert("$ref".into(), Value::String(reference.into()));
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| format!("schema for {path}: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("GET {path} {status}:\n  {}", errors.join("\n  ")))
        }
    }
}

async fn world() -> Simulator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/real-world.json");
    let scenario = Scenario::load(std::path::Path::new(path)).expect("scenario loads");
    Simulator::start(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

async fn get(
    sim: &Simulator,
    region: intercom_sim::Region,
    path_and_query: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .get(format!("{}{path_and_query}", sim.base_url(region)))
        .bearer_auth(token);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        req = req.header("Accept", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[test]
fn the_vendored_fragments_name_their_source_and_cover_the_client_operations() {
    let spec = spec();
    assert_eq!(
        spec["source"]["commit"],
        "8889625a7b931d8649e18726e7f872ff073520fc"
    );
    assert_eq!(
        spec["source"]["path"],
        "descriptions/2.16/api.intercom.io.yaml"
    );
    for path in [
        "/me",
        "/admins",
        "/admins/{admin_id}",
        "/admins/activity_logs",
    ] {
        assert!(
            spec["operations"][path]["responses"]["200"].is_object(),
            "{path}"
        );
    }
    // The strict conversion rejects what the spec does not declare.
    let v = Validators::new();
    let mut admin = json!({"type": "admin", "id": "1", "name": "A", "email": "a@x.io",
        "away_mode_enabled": false, "away_mode_reassign": false, "has_inbox_seat": true,
        "team_ids": [], "team_priority_level": null});
    assert!(v.check("/admins/{admin_id}", 200, &admin).is_ok());
    admin["invented_field"] = json!(1);
    assert!(v.check("/admins/{admin_id}", 200, &admin).is_err());
    admin.as_object_mut().unwrap().remove("invented_field");
    admin["team_priority_level"] = json!({"primary_team_ids": "1"});
    assert!(v.check("/admins/{admin_id}", 200, &admin).is_err());
}

#[tokio::test]
async fn simulator_responses_match_the_openapi_response_schemas() {
    use intercom_sim::Region::{Eu, Us};
    let sim = world().await;
    let v = Validators::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut record = |path: &str, status: StatusCode, body: &Value, want: u16| {
        checked += 1;
        if status.as_u16() != want {
            failures.push(format!("GET {path}: status {status}, want {want}: {body}"));
        } else if let Err(e) = v.check(path, want, body) {
            failures.push(e);
        }
    };
    for (region, token) in [(Us, UMBRELLA_TOKEN), (Eu, INITECH_TOKEN)] {
        let (s, b) = get(&sim, region, "/me", token, &[]).await;
        record("/me", s, &b, 200);
        for version in ["2.16", "2.15", "2.8", "2.7"] {
            for query in ["", "?display_avatar=true"] {
                let (s, b) = get(
                    &sim,
                    region,
                    &format!("/admins{query}"),
                    token,
                    &[("Intercom-Version", version)],
                )
                .await;
                record("/admins", s, &b, 200);
            }
        }
        let (_, list) = get(&sim, region, "/admins", token, &[]).await;
        for admin in list["admins"].as_array().unwrap() {
            let id = admin["id"].as_str().unwrap();
            let (s, b) = get(&sim, region, &format!("/admins/{id}"), token, &[]).await;
            assert_eq!(b["id"], id);
            record("/admins/{admin_id}", s, &b, 200);
        }
        let (s, b) = get(&sim, region, "/admins/424242", token, &[]).await;
        assert_eq!(b["errors"][0]["code"], "admin_not_found");
        assert_eq!(b["errors"][0]["message"], "Admin not found");
        record("/admins/{admin_id}", s, &b, 404);
    }
    // Every page of the activity log, entries using every documented metadata key.
    let mut next = Some("/admins/activity_logs?created_at_after=0&per_page=4".to_string());
    let mut pages = 0;
    let mut keys = std::collections::BTreeSet::new();
    while let Some(path) = next.take() {
        let (s, b) = get(&sim, Us, &path, UMBRELLA_TOKEN, &[]).await;
        record("/admins/activity_logs", s, &b, 200);
        for e in b["activity_logs"].as_array().unwrap() {
            if let Some(m) = e["metadata"].as_object() {
                keys.extend(m.keys().cloned());
            }
        }
        pages += 1;
        next = match &b["pages"]["next"] {
            Value::String(url) => Some(url.split_once("/us").unwrap().1.to_string()),
            _ => None,
        };
        assert!(pages < 20, "pagination terminates");
    }
    assert!(pages >= 3, "{pages} pages");
    let documented = spec()["components"]["schemas"]["activity_log_metadata"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>();
    let missing: Vec<_> = documented.difference(&keys).collect();
    assert!(
        missing.is_empty(),
        "documented keys not exercised: {missing:?}"
    );
    // The activity log refused for a "Read admins" token: an error list.
    let (s, b) = get(
        &sim,
        Eu,
        "/admins/activity_logs?created_at_after=0",
        INITECH_TOKEN,
        &[],
    )
    .await;
    assert!(s.is_client_error(), "{s}");
    record("/admins/activity_logs", s, &b, s.as_u16());
    let (s, b) = get(&sim, Us, "/admins", "not-a-token", &[]).await;
    record("/admins", s, &b, 401);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 30, "{checked} responses validated");
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_versions_and_non_json_accept_headers_are_refused() {
    use intercom_sim::Region::Us;
    let sim = world().await;
    let v = Validators::new();
    let enum_values: Vec<String> = spec()["components"]["schemas"]["intercom_version"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(enum_values.len(), 22);
    for version in enum_values.iter().map(String::as_str).chain(["Preview"]) {
        let (s, _) = get(
            &sim,
            Us,
            "/me",
            UMBRELLA_TOKEN,
            &[("Intercom-Version", version)],
        )
        .await;
        assert_eq!(s, 200, "version {version}");
    }
    for version in ["2.17", "3.0", "latest", "2.016"] {
        let (s, b) = get(
            &sim,
            Us,
            "/me",
            UMBRELLA_TOKEN,
            &[("Intercom-Version", version)],
        )
        .await;
        assert_eq!(s, 400, "version {version}");
        assert_eq!(b["errors"][0]["code"], "intercom_version_invalid");
        v.check("/admins", 401, &b).unwrap();
    }
    let (s, b) = get(
        &sim,
        Us,
        "/admins",
        UMBRELLA_TOKEN,
        &[("Accept", "text/html")],
    )
    .await;
    assert_eq!(s, 406);
    v.check("/admins", 401, &b).unwrap();
    sim.shutdown().await;
}
