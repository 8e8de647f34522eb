//! A Valkey or Redis server of a test's (or bench's) own, on 127.0.0.1 at a free port,
//! with no persistence: started from `valkey-server` or `redis-server` on the PATH,
//! stopped by its PID when dropped, and killed, paused (SIGSTOP) or restarted empty on
//! demand, for the failures the Redis backing store claims to survive.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    binary: String,
    extra: Vec<String>,
    pub port: u16,
}

/// The server binary on the PATH, if any.
fn binary() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    ["valkey-server", "redis-server"]
        .into_iter()
        .find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
                .map(|p| p.to_string_lossy().into_owned())
        })
}

impl Server {
    /// A fresh server with `extra` arguments (`--maxmemory-policy allkeys-lru`), or
    /// `None` where no server binary is installed.
    pub fn start(extra: &[&str]) -> Option<Server> {
        let binary = binary()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(&binary, port, &extra);
        let server = Server {
            child,
            binary,
            extra,
            port,
        };
        server.wait_ready();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and waits for it to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it and starts an empty one on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.child = spawn(&self.binary, self.port, &self.extra);
        self.wait_ready();
    }

    /// SIGSTOP (`pause: false`: SIGCONT).
    pub fn pause(&self, pause: bool) {
        let signal = if pause { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The number of keys it holds.
    pub fn keys(&self) -> u64 {
        let reply = self.request("DBSIZE");
        reply
            .trim_start_matches(':')
            .trim()
            .parse()
            .expect("an integer reply")
    }

    /// One inline command's reply line.
    fn request(&self, command: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        let mut reply = [0u8; 256];
        let n = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..n]).trim().to_string()
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = [0u8; 16];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream
                        .read(&mut reply)
                        .is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server on port {} did not answer", self.port);
    }
}

fn spawn(binary: &str, port: u16, extra: &[String]) -> Child {
    Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts")
}

impl Drop for Server {
    fn drop(&mut self) {
        // A paused server must run again to die.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        self.kill();
    }
}
