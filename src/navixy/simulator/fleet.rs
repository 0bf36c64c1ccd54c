//! The simulated fleet: vehicles that drive, park, idle, speed, burn and lose fuel, get
//! refuelled, go offline and get blocked, on a simulated clock in whole seconds.
//!
//! Everything is a pure function of the seed and the simulated time: each vehicle has its
//! own random generator, and the fleet advances in fixed one-second steps however often
//! (or by how many clients) it is asked. Two simulators with the same seed tell the same
//! story. The first half hour of each vehicle follows a short script chosen by its index,
//! so that a demo shows speeding, idling, a fuel drain, a block, an offline gap and a
//! refuel within minutes; after that the story is random.
//!
//! This file knows nothing of frames or connections (see `frames` and `server`).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use fastrand::Rng;

use crate::navixy::messages::{LifecycleKind, SourceId, TrackerId};

/// The demo's depot (the `depot` zone of the example config): half the fleet starts there.
pub const DEPOT: (f64, f64) = (52.52, 13.40);
/// Vehicles stay inside this box (lat, lng) around Berlin.
const BOUNDS: ((f64, f64), (f64, f64)) = ((52.33, 13.05), (52.70, 13.75));
/// Device messages kept per vehicle for `iot_monitor` (Navixy keeps at most 12).
pub const IOT_DEPTH: usize = 12;
/// Lifecycle records kept for connections that lag behind.
const LIFECYCLE_KEEP: usize = 10_000;

/// What a vehicle is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Ignition off, not moving.
    Parked,
    /// Parked with the ignition on.
    Idling,
    Driving,
    /// Driving well above any sane limit (115..135 km/h).
    Speeding,
    /// Parked, ignition off, fuel falling fast: theft or a leak.
    Draining,
    /// Parked at a pump, fuel rising.
    Refueling,
    /// The device sends nothing; the server marks it offline.
    Offline,
    /// The account blocked the tracker: no states, lifecycle events only.
    Blocked,
}

/// A sensor as reported: the value rounded to its resolution, and when it last changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sensor {
    pub value: f64,
    pub changed_s: i64,
}

impl Sensor {
    fn new(value: f64) -> Sensor {
        Sensor {
            value,
            changed_s: 0,
        }
    }

    /// Records a new reading; it counts as a change only if the rounded value moved.
    fn report(&mut self, value: f64, resolution: f64, t: i64) {
        let rounded = (value / resolution).round() * resolution;
        if (rounded - self.value).abs() > resolution / 2.0 {
            self.value = rounded;
            self.changed_s = t;
        }
    }
}

/// One device message, as `iot_monitor` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IotSample {
    pub at_s: i64,
    pub speed: f64,
    pub lat: f64,
    pub lng: f64,
    pub fuel: f64,
    pub satellites: i64,
}

/// A block, unblock or removal, in the order they happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecycleRecord {
    pub index: usize,
    pub kind: LifecycleKind,
    pub at_s: i64,
}

/// One simulated tracker and its vehicle.
#[derive(Debug, Clone)]
pub struct Vehicle {
    pub index: usize,
    pub tracker_id: TrackerId,
    pub source_id: SourceId,
    pub label: String,
    pub group_id: i64,
    pub device_id: String,
    rng: Rng,

    pub activity: Activity,
    /// When the current activity ends.
    until_s: i64,
    /// The opening story; random choices follow once it is told.
    script: VecDeque<(Activity, i64)>,

    pub lat: f64,
    pub lng: f64,
    /// Degrees, 0 = north.
    pub heading: f64,
    /// km/h.
    pub speed: f64,
    pub alt: f64,
    target_speed: f64,
    cruise: f64,

    pub ignition: bool,
    pub ignition_s: i64,
    pub moving: bool,
    pub movement_s: i64,

