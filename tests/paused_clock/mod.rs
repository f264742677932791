//! Virtual time over real loopback sockets, kept honest.
//!
//! Tests that run the pool, the fault proxy and a server on one paused
//! tokio clock get exact bounds, but only if the clock does not move while
//! a byte is still on its way through the kernel: [`step_the_clock`].
//! Tests that build their own runtimes take a paused one from here.

#![allow(dead_code)]

use std::time::Duration;

/// A current-thread runtime whose clock starts paused, for tests that
/// build their runtimes themselves (several in one test, or one that is
/// dropped on purpose).
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds")
}

/// Moves the paused clock forward 1 ms at a time, giving the CPU away for a
/// moment between steps, for as long as the guard lives.
///
/// Why not tokio's auto-advance: the bytes between pool, proxy and server
/// cross real loopback sockets, and the kernel does not always deliver them
/// within the `write` that sends them (on a loaded machine the loopback
/// softirq is deferred to `ksoftirqd`). Auto-advance sees an idle runtime in
/// that moment and jumps the clock straight to the next timer, which may be
/// a heartbeat's deadline: a probe whose answer is already on its way is
/// then convicted of a silence that never happened, in virtual time only.
/// That is the one conviction CI once saw in the spike test (an answer due
/// after 231 ms, convicted at the 350 ms ceiling). A task that is always
/// runnable keeps auto-advance off; stepping 1 ms after a real pause bounds
/// what an undelivered byte can cost to one step, not a jump to any timer.
pub fn step_the_clock() -> ClockStepper {
    ClockStepper(tokio::spawn(async {
        loop {
            std::thread::sleep(Duration::from_micros(20));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
    }))
}

/// Stops the stepping when dropped.
pub struct ClockStepper(tokio::task::JoinHandle<()>);

impl Drop for ClockStepper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
