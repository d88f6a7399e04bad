//! The in-process delivery worker: claims due notifications from the SQLite queue and runs the
//! core's delivery use case on each, many at once.
//!
//! Claims live in memory only: this process is the queue's one consumer, so after a crash
//! (even `kill -9`) every pending notification is simply due again; nothing accepted is lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_core::delivery::{self, DeliveryConfig};
use relay_core::ports::{Callback, Clock, NextStep, QueuedEvent, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
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
    /// How often the purge runs (also once at start).
    pub purge_every: Duration,
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
            purge_every: Duration::from_secs(600),
            delivery: DeliveryConfig::default(),
        }
    }
}

/// Told of every attempt the worker makes (the metrics): what the delivery use case returned,
/// and how long it took, the attempt and its record.
pub type AttemptObserver = Arc<dyn Fn(Result<&NextStep, &StoreError>, Duration) + Send + Sync>;

pub struct Worker {
    pub store: SqliteStore,
    pub callback: Arc<dyn Callback>,
    pub clock: Arc<dyn Clock>,
    pub config: WorkerConfig,
    pub observer: Option<AttemptObserver>,
}

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
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_instance.remove(&instance_id);
            }
        }
    }
}

/// `InFlight` is only ever updated whole under its lock, so a poisoned lock still holds valid
/// counts.
fn lock(in_flight: &Mutex<InFlight>) -> std::sync::MutexGuard<'_, InFlight> {
    in_flight.lock().unwrap_or_else(|e| e.into_inner())
}

/// One delivery in flight: its slot, its place in `InFlight`. Dropped when the delivery ends,
/// however it ends (a panic included), so that no slot or per-instance count is ever leaked.
struct Claim {
    in_flight: Arc<Mutex<InFlight>>,
    finished: Arc<Notify>,
    event_id: String,
    instance_id: i64,
    permit: Option<OwnedSemaphorePermit>,
}

impl Claim {
    fn new(
        in_flight: &Arc<Mutex<InFlight>>,
        finished: &Arc<Notify>,
        event: &QueuedEvent,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        lock(in_flight).add(&event.event_id, event.instance_id);
        Claim {
            in_flight: in_flight.clone(),
            finished: finished.clone(),
            event_id: event.event_id.clone(),
            instance_id: event.instance_id,
            permit: Some(permit),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.event_id, self.instance_id);
        // The slot is free before the worker is woken to fill it.
        self.permit.take();
        self.finished.notify_one();
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
        // Beside the claims, not between them: a purge of a large backlog takes many writes.
        let purge = tokio::spawn(purge_loop(self.store.clone(), self.clock.clone(), self.config, shutdown.clone()));
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            let now = self.clock.now_ms();
            let claimed = if free == 0 {
                vec![]
            } else {
                let busy = lock(&in_flight).clone();
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
                let claim = Claim::new(&in_flight, &finished, &event, permit);
                let (store, callback, clock, config) =
                    (self.store.clone(), self.callback.clone(), self.clock.clone(), self.config.delivery);
                let observer = self.observer.clone();
                tasks.spawn(async move {
                    let started = std::time::Instant::now();
                    let result =
                        delivery::deliver(&store, &store, callback.as_ref(), clock.as_ref(), config, &event).await;
                    if let Err(e) = &result {
                        // Not recorded: the notification stays pending and is attempted again.
                        tracing::error!(event_id = %event.event_id, error = %e, "could not record a delivery attempt");
                    }
                    if let Some(observe) = &observer {
                        observe(result.as_ref(), started.elapsed());
                    }
                    drop(claim);
                });
            }
        }
        let drained =
            tokio::time::timeout(self.config.drain_timeout, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(left = tasks.len(), "shutdown: deliveries still in flight are abandoned; they stay pending");
        }
        // Each batch is its own transaction: stopping between two loses nothing. Awaited, so that
        // its handle on the store is gone when the worker is (a restart reopens the file).
        purge.abort();
        let _ = purge.await;
    }
}

/// Purges at start, then every `purge_every`, until shutdown.
async fn purge_loop(
    store: SqliteStore,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = clock.now_ms();
        let before = now.saturating_sub(i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX));
        match store.purge(now, before).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired dedupe keys and old deliveries"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.purge_every) => {}
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_gives_back_its_slot_and_count_even_when_its_delivery_panics() {
        let permits = Arc::new(Semaphore::new(1));
        let in_flight: Arc<Mutex<InFlight>> = Arc::default();
        let finished = Arc::new(Notify::new());
        let event = QueuedEvent { event_id: "e".into(), instance_id: 7, series: 0, attempts: 0, body: vec![] };
        let claim = Claim::new(&in_flight, &finished, &event, permits.clone().try_acquire_owned().unwrap());
        assert_eq!(lock(&in_flight).per_instance.get(&7), Some(&1));
        assert!(lock(&in_flight).events.contains("e"));
        assert_eq!(permits.available_permits(), 0);
        let task = tokio::spawn(async move {
            let _claim = claim;
            panic!("a bug in a delivery");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert!(lock(&in_flight).events.is_empty());
        assert!(lock(&in_flight).per_instance.is_empty());
        assert_eq!(permits.available_permits(), 1);
        // The worker is woken to fill the slot.
        tokio::time::timeout(Duration::from_secs(5), finished.notified()).await.unwrap();
    }
}
