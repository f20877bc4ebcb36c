//! Helpers the benchmarks share (each bench uses some of them).
#![allow(dead_code)]

use viewcast::pg::Lsn;

pub async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Starts a throwaway PostgreSQL and returns it with the conninfo of its
/// `postgres` database.
pub async fn start_postgres() -> (viewcast::pg::embedded::EmbeddedPostgres, String) {
    let pg = tokio::task::spawn_blocking(viewcast::pg::embedded::EmbeddedPostgres::start)
        .await
        .unwrap()
        .expect("start PostgreSQL");
    let conninfo = pg.conninfo("postgres");
    (pg, conninfo)
}

/// The WAL position now: after a commit, the views must reach it.
pub async fn lsn(client: &tokio_postgres::Client) -> Lsn {
    let s: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);
    s.parse().expect("lsn")
}

/// `--view-groups` for `workers` threads: `BENCH_VIEW_GROUPS`, or the
/// server's default.
pub fn view_groups(workers: usize) -> usize {
    env(
        "BENCH_VIEW_GROUPS",
        viewcast::config::default_view_groups(workers) as u64,
    ) as usize
}

/// A setting from the environment, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process, in bytes (0 if it cannot be read).
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// CPU seconds (user + system, all threads) process `pid` has used so far:
/// fields 14 and 15 of `/proc/PID/stat`, in clock ticks.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    let ticks: u64 = fields[11..13]
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf reads a configuration value and has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / per_second as f64
}

/// The `p` quantile of sorted durations (zero for none).
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Waits until viewcast at `addr` reports (`/healthz`) that its views
/// reflect `target`.
pub async fn caught_up(addr: &str, target: Lsn) {
    loop {
        if let Ok((_, body)) = viewcast::client::get(addr, "/healthz").await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let at: Lsn = v["lsn"].as_str().unwrap_or("0/0").parse().unwrap_or(Lsn(0));
            if at >= target {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Runs `pg_recvlogical` (pgoutput, the `viewcast` publication) on `slot`
/// until `end`, discarding what it receives; returns how long it took.
pub fn recvlogical_drain(conninfo: &str, slot: &str, end: Lsn) -> std::time::Duration {
    let recv = viewcast::pg::embedded::find_bin_dir()
        .expect("bin dir")
        .join("pg_recvlogical");
    let t = std::time::Instant::now();
    let status = std::process::Command::new(&recv)
        .args(["-d", conninfo, "--slot", slot, "--start", "--endpos"])
        .arg(end.to_string())
        .args([
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=viewcast",
            "-f",
            "/dev/null",
        ])
        .status()
        .expect("run pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed");
    t.elapsed()
}

/// A `viewcast serve` process of the release binary (or of `VIEWCAST_BIN`).
pub struct Server {
    child: std::process::Child,
    pub addr: String,
}

impl Server {
    pub fn start(conninfo: &str, queries: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // VIEWCAST_BIN runs another build (a baseline) under the same bench.
        let binary = std::env::var("VIEWCAST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_viewcast").to_string());
        let child = std::process::Command::new(binary)
            .args(["serve", "--pg", conninfo, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--queries")
            .arg(queries)
            .args(["--workers", &env("BENCH_WORKERS", 2).to_string()])
            // Unset, the binary's own default (a baseline may predate the flag).
            .args(
                std::env::var("BENCH_VIEW_GROUPS")
                    .ok()
                    .into_iter()
                    .flat_map(|groups| ["--view-groups".to_string(), groups]),
            )
            // Paused for a backlog: it must not give the stream up as
            // silent when it resumes.
            .args(["--replication-timeout", "3600"])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start viewcast serve");
        Server {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// Waits until every view of `names` answers with its contents.
    pub async fn ready(&self, names: &[&str]) {
        for name in names {
            loop {
                match viewcast::client::get(&self.addr, &format!("/views/{name}")).await {
                    Ok((200, _)) => break,
                    Ok((503, _)) | Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    Ok((status, body)) => panic!("view {name}: {status} {body}"),
                }
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} viewcast");
    }

    /// CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    pub fn rss_mib(&self) -> f64 {
        rss(self.child.id()) as f64 / (1024.0 * 1024.0)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The records each view's own arrangements hold and their bytes, and the
/// tables' shared ones, as viewcast reports them (bytes are measured about
/// once a second).
pub async fn arranged_records(addr: &str) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    let (_, metrics) = viewcast::client::get(addr, "/metrics")
        .await
        .expect("metrics");
    let metric = |name: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map_or(-1, |n| n as i64)
    };
    out.push((
        "tables (shared)".to_string(),
        metric("viewcast_tables_arranged_records "),
        metric("viewcast_tables_arranged_bytes "),
    ));
    let (_, body) = viewcast::client::get(addr, "/views").await.expect("views");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    for v in list.as_array().into_iter().flatten() {
        out.push((
            format!("view {}", v["name"].as_str().unwrap_or("?")),
            v["memory"]["records"].as_i64().unwrap_or(-1),
            v["memory"]["bytes"].as_i64().unwrap_or(-1),
        ));
    }
    out
}
