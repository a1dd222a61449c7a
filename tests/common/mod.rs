//! What the tests that run `strata serve` as a process share: one HTTP/1.1
//! request at a time over a plain socket, and the child process.

#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One HTTP/1.1 request on a fresh connection; returns the status and the
/// whole response (head and body).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

/// The value of a response header (case-insensitive name).
pub fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A running `strata serve`.
pub struct Serve {
    /// The process.
    pub child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// The line of stderr that named the address.
    pub banner: String,
    /// Every line of stderr so far, read by a thread of its own so that a
    /// chatty server never blocks on a full pipe.
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Serve {
    /// Starts `strata serve --addr 127.0.0.1:0` with `args` after it (and
    /// whatever `configure` sets on the command) and reads the address it
    /// announces.
    pub fn start(args: &[&str], configure: impl FnOnce(&mut Command)) -> Serve {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command.args(["serve", "--addr", "127.0.0.1:0"]).args(args);
        configure(&mut command);
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (banner_tx, banner_rx) = mpsc::channel();
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in stderr.lines() {
                    let Ok(line) = line else { break };
                    if line.contains("strata serving") {
                        let _ = banner_tx.send(line.clone());
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let banner = banner_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("strata serve named no address; stderr: {:?}", lines.lock().unwrap()));
        let addr = banner
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {banner:?}"))
            .to_string();
        Serve {
            child,
            addr,
            banner,
            lines,
            reader: Some(reader),
        }
    }

    /// The lines of stderr read so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit status and what it wrote to stderr after the
    /// banner (all of it: the process has exited and its pipe is drained).
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "strata serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let lines = self.lines.lock().unwrap();
        let after = lines.iter().skip_while(|l| **l != self.banner).skip(1);
        let rest = after.map(|l| format!("{l}\n")).collect();
        (status, rest)
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
