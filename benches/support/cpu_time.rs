//! Criterion measurements of CPU time: the benchmark thread's own
//! (`CLOCK_THREAD_CPUTIME_ID`) or the process's. On a shared machine wall time also counts the time other
//! processes held the core; CPU time is "per core" as the performance targets mean it.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// CPU time of the clock `CLOCK` as a criterion measurement.
#[derive(Default)]
pub struct CpuTime<const CLOCK: libc::clockid_t>;

/// The bench thread's own CPU time.
pub type ThreadCpuTime = CpuTime<{ libc::CLOCK_THREAD_CPUTIME_ID }>;

/// The whole process's CPU time: for benchmarks whose work runs on several threads.
pub type ProcessCpuTime = CpuTime<{ libc::CLOCK_PROCESS_CPUTIME_ID }>;

fn cpu_now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids are constants the kernel knows.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

static WALL: WallTime = WallTime;

impl<const CLOCK: libc::clockid_t> Measurement for CpuTime<CLOCK> {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        cpu_now(CLOCK)
    }
    fn end(&self, start: Duration) -> Duration {
        cpu_now(CLOCK).saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same units as wall time (ns, states/s).
        WALL.formatter()
    }
}
