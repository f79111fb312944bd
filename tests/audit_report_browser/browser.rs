//! The browser for `tests/audit_report_browser.rs`: Debian's Chromium behind its own
//! chromedriver, driven over WebDriver (fantoccini); skipped (or, with
//! `SIPGW_REQUIRE_BROWSER=1`, failed) when either is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{CHROMEDRIVER, CHROMIUM, fresh_dir};

/// Headless Chromium behind a chromedriver of its own, on a free loopback port.
pub struct Browser {
    /// The chromedriver process (it starts and ends Chromium for the session).
    driver: Child,
    /// Chromium's fresh profile directory, removed at the end.
    profile: PathBuf,
    /// The WebDriver session.
    pub client: Client,
}

impl Browser {
    /// Starts one, or `None` (the test skips) when none is installed and
    /// `SIPGW_REQUIRE_BROWSER` is not `1`.
    async fn start(name: &str) -> Option<Self> {
        if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
            if std::env::var("SIPGW_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("SIPGW_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is not installed");
            }
            eprintln!(
                "skipped: {CHROMIUM} or {CHROMEDRIVER} not installed (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = fresh_dir(&format!("{name}-profile"));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver needs a moment to listen, Chromium longer to start: poll generously.
        let mut last_error = String::new();
        for _ in 0..240 {
            match builder.connect(&url).await {
                Ok(client) => {
                    return Some(Self {
                        driver,
                        profile,
                        client,
                    });
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("no WebDriver session from chromedriver on port {port}: {last_error}");
    }

    /// Ends the session (closing Chromium), then chromedriver.
    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
            texts.push(element.text().await.unwrap());
        }
        texts
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// How many rows of the records table are displayed.
    pub async fn visible_rows(&self) -> u64 {
        self.eval(
            "return Array.from(document.querySelectorAll('#records tbody tr'))\
             .filter(r => r.getClientRects().length > 0).length;",
        )
        .await
        .as_u64()
        .unwrap()
    }
}

/// Runs `checks` against `page` in a fresh browser, closing it whatever happens.
pub async fn in_browser<F, Fut>(name: &str, page: &Path, checks: F)
where
    F: FnOnce(std::sync::Arc<Browser>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(browser) = Browser::start(name).await else {
        return;
    };
    browser
        .client
        .goto(&format!("file://{}", page.display()))
        .await
        .unwrap();
    let browser = std::sync::Arc::new(browser);
    // A failed check panics inside the task; the browser is closed before it is re-raised.
    let outcome = tokio::spawn(checks(browser.clone())).await;
    let browser = std::sync::Arc::into_inner(browser).expect("the checks keep no handle");
    browser.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
