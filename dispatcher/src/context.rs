//! The dispatcher's long-lived dependencies, built once at start-up.

use crate::batches::Batches;
use centaur_config::DispatcherConfig;
use centaur_queue::Queue;
use centaur_sandbox::SandboxBackend;
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, Semaphore};

/// Shared state of one dispatcher process.
pub struct Dispatcher {
    pub pool: PgPool,
    pub queue: Arc<dyn Queue>,
    pub backend: Arc<dyn SandboxBackend>,
    pub config: DispatcherConfig,
    /// The claim and end writers (group commit).
    pub batches: Batches,
    /// One permit per execution this process may run at once.
    pub slots: Arc<Semaphore>,
    /// Woken whenever this process finishes driving an execution: its outbox row may be
    /// due for delivery.
    pub deliveries_due: Notify,
    in_flight: Mutex<HashSet<String>>,
}

impl Dispatcher {
    /// Assembles a dispatcher from its parts.
    pub fn new(
        pool: PgPool,
        queue: Arc<dyn Queue>,
        backend: Arc<dyn SandboxBackend>,
        config: DispatcherConfig,
    ) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let batches = Batches::new(&pool, &config);
        Arc::new(Self {
            batches,
            pool,
            queue,
            backend,
            config,
            slots,
            deliveries_due: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Marks an execution as run by this process; `false` if it already is (a recovered
    /// lease that is really ours must not start a second driver in the same process).
    pub fn begin(&self, execution_id: &str) -> bool {
        self.in_flight
            .lock()
            .map(|mut set| set.insert(execution_id.to_owned()))
            .unwrap_or(false)
    }

    /// Forgets an execution this process finished driving, and wakes the deliverer.
    pub fn end(&self, execution_id: &str) {
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(execution_id);
        }
        self.deliveries_due.notify_one();
    }

    /// True while this process drives the execution.
    pub fn is_running_here(&self, execution_id: &str) -> bool {
        self.in_flight
            .lock()
            .map(|set| set.contains(execution_id))
            .unwrap_or(false)
    }

    /// How many executions this process drives now.
    pub fn running_count(&self) -> usize {
        self.in_flight.lock().map(|set| set.len()).unwrap_or(0)
    }
}
