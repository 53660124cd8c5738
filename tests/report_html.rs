//! report.html in a real headless browser (Debian's chromium-headless-shell
//! or chromium; `KERNEL_LAB_BROWSER` names another): it loads with no console
//! message (no script error), and its screenshot is far from blank. Without a
//! browser the test says so and passes, unless `KERNEL_LAB_REQUIRE_BROWSER=1`
//! (CI) makes that a failure. Also: out/index.html lists every run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn browser() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("KERNEL_LAB_BROWSER") {
        return Some(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium-headless-shell",
        "chromium",
        "chromium-browser",
        "google-chrome",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Loads `page` and screenshots it into `png`; returns the browser's
/// console lines.
fn load(browser: &Path, page: &Path, png: &Path) -> Vec<String> {
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,1800",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .expect("the browser runs");
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect()
}

#[test]
fn the_html_report_loads_without_errors_and_draws() {
    let Some(browser) = browser() else {
        assert!(
            std::env::var("KERNEL_LAB_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "KERNEL_LAB_REQUIRE_BROWSER=1 but no chromium found (apt-get install chromium-headless-shell)"
        );
        eprintln!("skipped: no headless browser (chromium-headless-shell) on PATH");
        return;
    };
    let dir = common::temp_dir("html");
    let out = dir.join("out").join("week1");
    let o = common::run(&[
        "plot",
        "results/epyc-2core-lavapipe/week1-embedding-dim/results.json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: charts inline, nothing fetched.
    assert!(
        html.contains("<svg") && html.contains("<title>"),
        "charts inline, with tooltips"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("<link"),
        "nothing from the network"
    );
    assert!(!html.contains("<img"), "no chart by reference");
    assert!(html.contains("href=\"results.json\""));

    let console = load(&browser, &page, &dir.join("report.png"));
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    load(&browser, &blank, &dir.join("blank.png"));
    let size = |p: &str| std::fs::metadata(dir.join(p)).unwrap().len();
    assert!(
        size("report.png") > 5 * size("blank.png"),
        "the screenshot looks blank: {} bytes vs {} for an empty page",
        size("report.png"),
        size("blank.png")
    );

    // The folder of runs gets an index linking this one.
    let index = std::fs::read_to_string(dir.join("out").join("index.html")).unwrap();
    assert!(index.contains("href=\"week1/report.html\""), "{index}");
    assert!(index.contains("week1-embedding-dim"));
    let console = load(
        &browser,
        &dir.join("out").join("index.html"),
        &dir.join("index.png"),
    );
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
