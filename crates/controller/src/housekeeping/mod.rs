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
pub use node_class_status::update_node_class_status;
pub use nodepool_status::update_nodepool_status;

use crate::context::Context;
use crate::error::Chain;

/// The housekeeping loop (leader-only): a first pass as soon as the state is synced (so node
/// classes resolve before the first launch needs them), then every `gc_interval`.
pub async fn run(ctx: Arc<Context>) {
    let mut gc = Gc::new();
    let mut synced = ctx.subscribe_synced();
    while !*synced.borrow_and_update() {
        if synced.changed().await.is_err() {
            return;
        }
    }
    loop {
        update_fleet_metrics(&ctx);
        if ctx.is_leader() && ctx.state().is_synced() {
            if let Err(err) = update_node_class_status(&ctx).await {
                tracing::warn!(err = %Chain(&err), "node class status");
            }
            if let Err(err) = update_nodepool_status(&ctx).await {
                tracing::warn!(err = %Chain(&err), "nodepool status");
            }
            if let Err(err) = gc.collect(&ctx).await {
                tracing::warn!(err = %Chain(&err), "garbage collection");
            }
        }
        tokio::time::sleep(ctx.settings.gc_interval).await;
    }
}
