//! The replication connection authenticates with SCRAM-SHA-256 and MD5
//! passwords (trust is what every other test uses), from conninfo and URL forms.
//!
//! It needs a server whose pg_hba.conf asks these users for passwords: the
//! shared cluster has those lines (tests/support); an external server named
//! by `VIEWCAST_TEST_PG` may not, and then the test starts a cluster of its own.

use std::sync::atomic::Ordering;

use viewcast::pg::embedded::EmbeddedPostgres;

use crate::support::{base_conninfo, TestDb, TestServer, HBA_WRITTEN};

/// The lines tests/support puts first in the shared cluster's pg_hba.conf.
const HBA: &str = "host all,replication scram_u 127.0.0.1/32 scram-sha-256\n\
                   host all,replication md5_u 127.0.0.1/32 md5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication() {
    let base = base_conninfo();
    if HBA_WRITTEN.load(Ordering::SeqCst) {
        authenticate(base).await;
        return;
    }
    println!("VIEWCAST_TEST_PG names a server whose pg_hba.conf this test cannot set: using a cluster of its own");
    let pg = tokio::task::spawn_blocking(|| {
        let pg = EmbeddedPostgres::start()?;
        let hba = pg.data_dir().join("pg_hba.conf");
        let original =
            std::fs::read_to_string(&hba).map_err(|e| format!("read pg_hba.conf: {e}"))?;
        pg.write_data_file("pg_hba.conf", format!("{HBA}{original}").as_bytes(), 0o600)?;
        Ok::<_, String>(pg)
    })
    .await
    .unwrap()
    .expect("own cluster");
    // authenticate() reloads the configuration before it logs in.
    authenticate(&format!("host=127.0.0.1 port={} user=postgres", pg.port)).await;
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

/// Logs in with each method on the server `base` (a conninfo without dbname)
/// and follows a view through it; a wrong password is refused at startup.
async fn authenticate(base: &str) {
    let admin = TestDb::on(&format!("{base} dbname=postgres")).await;
    admin
        .exec(
            "DROP ROLE IF EXISTS scram_u; DROP ROLE IF EXISTS md5_u;
             SELECT pg_reload_conf();
             SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_u LOGIN REPLICATION PASSWORD 'p@ss word';
             SET password_encryption = 'md5'; CREATE ROLE md5_u LOGIN REPLICATION PASSWORD 'md5pass';",
        )
        .await;
    let port = base
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .expect("port in base conninfo");
    for (user, conninfo) in [
        (
            "scram_u",
            format!("postgres://scram_u:p%40ss%20word@127.0.0.1:{port}/t_auth_scram"),
        ),
        (
            "md5_u",
            format!("host=127.0.0.1 port={port} user=md5_u password=md5pass dbname=t_auth_md5"),
        ),
    ] {
        let db_name = if user == "scram_u" {
            "t_auth_scram"
        } else {
            "t_auth_md5"
        };
        admin
            .exec(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .await;
        admin
            .exec(&format!("CREATE DATABASE {db_name} OWNER {user}"))
            .await;
        let db = TestDb::on(&conninfo).await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
            .await;
        let server = TestServer::start(&db, &[("v", "SELECT id FROM t")]).await;
        let mut f = server.follow("v").await;
        db.exec("INSERT INTO t VALUES (3)").await;
        f.wait_for(db.lsn().await).await;
        assert_eq!(f.rows.len(), 3, "{user}");
        server.stop().await;
    }
    // A wrong password is refused at startup with Postgres's own message.
    let bad = format!("host=127.0.0.1 port={port} user=scram_u password=nope dbname=t_auth_scram");
    let dir = std::env::temp_dir().join(format!("viewcast-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = viewcast::config::Config {
        pg: bad,
        queries: dir.clone(),
        listen: "127.0.0.1:0".into(),
        workers: 1,
        view_groups: 1,
        publication: "viewcast".into(),
        timeouts: Default::default(),
        auth: None,
        cluster: None,
        merge_after: viewcast::config::DEFAULT_MERGE_AFTER,
        linger: std::time::Duration::ZERO,
    };
    let err = viewcast::server::start(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
