//! The simulator itself: fidelity to the fixtures' shapes, the live handle, the scenario
//! files, the generator at scale.

use std::collections::BTreeSet;
use std::path::PathBuf;

use intercom_sim::generate::{generate, GenerateParams};
use intercom_sim::{scopes, NextStyle, Scenario, Simulator};
use intercom_sspm::intercom::models::{ActivityLogPage, AdminList, ErrorList, Me};
use intercom_sspm::intercom::{decode, IntercomError};
use intercom_sspm::Region;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::sim::*;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(repo("tests/fixtures/intercom").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn union<'a>(items: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    items.into_iter().flat_map(keys).collect()
}

fn intersection<'a>(items: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    let mut it = items.into_iter();
    let first = keys(it.next().unwrap());
    it.fold(first, |acc, v| {
        acc.intersection(&keys(v)).cloned().collect()
    })
}

/// Every key the simulator sends is one the fixtures know, and it sends every key that all
/// fixture variants have.
#[track_caller]
fn assert_shape(what: &str, got: &Value, variants: &[&Value]) {
    let got_keys = keys(got);
    let allowed = union(variants.iter().copied());
    let required = intersection(variants.iter().copied());
    let extra: Vec<_> = got_keys.difference(&allowed).collect();
    let missing: Vec<_> = required.difference(&got_keys).collect();
    assert!(extra.is_empty(), "{what}: keys not in fixtures: {extra:?}");
    assert!(missing.is_empty(), "{what}: keys missing: {missing:?}");
}

struct Raw {
    http: reqwest::Client,
}

impl Raw {
    fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
        }
    }

    async fn get(
        &self,
        sim: &Simulator,
        region: Region,
        path: &str,
        token: &str,
        version: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value, Vec<u8>) {
        let mut req = self
            .http
            .get(format!(
                "{}{path}",
                sim.base_url(crate::support::sim::sim_region(region))
            ))
            .bearer_auth(token);
        if let Some(v) = version {
            req = req.header("Intercom-Version", v);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap().to_vec();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value, bytes)
    }
}

async fn rich_sim() -> Simulator {
    let mut scenario = full_scope_scenario();
    let w = &mut scenario.workspaces[0];
    w.admins[0].avatar_url = Some("https://example.org/a.png".into());
    w.admins[1].role = None;
    w.admins[1].job_title = Some("Support".into());
    w.events = events(12, now() - 100);
    w.teams = serde_json::from_value(serde_json::json!([
        {"id": "814865", "name": "Example Team", "admin_ids": [101, 102], "assignment_limit": 10, "distribution_method": "round_robin"},
        {"id": "991267902", "name": "team 1"}
    ]))
    .unwrap();
    start(scenario).await
}

#[tokio::test]
async fn me_matches_the_fixture_shape_and_parses() {
    let sim = rich_sim().await;
    let (status, _, me, bytes) = Raw::new().get(&sim, Region::Us, "/me", TOKEN, None).await;
    assert_eq!(status, 200);
    let (f1, f2) = (fixture("me.json"), fixture("me_eu_edge.json"));
    assert_shape("/me", &me, &[&f1, &f2]);
    assert_shape("/me app", &me["app"], &[&f1["app"], &f2["app"]]);
    assert_eq!(keys(&me["avatar"]), keys(&f1["avatar"]));
    assert_eq!(me["type"], "admin");
    assert_eq!(me["app"]["type"], "app");
    assert_eq!(me["avatar"]["type"], "avatar");
    let parsed: Me = decode("/me", &bytes).unwrap();
    assert_eq!(parsed.app.unwrap().region.as_deref(), Some("US"));
    sim.shutdown().await;
}

#[tokio::test]
async fn admins_match_the_fixture_shape_and_parse() {
    let sim = rich_sim().await;
    let raw = Raw::new();
    let f = fixture("admins_list.json");
    let f_items: Vec<&Value> = f["admins"].as_array().unwrap().iter().collect();

    let (_, _, list, bytes) = raw
        .get(&sim, Region::Us, "/admins?display_avatar=true", TOKEN, None)
        .await;
    assert_eq!(keys(&list), keys(&f));
    assert_eq!(list["type"], "admin.list");
    for item in list["admins"].as_array().unwrap() {
        assert_shape("/admins item", item, &f_items);
        assert!(
            item.get("avatar").is_some(),
            "display_avatar=true sends avatar"
        );
    }
    assert_eq!(
        list["admins"][0]["avatar"],
        serde_json::json!({"image_url": "https://example.org/a.png"})
    );
    assert!(list["admins"][1]["avatar"].is_null());
    assert_eq!(
        keys(&list["admins"][0]["role"]),
        keys(&f["admins"][1]["role"])
    );
    assert!(list["admins"][1].get("role").is_none(), "no role, no key");
    let parsed: AdminList = decode("/admins", &bytes).unwrap();
    assert_eq!(parsed.into_admins().len(), 2);

    let (_, _, plain, _) = raw.get(&sim, Region::Us, "/admins", TOKEN, None).await;
    assert!(
        plain["admins"][0].get("avatar").is_none(),
        "avatars only on request"
    );
    let (_, _, old, _) = raw
        .get(&sim, Region::Us, "/admins", TOKEN, Some("2.15"))
        .await;
    assert!(old["admins"][0].get("role").is_none(), "role is 2.16+");
    sim.shutdown().await;
}

