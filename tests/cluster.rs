//! Cluster mode as an operator runs it: two `viewcast serve --cluster
//! hosts.txt --process N` processes of the real binary on localhost, one
//! dataflow across them. Both serve the same views with the same events,
//! equal to Postgres; parameter tuples opened at either process work; the
//! second process stops when process 0 does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{assert_same, wait_healthy_at, Follower, TestDb};
use viewcast::pg::Lsn;

/// A `viewcast` process, killed if the test ends before it stops.
struct Proc {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn healthy(&self, limit: Duration) {
        if let Err(last) = wait_healthy_at(&self.addr, limit).await {
            panic!(
                "{} not healthy within {limit:?}: {last}\n--- its log:\n{}",
                self.addr,
                self.log()
            );
        }
    }

    /// Waits for the process to exit on its own; its status.
    async fn exits_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} still running after {limit:?}\n--- its log:\n{}",
            self.addr,
            self.log()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn spawn(dir: &std::path::Path, args: &[&str], addr: &str, name: &str) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_viewcast"))
        .arg("serve")
        .args(args)
        .args(["--listen", addr, "--workers", "1"])
        .env("RUST_LOG", "info")
        .env_remove("VIEWCAST_PG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start viewcast");
    Proc {
        child,
        addr: addr.to_string(),
        log,
    }
}

const SCHEMA: &str = "
    CREATE TABLE customers (id int PRIMARY KEY, name text, region text);
    CREATE TABLE orders (id int PRIMARY KEY, customer int, amount numeric(10,2), status text);
    INSERT INTO customers SELECT g, 'c' || g, (ARRAY['north','south','east'])[g % 3 + 1]
        FROM generate_series(1, 40) g;
    INSERT INTO orders SELECT g, g % 40 + 1, (g * 7 % 500)::numeric / 4, 'open'
        FROM generate_series(1, 2000) g;";

const VIEWS: &[(&str, &str)] = &[
    (
        "by_region",
        "SELECT c.region, count(*) AS n, sum(o.amount) AS total, max(o.amount) AS top \
         FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.region",
    ),
    (
        "large_open",
        "SELECT id, customer, amount FROM orders WHERE status = 'open' AND amount > 100",
    ),
    // Orders summed by customer before the join: the summed side's
    // arrangement carries accumulated values between processes.
    (
        "region_totals",
        "SELECT c.region, count(*) AS n, sum(o.amount) AS total \
         FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.region",
    ),
];

const PARAM_VIEW: &str =
    "SELECT o.id, o.amount FROM orders o JOIN customers c ON c.id = o.customer WHERE c.name = $name";

/// The rows Postgres has for the parameterized view with `$name` = `name`.
fn param_sql(name: &str) -> String {
    PARAM_VIEW.replace("$name", &format!("'{name}'"))
}

async fn wait_same(f: &mut Follower, db: &TestDb, name: &str, sql: &str, lsn: Lsn) {
    f.wait_for(lsn).await;
    assert_same(name, lsn, &f.rows, &db.oracle(sql).await);
}

/// The diff events of a stream: (LSN, changes), as a subscriber sees them.
fn diffs(f: &Follower, from: usize) -> Vec<(Option<Lsn>, String)> {
    f.diffs_since(from)
        .into_iter()
        .map(|e| (e.lsn, e.data["changes"].to_string()))
        .collect()
}

/// A cluster of two processes over `db` serving `VIEWS` and the
/// parameterized view `mine`: (process 0, process 1, the hosts file, the
/// queries directory, the directory to remove).
struct Started {
    p0: Proc,
    p1: Proc,
    hosts: String,
    queries: String,
    dir: PathBuf,
}

