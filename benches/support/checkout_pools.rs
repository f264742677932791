//! The pools the `checkout` bench compares, behind one trait so every scenario
//! drives each of them through the same code, and each set up with its
//! cheapest checkout settings (see the bench's crate docs for the list).
//!
//! The pooled object is a `Box<u64>` counter bumped on every use: the work done
//! with a borrowed object is next to nothing, so what is measured is the pool.

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hint::black_box;
use std::ops::DerefMut;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// What every pool hands out: a counter, so a use is one increment.
pub type Object = Box<u64>;

/// Long enough that no heartbeat, validation or reaping happens during a run,
/// which lasts seconds: the checkout path is measured, not the background work.
const NEVER_DURING_A_RUN: Duration = Duration::from_secs(3600);

/// What a task does with the object between get and return.
#[derive(Clone, Copy, Debug)]
pub enum Hold {
    /// Bump the counter and give it back.
    Touch,
    /// Bump the counter and keep it across one `yield_now`, so other tasks
    /// queue for it: where unfair or lost-wakeup pools show.
    TouchAcrossYield,
    /// Keep it across a short sleep: used to make every pool create all its
    /// objects before measuring, never in a measurement.
    TouchAcrossSleep(Duration),
}

async fn use_object(object: &mut u64, hold: Hold) {
    *object = black_box(object.wrapping_add(1));
    match hold {
        Hold::Touch => {}
        Hold::TouchAcrossYield => tokio::task::yield_now().await,
        Hold::TouchAcrossSleep(pause) => tokio::time::sleep(pause).await,
    }
}

/// A pool refused a build or a checkout; the bench reports it and goes on
/// with the others.
#[derive(Debug)]
pub struct PoolFailed {
    /// Which competitor.
    pub pool: &'static str,
    /// What it was doing.
    pub doing: &'static str,
    /// Its own error.
    pub cause: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for PoolFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed to {}: {}", self.pool, self.doing, self.cause)
    }
}

impl Error for PoolFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.cause)
    }
}

fn failed(
    pool: &'static str,
    doing: &'static str,
    cause: impl Into<Box<dyn Error + Send + Sync>>,
) -> PoolFailed {
    PoolFailed {
        pool,
        doing,
        cause: cause.into(),
    }
}

/// The body every real pool shares: await its checkout, use the object, drop
/// the guard (the return path).
async fn borrow_and_use<G, E>(
    pool: &'static str,
    checkout: impl Future<Output = Result<G, E>>,
    hold: Hold,
) -> Result<(), PoolFailed>
where
    G: DerefMut<Target = Object>,
    E: Error + Send + Sync + 'static,
{
    let mut object = checkout.await.map_err(|e| failed(pool, "get", e))?;
    use_object(&mut object, hold).await;
    Ok(())
}

/// One pool under test: built once per benchmark, cloned into every task.
pub trait Competitor: Clone + Send + Sync + 'static {
    /// The name criterion reports it under.
    const NAME: &'static str;

    /// Builds a pool of at most `size` objects. Runs inside the runtime the
    /// scenario uses, because some pools spawn background tasks.
    fn build(size: usize) -> impl Future<Output = Result<Self, PoolFailed>> + Send;

    /// One get + use + return: the operation every scenario times.
    fn get_use_return(&self, hold: Hold) -> impl Future<Output = Result<(), PoolFailed>> + Send;
}

/// The floor: a fair tokio `Semaphore` bounding a `Mutex<Vec<_>>` of idle
/// objects. What any pool must at least pay to bound and share its objects.
#[derive(Clone)]
pub struct Floor(Arc<FloorShared>);

struct FloorShared {
    permits: Semaphore,
    idle: Mutex<Vec<Object>>,
}

impl FloorShared {
    fn idle(&self) -> MutexGuard<'_, Vec<Object>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returns the object (push) before the permit is released, as a pool's guard would.
struct FloorGuard<'a> {
    shared: &'a FloorShared,
    object: Option<Object>,
    _permit: SemaphorePermit<'a>,
}

impl Drop for FloorGuard<'_> {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            self.shared.idle().push(object);
        }
    }
}

impl Competitor for Floor {
    const NAME: &'static str = "floor";

    async fn build(size: usize) -> Result<Self, PoolFailed> {
        let idle = (0..size).map(|_| Box::new(0)).collect();
        Ok(Floor(Arc::new(FloorShared {
            permits: Semaphore::new(size),
            idle: Mutex::new(idle),
        })))
    }

    async fn get_use_return(&self, hold: Hold) -> Result<(), PoolFailed> {
        let shared = &*self.0;
        let permit = shared
            .permits
            .acquire()
            .await
            .map_err(|e| failed(Self::NAME, "acquire a permit", e))?;
        // A permit guarantees an idle object: there are as many of each.
        let object = shared.idle().pop();
        let mut guard = FloorGuard {
            shared,
            object,
            _permit: permit,
        };
        match guard.object.as_mut() {
            Some(object) => use_object(object, hold).await,
            None => {
                return Err(failed(
                    Self::NAME,
                    "pop an object",
                    "a permit was granted with no idle object",
                ));
            }
        }
        drop(guard);
        Ok(())
    }
}

