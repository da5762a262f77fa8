//! An unreachable licence server: grace, then expiry, which holds events
//! in the buffer; a renewed token releases them with exact counts.

use std::time::Duration;

use halyard_trust::KeyPair;

use super::pipeline_support::{Scenario, http_transport, wait_for, write_sensor_lines};
use super::support::{
    LicenceServer, Receiver, free_port, get_json, licence_section, spawn_host, token,
};

#[test]
fn expiry_holds_events_and_a_renewed_token_releases_them_exactly() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let receiver = Receiver::start(&s.path("recv.db"), Vec::new(), false);
    let server = LicenceServer::start(true);
    let status = free_port();
    // Grace of ~2 s and fast retries so the test takes seconds; the
    // interval is long enough that "overdue since start" never decides
    // (plugin compilation on a busy machine can take several seconds).
    let extra = format!(
        "endpoint = \"{}\"\napi_key = \"hb-key-e2e\"\nheartbeat_interval_s = 30\ngrace_hours = 0.0006\nretry_max_s = 0.2",
        server.url
    );
    let tok = token(&vendor, 3600);
    s.write_config(&format!(
        "{}\n[health]\nlisten = \"{status}\"\n{}",
        http_transport(&receiver.url(), None),
        licence_section(tok.expose(), &vendor, &extra)
    ));
    let log = s.path("host.log");
    let mut host = spawn_host(&s.config, false, &log);
    let licence = || {
        get_json(&format!("http://{status}/health"))
            .and_then(|h| h["licence"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    wait_for("licence expired", Duration::from_secs(60), || {
        licence() == "expired"
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let grace = text
        .find("licence.grace")
        .unwrap_or_else(|| panic!("no licence.grace: {text}"));
    let expired = text
        .find("licence.expired")
        .unwrap_or_else(|| panic!("no licence.expired: {text}"));
    assert!(grace < expired);

    // Events keep being accepted but are held.
    let negative = write_sensor_lines(&s.input, 0, 300);
    let accepted = 300 - negative;
    let len = std::fs::metadata(&s.input).unwrap().len();
    wait_for("the input committed", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.lines()
                .any(|l| l.contains("caught up") && l.contains(&format!("\"offset\":{len}")))
        })
    });
    assert_eq!(receiver.stored(), 0, "events shipped while expired");
    assert!(host.try_wait().unwrap().is_none());

    // The server comes back with a renewed token: valid, released, exact.
    let renewed = token(&vendor, 7200);
    {
        let mut st = server.state.lock().unwrap();
        st.renewed = Some(renewed.expose().to_owned());
        st.down = false;
    }
    wait_for("events released", Duration::from_secs(60), || {
        receiver.stored() == accepted
    });
    assert_eq!(licence(), "valid");
    let persisted = std::fs::read_to_string(s.data.join("licence.token")).unwrap();
    assert_eq!(persisted, renewed.expose());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status();
    wait_for("the host to stop", Duration::from_secs(30), || {
        host.try_wait().unwrap().is_some()
    });
    assert_eq!(receiver.stored(), accepted);

    // Usage reached the licence server; nothing secret reached the log.
    let bodies = server.state.lock().unwrap().bodies.clone();
    assert!(bodies.len() >= 3, "{bodies:?}");
    // The first successful report (the last one of window 0) carries every
    // event accepted while the server was down, exactly once.
    let first_ok = bodies.iter().rfind(|b| b["usage"]["seq"] == 0).unwrap();
    let total = |counter: &str| -> u64 {
        first_ok["usage"]["events"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c[counter].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(total("accepted"), accepted, "{first_ok}");
    assert_eq!(total("rejected"), negative, "{first_ok}");
    assert_eq!(total("in"), 300, "{first_ok}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("licence.valid"));
    assert!(!text.contains(tok.expose()) && !text.contains(renewed.expose()));
    assert!(!text.contains("hb-key-e2e"));
}
