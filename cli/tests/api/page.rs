//! The API page, looked at: the gateway serves the merged OpenAPI document and its page; a real
//! headless Chromium renders the page, takes a screenshot of it, and the rendered page lists
//! every operation of the document. The page loads nothing from anywhere: it works offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::system::gateway::Gateway;
use crate::system::process::free_port;
use crate::system::{BALANCE, COUPON, MONITOR, ORDER, PRODUCT};
use serde_json::Value;

/// Debian's Chromium: `CHROMIUM`, else `chromium` on the PATH. Panics when there is none: the
/// test never skips.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|path| path.is_file())
        })
        .expect("chromium is not installed: scripts/test.sh installs it (apt-get install chromium)")
}

/// Runs headless Chromium on `url` with `args`; its standard output.
fn browse(profile: &Path, url: &str, args: &[&str]) -> String {
    let output = Command::new(chromium())
        .args([
            "--headless",
            // Root in a container has no user namespace to sandbox into.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(output.status.success(), "chromium: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PNG's width and height, from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let number = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_gateways_api_page_with_every_operation() {
    // The contract is the gateway's own: no service needs to run for it.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let upstreams = [ORDER, PRODUCT, COUPON, BALANCE, MONITOR].map(|n| (n, nowhere.clone()));
    let gateway = Gateway::start(upstreams, &[]).await;

    let response = gateway
        .client
        .get(format!("{}/openapi.json", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(operations.len() >= 18, "{operations:?}");

    let page = gateway
        .client
        .get(format!("{}/docs", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        page.headers()
    );
    let html = page.text().await.unwrap();
    for needs_network in ["<script", "src=", "http://", "https://", "@import", "url("] {
        assert!(
            !html.contains(needs_network),
            "the page loads something: {needs_network}"
        );
    }

    let profile = gateway.dir.join("chromium-profile");
    let url = format!("{}/docs", gateway.url);
    let rendered = browse(&profile, &url, &["--dump-dom"]);
    for (method, path) in &operations {
        assert!(
            rendered.contains(&format!("{method}</span> <code>{path}</code>")),
            "the rendered page does not list {method} {path}"
        );
    }

    let screenshot = gateway.dir.join("api-page.png");
    browse(
        &profile,
        &url,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,2400",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert_eq!(png_size(&png), (1280, 2400));
    // A blank or unstyled page compresses to a few kilobytes; text, tables and colour do not.
    assert!(png.len() > 50_000, "a {} byte screenshot", png.len());
    if let Some(keep) = std::env::var_os("API_PAGE_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
}
