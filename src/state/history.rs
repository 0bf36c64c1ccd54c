//! Bounded history windows of numeric values (every metering sensor, counters, speed,
//! battery, GSM signal), sized by the longest window any rule uses. The rule helpers
//! (`delta`, `fuel_drop`, `fuel_rise`, `min_over`, `max_over`, `avg_over`) read them.
//!
//! Memory is the constraint (100,000 trackers with an hour of fuel history must fit in
//! well under 1 GiB), so a point is 8 bytes: seconds since the series' base as `u32` and
//! the value as `f32` (7 significant digits: 0.01 l on a 400 l tank). A run of equal
//! values keeps only its first and last point, and points closer than one second replace
//! each other.
//!
//! An `f32` read back as `f64` carries noise in the eighth digit (175.7 reads as
//! 175.69999694824219), which arithmetic then shows (a rise from 175.7 to 200.5 would be
//! 24.800003051757812). Every answer is therefore rounded to the precision the stored
//! values have: seven significant digits of the largest value it was computed from
//! ([`tidy`]), so `fuel_rise` says 24.8 when the input said 175.7 and 200.5.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// How much history a tracker keeps, and of what; derived from the rules: their longest
/// window, and the names their window helpers read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Points older than this (relative to the newest point) are dropped, but one point
    /// before the boundary is kept as the window's starting value. Zero disables history.
    pub retention: Duration,
    /// A hard cap per series, whatever the retention.
    pub max_points: usize,
    /// The series to keep; `None` keeps every numeric value. Rules that only read
    /// `fuel_drop("lls_level_1", ...)` need no speed history, and memory is the limit.
    pub only: Option<Arc<[Box<str>]>>,
}

impl HistoryPolicy {
    pub const DISABLED: HistoryPolicy = HistoryPolicy {
        retention: Duration::ZERO,
        max_points: 0,
        only: None,
    };

    /// Keeps `retention` of every series with a cap suited to one point per second or slower.
    pub fn for_window(retention: Duration) -> HistoryPolicy {
        HistoryPolicy {
            retention,
            max_points: (retention.as_secs() as usize).clamp(16, 4096),
            only: None,
        }
    }

    /// Keeps only the named series.
    pub fn only(mut self, names: impl IntoIterator<Item = impl Into<Box<str>>>) -> HistoryPolicy {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    pub fn enabled(&self) -> bool {
        !self.retention.is_zero() && self.max_points > 0
    }

    /// Whether the series `name` is kept at all.
    pub fn keeps(&self, name: &str) -> bool {
        self.enabled()
            && self
                .only
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| &**n == name))
    }
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        HistoryPolicy::for_window(Duration::from_secs(3600))
    }
}

/// A time-ordered series of (epoch ms, value) points, stored compactly.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Epoch seconds that point offsets count from.
    base_s: i64,
    points: VecDeque<(u32, f32)>,
}

impl Series {
    fn decode(&self, p: (u32, f32)) -> (i64, f64) {
        ((self.base_s + i64::from(p.0)) * 1000, f64::from(p.1))
    }

