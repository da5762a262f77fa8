//! The status page at `/`, in real Chromium (Debian's `chromium`, driven
//! through `chromedriver` with fantoccini): it renders the host's state, a
//! live event appears in its stream, and a plugin quarantined by a hostile
//! guest turns its health red and names the plugin, without a reload.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder};
use halyard_test_components as components;

use crate::pipeline_support::{Scenario, file_transport};
use crate::support::{Client, free_ports, sensor_lines, start_with_status, wait_listening};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `chromedriver` on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    fn start(log: &Path) -> Driver {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: install the Debian packages `chromium` and `chromium-driver` \
                 (apt-get install chromium chromium-driver); the status page's test needs a real browser"
            );
        }
        let [addr] = free_ports();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", addr.port()))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start chromedriver");
        wait_listening(addr);
        Driver { child, addr }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open(driver: &Driver) -> Browser {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1400"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://{}", driver.addr))
        .await
        .expect("a chromium session")
}

/// Runs `script` (which returns a value) until `done` accepts it, within
/// `limit`; returns that value.
async fn wait_js(
    browser: &Browser,
    what: &str,
    script: &str,
    limit: Duration,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let value = browser.execute(script, vec![]).await.expect("script runs");
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_status_page_shows_live_events_and_turns_red_naming_a_quarantined_plugin() {
    let s = Scenario::new();
    let [status] = free_ports();
    // One pipeline worker, so the hostile validator's calls go to one
    // instance: its first calls pass, later ones trap; three traps
    // quarantine it.
    let tail = format!(
        "[pipeline]\nworkers = 1\n\n[stages]\nquarantine_after_traps = 3\n\n{}",
        file_transport(&s.path("out.jsonl"))
    );
    let run = start_with_status(
        &s,
        &tail,
        &[
            (
                &format!("plugin = \"{}\"", components::RANGE_VALIDATOR),
                &format!(
                    "plugin = \"{}\"\nname = \"gatekeeper\"",
                    components::HOSTILE_VALIDATOR
                ),
            ),
            (
                r#"config = { "min.temp" = 0 }"#,
                r#"config = { mode = "trap-after", calls = "2" }"#,
            ),
        ],
        status,
    );
    let driver = Driver::start(&s.path("chromedriver.log"));
    let client = Client::new();
    let page = format!("http://{}/", run.status);
    // Kept for a person to look at: target/tmp/status-page.png.
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");

    // The browser's own runtime; the ingest client blocks on another, so
    // its calls leave this one's context (`block_in_place`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ingest = |body: Vec<u8>| tokio::task::block_in_place(|| client.ingest(run.ingest, body));
    runtime.block_on(async {
        let browser = open(&driver).await;
        browser.goto(&page).await.expect("open the page");
        // Rendered by its script from /health: healthy, four plugins.
        let state = wait_js(
            &browser,
            "the page rendered healthy",
            "return [document.getElementById('health').dataset.status, \
             document.querySelectorAll('#plugins tr').length, \
             document.getElementById('conn').textContent];",
            Duration::from_secs(30),
            |v| v[0] == "healthy" && v[1] == 4 && v[2] == "connected",
        )
        .await;
        assert_eq!(state[1], 4);
        let row = browser
            .execute(
                "const r = document.querySelector('#plugins tr[data-name=gatekeeper]'); \
                 return [r.dataset.state, r.cells[1].textContent, r.cells[3].title.length];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(row, serde_json::json!(["active", "validate", 64]));

        // A live event: the first request passes the validator; every
        // accepted event appears in the stream, without a reload.
        // (The hostile validator accepts everything on its first call.)
        let (body, _) = sensor_lines(&s, 0, 10);
        let answer = ingest(body);
        let accepted = answer["accepted"].as_u64().unwrap();
        assert_eq!(accepted, 10, "{answer}");
        let shown = wait_js(
            &browser,
            "the accepted events in the live stream",
            "return Array.from(document.querySelectorAll('#events li.event'), li => li.textContent);",
            Duration::from_secs(30),
            |v| v.as_array().is_some_and(|a| a.len() as u64 >= accepted),
        )
        .await;
        let shown = shown.as_array().unwrap();
        assert_eq!(shown.len() as u64, accepted, "{shown:?}");
        assert!(
            shown.iter().all(|l| l.as_str().unwrap().contains(" temp ")),
            "{shown:?}"
        );

        // More requests until the validator has trapped three times and is
        // quarantined (a trap fails its batch closed: nothing accepted).
        // The header turns red and the reasons name the plugin.
        let mut failed_closed = 0;
        for i in 1..20 {
            let (body, _) = sensor_lines(&s, i * 10, 10);
            let answer = ingest(body);
            if answer["accepted"].as_u64() == Some(0) {
                failed_closed += 1;
            }
            if failed_closed == 4 {
                break;
            }
        }
        assert_eq!(failed_closed, 4, "three traps, then quarantined");
        let red = wait_js(
            &browser,
            "the page turned unhealthy",
            "const h = document.getElementById('health'); \
             return [h.dataset.status, getComputedStyle(h).backgroundColor, \
             document.getElementById('reasons').textContent, \
             document.querySelector('#plugins tr[data-name=gatekeeper]').dataset.state];",
            Duration::from_secs(30),
            |v| v[0] == "unhealthy",
        )
        .await;
        assert_eq!(red[1], "rgb(207, 34, 46)", "{red}");
        let reasons = red[2].as_str().unwrap();
        assert!(
            reasons.contains("validator gatekeeper quarantined"),
            "{reasons}"
        );
        assert_eq!(red[3], "quarantined");
        // The trap's lifecycle events reached the stream too.
        let lifecycle = browser
            .execute(
                "return Array.from(document.querySelectorAll('#events li.lifecycle'), \
                 li => li.textContent).filter(t => t.includes('plugin.quarantined')).length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(lifecycle, 1);
        if let Ok(png) = browser.screenshot().await {
            let _ = std::fs::write(&screenshot, png);
        }
        browser.close().await.expect("close the session");
    });
    drop(driver);
    run.host.stop();
}
