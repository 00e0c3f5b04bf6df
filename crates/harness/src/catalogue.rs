//! A set of scenarios, passed around as a value: `sim`, the fuzzer and tests look scenarios up
//! in the catalogue they were given, so a downstream crate brings its own.

use crate::{PlantedBug, Scenario};

/// Makes a scenario from a name the catalogue does not list (a scenario over a user's files,
/// say, whose name says where they are), or answers `None`.
pub type Resolver = fn(&str) -> Option<&'static dyn Scenario>;

#[derive(Clone)]
pub struct Catalogue {
    scenarios: Vec<&'static dyn Scenario>,
    default: &'static str,
    resolver: Option<Resolver>,
}

impl Catalogue {
    /// The scenarios, in the order `sim --list` shows them; the first is the default.
    pub fn new(scenarios: Vec<&'static dyn Scenario>) -> Self {
        let default = scenarios.first().map_or("", |s| s.name());
        Catalogue {
            scenarios,
            default,
            resolver: None,
        }
    }

    /// Names the catalogue does not list are handed to `resolver` (replay files, sweep
    /// workers and every other lookup go through [`Catalogue::find`]).
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The scenario a run that names none gets.
    pub fn with_default(mut self, name: &'static str) -> Self {
        self.default = name;
        self
    }

    pub fn default_scenario(&self) -> &'static str {
        self.default
    }

    pub fn scenarios(&self) -> &[&'static dyn Scenario] {
        &self.scenarios
    }

    pub fn find(&self, name: &str) -> Option<&'static dyn Scenario> {
        self.scenarios
            .iter()
            .copied()
            .find(|s| s.name() == name)
            .or_else(|| self.resolver.and_then(|r| r(name)))
    }

    pub fn bugs(&self) -> impl Iterator<Item = &'static PlantedBug> + '_ {
        self.scenarios.iter().flat_map(|s| s.bugs().iter())
    }

    pub fn find_bug(&self, name: &str) -> Option<&'static PlantedBug> {
        self.bugs().find(|b| b.name == name)
    }

    /// Names are unique, and every bug belongs to a scenario of this catalogue that lists it.
    pub fn check_consistent(&self) -> Result<(), String> {
        let mut names: Vec<_> = self.scenarios.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("scenario '{}' is in the catalogue twice", w[0]));
        }
        if !self.scenarios.is_empty() && self.find(self.default).is_none() {
            return Err(format!(
                "default scenario '{}' is not in the catalogue",
                self.default
            ));
        }
        for bug in self.bugs() {
            let owner = self
                .find(bug.scenario)
                .is_some_and(|s| s.bugs().iter().any(|b| b.name == bug.name));
            if !owner {
                return Err(format!(
                    "planted bug '{}' names scenario '{}', which does not list it",
                    bug.name, bug.scenario
                ));
            }
        }
        Ok(())
    }
}