    /// Litres in the tank (the truth; the sensor reads it with noise).
    pub fuel: f64,
    pub tank: f64,
    /// Litres per second while draining.
    drain_rate: f64,
    /// °C, the truth.
    pub temperature: f64,
    /// [start, end) of a cargo temperature excursion.
    temp_excursion: Option<(i64, i64)>,
    /// [start, end) of a failing battery.
    low_power: Option<(i64, i64)>,
    /// Device backup battery, percent.
    pub battery: f64,
    pub odometer_km: f64,
    pub engine_hours: f64,
    /// Input 1 follows the ignition, input 2 is the cargo door.
    pub inputs: [bool; 4],
    pub inputs_s: i64,
    pub outputs: [bool; 2],
    pub outputs_s: i64,
    pub gsm_signal: f64,
    /// The device's last event code (`additional.event_code`).
    pub event_code: i64,
    pub event_code_s: i64,

    /// Sends messages (false while offline).
    pub online: bool,
    pub blocked: bool,
    next_report_s: i64,
    /// The last device message.
    pub report_s: i64,
    /// Anything in the source state changed (a message, or the server's own status).
    pub state_changed_s: i64,

    pub fuel_sensor: Sensor,
    pub voltage_sensor: Sensor,
    pub temp_sensor: Sensor,
    pub odometer: Sensor,
    pub engine_hours_counter: Sensor,
    /// 1.0 open, 0.0 closed.
    pub door: Sensor,
    pub iot: VecDeque<IotSample>,
}

/// The whole fleet on one simulated clock.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Simulated second 0.
    pub start: DateTime<Utc>,
    /// The simulated second the fleet has reached.
    pub now_s: i64,
    pub vehicles: Vec<Vehicle>,
    lifecycle: VecDeque<LifecycleRecord>,
    /// Sequence number of `lifecycle[0]`.
    lifecycle_base: u64,
}

/// splitmix64: spreads a seed so that neighbouring seeds and indices share nothing.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A 32-hex-digit hash derived from a seed (the simulator's API key and session hashes).
pub fn hash_from(seed: u64, salt: u64) -> String {
    format!("{:016x}{:016x}", mix(seed ^ salt), mix(mix(seed) ^ salt))
}

fn range(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + rng.f64() * (hi - lo)
}

const KINDS: [&str; 4] = ["Truck", "Van", "Reefer", "Car"];

impl Fleet {
    /// Gives the vehicles the tracker ids `first`, `first + 1`, ... (the default fleet's
    /// are 21001, 21002, ...), before anything is served.
    pub fn number_from(&mut self, first: i64) {
        for v in &mut self.vehicles {
            v.tracker_id = first + v.index as i64;
        }
    }

    /// A fleet of `trackers` vehicles for `seed`, starting at `start` (whole seconds).
    pub fn new(trackers: u32, seed: u64, start: DateTime<Utc>) -> Fleet {
        let vehicles = (0..trackers as usize)
            .map(|i| Vehicle::new(i, seed))
            .collect();
        let mut fleet = Fleet {
            start,
            now_s: 0,
            vehicles,
            lifecycle: VecDeque::new(),
            lifecycle_base: 0,
        };
        for i in 0..fleet.vehicles.len() {
            let event = fleet.vehicles[i].begin();
            fleet.push_lifecycle(i, event, 0);
        }
        fleet
    }

    /// The wall time of simulated second `s`.
    pub fn time(&self, s: i64) -> DateTime<Utc> {
        self.start + chrono::Duration::seconds(s)
    }

    /// Steps every vehicle, one simulated second at a time, up to `target_s`.
    pub fn advance_to(&mut self, target_s: i64) {
        while self.now_s < target_s {
            self.now_s += 1;
            let t = self.now_s;
            for i in 0..self.vehicles.len() {
                let event = self.vehicles[i].step(t);
                self.push_lifecycle(i, event, t);
            }
        }
    }

    fn push_lifecycle(&mut self, index: usize, kind: Option<LifecycleKind>, at_s: i64) {
        let Some(kind) = kind else { return };
        self.lifecycle
            .push_back(LifecycleRecord { index, kind, at_s });
        if self.lifecycle.len() > LIFECYCLE_KEEP {
            self.lifecycle.pop_front();
            self.lifecycle_base += 1;
        }
    }

