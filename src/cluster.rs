//! Cluster mode: one dataflow across several processes, on timely's own
//! cluster communication (`viewcast serve --cluster hosts.txt --process N`).
//!
//! ```text
//!  process 0 (leader)                         process 1.. (followers)
//!  source ─▶ controller ─Command─▶ workers ◀─timely TCP─▶ workers
//!                │                  │  ▲ commands, registry ops ──▶ │
//!                ▼                  │  └── tuple requests ◀──────── │
//!            registry ◀─outputs─────┘         registry ◀─outputs────┘
//!                ▲                                    ▲
//!              HTTP                                  HTTP
//! ```
//! Process 0 follows Postgres (one slot) and decides everything, as a single
//! process does. Its first worker forwards every command, in order, to every
//! worker of the other processes, which build the same dataflows. The rows
//! enter at process 0's workers and timely exchanges them by key to the
//! worker that owns them, wherever it runs. Every view's output goes to the
//! first worker of every process, which releases it to its own registry when
//! the (global) frontier passes it: each process serves HTTP subscribers the
//! same events. What the leader's controller does to its registry (a view
//! declared, attached, refused, failing; health) travels with the commands
//! as [`Mirror`] operations and is done to each follower's registry at the
//! same point of the stream. Parameter tuples a follower's subscribers need
//! go back to process 0, which adds each tuple once however many processes
//! hold it open.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::repr::{Row, Type};

/// Where this process stands in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `host:port` of each process's dataflow communication, in process order.
    pub hosts: Vec<String>,
    /// This process's index in `hosts`; 0 follows Postgres.
    pub process: usize,
}

impl Cluster {
    /// Reads a hosts file (one `host:port` per line, in process order; blank
    /// lines and `#` comments ignored) and checks `process` against it.
    pub fn from_file(path: &Path, process: usize) -> Result<Cluster, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the cluster hosts file {}: {e}", path.display()))?;
        Cluster::parse(&text, process).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, process: usize) -> Result<Cluster, String> {
        let mut hosts = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let valid = line
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid || line.contains(char::is_whitespace) {
                return Err(format!(
                    "line {}: expected host:port, found {line:?}",
                    n + 1
                ));
            }
            if hosts.iter().any(|h| h == line) {
                return Err(format!("line {}: {line} is listed twice", n + 1));
            }
            hosts.push(line.to_string());
        }
        if hosts.is_empty() {
            return Err("no host:port lines".into());
        }
        if process >= hosts.len() {
            return Err(format!(
                "--process {process} is out of range: the file lists {} processes (0 to {})",
                hosts.len(),
                hosts.len() - 1
            ));
        }
        Ok(Cluster { hosts, process })
    }

    pub fn processes(&self) -> usize {
        self.hosts.len()
    }

    /// Process 0 follows Postgres and decides; the others follow it.
    pub fn is_leader(&self) -> bool {
        self.process == 0
    }
}

/// A view's definition as it travels between processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireDef {
    pub sql: String,
    pub columns: Vec<(String, Type)>,
    pub plan: String,
    /// name, type, from the token, `->>`.
    pub params: Vec<(String, Type, bool, bool)>,
}

/// The source's state as it travels between processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireHealth {
    Starting,
    Streaming(u64),
    Reconnecting(String),
    Failed(String),
}

/// What the controller does to the registry, as a value: done to the
/// leader's registry at once and to every follower's at the same point of
/// the command stream, so every process's registry goes through the same
/// states in the same order relative to the views' outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Mirror {
    Declare {
        name: String,
    },
    Refuse {
        name: String,
        sql: String,
        error: String,
        detail: String,
    },
    Attach {
        name: String,
        def: WireDef,
        dataflow: usize,
    },
    Detach {
        dataflow: usize,
    },
    Remove {
        name: String,
        message: String,
    },
    /// The dataflow's readiness replaces subscribers' contents outright.
    ResetOnReady {
        dataflow: usize,
    },
    SetFault {
        name: String,
        fault: WireFault,
        message: Option<String>,
    },
    SetHealth(WireHealth),
    TuplesRequested {
        view: String,
        tuples: Vec<Row>,
        ticket: u64,
    },
    TuplesRetracted {
        view: String,
        tuples: Vec<Row>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum WireFault {
    Server,
    Table,
    Schema,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_files_are_read_strictly() {
        let c = Cluster::parse("# two processes\n10.0.0.1:2101\n\n10.0.0.2:2101 # b\n", 1)
            .expect("valid");
        assert_eq!(c.hosts, vec!["10.0.0.1:2101", "10.0.0.2:2101"]);
        assert!(!c.is_leader());
        assert_eq!(c.processes(), 2);
        let e = Cluster::parse("a:1\nb:2\n", 2).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        assert!(Cluster::parse("a:1\nb\n", 0)
            .unwrap_err()
            .contains("line 2"));
        assert!(Cluster::parse("a:99999\n", 0).is_err());
        assert!(Cluster::parse("a:1\na:1\n", 0)
            .unwrap_err()
            .contains("twice"));
        assert!(Cluster::parse("\n# none\n", 0).is_err());
        assert!(Cluster::parse("[::1]:2101\n", 0).is_ok());
    }
}