    /// All points, oldest first, as (epoch ms, value).
    pub fn points(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.points.iter().map(|p| {
            let (t, v) = self.decode(*p);
            (t, tidy(v, v))
        })
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn latest(&self) -> Option<(i64, f64)> {
        self.points.back().map(|p| {
            let (t, v) = self.decode(*p);
            (t, tidy(v, v))
        })
    }

    /// Adds a point; out-of-order points older than the newest are ignored (a series is
    /// a function of time, and late data must not rewrite it).
    pub fn push(&mut self, at_ms: i64, value: f64, policy: &HistoryPolicy) {
        if !value.is_finite() {
            return;
        }
        let at_s = at_ms.div_euclid(1000);
        if self.points.is_empty() {
            self.base_s = at_s;
        }
        let Ok(offset) = u32::try_from(at_s - self.base_s) else {
            // Before the base, or more than 136 years after it: not a point we can order.
            return;
        };
        let value = value as f32;
        if let Some(&(last_t, last_v)) = self.points.back() {
            if offset < last_t {
                return;
            }
            if offset == last_t {
                // Points within the same second replace each other.
                if let Some(back) = self.points.back_mut() {
                    back.1 = value;
                }
                return;
            }
            // The middle of a run of equal values says nothing new: move the run's end.
            let len = self.points.len();
            if len >= 2 && last_v == value && self.points[len - 2].1 == value {
                if let Some(back) = self.points.back_mut() {
                    back.0 = offset;
                }
                return;
            }
        }
        self.points.push_back((offset, value));
        self.prune(offset, policy);
    }

    fn prune(&mut self, newest: u32, policy: &HistoryPolicy) {
        let keep_s = policy.retention.as_secs().min(u64::from(u32::MAX)) as u32;
        let boundary = newest.saturating_sub(keep_s);
        // Keep one point at or before the boundary: the value at the window's start.
        while self.points.len() >= 2 && self.points[1].0 <= boundary {
            self.points.pop_front();
        }
        while self.points.len() > policy.max_points.max(2) {
            self.points.pop_front();
        }
        // Rebase now and then so offsets never approach u32::MAX.
        if let Some(&(first, _)) = self.points.front()
            && first > 1 << 30
        {
            self.base_s += i64::from(first);
            for p in &mut self.points {
                p.0 -= first;
            }
        }
    }

    /// The points that describe `[now - window, now]`: the last point at or before the
    /// window's start (the value the window starts with), then every point inside it.
    fn window(&self, now_ms: i64, window_ms: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
        let start_ms = now_ms - window_ms;
        let first_inside = self
            .points
            .partition_point(|p| (self.base_s + i64::from(p.0)) * 1000 <= start_ms);
        let from = first_inside.saturating_sub(1);
        self.points
            .range(from..)
            .map(|p| self.decode(*p))
            .take_while(move |(t, _)| *t <= now_ms)
    }

    /// Newest value in the window minus the value at its start (None without data).
    pub fn delta(&self, now_ms: i64, window_ms: i64) -> Option<f64> {
        let mut it = self.window(now_ms, window_ms);
        let (_, first) = it.next()?;
        let last = it.last().map_or(first, |(_, v)| v);
        Some(tidy(last - first, first.abs().max(last.abs())))
    }

    /// Largest fall from an earlier to a later point within the window (>= 0).
    pub fn largest_fall(&self, now_ms: i64, window_ms: i64) -> Option<f64> {
        self.largest_move(now_ms, window_ms, false)
    }

    /// Largest rise from an earlier to a later point within the window (>= 0).
    pub fn largest_rise(&self, now_ms: i64, window_ms: i64) -> Option<f64> {
        self.largest_move(now_ms, window_ms, true)
    }

    /// One pass: the largest move from the lowest (rise) or highest (fall) value so far.
    fn largest_move(&self, now_ms: i64, window_ms: i64, rise: bool) -> Option<f64> {
        let mut best: Option<f64> = None;
        let mut extreme = if rise {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
        let mut scale = 0.0f64;
        for (_, v) in self.window(now_ms, window_ms) {
            scale = scale.max(v.abs());
            let change = if rise {
                extreme = extreme.min(v);
                v - extreme
            } else {
                extreme = extreme.max(v);
                extreme - v
            };
            best = Some(best.unwrap_or(0.0).max(change));
        }
        best.map(|b| tidy(b, scale))
    }

    pub fn min(&self, now_ms: i64, window_ms: i64) -> Option<f64> {
        self.window(now_ms, window_ms)
            .map(|(_, v)| v)
            .reduce(f64::min)
            .map(|v| tidy(v, v))
    }

    pub fn max(&self, now_ms: i64, window_ms: i64) -> Option<f64> {
        self.window(now_ms, window_ms)
            .map(|(_, v)| v)
            .reduce(f64::max)
            .map(|v| tidy(v, v))
    }

    /// Time-weighted average over the window: each value counts for as long as it held
    /// (from the window's start, or its own time, to the next point or `now`).
    pub fn avg(&self, now_ms: i64, window_ms: i64) -> Option<f64> {
        let start_ms = now_ms - window_ms;
        let mut weighted = 0.0;
        let mut total = 0.0;
        let mut prev: Option<(i64, f64)> = None;
        let mut count = 0usize;
        let mut sum = 0.0;
        let mut scale = 0.0f64;
        for (t, v) in self.window(now_ms, window_ms) {
            scale = scale.max(v.abs());
            if let Some((pt, pv)) = prev {
                let span = (t - pt.max(start_ms)).max(0) as f64;
                weighted += pv * span;
                total += span;
            }
            prev = Some((t, v));
            count += 1;
            sum += v;
        }
        let (pt, pv) = prev?;
        let span = (now_ms - pt.max(start_ms)).max(0) as f64;
        weighted += pv * span;
        total += span;
        let avg = if total > 0.0 {
            weighted / total
        } else {
            sum / count as f64
        };
        Some(tidy(avg, scale))
    }
}

/// `x` rounded to the decimal place of the seventh significant digit of `magnitude` (or
/// of `x`, if larger): the precision of an `f32`, so the noise of widening one to `f64`
/// is gone and a result reads like the values it came from. One `log10` per answer, none
/// per point.
pub fn tidy(x: f64, magnitude: f64) -> f64 {
    let m = magnitude.abs().max(x.abs());
    if m == 0.0 || !m.is_finite() {
        return x;
    }
    let decimals = 6 - m.log10().floor() as i32;
    if decimals >= 0 {
        let p = 10f64.powi(decimals);
        (x * p).round() / p
    } else {
        let p = 10f64.powi(-decimals);
        (x / p).round() * p
    }
}

/// One tracker's series, by name. Trackers have a handful of series, so a small vector
/// searched linearly beats a hash map in both speed and memory.
#[derive(Debug, Clone, Default)]
pub struct History {
    series: Vec<(Box<str>, Series)>,
}

impl History {
    pub fn series(&self, name: &str) -> Option<&Series> {
        self.series
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, s)| s)
    }

