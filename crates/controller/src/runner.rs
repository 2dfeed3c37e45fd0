//! Starts every controller on one [`Context`]: the watchers feeding the state (every replica),
//! leadership (a Lease, or always-leader for a single in-process replica), and the leader-only
//! loops — provisioning, the NodeClaim lifecycle (with termination), housekeeping, disruption
//! and interruption handling (when the context has an interruption source).

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::context::Context;
use crate::leader::{LeaderElector, LeaseConfig};

/// How this replica becomes leader.
#[derive(Clone, Debug)]
pub enum Leadership {
    /// Always the leader (one replica: tests, the simulator).
    Always,
    /// Leader while holding the Lease.
    Lease(LeaseConfig),
}

/// The running controllers; dropping it stops them.
#[derive(Debug)]
pub struct Running {
    pub ctx: Arc<Context>,
    handles: Vec<JoinHandle<()>>,
    /// The Lease this replica competes for, released on [`Running::shutdown`].
    lease: Option<LeaseConfig>,
}

impl Running {
    /// Stops every task (as a crash would: nothing is cleaned up).
    pub fn abort(&self) {
        for h in &self.handles {
            h.abort();
        }
    }

    /// Stops as a rollout or a drain asks (SIGTERM, SIGINT): no loop takes new work, steps in
    /// flight are abandoned at their next await (each is idempotent and resumed by the next
    /// leader), then the Lease is released so a standby takes over at once instead of after the
    /// lease duration.
    pub async fn shutdown(self) {
        self.abort();
        self.ctx.set_leader(false);
        if let Some(config) = &self.lease {
            let elector = LeaderElector::new(
                self.ctx.client.clone(),
                config.clone(),
                self.ctx.clock.clone(),
            );
            match elector.release().await {
                Ok(()) => tracing::info!(lease = %config.name, "released the leader lease"),
                Err(err) => tracing::warn!(%err, "failed to release the leader lease"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Spawns every controller (must be called inside a tokio runtime).
pub fn start(ctx: Arc<Context>, leadership: Leadership) -> Running {
    let mut handles = crate::watch::spawn_all(&ctx);
    let mut lease = None;
    match leadership {
        Leadership::Always => ctx.set_leader(true),
        Leadership::Lease(config) => {
            lease = Some(config.clone());
            let elector = LeaderElector::new(ctx.client.clone(), config, ctx.clock.clone());
            let mut rx = elector.subscribe();
            handles.push(tokio::spawn(elector.run()));
            let c = ctx.clone();
            handles.push(tokio::spawn(async move {
                loop {
                    let leader = *rx.borrow_and_update();
                    c.set_leader(leader);
                    if rx.changed().await.is_err() {
                        c.set_leader(false);
                        return;
                    }
                }
            }));
        }
    }
    handles.push(tokio::spawn(crate::provisioning::run(ctx.clone())));
    handles.push(tokio::spawn(crate::lifecycle::run(ctx.clone())));
    handles.push(tokio::spawn(crate::housekeeping::run(ctx.clone())));
    handles.push(tokio::spawn(crate::interruption::run(ctx.clone())));
    handles.push(tokio::spawn(crate::disruption::run(ctx.clone())));
    handles.push(tokio::spawn(crate::drift::run(ctx.clone())));
    Running {
        ctx,
        handles,
        lease,
    }
}

/// Runs every controller as the one always-leader replica until `shutdown` turns true (or its
/// sender is gone), then stops them: how `stowage simulate`, the SDK-free `simulate` example and
/// the simulated-cluster tests plug the controllers into the simulator.
pub async fn run_until(ctx: Arc<Context>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let running = start(ctx, Leadership::Always);
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    drop(running);
}