    /// The sequence number the next lifecycle record will get.
    pub fn lifecycle_end(&self) -> u64 {
        self.lifecycle_base + self.lifecycle.len() as u64
    }

    /// Lifecycle records from sequence number `seq` on.
    pub fn lifecycle_since(&self, seq: u64) -> impl Iterator<Item = &LifecycleRecord> {
        let skip = seq.saturating_sub(self.lifecycle_base) as usize;
        self.lifecycle.iter().skip(skip)
    }

    /// The vehicle with this tracker id.
    pub fn by_tracker(&self, id: TrackerId) -> Option<&Vehicle> {
        let first = self.vehicles.first()?.tracker_id;
        let v = self.vehicles.get(usize::try_from(id - first).ok()?)?;
        (v.tracker_id == id).then_some(v)
    }
}

/// Where vehicle `index` of any fleet with `seed` is at second 0 and then every
/// `every_s` simulated seconds while it drives its opening trip (until it first parks,
/// or `max_s`), consecutive repeats left out. A vehicle's story depends on its seed and
/// index only, so this is the trip it drives in every simulator with that seed.
pub fn opening_trip(seed: u64, index: usize, every_s: i64, max_s: i64) -> Vec<(f64, f64)> {
    let mut vehicle = Vehicle::new(index, seed);
    vehicle.begin();
    let mut out = vec![(vehicle.lat, vehicle.lng)];
    let mut driven = false;
    for t in 1..=max_s {
        vehicle.step(t);
        let driving = matches!(vehicle.activity, Activity::Driving | Activity::Speeding);
        driven |= driving;
        let ends = driven && !driving;
        if (t % every_s.max(1) == 0 || ends) && out.last() != Some(&(vehicle.lat, vehicle.lng)) {
            out.push((vehicle.lat, vehicle.lng));
        }
        if ends {
            break;
        }
    }
    out
}

/// Where vehicle `index` of any fleet with `seed` starts.
pub fn start_position(seed: u64, index: usize) -> (f64, f64) {
    let vehicle = Vehicle::new(index, seed);
    (vehicle.lat, vehicle.lng)
}

impl Vehicle {
    fn new(index: usize, seed: u64) -> Vehicle {
        let mut rng = Rng::with_seed(mix(seed ^ mix(index as u64 + 1)));
        let n = index + 1;
        let kind = KINDS[index % KINDS.len()];
        let (lat, lng) = if index.is_multiple_of(2) {
            // At the depot, within 200 m of its centre.
            (
                DEPOT.0 + range(&mut rng, -0.0013, 0.0013),
                DEPOT.1 + range(&mut rng, -0.002, 0.002),
            )
        } else {
            (
                DEPOT.0 + range(&mut rng, -0.08, 0.08),
                DEPOT.1 + range(&mut rng, -0.12, 0.12),
            )
        };
        let tank = if kind == "Car" {
            60.0
        } else {
            range(&mut rng, 300.0, 400.0).round()
        };
        let jitter = rng.i64(0..120);
        let fuel_share = if index % 6 == 5 {
            0.12
        } else {
            range(&mut rng, 0.45, 0.95)
        };
        let (script, temp_excursion, low_power) = opening(index % 6, jitter);
        let temperature = range(&mut rng, 3.0, 5.0);
        Vehicle {
            index,
            tracker_id: 21_000 + n as i64,
            source_id: 10_000 + 37 * n as i64,
            label: format!("{kind} {n}"),
            // Three dispatch groups; every fifth vehicle stays in Navixy's default group.
            group_id: if index % 5 == 4 {
                0
            } else {
                (index % 3) as i64 + 1
            },
            device_id: format!("3561730{:08}", 1000 + n),
            activity: Activity::Parked,
            until_s: 0,
            script,
            lat,
            lng,
            heading: range(&mut rng, 0.0, 360.0).round(),
            speed: 0.0,
            alt: range(&mut rng, 30.0, 60.0).round(),
            target_speed: 0.0,
            cruise: 0.0,
            ignition: false,
            ignition_s: 0,
            moving: false,
            movement_s: 0,
            fuel: tank * fuel_share,
            tank,
            drain_rate: 0.0,
            temperature,
            temp_excursion,
            low_power,
            battery: range(&mut rng, 88.0, 100.0).round(),
            odometer_km: range(&mut rng, 20_000.0, 300_000.0).round(),
            engine_hours: range(&mut rng, 1_000.0, 9_000.0).round(),
            inputs: [false; 4],
            inputs_s: 0,
            outputs: [false; 2],
            outputs_s: 0,
            gsm_signal: range(&mut rng, 60.0, 100.0).round(),
            event_code: 0,
            event_code_s: 0,
            online: true,
            blocked: false,
            next_report_s: 0,
            report_s: 0,
            state_changed_s: 0,
            fuel_sensor: Sensor::new(0.0),
            voltage_sensor: Sensor::new(0.0),
            temp_sensor: Sensor::new(0.0),
            odometer: Sensor::new(0.0),
            engine_hours_counter: Sensor::new(0.0),
            door: Sensor::new(0.0),
            iot: VecDeque::with_capacity(IOT_DEPTH),
            rng,
        }
    }

