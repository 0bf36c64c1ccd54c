//! The pages against the running daemon, as an operator uses them.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};

use super::browser::{Browser, always, daemon, daemon_with_tokens, never};
use crate::ops::server::eventually;

/// Rows of the Alerts page for `rule`, by tracker id, as the page shows them now.
const ROWS_OF: &str = "return Array.from(document.querySelectorAll('#alerts tr[data-fingerprint]'))\
    .filter(r => r.closest('section.group').getAttribute('aria-label').startsWith(arguments[0] || ''))\
    .length;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_appear_without_a_reload() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let daemon = daemon(&[("watch.yaml", never("overspeed"))]).await;
    browser.goto(&daemon.url("/")).await;
    browser.wait_for("#live.on").await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('#alerts tr[data-fingerprint]').length")
            .await,
        json!(0)
    );
    browser.js("window.notReloaded = true; return null").await;

    // The rule starts holding: the engine fires, the dispatcher commits, the page hears.
    std::fs::write(
        daemon.rules_dir().join("watch.yaml"),
        always("overspeed", "critical"),
    )
    .unwrap();
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    let rows = browser
        .until(
            "four overspeed rows",
            &ROWS_OF
                .replace("arguments[0] || ''", "'overspeed'")
                .replace(".length;", ".length === 4;"),
        )
        .await;
    assert_eq!(rows, json!(true));
    assert_eq!(
        browser.js("return window.notReloaded === true").await,
        json!(true)
    );
    let group = browser.wait_for("section.group.sev-critical h2").await;
    let heading = group.text().await.unwrap();
    let words: Vec<&str> = heading.split_whitespace().collect();
    assert_eq!(words, ["critical", "overspeed", "4"]);
    let counts = browser.wait_for(".counts").await.text().await.unwrap();
    assert!(
        counts.contains("4 firing") && counts.contains("4 critical"),
        "{counts}"
    );
    browser.screenshot("console-alerts").await;

    // Every control has a name a screen reader says, and a phone's width needs no
    // sideways scrolling.
    let unnamed = browser
        .js(
            "return Array.from(document.querySelectorAll('a, button, input, select, textarea'))\
             .filter(e => !((e.getAttribute('aria-label') || '').trim() || e.textContent.trim()\
               || (e.labels && e.labels.length)))\
             .map(e => e.outerHTML)",
        )
        .await;
    assert_eq!(unnamed, json!([]));
    browser.client.set_window_size(390, 844).await.unwrap();
    browser
        .until(
            "the page to fit a phone",
            "return document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await;
    browser.screenshot("console-phone").await;

    browser.stop().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_from_a_row_sends_the_ack() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let daemon = daemon(&[("watch.yaml", always("idle_engine", "warning"))]).await;
    let firing = daemon.firing_for_all("idle_engine").await;
    let fingerprint = firing[0]["fingerprint"].as_str().unwrap().to_owned();

    browser.goto(&daemon.url("/")).await;
    browser.wait_for("tr[data-fingerprint]").await;
    // Record what the page asks of the server.
    browser
        .js(
            "localStorage.setItem('navixy-alerts-name', 'alice'); window.sent = [];\
             const f = window.fetch; window.fetch = (url, o) => {\
               window.sent.push({url: String(url), method: (o && o.method) || 'GET',\
                 type: o && o.headers && o.headers['Content-Type'], body: o && o.body});\
               return f(url, o); }; return null",
        )
        .await;
    let button = browser
        .wait_for(&format!(".ack-button[data-fingerprint='{fingerprint}']"))
        .await;
    assert!(
        button
            .attr("aria-label")
            .await
            .unwrap()
            .unwrap()
            .starts_with("Acknowledge idle_engine on ")
    );
    button.click().await.unwrap();
    let sent = browser
        .until(
            "the ack request",
            "return window.sent.find(s => s.method === 'POST') || null",
        )
        .await;
    assert_eq!(
        sent,
        json!({
            "url": format!("/api/v1/alerts/{fingerprint}/ack"),
            "method": "POST",
            "type": "application/json",
            "body": r#"{"by":"alice","comment":""}"#,
        })
    );
    let toast = browser.wait_for("#toast:not([hidden])").await;
    assert_eq!(toast.text().await.unwrap(), "Acknowledged.");
    // The row says so without a reload, the receiver is told (`send_acks`), and the
    // alert's page shows who acknowledged it, on the row and in its timeline.
    browser
        .until(
            "the row to say who acknowledged it",
            &format!(
                "const c = document.querySelector(\"tr[data-fingerprint='{fingerprint}'] td.ack\");\
                 return c && c.textContent.includes('acked by alice') ? true : null"
            ),
        )
        .await;
    let told = eventually("the receiver to be told of the ack", || async {
        daemon
            .hook
            .bodies()
            .into_iter()
            .find(|b| b["type"] == "alert.acknowledged")
    })
    .await;
    assert_eq!(
        told["data"]["alerts"][0]["fingerprint"],
        fingerprint.as_str()
    );
    assert_eq!(told["data"]["alerts"][0]["ack"]["by"], "alice");
    browser
        .goto(&daemon.url(&format!("/alerts/{fingerprint}")))
        .await;
    browser
        .until(
            "the alert page to show the ack",
            "return document.body.innerText.includes('acked by alice') \
                    && document.body.innerText.toLowerCase().includes('acknowledged') ? true : null",
        )
        .await;

    browser.stop().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_from_a_row_holds_back_the_next_notification() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let daemon = daemon(&[("watch.yaml", always("fuel_watch", "warning"))]).await;
    let firing = daemon.firing_for_all("fuel_watch").await;
    eventually("a firing notification per tracker", || async {
        (daemon.hook.count("firing", "fuel_watch") == 4).then_some(())
    })
    .await;
    let silenced = firing[0]["tracker"]["id"].as_i64().unwrap();

    browser.goto(&daemon.url("/")).await;
    let row = browser
        .wait_for(&format!(
            "tr[data-fingerprint='{}'] a.button",
            firing[0]["fingerprint"].as_str().unwrap()
        ))
        .await;
    assert_eq!(row.text().await.unwrap(), "Silence");
    row.click().await.unwrap();

    // The form comes prefilled, and previews the one alert it would hold back.
    let matchers = browser.wait_for("#matchers").await;
    assert_eq!(
        matchers.prop("value").await.unwrap().unwrap(),
        format!("rule=fuel_watch, tracker_id={silenced}")
    );
    let count = browser.wait_for("#preview .preview-count").await;
    assert_eq!(count.text().await.unwrap(), "1");
    browser
        .client
        .find(Locator::Css("#created_by"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Css("#comment"))
        .await
        .unwrap()
        .send_keys("towing to the depot")
        .await
        .unwrap();
    browser.screenshot("console-silence").await;
    browser
        .wait_for("#create-silence")
        .await
        .click()
        .await
        .unwrap();

    let silence: Value = eventually("the silence", || async {
        let (_, list) = daemon.get("/api/v1/silences").await;
        list.as_array().and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!(silence["created_by"], "alice");
    assert_eq!(silence["comment"], "towing to the depot");
    assert_eq!(
        silence["matchers"],
        json!([
            {"name": "rule", "value": "fuel_watch", "is_regex": false, "is_equal": true},
            {"name": "tracker_id", "value": silenced.to_string(), "is_regex": false, "is_equal": true},
        ])
    );
    browser
        .wait_for(&format!(
            "tr[data-silence='{}']",
            silence["id"].as_str().unwrap()
        ))
        .await;

    // The rule goes away: every alert resolves, and only the silenced tracker's resolve
    // is held back.
    std::fs::write(daemon.rules_dir().join("watch.yaml"), never("other")).unwrap();
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    eventually("three resolved notifications", || async {
        (daemon.hook.count("resolved", "fuel_watch") == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resolved: Vec<i64> = daemon
        .hook
        .alerts()
        .into_iter()
        .filter(|(status, rule, _)| status == "resolved" && rule == "fuel_watch")
        .map(|(_, _, id)| id)
        .collect();
    assert_eq!(resolved.len(), 3, "{resolved:?}");
    assert!(!resolved.contains(&silenced), "{resolved:?}");

    browser.stop().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_page_maps_the_depot_zone() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let daemon = daemon(&[("watch.yaml", always("watched", "info"))]).await;
    let firing = daemon.firing_for_all("watched").await;
    let id = firing[0]["tracker"]["id"].as_i64().unwrap();

    browser.goto(&daemon.url(&format!("/trackers/{id}"))).await;
    browser.wait_for("#map path.zone").await;
    let label = browser.wait_for("#map .zone-label").await;
    assert_eq!(label.text().await.unwrap(), "depot");
    assert_eq!(
        browser
            .js("return document.querySelector('#map').dataset.zones")
            .await,
        json!("depot")
    );
    // The tracker's position, and no tile fetched (no server.map_tiles).
    browser
        .wait_for("#map path.leaflet-interactive:not(.zone)")
        .await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('#map img.leaflet-tile').length")
            .await,
        json!(0)
    );
    let heading = browser.wait_for("h1").await.text().await.unwrap();
    assert!(heading.ends_with(&format!("#{id}")), "{heading}");
    browser.screenshot("console-tracker").await;

    browser.goto(&daemon.url("/trackers")).await;
    browser.wait_for("#map path.zone").await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('tr[data-tracker]').length")
            .await,
        json!(4)
    );

    browser.stop().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_answers_a_condition() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let daemon = daemon(&[("watch.yaml", always("watched", "info"))]).await;
    let firing = daemon.firing_for_all("watched").await;
    let id = firing[0]["tracker"]["id"].as_i64().unwrap();

    browser.goto(&daemon.url("/rules")).await;
    let place = browser.wait_for("table code").await.text().await.unwrap();
    assert!(
        place.ends_with("watch.yaml:2:5") || place.contains("watch.yaml:"),
        "{place}"
    );
    let area = browser.wait_for("#condition").await;
    area.send_keys(&format!("tracker.id == {id}"))
        .await
        .unwrap();
    let summary = browser.wait_for(".playground-summary").await;
    assert_eq!(
        summary.text().await.unwrap(),
        "Holds for 1 of 4 trackers now."
    );
    let held = browser
        .js("return Array.from(document.querySelectorAll('.playground-holds a')).map(a => a.getAttribute('href'))")
        .await;
    assert_eq!(held, json!([format!("/trackers/{id}")]));
    browser.screenshot("console-rules").await;

    // A condition that does not compile says why.
    area.clear().await.unwrap();
    area.send_keys("state.gps.speed >").await.unwrap();
    let error = browser.wait_for("#playground-result p.error").await;
    assert!(!error.text().await.unwrap().is_empty());

    browser.stop().await;
    daemon.stop().await;
}

/// Signs in on the login form the browser was sent to.
async fn sign_in(browser: &Browser, token: &str) {
    let field = browser.wait_for("form.login #token").await;
    field.send_keys(token).await.unwrap();
    browser
        .wait_for("form.login button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_the_console_asks_for_one_and_a_viewer_cannot_ack() {
    const VIEWER: &str = "viewer-token-console";
    let Some(browser) = Browser::start().await else {
        return;
    };
    let daemon =
        daemon_with_tokens(&[("watch.yaml", always("idle_engine", "warning"))], VIEWER).await;
    let firing = daemon.firing_for_all("idle_engine").await;
    let fingerprint = firing[0]["fingerprint"].as_str().unwrap().to_owned();

    // No cookie: the login form, which comes back to the page asked for.
    browser.goto(&daemon.url("/")).await;
    browser.wait_for("form.login #token").await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/login");
    assert_eq!(url.query(), Some("next=%2F"));
    browser.screenshot("console-login").await;

    // A viewer reads the alerts; its Ack buttons are there but disabled.
    sign_in(&browser, VIEWER).await;
    let button = browser
        .wait_for(&format!(".ack-button[data-fingerprint='{fingerprint}']"))
        .await;
    assert_eq!(browser.client.current_url().await.unwrap().path(), "/");
    assert_eq!(
        browser.js("return document.title").await,
        json!("Alerts · navixy-alerts")
    );
    assert_eq!(
        browser
            .js("return document.querySelectorAll('#alerts tr[data-fingerprint]').length")
            .await,
        json!(4)
    );
    assert!(!button.is_enabled().await.unwrap());
    // Forced to work, the ack is refused by the server, and the page says why.
    browser
        .js(
            "localStorage.setItem('navixy-alerts-name', 'vera');\
             document.querySelectorAll('.ack-button').forEach(b => b.disabled = false); return null",
        )
        .await;
    button.click().await.unwrap();
    let toast = browser.wait_for("#toast:not([hidden])").await;
    assert_eq!(
        toast.text().await.unwrap(),
        format!(
            "Ack failed: `vera` is a viewer; POST /api/v1/alerts/{fingerprint}/ack needs an operator or more"
        )
    );
    let (_, acks) = daemon.get("/api/v1/alerts").await;
    assert!(
        acks.as_array().unwrap().iter().all(|a| a["ack"].is_null()),
        "{acks}"
    );
    // Nor does a viewer get the admins' buttons.
    browser.goto(&daemon.url("/rules")).await;
    browser.wait_for("#last-reload").await;
    assert_eq!(
        browser
            .js("return document.querySelector('#reload') === null")
            .await,
        json!(true)
    );

    // Signed out, a deep link goes through the login and lands where it pointed.
    browser.client.delete_all_cookies().await.unwrap();
    browser.goto(&daemon.url("/deliveries")).await;
    sign_in(&browser, crate::ops::server::TOKEN).await;
    browser
        .until(
            "the Deliveries page",
            "return location.pathname === '/deliveries' && document.querySelector('h1') \
               && document.querySelector('h1').textContent === 'Deliveries'",
        )
        .await;

    browser.stop().await;
    daemon.stop().await;
}
