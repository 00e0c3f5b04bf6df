//! Shrinking keeps the violation (kind, actor, object), says when it hit its cap and resumes;
//! `sim report` draws a failing run as a self-contained page that a real browser renders with
//! its lanes, arrows and violation mark (Debian's chromium, headless: the test command installs
//! it; where it is missing this test says so and checks the page's text only, unless
//! `SIM_REQUIRE_CHROMIUM=1`).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The first failing seed's replay file of a sweep of `bug` in `scenario`.
fn first_failure(scenario: &str, bug: &str, seeds: &str, dir: &Path) -> PathBuf {
    let o = sim(&[
        "sweep",
        "--scenario",
        scenario,
        "--plant",
        bug,
        "--seeds",
        seeds,
        "--stop-at-first",
        "--reports",
        utf8(dir),
    ]);
    assert_eq!(o.status.code(), Some(1), "{bug}: {}", stdout(&o));
    replay_files(dir)
        .into_iter()
        .next()
        .expect("a failing seed's replay file")
}

fn identities(file: &Path) -> Vec<(String, String, String, String)> {
    let o = sim(&["replay", utf8(file), "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    v["run"]["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|x| {
            (
                x["oracle"].to_string(),
                x["kind"].to_string(),
                x["actor"].to_string(),
                x["object"].to_string(),
            )
        })
        .collect()
}

#[test]
fn shrink_keeps_the_same_violation_reports_its_cap_and_resumes() {
    let dir = scratch("shrink-identity");
    let file = first_failure("mailbox", "mailbox-lost-wakeup", "0..2000", &dir);
    let before = identities(&file);
    let out = dir.join("small.json");
    let capped = sim(&[
        "shrink",
        utf8(&file),
        "--out",
        utf8(&out),
        "--max-runs",
        "20",
    ]);
    assert_eq!(capped.status.code(), Some(0), "{}", stderr(&capped));
    assert!(
        stdout(&capped).contains("stopped at its cap of 20"),
        "{}",
        stdout(&capped)
    );
    assert!(stdout(&capped).contains("--resume"));
    let resumed = sim(&["shrink", utf8(&file), "--out", utf8(&out), "--resume"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("resuming from"),
        "{}",
        stderr(&resumed)
    );
    let after = identities(&out);
    assert!(
        after.contains(&before[0]),
        "the shrunk run lost the violation {:?}: {after:?}",
        before[0]
    );
    let r = sim(&["replay", utf8(&out)]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_refused(
        &sim(&["shrink", utf8(&file), "--max-runs", "0"]),
        "--max-runs 0",
    );
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Renders `page` headless: its DOM after scripts ran, and a screenshot at `png`.
fn render(browser: &Path, page: &Path, png: &Path) -> String {
    let profile = scratch(&format!(
        "chromium-profile-{}",
        page.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let url = format!("file://{}", page.display());
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let dom = std::process::Command::new(browser)
        .args(common)
        .arg(&profile_arg)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(dom.status.success(), "{}", stderr(&dom));
    let shot = std::process::Command::new(browser)
        .args(common)
        .arg(&profile_arg)
        .arg("--window-size=1400,1000")
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(shot.status.success(), "{}", stderr(&shot));
    stdout(&dom)
}

#[test]
fn reports_draw_failing_runs_and_a_browser_renders_them() {
    let dir = scratch("reports");
    let browser = chromium();
    if browser.is_none() {
        assert!(
            std::env::var("SIM_REQUIRE_CHROMIUM").is_err(),
            "chromium is required here (apt-get install chromium)"
        );
        eprintln!("chromium not installed: checking the pages' text only");
    }
    for (scenario, bug, seeds, arrow) in [
        (
            "pipe-echo",
            "pipe-lost-wakeup",
            "0..300",
            r#"class="arrow arrow-interrupt""#,
        ),
        (
            "cells-siblings",
            "cells-reentrant-deadlock",
            "0..300",
            r#"class="arrow arrow-call"#,
        ),
        (
            "rpc-handoff",
            "rpc-accept-without-embargo",
            "0..3000",
            r#"class="arrow arrow-rpc""#,
        ),
    ] {
        let sub = dir.join(scenario);
        let file = first_failure(scenario, bug, seeds, &sub);
        let page = sub.join(format!("{scenario}.html"));
        let o = sim(&["report", utf8(&file), "--out", utf8(&page)]);
        assert_eq!(o.status.code(), Some(0), "{scenario}: {}", stderr(&o));
        let html = std::fs::read_to_string(&page).expect("page written");
        // Self-contained: nothing fetched at view time.
        for remote in ["http://", "https://", "<link", "src="] {
            let outside_svg_ns = html.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !outside_svg_ns.contains(remote),
                "{scenario}: the page loads {remote}"
            );
        }
        assert!(
            html.contains("sim replay "),
            "{scenario}: no replay command"
        );
        assert!(html.contains(r#"id="trace-table""#));
        let Some(browser) = &browser else {
            for want in [r#"class="lane""#, arrow, r#"class="violation-mark""#] {
                assert!(html.contains(want), "{scenario}: no {want}");
            }
            continue;
        };
        let png = sub.join(format!("{scenario}.png"));
        let dom = render(browser, &page, &png);
        let lanes = dom.matches(r#"class="lane""#).count();
        assert!(lanes >= 3, "{scenario}: {lanes} lanes");
        assert!(
            dom.contains(arrow),
            "{scenario}: no {arrow} in the rendered page"
        );
        assert!(
            dom.contains(r#"class="violation-mark""#),
            "{scenario}: no violation mark"
        );
        // The script ran: the trace table counts its lines.
        assert!(
            dom.contains(" lines</span>"),
            "{scenario}: the page's script did not run"
        );
        let png_bytes = std::fs::read(&png).expect("screenshot");
        assert!(png_bytes.starts_with(b"\x89PNG") && png_bytes.len() > 10_000);
        if let Ok(keep) = std::env::var("SIM_REPORT_SCREENSHOTS") {
            let _ = std::fs::copy(
                &png,
                Path::new(&keep).join(format!("report-{scenario}.png")),
            );
        }
    }
}