    /// Enters the first scripted activity at second 0.
    fn begin(&mut self) -> Option<LifecycleKind> {
        self.enter_next(0)
    }

    /// One simulated second.
    fn step(&mut self, t: i64) -> Option<LifecycleKind> {
        let mut lifecycle = None;
        if t >= self.until_s {
            lifecycle = self.enter_next(t);
        }
        self.physics(t);
        if self.online && t >= self.next_report_s {
            self.report(t);
        }
        lifecycle
    }

    fn physics(&mut self, t: i64) {
        match self.activity {
            Activity::Driving | Activity::Speeding => {
                if t % 20 == 0 {
                    self.target_speed = (self.cruise + range(&mut self.rng, -12.0, 12.0)).max(5.0);
                }
                let dv = (self.target_speed - self.speed).clamp(-4.0, 2.5);
                self.speed = (self.speed + dv).max(0.0);
                if t % 10 == 0 {
                    self.heading =
                        (self.heading + range(&mut self.rng, -12.0, 12.0)).rem_euclid(360.0);
                }
                let km = self.speed / 3600.0;
                let rad = self.heading.to_radians();
                self.lat += km * rad.cos() / 111.0;
                self.lng += km * rad.sin() / (111.0 * self.lat.to_radians().cos());
                let ((lat0, lng0), (lat1, lng1)) = BOUNDS;
                if !(lat0..lat1).contains(&self.lat) || !(lng0..lng1).contains(&self.lng) {
                    self.heading = (self.heading + 180.0).rem_euclid(360.0);
                    self.lat = self.lat.clamp(lat0, lat1);
                    self.lng = self.lng.clamp(lng0, lng1);
                }
                self.odometer_km += km;
                // About 32 l/100 km for a truck, 8 for a car.
                let per_km = if self.tank < 100.0 { 0.08 } else { 0.32 };
                self.fuel -= km * per_km;
            }
            Activity::Idling => self.fuel -= 2.5 / 3600.0,
            Activity::Draining => self.fuel -= self.drain_rate,
            Activity::Refueling => {
                self.fuel += if self.tank < 100.0 { 0.5 } else { 0.8 };
                if self.fuel >= self.tank - 3.0 {
                    self.until_s = self.until_s.min(t + 1);
                }
            }
            Activity::Parked | Activity::Offline | Activity::Blocked => {}
        }
        self.fuel = self.fuel.clamp(0.0, self.tank);
        if self.ignition {
            self.engine_hours += 1.0 / 3600.0;
        }
        let target = match self.temp_excursion {
            Some((from, to)) if (from..to).contains(&t) => 12.5,
            _ => 4.0,
        };
        self.temperature += (target - self.temperature) * 0.004;
        let battery_target = match self.low_power {
            Some((from, to)) if (from..to).contains(&t) => 12.0,
            _ if self.ignition => 100.0,
            _ => self.battery,
        };
        self.battery += (battery_target - self.battery) * 0.003;
    }

