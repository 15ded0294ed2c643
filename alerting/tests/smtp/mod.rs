//! A real SMTP server on loopback for the notification tests: aiosmtpd running
//! `alerting/tests/smtp_server.py`, which writes each message it accepts as JSON.

#![allow(dead_code)] // each test binary uses its own part of this

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A Python that has aiosmtpd (`./test.sh` installs Debian's `python3-aiosmtpd`).
fn python() -> &'static str {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("a python3 with aiosmtpd is needed: ./test.sh installs python3-aiosmtpd")
}

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    out: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts the server on `port`, or on a free one. A free port can be taken by another
    /// test before the server binds it: then it starts again on another.
    pub fn start(mode: &str, tls: Option<&(PathBuf, PathBuf)>, port: Option<u16>) -> Self {
        // This module serves the alerting crate's tests and the workspace's.
        let script = ["tests/smtp_server.py", "alerting/tests/smtp_server.py"]
            .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
            .into_iter()
            .find(|p| p.exists())
            .expect("alerting/tests/smtp_server.py");
        for _ in 0..5 {
            let port = port.unwrap_or_else(free_port);
            let out = tempfile::tempdir().unwrap();
            let mut command = Command::new(python());
            command
                .arg(&script)
                .arg(out.path())
                .arg(port.to_string())
                .arg(mode);
            if let Some((cert, key)) = tls {
                command.arg(cert).arg(key);
            }
            let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
            let mut line = String::new();
            use std::io::BufRead;
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if line.trim() == "ready" {
                return Self { child, port, out };
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the SMTP server did not start (its port was taken five times)");
    }

    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        for _ in 0..900 {
            let m = self.messages();
            if m.len() >= count {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the SMTP server received {} of {count}",
            self.messages().len()
        );
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
