//! Headless Chromium through chromedriver (Debian `chromium` + `chromium-driver`), for the
//! browser tests and the UI benchmark.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{Server, free_port};

/// chromedriver in a process group of its own, with the Chromium it starts: dropping it ends
/// them all, also when a test panics before its session could close the browser.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group this child leads; no memory is touched.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// Starts chromedriver on `port`; panics (never skips) when it is not installed.
pub fn chromedriver(port: u16) -> Driver {
    use std::os::unix::process::CommandExt;
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver could not start ({e}); install Debian's chromium and \
                 chromium-driver (apt-get install -y chromium chromium-driver)"
            )
        });
    Driver(child)
}

/// A WebDriver session with headless Chromium, its console logged for [`BrowserLog`].
pub async fn browser(driver_port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1440,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
        {
            Ok(client) => return client,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session with Chromium: {e}"),
        }
    }
}

/// Chromium's console since the last call (chromedriver's log endpoint).
#[derive(Debug)]
pub struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Chromium, driven over WebDriver, on a server's UI; each page saved as a PNG under
/// `target/ui-screenshots/`.
pub struct Ui {
    pub client: Client,
    pub base: String,
    pub shots: PathBuf,
}

impl Ui {
    /// Chromium through chromedriver on `server`'s UI; the driver and the profile live as
    /// long as the test keeps them.
    pub async fn start(server: &Server) -> (Self, Driver, tempfile::TempDir) {
        let driver_port = free_port();
        let driver = chromedriver(driver_port);
        let profile = tempfile::tempdir().unwrap();
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let ui = Ui {
            client: browser(driver_port, profile.path()).await,
            base: format!("http://127.0.0.1:{}", server.ui),
            shots,
        };
        (ui, driver, profile)
    }

    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// Waits until an element matching `css` has `needle` in its text; returns that text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let started = Instant::now();
        loop {
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for e in elements {
                    if let Ok(text) = e.text().await
                        && text.contains(needle)
                    {
                        return text;
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(20) {
                let body = self
                    .client
                    .find(Locator::Css("main"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                panic!("no {css} with {needle:?} in the page; it shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css`, once it is there.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// Clicks the first element matching `css`. A page that re-renders (the trace view once
    /// the full trace arrives, the Alerts page every 15 s) can replace it between finding and
    /// clicking: then it is found again.
    pub async fn click(&self, css: &str) {
        for _ in 0..50 {
            match self.element(css).await.click().await {
                Ok(_) => return,
                Err(e) if e.is_stale_element_reference() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
        panic!("{css} went stale 50 times");
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    pub async fn script(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.unwrap()
    }

    /// Saves the page as `{name}.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Saves the page as `{name}.png` and fails on any console error it logged.
    pub async fn done(&self, name: &str) {
        self.shot(name).await;
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        let errors: Vec<&Value> = log
            .as_array()
            .map(|a| a.iter().filter(|e| e["level"] == "SEVERE").collect())
            .unwrap_or_default();
        assert!(
            errors.is_empty(),
            "the {name} page logged errors: {errors:?}"
        );
    }
}
