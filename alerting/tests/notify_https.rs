//! Webhook posts over HTTPS to a real TLS listener on loopback, whose certificate is signed by a
//! test CA: delivered when the CA is given as `tls_config.ca_file` (under the URL's own name or
//! `server_name`) or with `insecure_skip_verify`; refused, as a failed attempt in the ledger,
//! when the certificate cannot be trusted or names another server.

mod certs;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use spyglass_alerting::notify::{Alert, Dispatcher, Evidence, parse_config};
use spyglass_alerting::{Clock, Labels, SystemClock};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// What the listener received: path, Authorization header, body.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A TCP listener that hands axum only connections whose TLS handshake succeeded.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate ends its handshake here.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An HTTPS listener on 127.0.0.1 presenting `cert` (for 127.0.0.1 and localhost).
async fn https_listener(cert: &Path, key: &Path) -> (u16, Received) {
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/{kind}",
            post(
                |State(received): State<Received>,
                 UrlPath(kind): UrlPath<String>,
                 headers: HeaderMap,
                 body: axum::Json<Value>| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    received.lock().unwrap().push((kind, auth, body.0));
                    StatusCode::OK
                },
            ),
        )
        .with_state(received.clone());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, received)
}

fn alert() -> Alert {
    let now = SystemClock.now_unix_nanos();
    Alert {
        labels: Labels::from([
            ("alertname".into(), "ServiceErrors".into()),
            ("service".into(), "payments".into()),
        ]),
        annotations: Labels::new(),
        starts_at: now - 60_000_000_000,
        ends_at: now + 3_600_000_000_000,
        generator_url: String::new(),
        evidence: Evidence::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_https_trust_the_ca_file_and_refuse_an_unknown_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, (cert, key)) = certs::certificates(dir.path());
    let (port, received) = https_listener(&cert, &key).await;
    let ca = ca.display();
    let yaml = format!(
        r#"
route:
  receiver: oncall
  group_wait: 100ms
  group_interval: 1h
receivers:
  - name: oncall
    webhook_configs:
      - url: https://127.0.0.1:{port}/trusted
        http_config:
          bearer_token: hook-token
          tls_config: {{ca_file: '{ca}'}}
      - url: https://localhost:{port}/by-name
        http_config: {{tls_config: {{ca_file: '{ca}'}}}}
      - url: https://127.0.0.1:{port}/server-name
        http_config: {{tls_config: {{ca_file: '{ca}', server_name: localhost}}}}
      - url: https://127.0.0.1:{port}/skip-verify
        http_config: {{tls_config: {{insecure_skip_verify: true}}}}
      - url: https://127.0.0.1:{port}/untrusted
      - url: https://127.0.0.1:{port}/other-name
        http_config: {{tls_config: {{ca_file: '{ca}', server_name: other.example}}}}
"#
    );
    let config = parse_config("notify.yml", &yaml).unwrap();
    let (notifier, dispatcher) = Dispatcher::new(
        config,
        dir.path(),
        Arc::new(SystemClock),
        "http://spyglass:8080",
    )
    .unwrap();
    let task = tokio::spawn(dispatcher.run(std::future::pending()));
    notifier.send(vec![alert()]).await;

    // Waits (at most a generous minute) for the four trusted posts and a failed attempt of each
    // refused one.
    let refused = |index: usize| {
        notifier
            .ledger()
            .rows()
            .into_iter()
            .filter(move |r| r.integration == format!("webhook[{index}]") && r.outcome == "failed")
            .collect::<Vec<_>>()
    };
    for _ in 0..600 {
        if received.lock().unwrap().len() >= 4 && !refused(4).is_empty() && !refused(5).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut paths: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(path, _, _)| path.clone())
        .collect();
    paths.sort();
    assert_eq!(paths, ["by-name", "server-name", "skip-verify", "trusted"]);
    let received = received.lock().unwrap().clone();
    let (_, auth, body) = received.iter().find(|(p, _, _)| p == "trusted").unwrap();
    assert_eq!(auth, "Bearer hook-token");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alerts"][0]["labels"]["service"], "payments");

    let untrusted = refused(4);
    assert!(!untrusted.is_empty(), "{:?}", notifier.ledger().rows());
    assert!(
        untrusted[0].error.contains("UnknownIssuer"),
        "{}",
        untrusted[0].error
    );
    let other_name = refused(5);
    assert!(!other_name.is_empty(), "{:?}", notifier.ledger().rows());
    assert!(
        other_name[0]
            .error
            .contains("not valid for name \"other.example\""),
        "{}",
        other_name[0].error
    );
    let sent = notifier
        .ledger()
        .rows()
        .into_iter()
        .filter(|r| r.outcome == "sent")
        .count();
    assert_eq!(sent, 4, "{:?}", notifier.ledger().rows());
    task.abort();
}
