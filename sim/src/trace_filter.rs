//! `--trace-filter`: which trace lines to show, by actor and by event kind.
//!
//! A filter is terms separated by commas, each `actor=A|B|...` or `event=E|F|...`. An actor
//! matches itself and its sub-actors (`vcpu0` matches `vcpu0/recv3` and `vcpu0.sb`); an event
//! matches exactly. Terms of one key are alternatives; different keys must all match:
//! `--trace-filter actor=vcpu0|monitor,event=park|wake|halt|irq|deliver`.

use crate::exit::UsageError;

#[derive(Clone, Debug, Default)]
pub struct TraceFilter {
    actors: Vec<String>,
    events: Vec<String>,
}

/// The actor and event of a trace line (`t=<ns> <actor> <event> ...`).
pub fn actor_and_event(line: &str) -> Option<(&str, &str)> {
    let mut words = line.splitn(4, ' ');
    let _time = words.next()?;
    Some((words.next()?, words.next()?))
}

impl TraceFilter {
    pub fn parse(spec: &str) -> Result<Self, UsageError> {
        let mut f = TraceFilter::default();
        for term in spec.split(',').filter(|t| !t.trim().is_empty()) {
            let (key, values) = term.split_once('=').ok_or_else(|| {
                UsageError(format!(
                    "--trace-filter term '{term}' is not actor=NAME[|NAME] or event=KIND[|KIND]"
                ))
            })?;
            let values: Vec<String> = values
                .split('|')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect();
            if values.is_empty() {
                return Err(UsageError(format!(
                    "--trace-filter term '{term}' names no {key}"
                )));
            }
            match key.trim() {
                "actor" => f.actors.extend(values),
                "event" => f.events.extend(values),
                other => {
                    return Err(UsageError(format!(
                        "--trace-filter key '{other}' is not actor or event"
                    )));
                }
            }
        }
        Ok(f)
    }

    pub fn keeps(&self, line: &str) -> bool {
        let Some((actor, event)) = actor_and_event(line) else {
            return self.actors.is_empty() && self.events.is_empty();
        };
        let actor_ok = self.actors.is_empty()
            || self.actors.iter().any(|a| {
                actor == a
                    || actor
                        .strip_prefix(a.as_str())
                        .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('.'))
            });
        let event_ok = self.events.is_empty() || self.events.iter().any(|e| e == event);
        actor_ok && event_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_actor_family_and_event() {
        let f = TraceFilter::parse("actor=vcpu0|monitor,event=park|wake").expect("parses");
        assert!(f.keeps("t=5 vcpu0/recv3 park irq0 ticket=1"));
        assert!(f.keeps("t=5 monitor wake db2 count=1"));
        assert!(!f.keeps("t=5 vcpu0/recv3 load shm.pipe3.h2g.write v=1 o=acq"));
        assert!(!f.keeps("t=5 relay1 park db2"));
        assert!(!f.keeps("t=5 vcpu01 park irq0"));
        assert!(f.keeps("t=5 vcpu0.sb park x"));
        assert!(TraceFilter::parse("who=x").is_err());
        assert!(TraceFilter::parse("actor").is_err());
        assert!(TraceFilter::parse("actor=").is_err());
    }
}
