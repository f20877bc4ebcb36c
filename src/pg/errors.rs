//! What a failure talking to Postgres means, decided in one place.
//!
//! Every error the source meets is either
//! - **transient**: the server went away or is busy (a restart, a dropped or
//!   silent connection, too many connections). The source reconnects with a
//!   short backoff; subscribers see no gap and no error, only a pause.
//! - **definite**: something an operator has to fix (a password, a revoked
//!   permission, `wal_level`, a dropped table, a value viewcast cannot read).
//!   The affected views fail with the cause, `/healthz` reports it, and the
//!   source retries on a slower schedule so the server heals by itself once
//!   the cause is fixed. The process never exits over it.
//!
//! A definite error also has a scope: the whole server (nothing can be read)
//! or one table (only the views that read it fail).
//! SQLSTATE classes: PostgreSQL docs, appendix A "PostgreSQL Error Codes".

use std::time::Duration;

/// How a failure is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Retry soon; nobody needs to be told.
    Transient,
    /// Tell the affected views and retry slowly.
    Definite,
}

/// First wait before reconnecting after a transient failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts after transient failures: a
/// restart of a few seconds is caught within a few seconds, and a server gone
/// for minutes is asked at most this often.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Wait between attempts while a definite failure persists: slow enough not
/// to flood the server's log with the same error, quick enough that a fixed
/// cause (a restored grant, a recreated table) heals within half a minute.
pub const DEFINITE_RETRY: Duration = Duration::from_secs(15);

/// The class of an error Postgres reported with `sqlstate`.
pub fn classify_sqlstate(sqlstate: &str) -> Class {
    match sqlstate {
        // The database was dropped: nothing to reconnect to until recreated.
        "57P04" => Class::Definite,
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up or
        // shutting down), idle session timeout, query_canceled.
        s if s.starts_with("57") => Class::Transient,
        // connection_exception.
        s if s.starts_with("08") => Class::Transient,
        // insufficient_resources: too many connections, out of memory or disk,
        // all replication slots or WAL senders in use.
        s if s.starts_with("53") => Class::Transient,
        // serialization_failure, deadlock_detected.
        "40001" | "40P01" => Class::Transient,
        // object_in_use: a slot still active from a connection that is closing.
        "55006" => Class::Transient,
        // system_error (I/O) and internal errors during a restart.
        s if s.starts_with("58") || s == "XX000" => Class::Transient,
        // Everything else (authentication 28*, database missing 3D000,
        // privileges 42501, objects missing 42704 / 42P01, wal_level 55000,
        // bad data 22*) needs someone to act.
        _ => Class::Definite,
    }
}

/// The class of a `tokio_postgres` error: what Postgres said, or transient
/// for a connection that failed or closed without a word. (TLS verdicts come
/// as [`super::ConnectError::Tls`], classified there.)
pub fn classify_pg(e: &tokio_postgres::Error) -> Class {
    match e.code() {
        Some(code) => classify_sqlstate(code.code()),
        None => Class::Transient,
    }
}

/// Backoff for transient failures: doubles from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], with up to a quarter added at random so many servers do
/// not reconnect in lockstep after a shared outage.
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt after a failure of `class`.
    pub fn next(&mut self, class: Class) -> Duration {
        match class {
            Class::Definite => DEFINITE_RETRY,
            Class::Transient => {
                let base = self.next;
                self.next = (self.next * 2).min(MAX_BACKOFF);
                base + jitter(base / 4)
            }
        }
    }

    /// A session worked: the next failure starts from the first backoff again.
    pub fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

/// A pseudo-random duration below `max` (the clock's nanoseconds are random
/// enough to spread reconnections).
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let max = max.as_nanos() as u64;
    if max == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(nanos % max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_split_into_retry_and_report() {
        for transient in [
            "57P01", "57P02", "57P03", "08006", "53300", "53400", "55006",
        ] {
            assert_eq!(
                classify_sqlstate(transient),
                Class::Transient,
                "{transient}"
            );
        }
        for definite in [
            "28P01", "28000", "3D000", "42501", "42704", "42P01", "55000", "57P04", "22P02",
        ] {
            assert_eq!(classify_sqlstate(definite), Class::Definite, "{definite}");
        }
    }

    #[test]
    fn backoff_grows_to_a_bound_and_resets() {
        let mut b = Backoff::default();
        let first = b.next(Class::Transient);
        assert!(first >= FIRST_BACKOFF && first <= FIRST_BACKOFF * 5 / 4);
        for _ in 0..20 {
            assert!(b.next(Class::Transient) <= MAX_BACKOFF * 5 / 4);
        }
        assert_eq!(b.next(Class::Definite), DEFINITE_RETRY);
        b.reset();
        assert!(b.next(Class::Transient) <= FIRST_BACKOFF * 5 / 4);
    }
}
