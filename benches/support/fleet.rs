//! A deterministic generated fleet: realistic full tracker states and sensor readings as
//! Navixy's wire sends them. Shared by the decode bench and `examples/gen_fleet.rs`.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

/// One simulated vehicle's moving parts.
#[derive(Clone)]
pub struct Vehicle {
    pub source_id: i64,
    pub tracker_id: i64,
    lat: f64,
    lng: f64,
    heading: f64,
    speed: f64,
    fuel: f64,
    odometer: f64,
    ignition: bool,
}

/// The fleet and its random source; the same seed gives the same bytes.
pub struct Fleet {
    pub vehicles: Vec<Vehicle>,
    rng: fastrand::Rng,
}

impl Fleet {
    pub fn new(trackers: usize, seed: u64) -> Fleet {
        let mut rng = fastrand::Rng::with_seed(seed);
        let vehicles = (0..trackers)
            .map(|i| Vehicle {
                source_id: 10_000 + i as i64,
                tracker_id: 20_000 + i as i64,
                lat: 52.0 + rng.f64(),
                lng: 13.0 + rng.f64(),
                heading: rng.f64() * 360.0,
                speed: 0.0,
                fuel: 100.0 + rng.f64() * 300.0,
                odometer: 10_000.0 + rng.f64() * 200_000.0,
                ignition: rng.bool(),
            })
            .collect();
        Fleet { vehicles, rng }
    }

    /// Moves vehicle `i` on by `secs` seconds.
    pub fn step(&mut self, i: usize, secs: f64) {
        let rng = &mut self.rng;
        let v = &mut self.vehicles[i];
        if rng.u8(..) < 8 {
            v.ignition = !v.ignition;
        }
        v.speed = if v.ignition {
            (v.speed + rng.f64() * 20.0 - 9.0).clamp(0.0, 130.0)
        } else {
            0.0
        };
        v.heading = (v.heading + rng.f64() * 30.0 - 15.0).rem_euclid(360.0);
        let km = v.speed * secs / 3600.0;
        v.lat += km / 111.0 * v.heading.to_radians().cos();
        v.lng += km / 70.0 * v.heading.to_radians().sin();
        v.odometer += km;
        v.fuel = (v.fuel - km * 0.3).max(5.0);
        if v.fuel < 20.0 {
            v.fuel = 380.0;
        }
    }

    /// A wire `source_state_event` item with a full state of vehicle `i` at `at`.
    pub fn write_state_item(&self, out: &mut String, i: usize, at: DateTime<Utc>) {
        let v = &self.vehicles[i];
        let t = |d: i64| (at - Duration::seconds(d)).to_rfc3339_opts(SecondsFormat::Secs, false);
        let movement = if v.speed > 3.0 {
            "moving"
        } else if v.ignition {
            "stopped"
        } else {
            "parked"
        };
        let _ = write!(
            out,
            r#"{{"type":"source_state_event","state":{{"source_id":{sid},"gps":{{"updated":"{t0}","signal_level":{sig},"location":{{"lat":{lat:.6},"lng":{lng:.6}}},"heading":{heading},"speed":{speed},"alt":{alt},"precision":{prec}}},"connection_status":"active","movement_status":"{movement}","movement_status_update":"{t600}","ignition":{ign},"ignition_update":"{t900}","gsm":{{"updated":"{t0}","signal_level":{gsm},"network_name":"Telekom.de","roaming":false}},"last_update":"{t0}","battery_level":{bat},"battery_update":"{t60}","inputs":[{ign},false,false,true,false,false,false,false],"inputs_update":"{t900}","outputs":[false,false,false,false],"outputs_update":"{t900}","additional":{{"event_code":{{"value":"{code}","updated":"{t0}"}},"hardware_key":{{"value":"0","updated":"{t900}"}}}},"actual_track_update":"{t600}"}}}}"#,
            sid = v.source_id,
            t0 = t(1),
            t60 = t(60),
            t600 = t(600),
            t900 = t(900),
            sig = 80 + (v.source_id % 20),
            lat = v.lat,
            lng = v.lng,
            heading = v.heading as i64,
            speed = v.speed as i64,
            alt = 30 + (v.source_id % 50),
            prec = 5 + (v.source_id % 10),
            movement = movement,
            ign = v.ignition,
            gsm = 40 + (v.source_id % 60),
            bat = 90 + (v.source_id % 10),
            code = 240 + (v.source_id % 16),
        );
    }

    /// A wire `readings_event` item of vehicle `i`: fuel, voltage, and the odometer.
    pub fn write_readings_item(&self, out: &mut String, i: usize, at: DateTime<Utc>) {
        let v = &self.vehicles[i];
        let t = at.format("%Y-%m-%d %H:%M:%S");
        let _ = write!(
            out,
            r#"{{"type":"readings_event","tracker_id":{tid},"timestamp":"{t}","inputs":[{{"sensor_id":501,"label":"Fuel tank","name":"lls_level_1","type":"fuel","value":{fuel:.2},"units":"l","units_type":"litre","update_time":"{t}","min_value":0,"max_value":400}},{{"sensor_id":502,"label":"Board voltage","name":"board_voltage","type":"power","value":{volt:.1},"units":"V","units_type":"volt","update_time":"{t}"}}],"counters":[{{"type":"odometer","value":{odo:.1},"update_time":"{t}"}}]}}"#,
            tid = v.tracker_id,
            fuel = v.fuel,
            volt = if v.ignition { 27.8 } else { 24.6 },
            odo = v.odometer,
        );
    }

    /// A `state_batch` frame of vehicles `range` at `at`.
    pub fn state_batch(&self, range: std::ops::Range<usize>, at: DateTime<Utc>) -> String {
        let mut out = String::with_capacity(range.len() * 1200 + 64);
        out.push_str(r#"{"type":"event","event":"state_batch","data":["#);
        for (n, i) in range.enumerate() {
            if n > 0 {
                out.push(',');
            }
            self.write_state_item(&mut out, i, at);
        }
        out.push_str("]}");
        out
    }

    /// A `readings_batch` frame of vehicles `range` at `at`.
    pub fn readings_batch(&self, range: std::ops::Range<usize>, at: DateTime<Utc>) -> String {
        let mut out = String::with_capacity(range.len() * 700 + 64);
        out.push_str(r#"{"type":"event","event":"readings_batch","data":["#);
        for (n, i) in range.enumerate() {
            if n > 0 {
                out.push(',');
            }
            self.write_readings_item(&mut out, i, at);
        }
        out.push_str("]}");
        out
    }

    /// The fleet as a saved `tracker/list` response.
    pub fn tracker_list(&self) -> String {
        let mut out = String::from(r#"{"success":true,"list":["#);
        for (n, v) in self.vehicles.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"id":{},"label":"Truck {}","group_id":{},"source":{{"id":{},"device_id":"35617306{:07}","model":"teltonika_fmb920","blocked":false}}}}"#,
                v.tracker_id,
                n + 1,
                n % 5,
                v.source_id,
                n
            );
        }
        out.push_str("]}");
        out
    }
}
