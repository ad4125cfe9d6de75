//! The Intercom client against the simulator: every error class, retries, rate limits,
//! pacing, pagination (both `pages.next` shapes), the same-origin rule and the caps.

use std::time::Duration;

use intercom_sim::{
    scopes, FaultSpec, Malformed, NextStyle, RateLimitFault, RateLimitSpec, Refusal, Scenario,
    ServerErrorFault,
};
use intercom_sspm::intercom::{IntercomError, ProbeOutcome};
use intercom_sspm::Region;

use crate::support::sim::*;

/// Starts the one-workspace scenario after `tweak` and returns a session with `settings`.
async fn setup(
    tweak: impl FnOnce(&mut Scenario),
) -> (
    intercom_sim::Simulator,
    intercom_sspm::config::IntercomSettings,
) {
    let mut scenario = full_scope_scenario();
    tweak(&mut scenario);
    let sim = start(scenario).await;
    let settings = client_settings(&sim);
    (sim, settings)
}

#[tokio::test]
async fn me_and_admins_round_trip() {
    let (sim, settings) = setup(|_| {}).await;
    let s = session(&settings, Region::Us, TOKEN);
    let me = s.me().await.unwrap();
    assert_eq!(me.id.as_deref(), Some("101"));
    let app = me.app.unwrap();
    assert_eq!(app.id_code.as_deref(), Some("w1"));
    assert_eq!(app.region.as_deref(), Some("US"));
    let admins = s.admins().await.unwrap();
    assert_eq!(admins.len(), 2);
    assert_eq!(
        admins[1].role.as_ref().unwrap().name.as_deref(),
        Some("Support Agent")
    );
    assert_eq!(s.api_calls(), 2);
    assert_eq!(sim.request_count(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_token_and_wrong_region_are_unauthorized() {
    let (sim, settings) = setup(|_| {}).await;
    let e = session(&settings, Region::Us, "sim_nobody")
        .me()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, IntercomError::Unauthorized { code, .. } if code == "unauthorized"),
        "{e:?}"
    );
    assert_token_free(&e, "sim_nobody");
    // The workspace lives in the US: the EU host does not know the token.
    let e = session(&settings, Region::Eu, TOKEN)
        .me()
        .await
        .unwrap_err();
    assert!(matches!(&e, IntercomError::Unauthorized { .. }), "{e:?}");
    assert_token_free(&e, TOKEN);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_revoked_after_n_calls() {
    let (sim, settings) = setup(|s| {
        s.workspaces[0].tokens[0].faults = Some(Box::new(faults(
            serde_json::json!({"revoke_after_calls": 2}),
        )));
    })
    .await;
    let s = session(&settings, Region::Us, TOKEN);
    s.me().await.unwrap();
    s.admins().await.unwrap();
    let e = s.me().await.unwrap_err();
    assert!(
        matches!(&e, IntercomError::Unauthorized { code, .. } if code == "token_revoked"),
        "{e:?}"
    );
    assert_eq!(s.api_calls(), 3, "a dead token is not retried");
    assert_token_free(&e, TOKEN);
    sim.shutdown().await;
}

#[tokio::test]
async fn scope_refusals_in_all_three_styles() {
    let limited = "sim_limited_us_1";
    let forbidden = "sim_limited_us_2";
    let plan = "sim_limited_us_3";
    let (sim, settings) = setup(|s| {
        let w = &mut s.workspaces[0];
        w.tokens.push(token(limited, &[scopes::READ_ADMINS]));
        let mut t = token(forbidden, &[scopes::READ_ADMINS]);
        t.refusal = Some(Refusal::Forbidden);
        w.tokens.push(t);
        let mut t = token(plan, &[scopes::READ_ADMINS]);
        t.refusal = Some(Refusal::ApiPlanRestricted);
        w.tokens.push(t);
    })
    .await;
    let window = (now() - 86_400, now());
    let first_page = |tok: &str| {
        let s = session(&settings, Region::Us, tok);
        async move {
            let mut pager = s.activity_logs(window.0, window.1);
            (pager.next_page().await, s)
        }
    };

    let (r, s) = first_page(limited).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, IntercomError::NotPermitted { status: 401, code, .. } if code == "token_unauthorized"),
        "{e:?}"
    );
    assert_eq!(s.api_calls(), 1, "refusals are not retried");
    assert_token_free(&e, limited);

    let (r, _) = first_page(forbidden).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, IntercomError::NotPermitted { status: 403, code, .. } if code == "forbidden"),
        "{e:?}"
    );

    let (r, _) = first_page(plan).await;
    let e = r.unwrap_err();
    assert!(matches!(&e, IntercomError::PlanRestricted { .. }), "{e:?}");

    // The least-privilege token still reads /me and /admins.
    let s = session(&settings, Region::Us, limited);
    s.me().await.unwrap();
    s.admins().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_read_admins_is_refused_on_me() {
    let tok = "sim_noadmins_us";
    let (sim, settings) = setup(|s| {
        s.workspaces[0]
            .tokens
            .push(token(tok, &[scopes::READ_ADMIN_ACTIVITY_LOGS]))
    })
    .await;
    let e = session(&settings, Region::Us, tok).me().await.unwrap_err();
    assert!(
        matches!(&e, IntercomError::NotPermitted { status: 401, .. }),
        "{e:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn ip_allowlist_refusal() {
    let (sim, settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(faults(
            serde_json::json!({"ip_not_allowed": true}),
        )));
    })
    .await;
    let s = session(&settings, Region::Us, TOKEN);
    let e = s.me().await.unwrap_err();
    assert!(matches!(&e, IntercomError::IpNotAllowed { .. }), "{e:?}");
    assert_eq!(s.api_calls(), 1);
    assert_token_free(&e, TOKEN);
    sim.shutdown().await;
}