async fn start_cluster(db: &TestDb, name: &str) -> Started {
    db.exec(SCHEMA).await;
    let dir = std::env::temp_dir().join(format!("viewcast-cluster-{name}-{}", std::process::id()));
    let queries = dir.join("queries");
    std::fs::create_dir_all(&queries).expect("queries dir");
    for (name, sql) in VIEWS {
        std::fs::write(queries.join(format!("{name}.sql")), sql).expect("view");
    }
    std::fs::write(queries.join("mine.sql"), PARAM_VIEW).expect("view");
    let hosts = dir.join("hosts.txt");
    std::fs::write(
        &hosts,
        format!(
            "# process 0 follows Postgres\n127.0.0.1:{}\n127.0.0.1:{}\n",
            free_port(),
            free_port()
        ),
    )
    .expect("hosts file");
    let hosts = hosts.to_str().expect("path").to_string();
    let queries = queries.to_str().expect("path").to_string();
    // The second process first: each waits for the other.
    let addr1 = format!("127.0.0.1:{}", free_port());
    let p1 = spawn(
        &dir,
        &["--cluster", &hosts, "--process", "1"],
        &addr1,
        "process1",
    );
    let addr0 = format!("127.0.0.1:{}", free_port());
    let p0 = spawn(
        &dir,
        &[
            "--pg",
            &db.conninfo,
            "--queries",
            &queries,
            "--cluster",
            &hosts,
            "--process",
            "0",
        ],
        &addr0,
        "process0",
    );
    p0.healthy(Duration::from_secs(120)).await;
    p1.healthy(Duration::from_secs(60)).await;
    Started {
        p0,
        p1,
        hosts,
        queries,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_serve_one_dataflow_with_identical_events() {
    let db = TestDb::new("cluster_two").await;
    let Started {
        mut p0,
        mut p1,
        hosts,
        queries,
        dir,
    } = start_cluster(&db, "two").await;
    let (addr0, addr1) = (p0.addr.clone(), p1.addr.clone());

    // Out of range: a clear error, before anything starts.
    let out = Command::new(env!("CARGO_BIN_EXE_viewcast"))
        .args(["serve", "--pg", &db.conninfo, "--queries", &queries])
        .args(["--cluster", &hosts, "--process", "2"])
        .output()
        .expect("run viewcast");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("out of range"), "{err}");
    // A process other than 0 needs no --pg; process 0 does.
    let out = Command::new(env!("CARGO_BIN_EXE_viewcast"))
        .args(["serve", "--queries", &queries])
        .args(["--cluster", &hosts, "--process", "0"])
        .env_remove("VIEWCAST_PG")
        .output()
        .expect("run viewcast");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pg"), "{err}");
    // Groups of views are for one process; each group needs a worker.
    for (args, says) in [
        (
            vec!["--cluster", &hosts, "--process", "1", "--view-groups", "2"],
            "a cluster runs every view on every worker",
        ),
        (
            vec!["--workers", "2", "--view-groups", "3"],
            "is more than the 2 workers",
        ),
        (vec!["--view-groups", "0"], "--view-groups"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_viewcast"))
            .args(["serve", "--pg", &db.conninfo, "--queries", &queries])
            .args(&args)
            .output()
            .expect("run viewcast");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // Each process serves every view, equal to Postgres from the start.
    let mut at0 = Vec::new();
    let mut at1 = Vec::new();
    for (name, _) in VIEWS {
        at0.push(Follower::new(&addr0, name).await);
        at1.push(Follower::new(&addr1, name).await);
    }
    // Parameter tuples opened at either process (one at both).
    let mut ann0 = Follower::at(&addr0, "/views/mine/sse?name=c7").await;
    let mut ann1 = Follower::at(&addr1, "/views/mine/sse?name=c7").await;
    let mut bob1 = Follower::at(&addr1, "/views/mine/sse?name=c12").await;
    let lsn = db.lsn().await;
    for (i, (name, sql)) in VIEWS.iter().enumerate() {
        wait_same(&mut at0[i], &db, name, sql, lsn).await;
        wait_same(&mut at1[i], &db, name, sql, lsn).await;
    }
    for (f, who) in [(&mut ann0, "c7"), (&mut ann1, "c7"), (&mut bob1, "c12")] {
        wait_same(f, &db, "mine", &param_sql(who), lsn).await;
    }
    let marks0: Vec<usize> = at0.iter().map(|f| f.events.len()).collect();
    let marks1: Vec<usize> = at1.iter().map(|f| f.events.len()).collect();

    // Transactions of every kind, some touching rows of both processes' workers.
    for round in 0..20 {
        let base = 10_000 + round * 10;
        db.exec(&format!(
            "BEGIN;
             INSERT INTO orders SELECT g, g % 40 + 1, (g % 300)::numeric, 'open'
                 FROM generate_series({base}, {base} + 9) g;
             UPDATE orders SET amount = amount + 1 WHERE id % 97 = {round};
             DELETE FROM orders WHERE id = {round} + 1;
             COMMIT;"
        ))
        .await;
        if round % 5 == 0 {
            db.exec(&format!(
                "UPDATE customers SET region = 'west' WHERE id = {}",
                round + 7
            ))
            .await;
        }
    }
    db.exec("UPDATE orders SET status = 'done' WHERE amount > 120")
        .await;
    db.exec("UPDATE customers SET name = 'c7' WHERE id = 30")
        .await;
    let lsn = db.lsn().await;
    for (i, (name, sql)) in VIEWS.iter().enumerate() {
        wait_same(&mut at0[i], &db, name, sql, lsn).await;
        wait_same(&mut at1[i], &db, name, sql, lsn).await;
        // The same diffs, at the same LSNs, in the same order.
        assert_eq!(
            diffs(&at0[i], marks0[i]),
            diffs(&at1[i], marks1[i]),
            "view {name}: the processes sent different events"
        );
        assert!(!diffs(&at0[i], marks0[i]).is_empty(), "view {name} moved");
    }
    for (f, who) in [(&mut ann0, "c7"), (&mut ann1, "c7"), (&mut bob1, "c12")] {
        wait_same(f, &db, "mine", &param_sql(who), lsn).await;
    }

    // The snapshot endpoint and the view list answer at the second process too.
    let (status, body) = viewcast::client::get(&addr1, "/views/large_open")
        .await
        .expect("GET");
    assert_eq!(status, 200, "{body}");
    let (status, body) = viewcast::client::get(&addr1, "/views").await.expect("GET");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("by_region") && body.contains("mine"),
        "{body}"
    );

    // Stopping process 0 stops the other one too.
    let pid = p0.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = p0.exits_within(Duration::from_secs(30)).await;
    assert!(status.success(), "process 0: {status}\n{}", p0.log());
    let status = p1.exits_within(Duration::from_secs(30)).await;
    assert!(status.success(), "process 1: {status}\n{}", p1.log());
    assert!(
        p1.log().contains("process 0 of the cluster stopped"),
        "{}",
        p1.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_process_ends_the_others_for_their_supervisor() {
    let db = TestDb::new("cluster_lost").await;
    let Started {
        mut p0,
        mut p1,
        dir,
        ..
    } = start_cluster(&db, "lost").await;
    let mut f = Follower::new(&p0.addr, "by_region").await;
    db.exec("INSERT INTO orders VALUES (99999, 3, 1, 'open')")
        .await;
    let lsn = db.lsn().await;
    wait_same(&mut f, &db, "by_region", VIEWS[0].1, lsn).await;
    // Killed, as by the OOM killer or a lost machine.
    p1.child.kill().expect("kill process 1");
    let _ = p1.child.wait();
    let status = p0.exits_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(70), "{}", p0.log());
    assert!(
        p0.log().contains("a process of the cluster was lost"),
        "{}",
        p0.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
