//! Mutual TLS refuses clients without a certificate or with one from
//! another CA, and the client stops at once instead of retrying.

use std::time::{Duration, Instant};

use fusion_client::ClientError;
use fusion_net::{ClientTls, DevCertificates};
use fusion_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_foreign_client_certificates_are_refused() {
    let dir = scratch("mtls");
    let ours = DevCertificates::generate("our CA", &["localhost".into()], 1).expect("certs");
    let theirs = DevCertificates::generate("their CA", &["localhost".into()], 1).expect("certs");
    ours.write(&dir.join("ours")).expect("write");
    theirs.write(&dir.join("theirs")).expect("write");
    let mut config = server_config(dir.join("state"));
    config.tls_cert = Some(dir.join("ours/server.pem"));
    config.tls_key = Some(dir.join("ours/server.key"));
    config.client_ca = Some(dir.join("ours/ca.pem"));
    let server = RunningServer::start(config, None);
    let (train, _) = small_data(100);
    let data = std::sync::Arc::new(train);

    let cases = [
        ("no client certificate", None),
        ("a certificate from another CA", Some("theirs")),
    ];
    for (what, cert_dir) in cases {
        let mut cfg = client_config(&server.https_url(), "c", 0);
        cfg.tls = ClientTls {
            ca: Some(dir.join("ours/ca.pem")),
            cert: cert_dir.map(|d| dir.join(d).join("client-0.pem")),
            key: cert_dir.map(|d| dir.join(d).join("client-0.key")),
            domain: None,
        };
        let started = Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            fusion_client::run(cfg, data.clone()),
        )
        .await
        .expect("the client gives up at once, no retry storm")
        .expect_err(what);
        assert!(matches!(err, ClientError::Tls(_)), "{what}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: took {:?}",
            started.elapsed()
        );
    }

    // A client that does not trust the server's CA refuses it too.
    let mut cfg = client_config(&server.https_url(), "c", 0);
    cfg.tls = ClientTls {
        ca: Some(dir.join("theirs/ca.pem")),
        cert: Some(dir.join("ours/client-0.pem")),
        key: Some(dir.join("ours/client-0.key")),
        domain: None,
    };
    let err = fusion_client::run(cfg, data.clone())
        .await
        .expect_err("untrusted server");
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    server.kill();
}
