//! A real S3-compatible server for the tests: `moto_server` (PyPI `moto[server]`, installed by
//! `test.sh`) on a loopback port, stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spyglass_store::bucket::{Bucket, ObjectStoreConfig};

pub struct Moto {
    child: Child,
    pub endpoint: String,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` (`SPYGLASS_MOTO_SERVER`, else found on `PATH`) and waits until it
    /// answers.
    pub fn start() -> Self {
        let program =
            std::env::var("SPYGLASS_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts (test.sh installs it): {e}"));
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.request("GET", "/").is_err() {
            assert!(Instant::now() < deadline, "moto_server answers within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// One plain HTTP request (moto does not check signatures); the status line's code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status line in {answer:?}")))
    }

    /// A new bucket `name`, with `prefix`, as Spyglass opens it.
    pub fn bucket(&self, name: &str, prefix: &str) -> Bucket {
        let code = self
            .request("PUT", &format!("/{name}"))
            .expect("bucket created");
        assert_eq!(code, 200, "moto creates bucket {name}");
        Bucket::open(&self.config(name, prefix)).expect("bucket opens")
    }

    pub fn config(&self, name: &str, prefix: &str) -> ObjectStoreConfig {
        // moto takes any keys.
        let options = [
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ];
        ObjectStoreConfig {
            url: format!("s3://{name}/{prefix}"),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            allow_http: true,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ObjectStoreConfig::default()
        }
    }

    /// Stops the server (its buckets are gone with it).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
