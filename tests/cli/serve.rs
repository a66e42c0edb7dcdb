//! `serve` running as a separate process (self-signed, no controller) with both listeners
//! on loopback ports: where they listen, its CA, its memory, and its log lines.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Served {
    child: Child,
    /// The HTTPS (admission) port.
    pub https: u16,
    /// The plain-HTTP probes and metrics port.
    pub metrics: u16,
    /// The self-signed CA the HTTPS port's certificate chains to.
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    lines: Receiver<String>,
}

impl Served {
    /// Starts the binary (`KSERVE_KEDA_WEBHOOK_BIN` when set, e.g. a release build for
    /// measuring, else the one cargo built for the tests) and waits until both ports listen.
    pub fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var_os("KSERVE_KEDA_WEBHOOK_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_kserve-keda-webhook").into());
        let mut child = std::process::Command::new(bin)
            .args(["serve", "--self-signed", "--no-controller"])
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(["--shutdown-delay", "0", "--log-format", "json"])
            .arg("--self-signed-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut https, mut metrics) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while https.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).expect("serve starts listening");
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let port = || {
                v["addr"]
                    .as_str()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            };
            match v["message"].as_str() {
                Some("listening for admission reviews over TLS") => https = port(),
                Some("serving probes and metrics over plain HTTP") => metrics = port(),
                _ => {}
            }
        }
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
        Served {
            child,
            https: https.unwrap(),
            metrics: metrics.unwrap(),
            ca_pem,
            dir,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (VmRSS of /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// A KiB figure of /proc/<pid>/status, e.g. RssAnon (resident memory that is not the
    /// binary's own pages, which the kernel may drop and read back at any time).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The JSON log records written so far whose message is `message`.
    pub fn records(&self, message: &str) -> Vec<Value> {
        let mut found = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(10)) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == message
                    {
                        found.push(v);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return found;
                }
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
