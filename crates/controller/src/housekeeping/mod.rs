//! Periodic leader-only housekeeping, one module per job: [`node_class_status`] (node classes
//! reconciled by the cloud provider, status written back), [`nodepool_status`], [`gc`]
//! (garbage collection) and [`fleet_metrics`]. [`run`] is the loop that drives them.

pub mod fleet_metrics;
pub mod gc;
pub mod node_class_status;
pub mod nodepool_status;

use std::sync::Arc;

pub use fleet_metrics::update_fleet_metrics;
pub use gc::{Gc, GcResult};
pub use node_class_status::{Refresh, update_node_class_status, update_node_class_status_with};
pub use nodepool_status::update_nodepool_status;

use crate::context::Context;
use crate::error::Chain;

/// How often garbage collection lists the cluster's instances (Karpenter's period too): an
/// orphan instance is terminated between `gc_grace` and `gc_grace + GC_PERIOD` after it is first
/// seen.
pub const GC_PERIOD: std::time::Duration = std::time::Duration::from_secs(2 * 60);

/// The housekeeping loop (leader-only): a first pass as soon as the state is synced (so node
/// classes resolve before the first launch needs them), then every `gc_interval` (node classes
/// resolved only when due, see [`node_class_status`]; garbage collection every [`GC_PERIOD`]).
pub async fn run(ctx: Arc<Context>) {
    let mut gc = Gc::new();
    let mut refresh = Refresh::new();
    let mut last_gc: Option<tokio::time::Instant> = None;
    let mut synced = ctx.subscribe_synced();
    while !*synced.borrow_and_update() {
        if synced.changed().await.is_err() {
            return;
        }
    }
    loop {
        update_fleet_metrics(&ctx);
        if ctx.is_leader() && ctx.state().is_synced() {
            if let Err(err) = update_node_class_status_with(&ctx, Some(&mut refresh)).await {
                tracing::warn!(err = %Chain(&err), "node class status");
            }
            if let Err(err) = update_nodepool_status(&ctx).await {
                tracing::warn!(err = %Chain(&err), "nodepool status");
            }
            // Garbage collection lists every instance of the cluster (one DescribeInstances):
            // every GC_PERIOD, not every pass.
            let gc_period = GC_PERIOD.max(ctx.settings.gc_interval);
            if last_gc.is_none_or(|t| t.elapsed() >= gc_period) {
                last_gc = Some(tokio::time::Instant::now());
                if let Err(err) = gc.collect(&ctx).await {
                    tracing::warn!(err = %Chain(&err), "garbage collection");
                }
            }
        } else {
            // A replica that becomes leader resolves everything at once.
            refresh = Refresh::new();
            last_gc = None;
        }
        tokio::time::sleep(ctx.settings.gc_interval).await;
    }
}
