//! `ringfence demo`: the synthetic data it writes, seen through the API.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;
use ringfence::demo::run_demo;

/// Every call of an account, newest first, following the cursors.
async fn all_calls(app: &TestApp, token: &str, account: &str) -> Vec<Value> {
    let mut calls = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/accounts/{account}/calls?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get(token, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        calls.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return calls,
        }
    }
}

#[tokio::test]
async fn demo_fills_a_data_folder_with_calls_in_and_out_of_gdpr_scope() {
    let app = TestApp::spawn().await;
    let summary = run_demo(&app.resources, 300, false).await.expect("demo");

    let agencies = summary["agencies"].as_array().expect("agencies");
    assert!((2..=3).contains(&agencies.len()), "{summary}");
    assert!(
        agencies.iter().any(|a| a["redaction_enabled"] == true)
            && agencies.iter().any(|a| a["redaction_enabled"] == false)
    );
    let accounts = summary["accounts"].as_array().expect("accounts");
    assert!((4..=6).contains(&accounts.len()), "{summary}");
    assert_eq!(
        accounts
            .iter()
            .map(|a| a["calls"].as_u64().expect("calls"))
            .sum::<u64>(),
        300
    );
    assert_eq!(summary["calls"], 300);
    assert_eq!(summary["new_calls"], 300);
    assert!(summary["sessions"].as_u64().expect("sessions") > 0);
    assert!(summary["recordings"].as_u64().expect("recordings") > 0);

    let account = accounts[0]["id"].as_str().expect("account id");
    let admin = summary["tokens"]["account_admin"]
        .as_str()
        .expect("account_admin token");
    let calls = all_calls(&app, admin, account).await;
    assert_eq!(
        calls.len() as u64,
        accounts[0]["calls"].as_u64().expect("calls")
    );

    // Callers inside and outside the GDPR's reach, and some who withheld their number.
    assert!(
        calls.iter().any(|c| c["gdpr_scope"] == true),
        "no caller in GDPR scope"
    );
    assert!(
        calls.iter().any(|c| c["gdpr_scope"] == false),
        "no caller out of GDPR scope"
    );
    assert!(
        calls.iter().any(|c| c["caller"]["number"].is_null()),
        "no withheld number"
    );
    for call in calls
        .iter()
        .filter(|c| c["caller"]["number"].is_string() && c["caller"]["country"].is_string())
    {
        let number = call["caller"]["number"].as_str().expect("number");
        let in_scope = ["GB", "DE", "FR", "SE"]
            .contains(&call["caller"]["country"].as_str().expect("country"));
        assert_eq!(
            call["gdpr_scope"], in_scope,
            "caller country and number disagree"
        );
        assert!(number.starts_with('+'));
    }
    let numbers: Vec<&str> = calls
        .iter()
        .filter_map(|c| c["caller"]["number"].as_str())
        .collect();
    let distinct: std::collections::HashSet<&&str> = numbers.iter().collect();
    assert!(distinct.len() < numbers.len(), "no caller called twice");

    // Facts worth a report: several sources and statuses, some visits, transcripts and tags.
    let sources: std::collections::HashSet<&str> =
        calls.iter().filter_map(|c| c["source"].as_str()).collect();
    assert!(sources.len() >= 4, "{sources:?}");
    assert!(
        calls.iter().any(|c| c["status"] == "completed")
            && calls.iter().any(|c| c["status"] != "completed")
    );
    let visits: Vec<&Value> = calls.iter().filter(|c| c["visitor"].is_object()).collect();
    assert!(
        !visits.is_empty() && visits.len() < calls.len(),
        "{} of {} calls have a visit",
        visits.len(),
        calls.len()
    );
    assert!(visits.iter().all(|c| {
        c["visitor"]["landing_url"]
            .as_str()
            .is_some_and(|u| u.contains(".example.com"))
    }));
    assert!(visits.iter().any(|c| c["visitor"]["gclid"].is_string()));
    assert!(calls.iter().any(|c| c["transcript"].is_string()));
    assert!(
        calls
            .iter()
            .any(|c| !c["tags"].as_array().expect("tags").is_empty())
    );
    let first = calls.last().expect("a call")["started_at"]
        .as_str()
        .expect("started_at");
    assert!(first > "2000", "{first}");

    // Recordings play.
    let recorded: Vec<&Value> = calls
        .iter()
        .filter(|c| c["recording"].is_object())
        .collect();
    assert!(!recorded.is_empty(), "no recording in the first account");
    for call in recorded.iter().take(3) {
        assert_eq!(call["recording"]["content_type"], "audio/wav");
        let url = call["recording"]["url"].as_str().expect("url");
        let response = app
            .client
            .get(app.url(url))
            .bearer_auth(admin)
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.bytes().await.expect("audio");
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WAVE");
        assert_eq!(
            bytes.len() as u64,
            call["recording"]["bytes"].as_u64().expect("bytes")
        );
    }

    // The analyst sees the same calls with numbers masked and nothing else personal.
    let analyst = summary["tokens"]["analyst"]
        .as_str()
        .expect("analyst token");
    let masked = all_calls(&app, analyst, account).await;
    assert_eq!(masked.len(), calls.len());
    let shown: Vec<&str> = masked
        .iter()
        .filter_map(|c| c["caller"]["number"].as_str())
        .collect();
    assert!(
        !shown.is_empty() && shown.iter().all(|n| n.contains('•')),
        "{shown:?}"
    );
    assert!(
        masked.iter().all(|c| c["visitor"].is_null()
            && c["recording"].is_null()
            && c["transcript"].is_null())
    );

    // The agency admin sees the agency's accounts.
    let agency_admin = summary["tokens"]["agency_admin"]
        .as_str()
        .expect("agency_admin token");
    let (status, _) = app
        .get(
            agency_admin,
            &format!("/api/v1/accounts/{account}/calls?limit=1"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    app.stop().await;
}

#[tokio::test]
async fn running_the_demo_again_adds_no_duplicate_calls() {
    let app = TestApp::spawn().await;
    let first = run_demo(&app.resources, 60, false).await.expect("demo");
    let again = run_demo(&app.resources, 60, false)
        .await
        .expect("demo again");
    assert_eq!(again["new_calls"], 0, "{again}");
    assert_eq!(again["recordings"], 0);
    assert_eq!(
        first["accounts"], again["accounts"],
        "the demo tenants are reused"
    );
    let more = run_demo(&app.resources, 100, false)
        .await
        .expect("demo with more calls");
    assert_eq!(more["new_calls"], 40, "{more}");

    let account = first["accounts"][0]["id"].as_str().expect("account id");
    let admin = more["tokens"]["account_admin"].as_str().expect("token");
    let calls = all_calls(&app, admin, account).await;
    assert_eq!(
        calls.len() as u64,
        more["accounts"][0]["calls"].as_u64().expect("calls")
    );
    app.stop().await;
}