    fn low_power_at(&self, t: i64) -> bool {
        matches!(self.low_power, Some((from, to)) if (from..to).contains(&t))
    }

    /// A device message: position, statuses and every sensor.
    fn report(&mut self, t: i64) {
        self.report_s = t;
        self.state_changed_s = t;
        self.next_report_s = t + match self.activity {
            Activity::Driving | Activity::Speeding => 10,
            Activity::Refueling => 30,
            Activity::Idling | Activity::Draining => 60,
            Activity::Parked | Activity::Offline | Activity::Blocked => 300,
        };
        // The level sensor sloshes while the engine runs.
        let noise = if self.ignition {
            range(&mut self.rng, -0.6, 0.6)
        } else {
            0.0
        };
        self.fuel_sensor
            .report((self.fuel + noise).max(0.0), 0.1, t);
        let volts = if self.low_power_at(t) {
            22.6
        } else if self.ignition {
            27.8
        } else {
            24.8
        } + range(&mut self.rng, -0.05, 0.05);
        self.voltage_sensor.report(volts, 0.1, t);
        self.temp_sensor
            .report(self.temperature + range(&mut self.rng, -0.1, 0.1), 0.1, t);
        self.odometer.report(self.odometer_km, 0.1, t);
        self.engine_hours_counter.report(self.engine_hours, 0.01, t);
        self.door
            .report(if self.inputs[1] { 1.0 } else { 0.0 }, 1.0, t);
        if self.iot.len() == IOT_DEPTH {
            self.iot.pop_back();
        }
        self.iot.push_front(IotSample {
            at_s: t,
            speed: self.speed.round(),
            lat: self.lat,
            lng: self.lng,
            fuel: self.fuel_sensor.value,
            satellites: self.rng.i64(8..15),
        });
    }

    fn set_ignition(&mut self, on: bool, t: i64) {
        if self.ignition != on {
            self.ignition = on;
            self.ignition_s = t;
            self.inputs[0] = on;
            self.inputs_s = t;
            self.set_event_code(if on { 1 } else { 2 }, t);
        }
    }

    fn set_moving(&mut self, moving: bool, t: i64) {
        if self.moving != moving {
            self.moving = moving;
            self.movement_s = t;
        }
        if !moving {
            self.speed = 0.0;
            self.target_speed = 0.0;
        }
    }

    fn set_door(&mut self, open: bool, t: i64) {
        if self.inputs[1] != open {
            self.inputs[1] = open;
            self.inputs_s = t;
        }
    }

    fn set_event_code(&mut self, code: i64, t: i64) {
        self.event_code = code;
        self.event_code_s = t;
    }

    /// Leaves the current activity for the next scripted or random one.
    fn enter_next(&mut self, t: i64) -> Option<LifecycleKind> {
        let (next, duration) = match self.script.pop_front() {
            Some(step) => step,
            None => self.choose(),
        };
        self.enter(next, duration, t)
    }

