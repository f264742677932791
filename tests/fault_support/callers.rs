//! Background callers: tasks that borrow a member, make one call and give it
//! back, over and over, while a test injects a fault.
//!
//! They behave like a well-written application: an error from `call` on a
//! member that died under them is their own traffic telling them so; they mark
//! the member broken and carry on. An error from `pool.get()` is the pool
//! failing them, and is recorded as such.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use livepool::protocol::RpcManager;
use livepool::{Pool, Pooled};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// How long a caller rests between calls.
const PAUSE: Duration = Duration::from_millis(15);

/// What the callers saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub gets_ok: AtomicU64,
    pub calls_ok: AtomicU64,
    /// `pool.get()` failed or hung: never acceptable while a live connection can be had.
    pub get_errors: Mutex<Vec<String>>,
    /// `call` failed on a borrowed member: the caller's own signal, not the pool's failure.
    pub call_errors: Mutex<Vec<String>>,
}

impl Tally {
    pub fn get_errors(&self) -> Vec<String> {
        self.get_errors.lock().unwrap().clone()
    }

    pub fn call_errors(&self) -> Vec<String> {
        self.call_errors.lock().unwrap().clone()
    }

    pub fn calls_ok(&self) -> u64 {
        self.calls_ok.load(Ordering::Relaxed)
    }
}

/// A handful of caller tasks on one pool.
pub struct Callers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    pub tally: Arc<Tally>,
}

impl Callers {
    /// Starts `n` callers; each waits at most `get_limit` for `pool.get()`
    /// (a hang is recorded as a get error).
    pub fn start(pool: &Pool<RpcManager>, n: usize, get_limit: Duration) -> Callers {
        let stop = CancellationToken::new();
        let tally = Arc::new(Tally::default());
        let mut tasks = JoinSet::new();
        for caller in 0..n {
            let pool = pool.clone();
            let stop = stop.clone();
            let tally = Arc::clone(&tally);
            tasks.spawn(async move {
                let mut round = 0u64;
                while !stop.is_cancelled() {
                    round += 1;
                    one_round(&pool, &tally, get_limit, caller, round).await;
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(PAUSE) => {}
                    }
                }
            });
        }
        Callers { stop, tasks, tally }
    }

    /// Stops every caller (each finishes its current round) and returns what
    /// they saw.
    pub async fn stop(mut self) -> Arc<Tally> {
        self.stop.cancel();
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if timeout(Duration::from_secs(10), all_done).await.is_err() {
            panic!("callers did not stop within 10 s: a get or call hangs");
        }
        self.tally
    }
}

async fn one_round(
    pool: &Pool<RpcManager>,
    tally: &Tally,
    get_limit: Duration,
    caller: usize,
    round: u64,
) {
    let mut conn = match timeout(get_limit, pool.get()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => {
            let line = format!("caller {caller} round {round}: get failed: {error}");
            tally.get_errors.lock().unwrap().push(line);
            return;
        }
        Err(_) => {
            let line = format!("caller {caller} round {round}: get hung past {get_limit:?}");
            tally.get_errors.lock().unwrap().push(line);
            return;
        }
    };
    tally.gets_ok.fetch_add(1, Ordering::Relaxed);
    let body = Bytes::from(format!("caller {caller} round {round}"));
    match conn.call(body.clone()).await {
        Ok(reply) if reply == body => {
            tally.calls_ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(reply) => {
            Pooled::mark_broken(&mut conn);
            let line = format!("caller {caller} round {round}: wrong answer {reply:?}");
            tally.call_errors.lock().unwrap().push(line);
        }
        Err(error) => {
            Pooled::mark_broken(&mut conn);
            let line = format!(
                "caller {caller} round {round}: call on member {} failed: {error}",
                Pooled::id(&conn)
            );
            tally.call_errors.lock().unwrap().push(line);
        }
    }
}
