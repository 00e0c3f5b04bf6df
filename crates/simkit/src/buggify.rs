//! Two-tier BUGGIFY, as in FoundationDB: the first time a site is reached in a run it is enabled
//! with p = 1/4 (memoized for the run); an enabled site then fires with p = 1/4 each time it is
//! reached. Both draws come from the decision source, so a run's buggify pattern replays with it.
//! Sites are keyed by their source location (`#[track_caller]`), like FDB's (file, line).

use crate::decision::DecisionSource;
use std::collections::BTreeMap;
use std::panic::Location;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SiteKey {
    pub file: &'static str,
    pub line: u32,
    pub column: u32,
}

impl SiteKey {
    pub fn of(location: &'static Location<'static>) -> Self {
        Self {
            file: location.file(),
            line: location.line(),
            column: location.column(),
        }
    }
}

impl std::fmt::Display for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the file name: the path prefix depends on where the workspace lives.
        let file = self.file.rsplit(['/', '\\']).next().unwrap_or(self.file);
        write!(f, "{file}:{}", self.line)
    }
}

#[derive(Default)]
pub struct Buggify {
    enabled: bool,
    sites: BTreeMap<SiteKey, bool>,
    fired: u64,
}

/// Outcome of reaching a site: whether it was newly enabled this time, and whether it fires.
pub struct BuggifyDraw {
    pub newly_enabled: bool,
    pub fires: bool,
}

impl Buggify {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn reach(&mut self, site: SiteKey, ds: &mut DecisionSource) -> BuggifyDraw {
        if !self.enabled {
            return BuggifyDraw {
                newly_enabled: false,
                fires: false,
            };
        }
        let mut newly_enabled = false;
        let active = *self.sites.entry(site).or_insert_with(|| {
            let on = ds.chance(1, 4);
            newly_enabled = on;
            on
        });
        let fires = active && ds.chance(1, 4);
        self.fired += u64::from(fires);
        BuggifyDraw {
            newly_enabled,
            fires,
        }
    }

    /// Sites enabled in this run, for the report.
    pub fn enabled_sites(&self) -> impl Iterator<Item = SiteKey> + '_ {
        self.sites.iter().filter(|(_, on)| **on).map(|(k, _)| *k)
    }

    pub fn fired(&self) -> u64 {
        self.fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> SiteKey {
        SiteKey::of(Location::caller())
    }

    #[test]
    fn rates_are_two_tier_quarter() {
        // Over many runs a site is enabled in ~1/4 of them, and an enabled site fires ~1/4 of reaches.
        let (mut enabled_runs, mut fires, mut reaches_enabled) = (0, 0, 0);
        for seed in 0..4000 {
            let mut ds = DecisionSource::seeded(seed);
            let mut b = Buggify::new(true);
            let site = here();
            let mut on = false;
            for _ in 0..20 {
                let d = b.reach(site, &mut ds);
                on |= d.newly_enabled;
                fires += u64::from(d.fires);
            }
            if on {
                enabled_runs += 1;
                reaches_enabled += 20;
            }
        }
        assert!(
            (850..1150).contains(&enabled_runs),
            "enabled in {enabled_runs} of 4000 runs"
        );
        let rate = fires as f64 / reaches_enabled as f64;
        assert!((0.22..0.28).contains(&rate), "fire rate {rate}");
    }

    #[test]
    fn disabled_buggify_draws_nothing() {
        let mut ds = DecisionSource::seeded(1);
        let mut b = Buggify::new(false);
        assert!(!b.reach(here(), &mut ds).fires);
        assert_eq!(ds.draws(), 0);
    }
}
