//! The in-process delivery worker: claims due notifications from the SQLite queue and runs the
//! core's delivery use case on each, many at once.
//!
//! Claims live in memory only: this process is the queue's one consumer, so after a crash
//! (even `kill -9`) every pending notification is simply due again; nothing accepted is lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_core::delivery::{self, DeliveryConfig};
use relay_core::ports::{Callback, Clock};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::SqliteStore;

#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Callback requests in flight at once.
    pub concurrency: usize,
    /// Callback requests in flight at once for one instance: an instance whose callback hangs,
    /// or that has a large backlog, leaves the rest of `concurrency` to the others.
    pub per_instance: usize,
    /// Longest sleep between queue checks when nothing signals new work.
    pub idle_poll: Duration,
    /// How long shutdown waits for in-flight deliveries.
    pub drain_timeout: Duration,
    /// Delivered notifications older than this are purged (dedupe keys expire on their own).
    pub retention: Duration,
    pub delivery: DeliveryConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 64,
            per_instance: 48,
            idle_poll: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(20),
            retention: Duration::from_secs(30 * 24 * 3600),
            delivery: DeliveryConfig::default(),
        }
    }
}

pub struct Worker {
    pub store: SqliteStore,
    pub callback: Arc<dyn Callback>,
    pub clock: Arc<dyn Clock>,
    pub config: WorkerConfig,
}

const PURGE_EVERY: Duration = Duration::from_secs(600);

/// What the worker is delivering now: by event (not claimed twice) and by instance (the cap).
#[derive(Debug, Clone, Default)]
struct InFlight {
    events: HashSet<String>,
    per_instance: HashMap<i64, usize>,
}

impl InFlight {
    fn add(&mut self, event_id: &str, instance_id: i64) {
        self.events.insert(event_id.to_owned());
        *self.per_instance.entry(instance_id).or_default() += 1;
    }

    fn remove(&mut self, event_id: &str, instance_id: i64) {
        self.events.remove(event_id);
        if let Some(n) = self.per_instance.get_mut(&instance_id) {
            *n -= 1;
            if *n == 0 {
                self.per_instance.remove(&instance_id);
            }
        }
    }
}

impl Worker {
    /// Runs until `shutdown` turns true, then waits (up to `drain_timeout`) for in-flight
    /// deliveries to finish and record their outcome.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let in_flight: Arc<Mutex<InFlight>> = Arc::default();
        let per_instance = self.config.per_instance.max(1);
        let finished = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        let mut last_purge = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            if last_purge.elapsed() >= PURGE_EVERY {
                last_purge = tokio::time::Instant::now();
                let now = self.clock.now_ms();
                match self.store.purge(now, now - self.config.retention.as_millis() as i64).await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired dedupe keys and old deliveries"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
            }
            let free = permits.available_permits();
            let now = self.clock.now_ms();
            let claimed = if free == 0 {
                vec![]
            } else {
                let busy = in_flight.lock().map(|s| s.clone()).unwrap_or_default();
                match self.store.claim_due(now, free, busy.events, busy.per_instance, per_instance).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the queue");
                        vec![]
                    }
                }
            };
            if claimed.is_empty() {
                let sleep = if free == 0 {
                    self.config.idle_poll
                } else {
                    match self.store.next_due_after(now).await {
                        Ok(Some(at)) => Duration::from_millis((at - now).max(1) as u64).min(self.config.idle_poll),
                        _ => self.config.idle_poll,
                    }
                };
                tokio::select! {
                    _ = self.store.work_queued() => {}
                    _ = finished.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                    // A dropped sender means nobody can stop us any more: treat it as a stop.
                    changed = shutdown.changed() => if changed.is_err() { break },
                }
                continue;
            }
            for event in claimed {
                let Ok(permit) = permits.clone().try_acquire_owned() else { break };
                if let Ok(mut s) = in_flight.lock() {
                    s.add(&event.event_id, event.instance_id);
                }
                let (store, callback, clock) = (self.store.clone(), self.callback.clone(), self.clock.clone());
                let (in_flight, finished, config) = (in_flight.clone(), finished.clone(), self.config.delivery);
                tasks.spawn(async move {
                    if let Err(e) = delivery::deliver(&store, &store, callback.as_ref(), clock.as_ref(), config, &event).await {
                        // Not recorded: the notification stays pending and is attempted again.
                        tracing::error!(event_id = %event.event_id, error = %e, "could not record a delivery attempt");
                    }
                    if let Ok(mut s) = in_flight.lock() {
                        s.remove(&event.event_id, event.instance_id);
                    }
                    drop(permit);
                    finished.notify_one();
                });
            }
        }
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(left = tasks.len(), "shutdown: deliveries still in flight are abandoned; they stay pending");
        }
    }
}
