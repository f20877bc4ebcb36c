//! TLS on both connections, against a cluster of its own whose pg_hba.conf
//! has only `hostssl` lines: a connection that quietly fell back to plaintext
//! would be refused, so every stream seen here went over TLS.
//!
//! Certificates are made by rcgen at test time: a server CA and a server
//! certificate for `localhost` and 127.0.0.1, a client CA and a certificate
//! for the `cert`-authenticated user, and an unrelated CA that must be refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use viewcast::pg::embedded::EmbeddedPostgres;
use viewcast::pg::PgConfig;

use crate::support::{TestDb, TestServer};

const DB: &str = "t_tls";
const VIEW: (&str, &str) = ("v", "SELECT id FROM t");

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate with these subject alternative names (IP addresses
    /// become IP SANs) and common name: (certificate PEM, key PEM).
    fn issue(&self, sans: &[&str], cn: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write_private(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path.to_string_lossy().into_owned()
}

/// The cluster, serving TLS with `server_cert` and only over hostssl.
fn configure(pg: &EmbeddedPostgres, server_ca: &Ca, client_ca: &Ca, sans: &[&str]) {
    let (cert, key) = server_ca.issue(sans, "viewcast test server");
    // The chain up to the CA, as servers usually send it.
    let chain = format!("{cert}{}", server_ca.pem());
    pg.write_data_file("server.crt", chain.as_bytes(), 0o644)
        .unwrap();
    pg.write_data_file("server.key", key.as_bytes(), 0o600)
        .unwrap();
    pg.write_data_file("client_ca.crt", client_ca.pem().as_bytes(), 0o644)
        .unwrap();
}

/// Opens a TLS SQL connection the way viewcast does.
async fn sql(conninfo: &str) -> tokio_postgres::Client {
    let cfg = PgConfig::parse(conninfo).unwrap_or_else(|e| panic!("{conninfo}: {e}"));
    viewcast::pg::connect_sql(&cfg)
        .await
        .unwrap_or_else(|e| panic!("{conninfo}: {e}"))
}

/// Starts viewcast on `conninfo`, follows the view, commits a row and sees
/// it arrive as a diff.
async fn streams(admin: &str, conninfo: &str, id: i32) {
    let db = TestDb {
        conninfo: conninfo.to_string(),
        client: sql(admin).await,
    };
    let server = TestServer::start(&db, &[VIEW]).await;
    let mut f = server.follow("v").await;
    let before = f.rows.len();
    db.exec(&format!("INSERT INTO t VALUES ({id})")).await;
    let lsn = db.lsn().await;
    f.wait_for(lsn).await;
    assert_eq!(f.rows.len(), before + 1, "{conninfo}");
    assert!(
        f.diffs_since(0)
            .iter()
            .any(|d| d.data.to_string().contains(&id.to_string())),
        "{conninfo}: the insert arrives as a diff"
    );
    // The walsender serving viewcast runs over TLS.
    let walsenders: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.backend_type = 'walsender' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(walsenders >= 1, "{conninfo}: replication over TLS");
    server.stop().await;
}

/// Starts viewcast on `conninfo`, which must fail: the error text.
async fn refused(conninfo: &str, queries: &Path) -> String {
    let config = viewcast::config::Config {
        pg: conninfo.to_string(),
        queries: queries.to_path_buf(),
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
    let started = Instant::now();
    let err = match viewcast::server::start(config).await {
        Ok(running) => {
            running.stop().await;
            panic!("{conninfo}: viewcast started");
        }
        Err(e) => e.to_string(),
    };
    eprintln!("refused as expected: {err}");
    // A definite error is reported at once, not after startup's patience for
    // a server that is still coming up.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{conninfo}: refused only after {:?}",
        started.elapsed()
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes() {
    let mut pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .unwrap()
        .expect("start a throwaway PostgreSQL");
    let port = pg.port;
    let plain = format!("host=127.0.0.1 port={port} user=postgres");
    // Set up while the cluster still takes plaintext.
    let setup = crate::support::connect(&format!("{plain} dbname=postgres")).await;
    setup
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .unwrap();
    setup
        .batch_execute(
            "CREATE ROLE certuser LOGIN SUPERUSER;
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE scram_tls LOGIN SUPERUSER PASSWORD 'tls secret';",
        )
        .await
        .unwrap();
    drop(setup);
    let t = crate::support::connect(&format!("{plain} dbname={DB}")).await;
    t.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    drop(t);

    let server_ca = Ca::new("viewcast test server CA");
    let client_ca = Ca::new("viewcast test client CA");
    let wrong_ca = Ca::new("some other CA");
    configure(&pg, &server_ca, &client_ca, &["localhost", "127.0.0.1"]);
    pg.append_conf(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'client_ca.crt'",
    )
    .unwrap();
    let hba = "local all all trust\n\
               hostssl all,replication certuser 127.0.0.1/32 cert\n\
               hostssl all,replication scram_tls 127.0.0.1/32 scram-sha-256\n\
               hostssl all,replication all 127.0.0.1/32 trust\n";
    pg.write_data_file("pg_hba.conf", hba.as_bytes(), 0o600)
        .unwrap();
    let mut pg = tokio::task::spawn_blocking(move || pg.restart().map(|_| pg))
        .await
        .unwrap()
        .expect("restart with TLS");

    let dir = std::env::temp_dir().join(format!("viewcast-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = write_private(&dir, "ca.pem", &server_ca.pem());
    let wrong = write_private(&dir, "wrong_ca.pem", &wrong_ca.pem());
    let (client_cert, client_key) = client_ca.issue(&[], "certuser");
    let client_cert = write_private(&dir, "certuser.crt", &client_cert);
    let client_key = write_private(&dir, "certuser.key", &client_key);
    let queries: PathBuf = dir.join("queries");
    std::fs::create_dir_all(&queries).unwrap();
    std::fs::write(queries.join("v.sql"), VIEW.1).unwrap();

    let on = |host: &str, extra: &str| {
        format!("host={host} port={port} user=postgres dbname={DB} {extra}")
    };
    let admin = on("127.0.0.1", "sslmode=require");

    // Encryption without verification, and prefer, which must take TLS here.
    streams(&admin, &on("127.0.0.1", "sslmode=require"), 2).await;
    streams(&admin, &on("127.0.0.1", ""), 3).await;
    // The chain against the right CA, with and without the name.
    streams(
        &admin,
        &on("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={ca}")),
        4,
    )
    .await;
    streams(
        &admin,
        &on(
            "localhost",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        5,
    )
    .await;
    // An IP address host matches the certificate's IP SAN.
    streams(
        &admin,
        &on(
            "127.0.0.1",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        6,
    )
    .await;
    // The URL form, percent-encoded query parameters included.
    let url = format!(
        "postgresql://postgres@localhost:{port}/{DB}?sslmode=verify-full&sslrootcert={}",
        ca.replace('/', "%2F")
    );
    streams(&admin, &url, 7).await;
    // Client certificate authentication, on both connections.
    streams(
        &admin,
        &format!(
            "host=localhost port={port} user=certuser dbname={DB} sslmode=verify-full \
             sslrootcert={ca} sslcert={client_cert} sslkey={client_key}"
        ),
        8,
    )
    .await;
    // SCRAM bound to the TLS session: channel_binding=require refuses to go without.
    streams(
        &admin,
        &format!(
            "host=127.0.0.1 port={port} user=scram_tls password='tls secret' dbname={DB} \
             sslmode=require channel_binding=require"
        ),
        9,
    )
    .await;

    // A name the certificate does not carry, connecting by address.
    let err = refused(
        &on(
            "wrongname",
            &format!("hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}"),
        ),
        &queries,
    )
    .await;
    assert!(
        err.contains("sslmode=verify-full")
            && err.contains("certificate not valid for name \"wrongname\""),
        "{err}"
    );
    // Another CA's certificate is no good, and startup says so at once.
    let err = refused(
        &on(
            "127.0.0.1",
            &format!("sslmode=verify-ca sslrootcert={wrong}"),
        ),
        &queries,
    )
    .await;
    assert!(
        err.contains("sslmode=verify-ca") && err.contains("not signed by a trusted root"),
        "{err}"
    );
    // Plaintext meets the hostssl-only pg_hba.conf.
    let err = refused(&on("127.0.0.1", "sslmode=disable"), &queries).await;
    assert!(
        err.contains("no pg_hba.conf entry") && err.contains("no encryption"),
        "{err}"
    );
    // The cert user without a certificate is refused by the server.
    let err = refused(
        &format!("host=127.0.0.1 port={port} user=certuser dbname={DB} sslmode=require"),
        &queries,
    )
    .await;
    assert!(err.contains("certificate"), "{err}");

    // A server certificate without the IP SAN: verify-full by address fails,
    // verify-ca (no name check) still works.
    configure(&pg, &server_ca, &client_ca, &["localhost"]);
    let pg_restarted = tokio::task::spawn_blocking(move || pg.restart().map(|_| pg))
        .await
        .unwrap()
        .expect("restart with the new certificate");
    pg = pg_restarted;
    let err = refused(
        &on(
            "127.0.0.1",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        &queries,
    )
    .await;
    assert!(
        err.contains("sslmode=verify-full")
            && err.contains("certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
    streams(
        &admin,
        &on("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={ca}")),
        10,
    )
    .await;

    let _ = std::fs::remove_dir_all(&dir);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
