//! Silences over HTTP: Alertmanager's body is read, silences that would hold back every
//! alert are refused as Alertmanager refuses them, and the caps answer with clear 400s.

use serde_json::json;

use super::server::{Daemon, always};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_that_would_silence_everything_are_refused() {
    let daemon = Daemon::start(&[("always.yaml", always("broad_watch"))]).await;
    let refused = [
        (
            r#"[{"name": "rule", "value": ".*", "isRegex": true}]"#,
            r#"{rule=~".*"}"#,
        ),
        (
            r#"[{"name": "alertname", "value": ".*", "is_regex": true}, {"name": "team", "value": ""}]"#,
            r#"{alertname=~".*", team=""}"#,
        ),
        // `!=` on a label an alert may lack matches every alert without it.
        (
            r#"[{"name": "nonexistent", "value": "x", "isEqual": false}]"#,
            r#"{nonexistent!="x"}"#,
        ),
    ];
    for (matchers, shown) in refused {
        let body = format!(r#"{{"matchers": {matchers}, "endsAt": "2100-01-01T00:00:00Z"}}"#);
        let (status, answer) = daemon.post("/api/v1/silences", &body).await;
        assert_eq!(status, 400, "{matchers}");
        assert_eq!(
            answer,
            json!({"error": format!(
                "at least one matcher must not match the empty string: {shown} would silence \
                 every alert without those labels, so possibly all of them"
            )})
        );
    }
    let many: Vec<String> = (0..33)
        .map(|i| format!(r#"{{"name": "l{i}", "value": "v"}}"#))
        .collect();
    let body = format!(
        r#"{{"matchers": [{}], "ends_at": "2100-01-01T00:00:00Z"}}"#,
        many.join(",")
    );
    let (status, answer) = daemon.post("/api/v1/silences", &body).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({"error": "a silence has at most 32 matchers, this one has 33"})
    );
    let (_, list) = daemon.get("/api/v1/silences").await;
    assert_eq!(list, json!([]));

    // What `amtool silence add` posts.
    let body = r#"{"matchers": [{"name": "alertname", "value": "broad_watch", "isRegex": false, "isEqual": true},
                                {"name": "severity", "value": "critical", "isRegex": false, "isEqual": false}],
                   "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2100-01-01T00:00:00Z",
                   "createdBy": "amtool", "comment": "maintenance"}"#;
    let (status, silence) = daemon.post("/api/v1/silences", body).await;
    assert_eq!(status, 200, "{silence}");
    assert_eq!(
        silence["matchers"],
        json!([
            {"name": "alertname", "value": "broad_watch", "is_regex": false, "is_equal": true},
            {"name": "severity", "value": "critical", "is_regex": false, "is_equal": false},
        ])
    );
    assert_eq!(silence["starts_at"], "2030-01-01T00:00:00Z");
    assert_eq!(silence["ends_at"], "2100-01-01T00:00:00Z");
    assert_eq!(silence["created_by"], "amtool");
    assert_eq!(silence["comment"], "maintenance");
    daemon.stop().await;
}
