//! The disruption controller's metrics (registered in [`crate::metrics::Metrics`]; labels are
//! methods, results, nodepools and budget reasons: bounded).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use stowage_solver::consolidate::Budgets;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// See the module docs.
#[derive(Debug)]
pub struct DisruptionMetrics {
    decisions: Family<Labels, Counter>,
    eligible: Family<Labels, Gauge>,
    pub evaluation_seconds: Histogram,
    budgets: Family<Labels, Gauge>,
    savings: Gauge<f64, AtomicU64>,
}

impl Default for DisruptionMetrics {
    fn default() -> Self {
        DisruptionMetrics {
            decisions: Family::default(),
            eligible: Family::default(),
            evaluation_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            budgets: Family::default(),
            savings: Gauge::default(),
        }
    }
}

impl DisruptionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "disruption_decisions",
            "Disruption commands by method and result (executed, churn: dropped by validation, failed, undone)",
            self.decisions.clone(),
        );
        registry.register(
            "disruption_eligible_nodes",
            "Nodes the last disruption round could act on (not blocked), by nodepool",
            self.eligible.clone(),
        );
        registry.register(
            "disruption_evaluation_duration_seconds",
            "Wall time of one disruption round's decision (all methods)",
            self.evaluation_seconds.clone(),
        );
        registry.register(
            "disruption_budgets_allowed_disruptions",
            "Nodes each NodePool may still disrupt now, by budget reason",
            self.budgets.clone(),
        );
        registry.register(
            "consolidation_savings_dollars_per_hour",
            "Summed hourly savings of the disruption commands executed since start (USD per hour)",
            self.savings.clone(),
        );
    }

    /// Counts a command of `method` with `result`.
    pub fn decision(&self, method: &str, result: &str) {
        self.decisions
            .get_or_create(&labels(&[("method", method), ("result", result)]))
            .inc();
    }

    /// How many commands of `method` ended with `result`.
    pub fn decisions_total(&self, method: &str, result: &str) -> u64 {
        self.decisions
            .get_or_create(&labels(&[("method", method), ("result", result)]))
            .get()
    }

    pub fn set_eligible(&self, per_pool: &BTreeMap<String, i64>) {
        self.eligible.clear();
        for (pool, n) in per_pool {
            self.eligible
                .get_or_create(&labels(&[("nodepool", pool)]))
                .set(*n);
        }
    }

    pub fn set_budgets(&self, budgets: &Budgets) {
        self.budgets.clear();
        for (pool, reasons) in &budgets.allowed {
            for (reason, n) in reasons {
                self.budgets
                    .get_or_create(&labels(&[("nodepool", pool), ("reason", reason.as_str())]))
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Adds an executed command's savings.
    pub fn saved(&self, per_hour: f64) {
        self.savings.inc_by(per_hour);
    }

    pub fn savings_per_hour(&self) -> f64 {
        self.savings.get()
    }

    /// One sample in every family (see [`crate::metrics::Metrics::example`]).
    pub fn example(&self) {
        let x = "example";
        self.decision(x, x);
        self.set_eligible(&[(x.to_string(), 1)].into());
        let mut b = Budgets::default();
        b.set(x, stowage_solver::consolidate::Reason::Empty, 1);
        self.set_budgets(&b);
        self.evaluation_seconds.observe(0.01);
        self.saved(0.0);
    }
}
