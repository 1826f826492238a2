//! Where a forward's time goes, phase by phase: off (one atomic load per mark) unless a
//! bench turns it on for one pass. On, each mark waits for the device, so a GPU's queued
//! kernels are charged to the phase that launched them; the pass itself then runs a little
//! slower than unmarked, since launches no longer overlap the device's work.

use anyhow::Result;
use candle_core::Device;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
}

struct Clock {
    last: Instant,
    totals: PhaseTotals,
}

/// Charges the time since the previous mark (or the start) to `phase`.
pub fn mark(device: &Device, phase: &'static str) -> Result<()> {
    if !ON.load(Ordering::Relaxed) {
        return Ok(());
    }
    device.synchronize()?;
    CLOCK.with(|c| {
        if let Some(clock) = c.borrow_mut().as_mut() {
            let now = Instant::now();
            let secs = (now - clock.last).as_secs_f64();
            clock.last = now;
            match clock.totals.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, s)) => *s += secs,
                None => clock.totals.push((phase, secs)),
            }
        }
    });
    Ok(())
}

/// Seconds charged to each phase, in order of first mark.
pub type PhaseTotals = Vec<(&'static str, f64)>;

/// Runs `f` on this thread with marks on; returns its result, its wall time and the
/// seconds charged to each phase, in order of first mark. The time after the last mark is
/// charged to "unmarked".
pub fn measure<R>(device: &Device, f: impl FnOnce() -> Result<R>) -> Result<(R, f64, PhaseTotals)> {
    device.synchronize()?;
    let start = Instant::now();
    CLOCK.with(|c| {
        *c.borrow_mut() = Some(Clock {
            last: start,
            totals: Vec::new(),
        })
    });
    ON.store(true, Ordering::Relaxed);
    let r = f();
    let end = mark(device, "unmarked");
    ON.store(false, Ordering::Relaxed);
    let totals = CLOCK.with(|c| c.borrow_mut().take().map(|c| c.totals).unwrap_or_default());
    let r = r?;
    end?;
    Ok((r, start.elapsed().as_secs_f64(), totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Phases add up to the wall time, and a mark outside `measure` charges nothing.
    #[test]
    fn phases_add_up_to_the_pass() {
        let dev = Device::Cpu;
        mark(&dev, "ignored").unwrap();
        let ((), wall, phases) = measure(&dev, || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            mark(&dev, "first")?;
            std::thread::sleep(std::time::Duration::from_millis(5));
            mark(&dev, "second")?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            mark(&dev, "first")?;
            Ok(())
        })
        .unwrap();
        let names: Vec<_> = phases.iter().map(|(p, _)| *p).collect();
        assert_eq!(names, ["first", "second", "unmarked"]);
        assert!(phases[0].1 >= 0.040 && phases[1].1 >= 0.005, "{phases:?}");
        let sum: f64 = phases.iter().map(|(_, s)| s).sum();
        assert!((sum - wall).abs() < 1e-3, "{sum} vs {wall}");
    }
}
