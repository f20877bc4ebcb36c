//! A throwaway PostgreSQL cluster from the local server binaries, for `demo`,
//! the tests and the benchmarks: `initdb` into a temporary directory, logical
//! WAL, a free port on 127.0.0.1, removed again on drop.
//!
//! `initdb` refuses to run as root, so as root the binaries run as the
//! `postgres` OS user (via `runuser`) and the directory is owned by it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How `pg_ctl stop` shuts a server down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Waits for every client session to end.
    Smart,
    /// Ends sessions, writes a checkpoint (what a routine restart does).
    Fast,
    /// Aborts at once, as a crash would; recovery replays WAL at start.
    Immediate,
}

impl ShutdownMode {
    fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Smart => "smart",
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

/// How a new cluster is set up: its default TimeZone, DateStyle and
/// locale. The default is what viewcast's own tests assume (UTC, ISO, the C
/// collation of C.UTF-8); the others let a test see the differences a
/// role's zone and a real collation make.
#[derive(Clone, Debug)]
pub struct Options {
    /// `timezone` in postgresql.conf.
    pub timezone: String,
    /// `datestyle` in postgresql.conf (`None`: initdb's `ISO, MDY`).
    pub datestyle: Option<String>,
    /// initdb's `--locale` (libc; must exist on the machine: `locale -a`).
    pub locale: String,
    /// With `Some`, the default collation is this ICU locale (`en-US`):
    /// initdb's `--locale-provider=icu --icu-locale`, which needs no
    /// operating-system locale.
    pub icu_locale: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timezone: "UTC".into(),
            datestyle: None,
            locale: "C.UTF-8".into(),
            icu_locale: None,
        }
    }
}

pub struct EmbeddedPostgres {
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<String>,
    pub port: u16,
    running: bool,
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `VIEWCAST_PG_BIN`, or
/// the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("VIEWCAST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL server binaries not found: install them (e.g. apt-get install postgresql-15) or set VIEWCAST_PG_BIN".to_string())?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin; set VIEWCAST_PG_BIN".to_string())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl EmbeddedPostgres {
    /// Creates and starts a new cluster. Blocking; takes a few seconds.
    pub fn start() -> Result<EmbeddedPostgres, String> {
        Self::start_with(Options::default())
    }

    /// [`EmbeddedPostgres::start`] with another zone, DateStyle or locale.
    pub fn start_with(options: Options) -> Result<EmbeddedPostgres, String> {
        let bin = find_bin_dir()?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("viewcast-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let run_as = is_root().then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .arg("-R")
                .arg(user)
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!(
                    "running as root: could not chown {} to the {user} user (does it exist?)",
                    dir.display()
                ));
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut pg = EmbeddedPostgres {
            dir,
            bin,
            run_as,
            port,
            running: false,
        };
        let data = pg.data_dir();
        let locale = format!("--locale={}", options.locale);
        let mut args = vec![
            "-D",
            path_str(&data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            locale.as_str(),
            "--no-sync",
        ];
        let icu = options
            .icu_locale
            .as_ref()
            .map(|l| format!("--icu-locale={l}"));
        if let Some(icu) = &icu {
            args.extend(["--locale-provider=icu", icu.as_str()]);
        }
        pg.run("initdb", &args)?;
        let mut conf = format!(
            "\nwal_level = logical\nmax_wal_senders = 64\nmax_replication_slots = 64\nmax_connections = 200\n\
             listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\ntimezone = '{}'\nlog_min_messages = warning\n",
            path_str(&pg.dir),
            options.timezone.replace('\'', "''"),
        );
        if let Some(style) = &options.datestyle {
            conf.push_str(&format!("datestyle = '{}'\n", style.replace('\'', "''")));
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path)
            .map_err(|e| format!("read postgresql.conf: {e}"))?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).map_err(|e| format!("write postgresql.conf: {e}"))?;
        pg.start_server()?;
        pg.running = true;
        Ok(pg)
    }

    fn start_server(&self) -> Result<(), String> {
        let log = self.dir.join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data_dir()),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// The cluster's data directory (postgresql.conf, pg_hba.conf, ...).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes `name` into the data directory, owned by the server's OS user
    /// and with permissions `mode` (the server refuses a private key that
    /// others can read). For certificates, keys and pg_hba.conf.
    pub fn write_data_file(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<PathBuf, String> {
        let path = self.data_dir().join(name);
        std::fs::write(&path, contents).map_err(|e| format!("write {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        }
        if let Some(user) = &self.run_as {
            let ok = Command::new("chown")
                .arg(user)
                .arg(&path)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!("chown {} to {user} failed", path.display()));
            }
        }
        Ok(path)
    }

    /// Appends settings to postgresql.conf; they take effect at the next
    /// [`EmbeddedPostgres::restart`].
    pub fn append_conf(&self, lines: &str) -> Result<(), String> {
        let path = self.data_dir().join("postgresql.conf");
        let mut conf =
            std::fs::read_to_string(&path).map_err(|e| format!("read postgresql.conf: {e}"))?;
        conf.push('\n');
        conf.push_str(lines);
        conf.push('\n');
        std::fs::write(&path, conf).map_err(|e| format!("write postgresql.conf: {e}"))
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {}: {e}", exe.display()))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            return Err(format!(
                "{program} failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        Ok(())
    }

    /// A conninfo for database `db` as the `postgres` superuser.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// Stops the server immediately (as a crash would), keeping the data.
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop_with(ShutdownMode::Immediate)
    }

    /// Stops the server the way `pg_ctl stop -m <mode>` does, keeping the data.
    pub fn stop_with(&mut self, mode: ShutdownMode) -> Result<(), String> {
        if self.running {
            self.running = false;
            self.run(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&self.data_dir()),
                    "-m",
                    mode.as_str(),
                    "-t",
                    "120",
                    "-w",
                    "stop",
                ],
            )?;
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&mut self) -> Result<(), String> {
        if !self.running {
            self.start_server()?;
            self.running = true;
        }
        Ok(())
    }

    /// Stops the server immediately and starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.restart_with(ShutdownMode::Immediate)
    }

    /// `pg_ctl restart -m <mode>`: stops the server that way, starts it again.
    pub fn restart_with(&mut self, mode: ShutdownMode) -> Result<(), String> {
        self.stop_with(mode)?;
        self.start_again()
    }

    /// Leaves the cluster running for the rest of this process's life: a small
    /// watchdog process stops it and removes its directory once the process
    /// exits, however it exits. For test binaries, whose statics never drop.
    pub fn stop_when_process_exits(mut self) -> Result<(), String> {
        let pid = std::process::id();
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!(
                "runuser -u {user} -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data_dir().display()
            ),
            None => format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data_dir().display()
            ),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {}",
            self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start cleanup watchdog: {e}"))?;
        self.running = false;
        self.dir = PathBuf::new();
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
