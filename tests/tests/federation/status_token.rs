//! With a status token, the operator's data (`/status.json`, `/metrics`:
//! client ids, refusals) needs it; the page itself (which holds no data
//! and asks for the token) and the health probe stay open.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use fusion_tests::*;

const TOKEN: &str = "status-token-0123456789";

/// The status line and body of `GET path`, with `authorization` if given.
fn get(port: u16, path: &str, authorization: Option<&str>) -> (String, String) {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let auth = authorization
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
            s.write_all(request.as_bytes()).expect("request");
            let mut text = String::new();
            s.read_to_string(&mut text).expect("response");
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let status = head.lines().next().unwrap_or_default().to_owned();
            return (status, body.to_owned());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "status page never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn status_data_needs_the_status_token() {
    let dir = scratch("status-token");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut config = server_config(dir.join("state"));
    config.metrics_listen = Some(([127, 0, 0, 1], port).into());
    config.status_token = Some(TOKEN.into());
    let server = RunningServer::start(config, None);

    assert!(get(port, "/healthz", None).0.contains("200"));
    let (status, page) = get(port, "/", None);
    assert!(
        status.contains("200") && page.contains("status token"),
        "{status}"
    );
    for path in ["/status.json", "/metrics"] {
        let (status, body) = get(port, path, None);
        assert!(status.contains("401"), "{path} without the token: {status}");
        assert!(
            !body.contains("run_id") && !body.contains("fusion_"),
            "{body}"
        );
        let wrong = get(port, path, Some("Bearer status-token-012345678X")).0;
        assert!(wrong.contains("401"), "{path} with a wrong token: {wrong}");
        let (status, body) = get(port, path, Some(&format!("Bearer {TOKEN}")));
        assert!(status.contains("200"), "{path} with the token: {status}");
        assert!(
            body.contains("run_id") || body.contains("fusion_rounds"),
            "{body}"
        );
    }
    server.kill();
}
