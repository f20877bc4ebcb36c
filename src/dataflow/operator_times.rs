//! A developer's view of where a worker's time goes, operator by operator:
//! with `VIEWCAST_OPERATOR_TIMES` set, each worker logs (at `info`, every
//! 5 s) the operators it spent most time in over that window (25, or as
//! many as the variable says if it is a number above 1), with how
//! often each was scheduled and the dataflow it belongs to (`table N`,
//! `view N`), and how many times the worker parked. A dataflow's own line
//! includes the time of the operators inside it.
//!
//! It reads timely's schedule events, which cost a clock reading per
//! operator run, so it is off unless asked for.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use timely::logging::{ParkEvent, StartStop, TimelyEvent, TimelyEventBuilder};

/// How often the totals are logged and reset.
const WINDOW: Duration = Duration::from_secs(5);
/// Operators logged per window, unless `VIEWCAST_OPERATOR_TIMES` is a
/// number (of operators).
const TOP: usize = 25;

#[derive(Default)]
struct Totals {
    /// Operator id → its address (dataflow first) and name.
    names: HashMap<usize, (Vec<usize>, String)>,
    /// Dataflow index → its name.
    dataflows: HashMap<usize, String>,
    started: HashMap<usize, Duration>,
    spent: HashMap<usize, (Duration, u64)>,
    parks: u64,
    logged_at: Duration,
    top: usize,
}

pub fn install(worker: &mut timely::worker::Worker) {
    let Some(setting) = std::env::var_os("VIEWCAST_OPERATOR_TIMES") else {
        return;
    };
    let top = operators_logged(&setting);
    let index = worker.index();
    let Some(mut register) = worker.log_register() else {
        return;
    };
    let totals = Rc::new(RefCell::new(Totals {
        top,
        ..Totals::default()
    }));
    register.insert::<TimelyEventBuilder, _>(
        "timely",
        move |now, events: &mut Option<Vec<(Duration, TimelyEvent)>>| {
            let mut t = totals.borrow_mut();
            for (at, event) in events.iter().flatten() {
                t.record(*at, event);
            }
            if *now >= t.logged_at + WINDOW {
                t.logged_at = *now;
                t.log(index);
            }
        },
    );
}

/// How many operators a window's log lists, given the variable's value:
/// `1` (or any other non-number) turns the log on with the default count.
fn operators_logged(setting: &std::ffi::OsStr) -> usize {
    setting
        .to_str()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 1)
        .unwrap_or(TOP)
}

impl Totals {
    fn record(&mut self, at: Duration, event: &TimelyEvent) {
        match event {
            TimelyEvent::Operates(o) => {
                if o.addr.len() == 1 {
                    self.dataflows.insert(o.addr[0], o.name.clone());
                }
                self.names.insert(o.id, (o.addr.clone(), o.name.clone()));
            }
            TimelyEvent::Schedule(s) => match s.start_stop {
                StartStop::Start => {
                    self.started.insert(s.id, at);
                }
                StartStop::Stop => {
                    if let Some(start) = self.started.remove(&s.id) {
                        let e = self.spent.entry(s.id).or_default();
                        e.0 += at.saturating_sub(start);
                        e.1 += 1;
                    }
                }
            },
            TimelyEvent::Park(ParkEvent::Park(_)) => self.parks += 1,
            _ => {}
        }
    }

    /// The operators that took longest since the last call, longest first:
    /// (dataflow, operator, time, runs).
    fn take_top(&mut self, n: usize) -> Vec<(String, String, Duration, u64)> {
        let mut spent: Vec<(usize, (Duration, u64))> = self.spent.drain().collect();
        spent.sort_by_key(|(_, (time, _))| std::cmp::Reverse(*time));
        spent
            .into_iter()
            .take(n)
            .map(|(id, (time, runs))| {
                let (addr, name) = self.names.get(&id).cloned().unwrap_or_default();
                let dataflow = addr
                    .first()
                    .and_then(|d| self.dataflows.get(d))
                    .cloned()
                    .unwrap_or_default();
                (dataflow, name, time, runs)
            })
            .collect()
    }

    fn log(&mut self, worker: usize) {
        tracing::info!(
            worker,
            parks = self.parks,
            "operator times over the last {WINDOW:?}"
        );
        for (dataflow, operator, time, runs) in self.take_top(self.top) {
            tracing::info!(
                worker,
                ms = format!("{:.1}", time.as_secs_f64() * 1e3),
                runs,
                dataflow,
                operator,
            );
        }
        self.parks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::logging::{OperatesEvent, ScheduleEvent};

    #[test]
    fn the_variable_turns_the_log_on_and_may_say_how_many_operators() {
        for (value, logged) in [
            ("1", TOP),
            ("yes", TOP),
            ("", TOP),
            ("0", TOP),
            ("400", 400),
        ] {
            assert_eq!(
                operators_logged(std::ffi::OsStr::new(value)),
                logged,
                "{value:?}"
            );
        }
    }

    #[test]
    fn time_between_start_and_stop_adds_up_per_operator_and_resets() {
        let mut t = Totals::default();
        let ms = Duration::from_millis;
        let operates = |id, addr: Vec<usize>, name: &str| {
            TimelyEvent::Operates(OperatesEvent {
                id,
                addr,
                name: name.into(),
            })
        };
        let run = |id, start_stop| TimelyEvent::Schedule(ScheduleEvent { id, start_stop });
        t.record(ms(0), &operates(1, vec![3], "view 7"));
        t.record(ms(0), &operates(2, vec![3, 4], "Join"));
        t.record(ms(0), &operates(5, vec![3, 5], "Reduce"));
        for (start, stop) in [(10, 13), (20, 24)] {
            t.record(ms(start), &run(2, StartStop::Start));
            t.record(ms(stop), &run(2, StartStop::Stop));
        }
        t.record(ms(30), &run(5, StartStop::Start));
        t.record(ms(31), &run(5, StartStop::Stop));
        // A stop without its start (logging began mid-run) counts nothing.
        t.record(ms(40), &run(1, StartStop::Stop));
        let top = t.take_top(10);
        assert_eq!(
            top,
            vec![
                ("view 7".to_string(), "Join".to_string(), ms(7), 2),
                ("view 7".to_string(), "Reduce".to_string(), ms(1), 1),
            ]
        );
        assert_eq!(t.take_top(10), vec![]);
    }
}
