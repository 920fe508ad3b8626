//! Harness for black-box tests: spawns the single-box edition on random ports in a temp data dir
//! and stops it when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running `smartsite serve`.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub endpoints: serde_json::Value,
}

impl Server {
    /// Starts `smartsite serve` on port 0 in a fresh temp data dir and waits until it is ready.
    pub fn spawn(bin: &Path) -> anyhow::Result<Server> {
        let temp = tempfile::tempdir()?;
        let mut s = Server::spawn_in(bin, temp.path(), &[])?;
        s._temp = Some(temp);
        Ok(s)
    }

    /// Starts it on an existing data dir with extra arguments.
    pub fn spawn_in(bin: &Path, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Server> {
        let endpoints_file = data_dir.join("endpoints.json");
        let _ = std::fs::remove_file(&endpoints_file);
        let child = Command::new(bin)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0", "--mqtts", "127.0.0.1:0"])
            .args(extra)
            .env("SMARTSITE_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn smartsite serve")?;
        let mut server = Server {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            _temp: None,
            endpoints: serde_json::Value::Null,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(bytes) = std::fs::read(&endpoints_file) {
                server.endpoints = serde_json::from_slice(&bytes).context("endpoints.json")?;
                return Ok(server);
            }
            if let Some(status) = server.child_mut()?.try_wait()? {
                bail!("smartsite serve exited during start-up: {status}");
            }
            if Instant::now() > deadline {
                bail!("smartsite serve did not write endpoints.json within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn child_mut(&mut self) -> anyhow::Result<&mut Child> {
        self.child.as_mut().context("server already stopped")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `http://host:port` of the HTTP API.
    pub fn http(&self) -> String {
        format!(
            "http://{}",
            self.endpoints["http"].as_str().unwrap_or_default()
        )
    }

    /// Sends `signal` (e.g. "TERM", "INT", "KILL") and waits for the exit, at most 30 s.
    pub fn stop(&mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()?
            .success();
        if !ok {
            bail!("kill -{signal} {pid} failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child_mut()?.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("smartsite serve did not stop within 30 s of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