#[tokio::test]
async fn transient_5xx_is_retried_then_succeeds() {
    let (sim, mut settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(FaultSpec {
            server_error: Some(ServerErrorFault {
                next: Some(2),
                probability: None,
                status: 502,
                seed: 0,
            }),
            ..Default::default()
        }));
    })
    .await;
    settings.max_retries = 3;
    let s = session(&settings, Region::Us, TOKEN);
    s.admins().await.unwrap();
    assert_eq!(s.api_calls(), 3);
    assert_eq!(s.retry_count(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn transient_5xx_exhausts_bounded_retries() {
    let (sim, mut settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(faults(serde_json::json!({"server_error": {}}))));
    })
    .await;
    settings.max_retries = 2;
    let s = session(&settings, Region::Us, TOKEN);
    let e = s.me().await.unwrap_err();
    assert!(
        matches!(&e, IntercomError::Transient { reason, .. } if reason == "HTTP 503"),
        "{e:?}"
    );
    assert_eq!(s.api_calls(), 3, "one attempt plus max_retries");
    assert_eq!(sim.scenario_handle().token_calls(TOKEN), Some(3));
    assert_token_free(&e, TOKEN);
    sim.shutdown().await;
}

#[tokio::test]
async fn short_429_is_waited_out_and_not_a_retry() {
    let (sim, mut settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(FaultSpec {
            rate_limited: Some(RateLimitFault {
                every_nth: None,
                next: Some(2),
                reset_after_secs: 1,
                retry_after_secs: None,
            }),
            ..Default::default()
        }));
    })
    .await;
    settings.max_retries = 0; // a 429 must not need a retry budget
    let s = session(&settings, Region::Us, TOKEN);
    let me = s.me().await.unwrap();
    assert!(me.id.is_some());
    assert_eq!(s.rate_limited_count(), 2);
    assert_eq!(s.retry_count(), 0);
    assert_eq!(s.api_calls(), 3);
    assert_eq!(sim.scenario_handle().rate_limited_responses(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn long_429_is_returned_for_the_scheduler_to_snooze() {
    let (sim, mut settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(faults(serde_json::json!({
            "rate_limited": {"reset_after_secs": 30}
        }))));
    })
    .await;
    settings.max_rate_limit_wait = Duration::from_secs(1);
    let s = session(&settings, Region::Us, TOKEN);
    let e = s.me().await.unwrap_err();
    match &e {
        IntercomError::RateLimited { reset, .. } => {
            assert!(
                *reset > Duration::from_secs(25) && *reset <= Duration::from_secs(31),
                "{reset:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.api_calls(), 1);
    assert_token_free(&e, TOKEN);

    // Retry-After wins over the reset header when the server sends it.
    sim.scenario_handle()
        .set_workspace_faults(
            "w1",
            faults(serde_json::json!({
                "rate_limited": {"reset_after_secs": 30, "retry_after_secs": 45}
            })),
        )
        .unwrap();
    let e = session(&settings, Region::Us, TOKEN)
        .me()
        .await
        .unwrap_err();
    assert!(
        matches!(e, IntercomError::RateLimited { reset, .. } if reset == Duration::from_secs(45))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn pacing_pauses_before_the_limit_instead_of_hitting_429() {
    let control = "sim_control_us";
    let (sim, settings) = setup(|s| {
        s.workspaces[0].rate_limit = RateLimitSpec {
            limit: 5,
            window_secs: 1,
        };
        let mut other = workspace(
            "w2",
            Region::Us,
            vec![token(control, &[scopes::READ_ADMINS])],
        );
        other.rate_limit = RateLimitSpec {
            limit: 5,
            window_secs: 1,
        };
        s.workspaces.push(other);
    })
    .await;
    let handle = sim.scenario_handle();

    // Control: twelve back-to-back requests without pacing overrun a 5-per-second window.
    let raw = reqwest::Client::new();
    let mut control_429 = 0;
    for _ in 0..12 {
        let r = raw
            .get(format!("{}/me", sim.base_url(intercom_sim::Region::Us)))
            .bearer_auth(control)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            control_429 += 1;
        }
    }
    assert!(control_429 > 0, "the window really limits");
    let served_before = handle.rate_limited_responses();

    // The client reads X-RateLimit-Remaining and waits for the reset instead.
    let s = session(&settings, Region::Us, TOKEN);
    for _ in 0..12 {
        s.me().await.unwrap();
    }
    assert_eq!(s.rate_limited_count(), 0);
    assert_eq!(s.api_calls(), 12);
    assert_eq!(
        handle.rate_limited_responses(),
        served_before,
        "no 429 served to the client"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_too_large_not_an_allocation() {
    let (sim, settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(faults(
            serde_json::json!({"oversized_body": 8_000_000}),
        )));
    })
    .await;
    let s = session(&settings, Region::Us, TOKEN);
    let e = s.admins().await.unwrap_err();
    assert!(matches!(&e, IntercomError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("max_body_bytes"), "{e}");
    assert_eq!(s.api_calls(), 1, "not retried");
    sim.shutdown().await;
}

#[tokio::test]
async fn hang_is_a_transient_timeout() {
    let (sim, mut settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(faults(serde_json::json!({"hang_ms": 30_000}))));
    })
    .await;
    settings.request_timeout = Duration::from_millis(200);
    settings.max_retries = 1;
    let s = session(&settings, Region::Us, TOKEN);
    let e = s.me().await.unwrap_err();
    assert!(
        matches!(&e, IntercomError::Transient { reason, .. }
            if reason == "timed out after 0.2 s (intercom.request_timeout)"),
        "{e:?}"
    );
    assert_eq!(
        s.api_calls(),
        2,
        "timeouts are retried like other transient failures"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn scan_budget_bounds_everything() {
    let (sim, mut settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(faults(serde_json::json!({"hang_ms": 30_000}))));
    })
    .await;
    settings.request_timeout = Duration::from_secs(10);
    settings.scan_timeout = Duration::from_millis(300);
    let s = session(&settings, Region::Us, TOKEN);
    let e = s.me().await.unwrap_err();
    assert!(
        matches!(e, IntercomError::BudgetExhausted(d) if d == Duration::from_millis(300)),
        "{e:?}"
    );
    // Once spent, the budget refuses further work without a request.
    let calls = s.api_calls();
    assert!(matches!(
        s.admins().await,
        Err(IntercomError::BudgetExhausted(_))
    ));
    assert_eq!(s.api_calls(), calls);
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_json_is_decode_with_the_field_path() {
    let (sim, settings) = setup(|s| {
        s.workspaces[0].faults = Some(Box::new(FaultSpec {
            malformed_json: Some(Malformed::WrongType),
            ..Default::default()
        }));
    })
    .await;
    let s = session(&settings, Region::Us, TOKEN);
    let e = s.admins().await.unwrap_err();
    match &e {
        IntercomError::Decode { path, endpoint, .. } => {
            assert_eq!(path, "admins[0].has_inbox_seat");
            assert_eq!(endpoint, "/admins");
        }
        other => panic!("{other:?}"),
    }
    let handle = sim.scenario_handle();
    handle
        .set_workspace_faults(
            "w1",
            FaultSpec {
                malformed_json: Some(Malformed::Truncated),
                ..Default::default()
            },
        )
        .unwrap();
    let e = s.me().await.unwrap_err();
    assert!(matches!(&e, IntercomError::Decode { .. }), "{e:?}");
    assert_token_free(&e, TOKEN);
    sim.shutdown().await;
}

async fn collect_all(
    s: &intercom_sspm::intercom::Session,
    after: i64,
    before: i64,
) -> (Vec<String>, u32) {
    let mut pager = s.activity_logs(after, before);
    let mut ids = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        assert!(page.len() <= 5);
        ids.extend(page.into_iter().map(|e| e.id.unwrap()));
    }
    (ids, pager.pages_fetched())
}

#[tokio::test]
async fn activity_logs_paginate_with_url_next() {
    let newest = now() - 100;
    let (sim, settings) = setup(|s| s.workspaces[0].events = events(23, newest)).await;
    let s = session(&settings, Region::Us, TOKEN);
    let (ids, pages) = collect_all(&s, newest - 86_400, newest).await;
    let expected: Vec<String> = (0..23).map(|i| format!("ev-{i:04}")).collect();
    assert_eq!(ids, expected, "every entry once, newest first");
    assert_eq!(pages, 5);
    assert_eq!(s.api_calls(), 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn activity_logs_paginate_with_cursor_next() {
    let newest = now() - 100;
    let (sim, settings) = setup(|s| {
        s.workspaces[0].events = events(23, newest);
        s.workspaces[0].pagination.next_style = NextStyle::Cursor;
    })
    .await;
    let s = session(&settings, Region::Us, TOKEN);
    let (ids, pages) = collect_all(&s, newest - 86_400, newest).await;
    // Only a request carrying `starting_after` reaches past page 1: without it the
    // simulator would serve page 1 again and the loop guard would stop at 5 entries.
    let expected: Vec<String> = (0..23).map(|i| format!("ev-{i:04}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(pages, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn activity_logs_honour_the_time_window() {
    let newest = now() - 100;
    let (sim, settings) = setup(|s| s.workspaces[0].events = events(20, newest)).await;
    let s = session(&settings, Region::Us, TOKEN);
    // ev-0003 .. ev-0012 (one a minute).
    let (ids, _) = collect_all(&s, newest - 12 * 60, newest - 3 * 60).await;
    let expected: Vec<String> = (3..=12).map(|i| format!("ev-{i:04}")).collect();
    assert_eq!(ids, expected);
    // An empty window is one request and no pages.
    let mut pager = s.activity_logs(newest + 10, newest + 20);
    assert!(pager.next_page().await.unwrap().is_none());
    assert_eq!(pager.pages_fetched(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn page_cap_is_an_error_not_a_silent_truncation() {
    let newest = now() - 100;
    let (sim, mut settings) = setup(|s| s.workspaces[0].events = events(30, newest)).await;
    settings.max_pages = 3;
    let s = session(&settings, Region::Us, TOKEN);
    let mut pager = s.activity_logs(newest - 86_400, newest);
    for _ in 0..3 {
        assert_eq!(pager.next_page().await.unwrap().unwrap().len(), 5);
    }
    let e = pager.next_page().await.unwrap_err();
    assert!(
        matches!(&e, IntercomError::TooLarge { reason, .. } if reason.contains("max_pages")),
        "{e:?}"
    );
    assert_eq!(s.api_calls(), 3, "the fourth page is never requested");
    sim.shutdown().await;
}

#[tokio::test]
async fn loop_guard_stops_on_a_self_referencing_next() {
    let newest = now() - 100;
    let (sim, settings) = setup(|s| {
        s.workspaces[0].events = events(12, newest);
        s.workspaces[0].faults = Some(Box::new(faults(serde_json::json!({"next_loop": true}))));
    })
    .await;
    let s = session(&settings, Region::Us, TOKEN);
    let mut pager = s.activity_logs(newest - 86_400, newest);
    assert_eq!(pager.next_page().await.unwrap().unwrap().len(), 5);
    assert!(pager.next_page().await.unwrap().is_none());
    assert_eq!(pager.pages_fetched(), 1);
    assert_eq!(s.api_calls(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn foreign_next_is_refused_and_never_contacted() {
    let other = start(Scenario::default()).await;
    let foreign = format!(
        "{}/admins/activity_logs?page=2",
        other.base_url(intercom_sim::Region::Us)
    );
    let newest = now() - 100;
    let (sim, settings) = setup(|s| {
        s.workspaces[0].events = events(12, newest);
        s.workspaces[0].faults = Some(Box::new(faults(
            serde_json::json!({"foreign_next_url": foreign}),
        )));
    })
    .await;
    let s = session(&settings, Region::Us, TOKEN);
    let mut pager = s.activity_logs(newest - 86_400, newest);
    assert_eq!(
        pager.next_page().await.unwrap().unwrap().len(),
        5,
        "page 1 is delivered"
    );
    let e = pager.next_page().await.unwrap_err();
    match &e {
        IntercomError::ForeignOrigin {
            url_origin,
            expected_origin,
            ..
        } => {
            assert!(
                url_origin.contains(&other.addr().port().to_string()),
                "{url_origin}"
            );
            assert_eq!(expected_origin, &sim.base_url(intercom_sim::Region::Us));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            pager.next_page().await,
            Err(IntercomError::ForeignOrigin { .. })
        ),
        "sticky"
    );
    assert_eq!(
        other.request_count(),
        0,
        "the token never went to the other origin"
    );
    assert_token_free(&e, TOKEN);

    // Same host and port but another region's path prefix is foreign too.
    let eu_path = format!(
        "{}/admins/activity_logs?page=2",
        sim.base_url(intercom_sim::Region::Eu)
    );
    sim.scenario_handle()
        .set_workspace_faults(
            "w1",
            faults(serde_json::json!({"foreign_next_url": eu_path})),
        )
        .unwrap();
    let before = sim.request_count();
    let mut pager = s.activity_logs(newest - 86_400, newest);
    pager.next_page().await.unwrap().unwrap();
    assert!(matches!(
        pager.next_page().await,
        Err(IntercomError::ForeignOrigin { .. })
    ));
    assert_eq!(sim.request_count(), before + 1);
    other.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn transient_failure_mid_pagination_resumes_the_same_page() {
    let newest = now() - 100;
    let (sim, mut settings) = setup(|s| s.workspaces[0].events = events(12, newest)).await;
    settings.max_retries = 0;
    let s = session(&settings, Region::Us, TOKEN);
    let mut pager = s.activity_logs(newest - 86_400, newest);
    let first = pager.next_page().await.unwrap().unwrap();
    sim.scenario_handle()
        .set_workspace_faults(
            "w1",
            faults(serde_json::json!({"server_error": {"next": 1}})),
        )
        .unwrap();
    assert!(matches!(
        pager.next_page().await,
        Err(IntercomError::Transient { .. })
    ));
    let second = pager.next_page().await.unwrap().unwrap();
    assert_eq!(first.len() + second.len(), 10);
    assert_eq!(second[0].id.as_deref(), Some("ev-0005"));
    sim.shutdown().await;
}

#[tokio::test]
async fn probes_report_allowed_refused_or_error() {
    let (sim, mut settings) = setup(|s| {
        let w = &mut s.workspaces[0];
        w.tokens[0]
            .scopes
            .retain(|sc| sc != scopes::MANAGE_IP_ALLOWLIST);
        w.tokens[0].refusal = Some(Refusal::TokenUnauthorized);
    })
    .await;
    settings.max_retries = 0;
    let s = session(&settings, Region::Us, TOKEN);
    assert!(s.probe("/tags").await.unwrap().is_allowed());
    assert!(s.probe("/teams").await.unwrap().is_allowed());
    match s.probe("/ip_allowlist").await.unwrap() {
        ProbeOutcome::Refused(IntercomError::NotPermitted { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }

    let handle = sim.scenario_handle();
    handle
        .set_workspace_faults(
            "w1",
            faults(serde_json::json!({"endpoints": ["/tags"], "server_error": {}})),
        )
        .unwrap();
    let e = s.probe("/tags").await.unwrap_err();
    assert!(matches!(e, IntercomError::Transient { .. }), "{e:?}");

    let before = sim.request_count();
    for bad in [
        "https://evil.example/tags",
        "/tags?x=1",
        "//evil.example/x",
        "/../me",
    ] {
        assert!(matches!(
            s.probe(bad).await,
            Err(IntercomError::InvalidEndpoint { .. })
        ));
    }
    assert_eq!(
        sim.request_count(),
        before,
        "no request for a refused probe path"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn no_error_message_contains_the_token() {
    // One session per failure mode; every error's Display and Debug are checked.
    let cases: Vec<serde_json::Value> = vec![
        serde_json::json!({"ip_not_allowed": true}),
        serde_json::json!({"server_error": {}}),
        serde_json::json!({"rate_limited": {"reset_after_secs": 60}}),
        serde_json::json!({"malformed_json": "wrong_type"}),
        serde_json::json!({"malformed_json": "truncated"}),
        serde_json::json!({"oversized_body": 200000}),
        serde_json::json!({"hang_ms": 10000}),
        // Last: revocation is permanent for the token.
        serde_json::json!({"revoke_after_calls": 0}),
    ];
    let (sim, mut settings) = setup(|_| {}).await;
    settings.max_retries = 0;
    settings.request_timeout = Duration::from_millis(150);
    settings.max_rate_limit_wait = Duration::from_millis(10);
    let handle = sim.scenario_handle();
    let mut seen = 0;
    for case in cases {
        handle
            .set_workspace_faults("w1", faults(case.clone()))
            .unwrap();
        let s = session(&settings, Region::Us, TOKEN);
        for result in [s.me().await.map(|_| ()), s.admins().await.map(|_| ())] {
            if let Err(e) = result {
                assert_token_free(&e, TOKEN);
                seen += 1;
            }
        }
    }
    assert!(seen >= 14, "{seen}");
    sim.shutdown().await;
}
