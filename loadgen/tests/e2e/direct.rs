//! `--proto direct` runs of every workload against the matching sink.

use super::support::{SHORT, Sink, num, run};

#[test]
fn churn_against_echo() {
    let sink = Sink::start(&["--mode", "echo"]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "churn",
        "--connections",
        "4",
        "--threads",
        "2",
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert_eq!(json["proto"], "direct");
    assert_eq!(json["workload"], "churn");
    assert_eq!(json["threads"], 2);
    assert_eq!(json["connections"], 4);
    assert_eq!(num(json, "duration_s"), 0.3);
    assert!(num(json, "connections_per_s") > 0.0);
    assert_eq!(num(json, "connections_per_s"), num(json, "requests_per_s"));
    assert!(num(json, "gbit_per_s") > 0.0);
    assert!(num(&json["latency_us"], "p50") > 0.0);
    assert!(result.stdout.contains("requests/s"), "{}", result.stdout);
}

#[test]
fn rr_against_fixed() {
    let sink = Sink::start(&[
        "--mode",
        "fixed",
        "--request-size",
        "64",
        "--response-size",
        "512",
    ]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "rr",
        "--connections",
        "3",
        "--request-size",
        "64",
        "--response-size",
        "512",
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert!(num(json, "requests_per_s") > 0.0);
    assert!(num(json, "gbit_per_s") > 0.0);
    let completed = json["completed"].as_u64().unwrap();
    assert_eq!(json["bytes"].as_u64().unwrap(), completed * (64 + 512));
}

#[test]
fn open_loop_sends_exactly_the_scheduled_requests() {
    let sink = Sink::start(&["--mode", "echo"]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "rr",
        "--rate",
        "1000",
        "--connections",
        "20",
        "--threads",
        "2",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
    ]);
    let json = result.clean();
    // Every request scheduled inside the window is sent and counted, however late.
    let completed = json["completed"].as_u64().unwrap();
    assert!((498..=502).contains(&completed), "{completed}");
    assert_eq!(json["rate"], 1000.0);
}

#[test]
fn open_loop_churn() {
    let sink = Sink::start(&["--mode", "echo"]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "churn",
        "--rate",
        "400",
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert_eq!(json["connections"], 1000, "open-loop default in-flight cap");
    let completed = json["completed"].as_u64().unwrap();
    assert!((118..=122).contains(&completed), "{completed}");
}

#[test]
fn bulk_upload_to_discard() {
    let sink = Sink::start(&["--mode", "discard"]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "bulk",
        "--streams",
        "2",
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert!(num(json, "gbit_per_s") > 0.0);
    assert!(result.stdout.contains("Gbit/s"));
}

#[test]
fn bulk_download_from_fixed() {
    let sink = Sink::start(&[
        "--mode",
        "fixed",
        "--request-size",
        "0",
        "--response-size",
        "65536",
    ]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "bulk",
        "--request-size",
        "0",
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert!(num(json, "gbit_per_s") > 0.0);
}

#[test]
fn idle_holds_and_reports_tunnels() {
    let sink = Sink::start(&["--mode", "echo"]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "idle",
        "--connections",
        "50",
        "--threads",
        "2",
        "--duration",
        "300ms",
    ]);
    let json = result.clean();
    assert!(
        result.stdout.lines().any(|l| l == "idle: 50 tunnels open"),
        "{}",
        result.stdout
    );
    assert_eq!(json["open_tunnels"], 50);
    assert_eq!(json["completed"], 50, "every tunnel survived the hold");
    assert!(num(json, "connections_per_s") > 0.0);
}

#[test]
fn expect_egress_direct() {
    let sink = Sink::start(&["--mode", "peer"]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "churn",
        "--expect-egress",
        "127.0.0.1",
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert_eq!(json["egress"], "127.0.0.1");
    assert!(
        result
            .stdout
            .contains("egress: 127.0.0.1 expected 127.0.0.1 ok"),
        "{}",
        result.stdout
    );
}

#[test]
fn serial_reports_handshake_and_exchange_apart_and_a_process_cpu() {
    let sink = Sink::start(&["--mode", "echo"]);
    let pid = sink.pid().to_string();
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "serial",
        "--connections",
        "2",
        "--proxy-pid",
        &pid,
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert_eq!(json["workload"], "serial");
    let total = num(&json["latency_us"], "p50");
    let handshake = num(&json["handshake_us"], "p50");
    let exchange = num(&json["exchange_us"], "p50");
    // Each iteration's parts are no longer than the iteration, so their quantiles are not.
    assert!(handshake > 0.0 && handshake <= total, "{json}");
    assert!(exchange > 0.0 && exchange <= total, "{json}");
    // The sink served every connection: it used CPU, which is split over the iterations.
    let cpu = num(json, "proxy_cpu_s");
    let per = num(json, "proxy_cpu_us_per_request");
    assert!(cpu > 0.0, "{json}");
    let completed = json["completed"].as_f64().unwrap();
    assert!((per * completed / 1e6 - cpu).abs() < 1e-6, "{json}");
    assert!(result.stdout.contains("handshake"), "{}", result.stdout);
    assert!(result.stdout.contains("proxy CPU"), "{}", result.stdout);
}

#[test]
fn rr_has_no_handshake_phase() {
    let sink = Sink::start(&["--mode", "echo"]);
    let result = run(&[
        "--target",
        &sink.addr,
        "--proto",
        "direct",
        "--workload",
        "rr",
        SHORT[0],
        SHORT[1],
        SHORT[2],
        SHORT[3],
    ]);
    let json = result.clean();
    assert!(json["handshake_us"].is_null() && json["exchange_us"].is_null());
    assert!(json["proxy_cpu_s"].is_null());
}