#[tokio::test]
async fn activity_logs_match_the_fixture_shape_in_both_next_styles() {
    let sim = rich_sim().await;
    let raw = Raw::new();
    let f = fixture("activity_logs_page1.json");
    let f_items: Vec<&Value> = f["activity_logs"].as_array().unwrap().iter().collect();
    let query = format!(
        "/admins/activity_logs?created_at_after={}&per_page=5",
        now() - 86_400
    );
    let (status, _, page, bytes) = raw.get(&sim, Region::Us, &query, TOKEN, None).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&page), keys(&f));
    assert_eq!(page["type"], "activity_log.list");
    assert_eq!(keys(&page["pages"]), keys(&f["pages"]));
    assert_eq!(page["pages"]["type"], "pages");
    assert_eq!(page["pages"]["total_pages"], 3);
    let next = page["pages"]["next"].as_str().expect("URL-style next");
    assert!(
        next.starts_with(&format!(
            "{}/admins/activity_logs?",
            sim.base_url(intercom_sim::Region::Us)
        )),
        "{next}"
    );
    for item in page["activity_logs"].as_array().unwrap() {
        assert_shape("activity log entry", item, &f_items);
        let f_by: Vec<&Value> = f_items.iter().map(|i| &i["performed_by"]).collect();
        assert_shape("performed_by", &item["performed_by"], &f_by);
    }
    let parsed: ActivityLogPage = decode("/admins/activity_logs", &bytes).unwrap();
    assert_eq!(parsed.activity_logs.len(), 5);

    sim.scenario_handle()
        .update_workspace("w1", |w| w.pagination.next_style = NextStyle::Cursor)
        .unwrap();
    let (_, _, page, _) = raw.get(&sim, Region::Us, &query, TOKEN, None).await;
    let fo = fixture("activity_logs_page1_next_object.json");
    assert_eq!(keys(&page["pages"]["next"]), keys(&fo["pages"]["next"]));
    sim.shutdown().await;
}

#[tokio::test]
async fn error_bodies_match_the_fixtures() {
    let sim = rich_sim().await;
    let handle = sim.scenario_handle();
    let raw = Raw::new();
    let without_id = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };

    let (status, headers, body, _) = raw.get(&sim, Region::Us, "/me", "sim_unknown", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        without_id(body.clone()),
        without_id(fixture("error_401_unauthorized.json"))
    );
    assert!(body["request_id"].is_string());
    assert!(
        headers.get("x-ratelimit-limit").is_none(),
        "no rate headers without valid credentials"
    );

    let (status, _, body, _) = raw
        .get(&sim, Region::Us, "/admins/activity_logs", TOKEN, None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        fixture("error_missing_created_at_after.json"),
        "legacy body, verbatim"
    );

    handle.set_scopes(TOKEN, &[scopes::READ_ADMINS]).unwrap();
    let logs = format!("/admins/activity_logs?created_at_after={}", now() - 60);
    let (status, headers, body, bytes) = raw.get(&sim, Region::Us, &logs, TOKEN, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        without_id(body),
        without_id(fixture("error_401_token_unauthorized.json"))
    );
    assert!(
        headers.get("x-ratelimit-remaining").is_some(),
        "authenticated refusal has rate headers"
    );
    let parsed: ErrorList = decode("/x", &bytes).unwrap();
    assert_eq!(parsed.first_code(), Some("token_unauthorized"));

    handle
        .update_workspace("w1", |w| {
            w.refusal = intercom_sim::Refusal::ApiPlanRestricted
        })
        .unwrap();
    let (status, _, body, _) = raw.get(&sim, Region::Us, &logs, TOKEN, None).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["errors"],
        fixture("error_403_api_plan_restricted.json")["errors"]
    );

    handle
        .update_workspace("w1", |w| w.refusal = intercom_sim::Refusal::Forbidden)
        .unwrap();
    let (status, _, body, _) = raw.get(&sim, Region::Us, &logs, TOKEN, None).await;
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["code"], "forbidden");
    assert_eq!(
        keys(&body),
        keys(&fixture("error_403_forbidden_scope.json"))
    );

    handle
        .set_workspace_faults(
            "w1",
            serde_json::from_value(serde_json::json!({"rate_limited": {}})).unwrap(),
        )
        .unwrap();
    let (status, headers, body, _) = raw.get(&sim, Region::Us, "/me", TOKEN, None).await;
    assert_eq!(status, 429);
    assert_eq!(body["errors"][0]["code"], "rate_limit_exceeded");
    let fh = fixture("error_429_rate_limited.headers.json");
    for name in keys(&fh["headers"]) {
        assert!(headers.get(name.as_str()).is_some(), "429 lacks {name}");
    }
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    sim.shutdown().await;
}

