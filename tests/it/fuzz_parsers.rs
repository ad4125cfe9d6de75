//! Fuzzing the response parsers with proptest (cargo-fuzz needs nightly). Every parser the
//! client uses must return `Ok` or `Err` for any input, never panic. Bounded by default
//! (proptest's 256 cases per property); run longer with `PROPTEST_CASES=100000`
//! (see docs/FUZZING.md).

use intercom_sspm::intercom::models::{ActivityLogPage, AdminList, ErrorList, Me};
use intercom_sspm::intercom::{check_same_origin, classify, decode};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde_json::{Map, Number, Value};

/// Keys the models know, so generated objects hit real fields, not only `extra`.
const KEYS: &[&str] = &[
    "type",
    "id",
    "name",
    "email",
    "email_verified",
    "app",
    "id_code",
    "region",
    "created_at",
    "identity_verification",
    "secure",
    "avatar",
    "image_url",
    "has_inbox_seat",
    "team_ids",
    "admins",
    "role",
    "job_title",
    "away_mode_enabled",
    "away_status_reason_id",
    "pages",
    "next",
    "page",
    "per_page",
    "total_pages",
    "starting_after",
    "activity_logs",
    "performed_by",
    "ip",
    "metadata",
    "activity_type",
    "activity_description",
    "errors",
    "code",
    "message",
    "field",
    "request_id",
    "team_priority_level",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        Just(Value::String(
            "https://api.intercom.io/admins/activity_logs?page=2".into()
        )),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner.clone()), 0..8).prop_map(
                |pairs| {
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
            prop::collection::vec((".{0,6}", inner), 0..4)
                .prop_map(|pairs| { Value::Object(pairs.into_iter().collect::<Map<_, _>>()) }),
        ]
    })
}

/// Runs every parser on `bytes`; the result does not matter, only that none panics.
fn parse_all(bytes: &[u8]) {
    let _ = decode::<Me>("/me", bytes);
    let _ = decode::<AdminList>("/admins", bytes).map(AdminList::into_admins);
    let _ = decode::<ActivityLogPage>("/admins/activity_logs", bytes);
    let _ = decode::<ErrorList>("/x", bytes);
    for status in [401u16, 403, 404, 429, 500] {
        let e = classify(
            "/x",
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            bytes,
        );
        let _ = e.to_string();
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        parse_all(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn json_wrapped_in_known_envelopes_never_panics(
        value in json_value(),
        envelope in prop::sample::select(&["admins", "activity_logs", "pages", "app", "errors", "avatar"][..]),
    ) {
        let doc = serde_json::json!({ envelope: value });
        parse_all(&serde_json::to_vec(&doc).unwrap());
    }

    #[test]
    fn classify_never_panics_on_any_status_or_headers(
        status in 100u16..600,
        body in prop::collection::vec(any::<u8>(), 0..128),
        reset in ".{0,12}",
        retry in ".{0,12}",
    ) {
        let mut h = HeaderMap::new();
        for (name, v) in [("x-ratelimit-reset", reset), ("retry-after", retry)] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
        let e = classify("/x", StatusCode::from_u16(status).unwrap(), &h, &body);
        let _ = format!("{e} {e:?}");
    }

    #[test]
    fn same_origin_check_never_panics(candidate in ".{0,60}") {
        let base = url::Url::parse("http://127.0.0.1:8080/us").unwrap();
        if let Ok(u) = base.join(&candidate) {
            let _ = check_same_origin(&base, &u, "/admins/activity_logs");
        }
    }
}