/// Makes and trusts counters, for livepool.
pub struct LivepoolCounters;

impl livepool::Manager for LivepoolCounters {
    type Connection = Object;
    type Error = Infallible;

    async fn connect(&self) -> Result<Object, Infallible> {
        Ok(Box::new(0))
    }

    async fn heartbeat(&self, _: &mut Object) -> Result<(), Infallible> {
        Ok(())
    }
}

/// livepool with its defaults, except that heartbeats and checkout validation
/// are due only after an hour, so none runs during a measurement.
#[derive(Clone)]
pub struct Livepool(livepool::Pool<LivepoolCounters>);

impl Competitor for Livepool {
    const NAME: &'static str = "livepool";

    async fn build(size: usize) -> Result<Self, PoolFailed> {
        livepool::Pool::builder()
            .max_size(size)
            .heartbeat_interval(NEVER_DURING_A_RUN)
            .validate_after(NEVER_DURING_A_RUN)
            .build(LivepoolCounters)
            .map(Livepool)
            .map_err(|e| failed(Self::NAME, "build", e))
    }

    async fn get_use_return(&self, hold: Hold) -> Result<(), PoolFailed> {
        borrow_and_use(Self::NAME, self.0.get(), hold).await
    }
}

/// Makes counters and recycles them at once, for deadpool.
pub struct DeadpoolCounters;

impl deadpool::managed::Manager for DeadpoolCounters {
    type Type = Object;
    type Error = Infallible;

    async fn create(&self) -> Result<Object, Infallible> {
        Ok(Box::new(0))
    }

    async fn recycle(
        &self,
        _: &mut Object,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

/// deadpool's managed pool: no timeouts (its default), `recycle` returns `Ok`
/// at once, like `RecyclingMethod::Fast` in its database adapters.
#[derive(Clone)]
pub struct Deadpool(deadpool::managed::Pool<DeadpoolCounters>);

impl Competitor for Deadpool {
    const NAME: &'static str = "deadpool";

    async fn build(size: usize) -> Result<Self, PoolFailed> {
        deadpool::managed::Pool::builder(DeadpoolCounters)
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map(Deadpool)
            .map_err(|e| failed(Self::NAME, "build", e))
    }

    async fn get_use_return(&self, hold: Hold) -> Result<(), PoolFailed> {
        borrow_and_use(Self::NAME, self.0.get(), hold).await
    }
}

/// Makes and trusts counters, for bb8.
pub struct Bb8Counters;

impl bb8::ManageConnection for Bb8Counters {
    type Connection = Object;
    type Error = Infallible;

    async fn connect(&self) -> Result<Object, Infallible> {
        Ok(Box::new(0))
    }

    async fn is_valid(&self, _: &mut Object) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _: &mut Object) -> bool {
        false
    }
}

/// bb8 with no test on checkout and no reaper (no idle timeout, no max
/// lifetime). Its `connection_timeout` cannot be turned off; left at 30 s.
#[derive(Clone)]
pub struct Bb8(bb8::Pool<Bb8Counters>);

impl Competitor for Bb8 {
    const NAME: &'static str = "bb8";

    async fn build(size: usize) -> Result<Self, PoolFailed> {
        let size = u32::try_from(size).map_err(|e| failed(Self::NAME, "build", e))?;
        let pool = bb8::Pool::builder()
            .max_size(size)
            .test_on_check_out(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .build(Bb8Counters)
            .await
            .map_err(|e| failed(Self::NAME, "build", e))?;
        Ok(Bb8(pool))
    }

    async fn get_use_return(&self, hold: Hold) -> Result<(), PoolFailed> {
        borrow_and_use(Self::NAME, self.0.get(), hold).await
    }
}

/// Makes and trusts counters, for mobc.
pub struct MobcCounters;

#[mobc::async_trait]
impl mobc::Manager for MobcCounters {
    type Connection = Object;
    type Error = Infallible;

    async fn connect(&self) -> Result<Object, Infallible> {
        Ok(Box::new(0))
    }

    async fn check(&self, conn: Object) -> Result<Object, Infallible> {
        Ok(conn)
    }
}

/// mobc with no health check at checkout, no idle or max lifetime, no get
/// timeout, and `max_idle` equal to `max_open` so no returned object is closed.
#[derive(Clone)]
pub struct Mobc(mobc::Pool<MobcCounters>);

impl Competitor for Mobc {
    const NAME: &'static str = "mobc";

    async fn build(size: usize) -> Result<Self, PoolFailed> {
        let size = u64::try_from(size).map_err(|e| failed(Self::NAME, "build", e))?;
        Ok(Mobc(
            mobc::Pool::builder()
                .max_open(size)
                .max_idle(size)
                .test_on_check_out(false)
                .health_check_interval(None)
                .max_idle_lifetime(None)
                .max_lifetime(None)
                .get_timeout(None)
                .build(MobcCounters),
        ))
    }

    async fn get_use_return(&self, hold: Hold) -> Result<(), PoolFailed> {
        borrow_and_use(Self::NAME, self.0.get(), hold).await
    }
}