    fn enter(&mut self, next: Activity, duration: i64, t: i64) -> Option<LifecycleKind> {
        let mut lifecycle = None;
        let was = self.activity;
        if was == Activity::Offline && next != Activity::Offline {
            self.online = true;
        }
        if was == Activity::Blocked && next != Activity::Blocked {
            self.blocked = false;
            lifecycle = Some(LifecycleKind::Unblock);
        }
        self.activity = next;
        self.until_s = t + duration.max(1);
        match next {
            Activity::Parked => {
                self.set_ignition(false, t);
                self.set_moving(false, t);
                // The driver opens the cargo door when a trip ends.
                self.set_door(matches!(was, Activity::Driving | Activity::Speeding), t);
            }
            Activity::Idling => {
                self.set_moving(false, t);
                self.set_ignition(true, t);
                self.set_door(false, t);
            }
            Activity::Driving | Activity::Speeding => {
                self.set_ignition(true, t);
                self.set_moving(true, t);
                self.set_door(false, t);
                self.cruise = if next == Activity::Speeding {
                    range(&mut self.rng, 118.0, 135.0)
                } else if self.tank < 100.0 {
                    range(&mut self.rng, 40.0, 85.0)
                } else {
                    range(&mut self.rng, 35.0, 75.0)
                };
                self.target_speed = self.cruise;
                if next == Activity::Speeding {
                    self.set_event_code(55, t);
                }
            }
            Activity::Draining => {
                self.set_ignition(false, t);
                self.set_moving(false, t);
                let litres = range(&mut self.rng, 30.0, 50.0).min(self.fuel * 0.8);
                self.drain_rate = litres / self.until_s.saturating_sub(t).max(1) as f64;
            }
            Activity::Refueling => {
                self.set_ignition(false, t);
                self.set_moving(false, t);
                // Ends when the tank is full (see `physics`); this is only a bound.
                self.until_s = t + 1800;
            }
            Activity::Offline => {
                self.online = false;
                // The server notices and changes the state's connection status.
                self.state_changed_s = t;
            }
            Activity::Blocked => {
                self.set_ignition(false, t);
                self.set_moving(false, t);
                self.blocked = true;
                lifecycle = Some(LifecycleKind::Block);
            }
        }
        if self.online && next != Activity::Offline {
            self.report(t);
        }
        lifecycle
    }

    /// The next activity once the script is told.
    fn choose(&mut self) -> (Activity, i64) {
        let low_fuel = self.fuel < 0.18 * self.tank;
        let roll = self.rng.u32(0..100);
        let secs = |rng: &mut Rng, lo: i64, hi: i64| rng.i64(lo..hi);
        let rng = &mut self.rng;
        match self.activity {
            Activity::Parked
            | Activity::Draining
            | Activity::Offline
            | Activity::Blocked
            | Activity::Refueling
                if low_fuel =>
            {
                (Activity::Refueling, 0)
            }
            Activity::Parked | Activity::Draining | Activity::Offline | Activity::Blocked => {
                match roll {
                    0..62 => (Activity::Driving, secs(rng, 900, 3600)),
                    62..80 => (Activity::Idling, secs(rng, 300, 1200)),
                    80..86 => (Activity::Draining, secs(rng, 240, 540)),
                    86..92 => (Activity::Offline, secs(rng, 1200, 3600)),
                    92..96 => (Activity::Blocked, secs(rng, 900, 2400)),
                    _ => (Activity::Parked, secs(rng, 1800, 5400)),
                }
            }
            Activity::Idling => match roll {
                0..80 => (Activity::Driving, secs(rng, 900, 3600)),
                _ => (Activity::Parked, secs(rng, 1200, 5400)),
            },
            Activity::Driving if low_fuel => (Activity::Refueling, 0),
            Activity::Driving => match roll {
                0..18 => (Activity::Speeding, secs(rng, 150, 420)),
                _ => (Activity::Parked, secs(rng, 900, 5400)),
            },
            Activity::Speeding => (Activity::Driving, secs(rng, 300, 1800)),
            Activity::Refueling => match roll {
                0..60 => (Activity::Driving, secs(rng, 900, 3600)),
                _ => (Activity::Parked, secs(rng, 900, 3600)),
            },
        }
    }
}

/// The opening story of a vehicle by `kind` (its index modulo 6): which activities, for
/// how long, and the sensor episodes (temperature excursion, failing battery) to come.
type Opening = (
    VecDeque<(Activity, i64)>,
    Option<(i64, i64)>,
    Option<(i64, i64)>,
);