#[tokio::test]
async fn probe_endpoints_have_their_shapes() {
    let sim = rich_sim().await;
    let raw = Raw::new();
    let (_, _, teams, _) = raw.get(&sim, Region::Us, "/teams", TOKEN, None).await;
    let f = fixture("teams_list.json");
    assert_eq!(keys(&teams), keys(&f));
    for (got, want) in teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .zip(f["teams"].as_array().unwrap())
    {
        assert_eq!(keys(got), keys(want));
    }
    let (_, _, tags, _) = raw.get(&sim, Region::Us, "/tags", TOKEN, None).await;
    assert_eq!(tags["type"], "list");
    let (_, _, allow, _) = raw
        .get(&sim, Region::Us, "/ip_allowlist", TOKEN, None)
        .await;
    assert_eq!(allow["type"], "ip_allowlist");
    assert!(allow["enabled"].is_boolean() && allow["ip_allowlist"].is_array());
    let (status, _, _, _) = raw.get(&sim, Region::Us, "/contacts", TOKEN, None).await;
    assert_eq!(status, 404);
    let r = reqwest::get(format!("http://{}/ca/me", sim.addr()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_handle_changes_the_world_live() {
    let newest = now() - 100;
    let mut scenario = full_scope_scenario();
    scenario.workspaces[0].events = events(3, newest);
    let sim = start(scenario).await;
    let settings = client_settings(&sim);
    let s = session(&settings, Region::Us, TOKEN);
    let h = sim.scenario_handle();

    h.add_admin("w1", admin("103", "Cy New", "cy@w.example"))
        .unwrap();
    assert_eq!(s.admins().await.unwrap().len(), 3);
    assert!(h.remove_admin("w1", "102").unwrap());
    assert!(!h.remove_admin("w1", "nope").unwrap());
    let ids: Vec<String> = s
        .admins()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|a| a.id)
        .collect();
    assert_eq!(ids, ["101", "103"]);

    let mut fresh = events(1, newest + 50).remove(0);
    fresh.id = "ev-new".into();
    h.add_event("w1", fresh).unwrap();
    let mut pager = s.activity_logs(newest - 3600, newest + 60);
    let first = pager.next_page().await.unwrap().unwrap();
    assert_eq!(first[0].id.as_deref(), Some("ev-new"), "newest first");
    assert_eq!(first.len(), 4);

    h.set_scopes(TOKEN, &[scopes::READ_ADMINS]).unwrap();
    let mut pager = s.activity_logs(newest - 3600, newest + 60);
    assert!(matches!(
        pager.next_page().await,
        Err(IntercomError::NotPermitted { .. })
    ));

    let snapshot = h.snapshot();
    assert_eq!(snapshot.workspaces[0].admins.len(), 2);
    assert_eq!(snapshot.workspaces[0].events.len(), 4);
    assert!(snapshot.workspaces[0]
        .events
        .iter()
        .all(|e| e.created_at.is_some()));

    h.revoke_token(TOKEN).unwrap();
    let e = s.me().await.unwrap_err();
    assert!(matches!(&e, IntercomError::Unauthorized { code, .. } if code == "token_revoked"));
    assert!(h.revoke_token("sim_nobody").is_err());
    assert!(h.add_admin("nope", admin("1", "x", "x@x")).is_err());
    let dup = h.update_workspace("w1", |w| w.admins.push(admin("101", "Dup", "d@w.example")));
    assert!(dup.is_err(), "invalid changes are rejected");
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_scenarios_do_not_start() {
    let mut scenario = full_scope_scenario();
    let copy = scenario.workspaces[0].clone();
    scenario.workspaces.push(copy);
    let e = Simulator::start(scenario, listen()).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("duplicate workspace"), "{e}");
}

#[tokio::test]
async fn every_shipped_scenario_loads() {
    let mut count = 0;
    for entry in std::fs::read_dir(repo("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    assert!(count >= 1);
    let e = Scenario::load(&repo("scenarios/missing.json")).unwrap_err();
    assert!(e.to_string().contains("missing.json"), "{e}");
}

#[tokio::test]
async fn demo_scenario_tells_its_story_through_the_client() {
    let scenario = Scenario::load(&repo("scenarios/demo.json")).unwrap();
    let sim = start(scenario).await;
    let settings = client_settings(&sim);
    let acme = session(&settings, Region::Us, "sim_acme_us_7f3c9a1e5b2d4f60");

    let me = acme.me().await.unwrap();
    assert_eq!(me.email.as_deref(), Some("alice@acme.example"));
    let app = me.app.unwrap();
    assert_eq!(app.identity_verification, Some(false));
    let admins = acme.admins().await.unwrap();
    assert_eq!(admins.len(), 8);
    let email = |a: &intercom_sspm::intercom::models::Admin| a.email.clone().unwrap_or_default();
    assert!(admins.iter().any(|a| email(a).ends_with("@gmail.com")));
    assert!(admins.iter().any(|a| email(a) == "support@acme.example"));
    assert!(admins
        .iter()
        .any(|a| !email(a).ends_with("acme.example") && !email(a).ends_with("gmail.com")));
    assert!(admins.iter().any(|a| a.role.is_none()));
    assert!(admins.iter().any(|a| a.away_mode_enabled == Some(true)));

    let mut pager = acme.activity_logs(now() - 90 * 86_400, now());
    let mut all = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        all.extend(page);
    }
    assert_eq!(all.len(), 22);
    let kinds: Vec<&str> = all
        .iter()
        .filter_map(|e| e.activity_type.as_deref())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "admin_login_failure")
            .count(),
        6
    );
    for k in [
        "admin_two_factor_auth_change",
        "app_data_export",
        "app_package_installation",
        "admin_impersonation_start",
    ] {
        assert!(kinds.contains(&k), "{k}");
    }
    assert!(
        all.windows(2).all(|w| w[0].created_at >= w[1].created_at),
        "newest first"
    );
    assert!(acme.probe("/tags").await.unwrap().is_allowed());
    assert!(!acme.probe("/ip_allowlist").await.unwrap().is_allowed());

    let globex = session(&settings, Region::Eu, "sim_globex_eu_2b8e61d04a9c7f35");
    assert_eq!(
        globex
            .me()
            .await
            .unwrap()
            .app
            .unwrap()
            .identity_verification,
        Some(true)
    );
    let gadmins = globex.admins().await.unwrap();
    assert!(gadmins
        .iter()
        .all(|a| email(a).ends_with("@globex.example") && a.role.is_some()));
    let mut pager = globex.activity_logs(now() - 86_400, now());
    assert!(matches!(
        pager.next_page().await,
        Err(IntercomError::NotPermitted { status: 401, .. })
    ));
    // The acme token against the EU host: what a wrong region looks like.
    let wrong = session(&settings, Region::Eu, "sim_acme_us_7f3c9a1e5b2d4f60");
    assert!(matches!(
        wrong.me().await,
        Err(IntercomError::Unauthorized { .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn generated_scenario_at_scale_is_served() {
    // 100k workspaces, 200k events: the size the benchmarks use.
    let params = GenerateParams {
        workspaces: 100_000,
        admins_per_workspace: 2,
        events_per_workspace: 2,
        seed: 42,
        ..Default::default()
    };
    let scenario = generate(&params);
    let total_events: usize = scenario.workspaces.iter().map(|w| w.events.len()).sum();
    assert_eq!(total_events, 200_000);
    let samples: Vec<(Region, String, bool)> = [0usize, 1, 4_242, 99_999]
        .iter()
        .map(|&i| {
            let w = &scenario.workspaces[i];
            let t = &w.tokens[0];
            (
                product_region(w.region),
                t.token.clone(),
                t.has_scope(scopes::READ_ADMIN_ACTIVITY_LOGS),
            )
        })
        .collect();
    let sim = start(scenario).await;
    let settings = client_settings(&sim);
    for (region, token, logs) in samples {
        let s = session(&settings, region, &token);
        assert!(s.me().await.unwrap().app.is_some());
        assert_eq!(s.admins().await.unwrap().len(), 2);
        let mut pager = s.activity_logs(now() - 91 * 86_400, now());
        match pager.next_page().await {
            Ok(page) => {
                assert!(logs);
                assert_eq!(page.map_or(0, |p| p.len()), 2);
            }
            Err(IntercomError::NotPermitted { .. }) => assert!(!logs),
            Err(e) => panic!("{e:?}"),
        }
    }
    sim.shutdown().await;
}
