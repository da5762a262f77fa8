//! Usage and provenance across restarts: over clean restarts with the
//! licence server up and down and a `kill -9` with usage not yet reported,
//! the heartbeats report exactly what the pipeline took, each event once;
//! and a clean restart leaves no gap in provenance `seq`.

use std::collections::BTreeMap;
use std::time::Duration;

use halyard_trust::KeyPair;

use super::pipeline_support::{
    Host, Scenario, delivered, file_transport, http_transport, wait_for, write_sensor_lines,
};
use super::support::{LicenceServer, Receiver, licence_section, spawn_host, token};

/// SIGTERM, then wait for a clean exit.
fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    wait_for("the host to stop", Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success());
}

/// What the server counted: the last answered report per `(epoch, seq)`
/// (a report repeated after a lost answer is cumulative), summed.
fn counted(server: &LicenceServer) -> BTreeMap<&'static str, u64> {
    let st = server.state.lock().unwrap();
    let mut last = BTreeMap::new();
    for (body, ok) in st.bodies.iter().zip(&st.answered) {
        if *ok {
            let u = &body["usage"];
            last.insert(
                (u["epoch"].as_u64().unwrap(), u["seq"].as_u64().unwrap()),
                u.clone(),
            );
        }
    }
    let mut sum = BTreeMap::new();
    for usage in last.values() {
        for counts in usage["events"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.values())
        {
            for counter in ["in", "accepted", "rejected"] {
                *sum.entry(counter).or_default() += counts[counter].as_u64().unwrap_or(0);
            }
        }
    }
    sum
}

#[test]
fn restarts_and_a_kill_9_report_exactly_the_pipelines_counts() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let receiver = Receiver::start(&s.path("recv.db"), Vec::new(), false);
    let server = LicenceServer::start(false);
    // The default grace (72 h): the host ships while the server is down.
    let extra = format!(
        "endpoint = \"{}\"\nheartbeat_interval_s = 30\nretry_max_s = 0.2",
        server.url
    );
    let tok = token(&vendor, 3600);
    s.write_config(&format!(
        "{}\n{}",
        http_transport(&receiver.url(), None),
        licence_section(tok.expose(), &vendor, &extra)
    ));
    let (mut written, mut negative) = (0u64, 0u64);
    // Server up, down, up, down: two clean stops report at shutdown (or
    // leave the report to the next run), the last run is killed.
    for (run, down) in [false, true, false, true].into_iter().enumerate() {
        server.state.lock().unwrap().down = down;
        negative += write_sensor_lines(&s.input, written, 100);
        written += 100;
        let log = s.path(&format!("run-{run}.log"));
        let host = spawn_host(&s.config, false, &log);
        let expected = written - negative;
        wait_for("this run's events stored", Duration::from_secs(60), || {
            receiver.stored() == expected
        });
        if run < 3 {
            stop(host);
        } else {
            let mut host = host;
            host.kill().unwrap();
            host.wait().unwrap();
        }
    }
    // Not everything was reported: the last run's usage waits in its buffer.
    assert!(counted(&server)["in"] < written, "{:?}", counted(&server));

    // The next run, server up, reports what the killed run stored.
    server.state.lock().unwrap().down = false;
    let log = s.path("run-last.log");
    let host = spawn_host(&s.config, false, &log);
    wait_for("every event reported", Duration::from_secs(60), || {
        counted(&server).get("in") == Some(&written)
    });
    stop(host);
    let sum = counted(&server);
    assert_eq!(sum["in"], written, "{sum:?}");
    assert_eq!(sum["accepted"], written - negative, "{sum:?}");
    assert_eq!(sum["rejected"], negative, "{sum:?}");
    assert_eq!(receiver.stored(), written - negative);
}

#[test]
fn a_clean_restart_leaves_no_gap_in_provenance_seq() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    s.write_config(&file_transport(&out));
    let mut expected = 0;
    for (run, start) in [0u64, 150].into_iter().enumerate() {
        expected += 150 - write_sensor_lines(&s.input, start, 150);
        let host = Host::start(&s.config);
        wait_for(
            &format!("run {run}'s events delivered"),
            Duration::from_secs(60),
            || delivered(&out).len() as u64 == expected,
        );
        host.stop();
    }
    let mut seqs: Vec<u64> = delivered(&out)
        .iter()
        .map(|e| e["provenance"]["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    let contiguous: Vec<u64> = (0..expected).collect();
    assert_eq!(seqs, contiguous, "a gap or a repeat across the restart");
}