fn opening(kind: usize, jitter: i64) -> Opening {
    use Activity::*;
    let script = |steps: &[(Activity, i64)]| steps.iter().copied().collect::<VecDeque<_>>();
    match kind {
        // Speeds within ten minutes.
        0 => (
            script(&[
                (Driving, 60 + jitter),
                (Speeding, 300),
                (Driving, 900),
                (Parked, 1800),
            ]),
            None,
            None,
        ),
        // Loses 30-50 l of fuel while parked within five minutes.
        1 => (
            script(&[(Parked, 180 + jitter), (Draining, 360), (Parked, 1500)]),
            None,
            None,
        ),
        // Switches the ignition on and idles for 15 minutes.
        2 => (
            script(&[(Parked, 60 + jitter), (Idling, 900), (Driving, 1200)]),
            None,
            None,
        ),
        // Gets blocked for 20 minutes.
        3 => (
            script(&[(Parked, 300 + jitter), (Blocked, 1200), (Parked, 900)]),
            None,
            None,
        ),
        // Goes offline for 40 minutes.
        4 => (
            script(&[(Driving, 240 + jitter), (Offline, 2400), (Parked, 900)]),
            None,
            None,
        ),
        // Nearly empty: refuels, then drives with a warm cargo and a failing battery.
        _ => (
            script(&[(Parked, 120 + jitter), (Refueling, 0), (Driving, 1500)]),
            Some((600 + jitter, 1800 + jitter)),
            Some((900, 2100)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
    }

    fn fingerprint(fleet: &Fleet) -> Vec<(i64, i64, i64, i64, i64)> {
        fleet
            .vehicles
            .iter()
            .map(|v| {
                (
                    (v.lat * 1e6) as i64,
                    (v.lng * 1e6) as i64,
                    (v.fuel * 1e3) as i64,
                    v.report_s,
                    v.speed as i64,
                )
            })
            .collect()
    }

    #[test]
    fn the_same_seed_tells_the_same_story_whatever_the_steps() {
        let mut a = Fleet::new(12, 7, start());
        let mut b = Fleet::new(12, 7, start());
        a.advance_to(7200);
        for t in (0..=7200).step_by(333) {
            b.advance_to(t);
        }
        b.advance_to(7200);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut c = Fleet::new(12, 8, start());
        c.advance_to(7200);
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn the_first_half_hour_shows_every_kind_of_event() {
        let mut fleet = Fleet::new(20, 42, start());
        let mut max_speed = 0.0f64;
        let mut ignition_on_while_parked = false;
        let mut offline = false;
        let mut largest_drop = 0.0f64;
        let mut largest_rise = 0.0f64;
        let mut hot = false;
        let mut fuel_at: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 20];
        for t in 1..=1800 {
            fleet.advance_to(t);
            for v in &fleet.vehicles {
                max_speed = max_speed.max(v.speed);
                ignition_on_while_parked |=
                    v.activity == Activity::Idling && v.ignition && !v.moving;
                offline |= !v.online;
                hot |= v.temp_sensor.value > 8.0;
                fuel_at[v.index].push((t, v.fuel_sensor.value));
            }
        }
        for series in &fuel_at {
            for window in series.windows(600) {
                let (first, last) = (window[0].1, window[window.len() - 1].1);
                largest_drop = largest_drop.max(first - last);
                largest_rise = largest_rise.max(last - first);
            }
        }
        let blocks: Vec<_> = fleet.lifecycle_since(0).collect();
        assert!(max_speed > 115.0, "speeding: {max_speed}");
        assert!(ignition_on_while_parked);
        assert!(offline);
        assert!(hot);
        assert!(largest_drop > 25.0, "fuel drain: {largest_drop}");
        assert!(largest_rise > 100.0, "refuel: {largest_rise}");
        assert!(blocks.iter().any(|r| r.kind == LifecycleKind::Block));
        assert!(blocks.iter().any(|r| r.kind == LifecycleKind::Unblock));
    }

    #[test]
    fn ids_and_lookups() {
        let fleet = Fleet::new(3, 1, start());
        assert_eq!(fleet.vehicles[0].tracker_id, 21_001);
        assert_eq!(fleet.vehicles[0].source_id, 10_037);
        assert_eq!(fleet.by_tracker(21_003).map(|v| v.index), Some(2));
        assert!(fleet.by_tracker(21_004).is_none());
        assert!(fleet.by_tracker(5).is_none());
        assert_eq!(hash_from(1, 2).len(), 32);
    }
}