    /// Records a value; does nothing when the policy disables history.
    pub fn record(&mut self, name: &str, at_ms: i64, value: f64, policy: &HistoryPolicy) {
        if !policy.keeps(name) {
            return;
        }
        match self.series.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, s)) => s.push(at_ms, value, policy),
            None => {
                let mut s = Series::default();
                s.push(at_ms, value, policy);
                self.series.push((name.into(), s));
            }
        }
    }

    /// Names of the series kept, for the admin API.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.series.iter().map(|(n, _)| &**n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;
    const T0: i64 = 1_700_000_000_000;

    fn series(points: &[(i64, f64)]) -> Series {
        let policy = HistoryPolicy::for_window(Duration::from_secs(3600));
        let mut s = Series::default();
        for (t, v) in points {
            s.push(T0 + t * S, *v, &policy);
        }
        s
    }

    #[test]
    fn delta_uses_the_value_at_the_window_start() {
        let s = series(&[(0, 100.0), (300, 90.0), (600, 80.0), (900, 85.0)]);
        // Window [300, 900]: starts at 90, ends at 85.
        assert_eq!(s.delta(T0 + 900 * S, 600 * S), Some(-5.0));
        // Window [100, 900]: the point at 0 holds at 100.
        assert_eq!(s.delta(T0 + 900 * S, 800 * S), Some(-15.0));
    }

    #[test]
    fn largest_fall_and_rise_look_at_ordered_pairs() {
        let s = series(&[(0, 50.0), (60, 40.0), (120, 70.0), (180, 55.0)]);
        let now = T0 + 180 * S;
        assert_eq!(s.largest_fall(now, 600 * S), Some(15.0));
        assert_eq!(s.largest_rise(now, 600 * S), Some(30.0));
        // A rising series has no fall.
        let up = series(&[(0, 1.0), (10, 2.0), (20, 3.0)]);
        assert_eq!(up.largest_fall(T0 + 20 * S, 60 * S), Some(0.0));
    }

    #[test]
    fn min_max_avg_are_time_weighted_over_the_window() {
        let s = series(&[(0, 10.0), (60, 20.0)]);
        let now = T0 + 120 * S;
        assert_eq!(s.min(now, 120 * S), Some(10.0));
        assert_eq!(s.max(now, 120 * S), Some(20.0));
        // 10 for 60 s and 20 for 60 s.
        assert_eq!(s.avg(now, 120 * S), Some(15.0));
        // Only the last 30 s: 20 throughout (the point at 60 is the start value).
        assert_eq!(s.avg(now, 30 * S), Some(20.0));
    }

    #[test]
    fn empty_series_has_no_answers() {
        let s = Series::default();
        assert_eq!(s.delta(T0, 60 * S), None);
        assert_eq!(s.largest_fall(T0, 60 * S), None);
        assert_eq!(s.avg(T0, 60 * S), None);
    }

    #[test]
    fn runs_of_equal_values_keep_first_and_last_point() {
        let s = series(&[(0, 5.0), (10, 5.0), (20, 5.0), (30, 5.0), (40, 6.0)]);
        let pts: Vec<_> = s.points().map(|(t, v)| ((t - T0) / S, v)).collect();
        assert_eq!(pts, vec![(0, 5.0), (30, 5.0), (40, 6.0)]);
    }

    #[test]
    fn retention_keeps_one_point_before_the_boundary() {
        let policy = HistoryPolicy::for_window(Duration::from_secs(100));
        let mut s = Series::default();
        for i in 0..50 {
            s.push(T0 + i * 10 * S, i as f64, &policy);
        }
        let first = s.points().next().map(|(t, _)| (t - T0) / S);
        // Newest is 490 s, boundary 390 s: the point at 390 is kept as the start value.
        assert_eq!(first, Some(390));
        assert_eq!(s.len(), 11);
    }

    #[test]
    fn late_and_non_finite_points_are_ignored() {
        let s = series(&[(100, 1.0), (50, 2.0), (200, f64::NAN)]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_policy_with_names_keeps_only_those() {
        let policy = HistoryPolicy::for_window(Duration::from_secs(60)).only(["lls_level_1"]);
        let mut h = History::default();
        h.record("speed", T0, 50.0, &policy);
        h.record("lls_level_1", T0, 200.0, &policy);
        assert!(h.series("speed").is_none());
        assert_eq!(h.series("lls_level_1").map(Series::len), Some(1));
    }

    #[test]
    fn answers_read_like_the_input_not_like_f32() {
        // 175.7 and 200.5 as f32 widen to 175.69999694824219 and 200.5.
        let s = series(&[(0, 175.7), (60, 200.5), (120, 180.3)]);
        let now = T0 + 120 * S;
        assert_eq!(s.largest_rise(now, 600 * S), Some(24.8));
        assert_eq!(s.largest_fall(now, 600 * S), Some(20.2));
        assert_eq!(s.delta(now, 600 * S), Some(4.6));
        assert_eq!(s.min(now, 600 * S), Some(175.7));
        assert_eq!(s.max(now, 600 * S), Some(200.5));
        assert_eq!(s.latest().map(|(_, v)| v), Some(180.3));
        assert_eq!(s.avg(now, 120 * S), Some(188.1));
        // Small values keep their own digits; large ones as many as an f32 has.
        let small = series(&[(0, 0.012345), (60, 0.012346)]);
        assert_eq!(small.delta(T0 + 60 * S, 600 * S), Some(0.000001));
        let odometer = series(&[(0, 123_456.7), (60, 123_460.2)]);
        assert_eq!(odometer.delta(T0 + 60 * S, 600 * S), Some(3.5));
    }

    #[test]
    fn tidy_rounds_to_seven_significant_digits_of_the_magnitude() {
        assert_eq!(tidy(24.800003051757812, 200.5), 24.8);
        assert_eq!(tidy(0.1000305, 400.0), 0.1);
        assert_eq!(tidy(1.0 / 3.0, 1.0), 0.333333);
        assert_eq!(tidy(123_456_784.0, 123_456_784.0), 123_456_800.0);
        assert_eq!(tidy(-5.000001, 100.0), -5.0);
        assert_eq!(tidy(0.0, 0.0), 0.0);
        assert!(tidy(f64::NAN, 1.0).is_nan());
    }

    #[test]
    fn disabled_policy_records_nothing() {
        let mut h = History::default();
        h.record("speed", T0, 50.0, &HistoryPolicy::DISABLED);
        assert!(h.series("speed").is_none());
    }
}
