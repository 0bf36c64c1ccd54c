//! The engine clock: wall time live, event time in replay and rule tests, and a manual
//! clock in unit tests. Everything that asks "what time is it" asks a [`Clock`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: replay's event time, and tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock() = t;
    }
    /// Moves forward to `t`; never backwards (event time only grows).
    pub fn advance_to(&self, t: DateTime<Utc>) {
        let mut now = self.0.lock();
        if t > *now {
            *now = t;
        }
    }
    pub fn advance(&self, d: chrono::Duration) {
        let mut now = self.0.lock();
        *now += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}
