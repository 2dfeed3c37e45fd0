//! What a simulation run reports: samples over virtual time, the summary figures, and three
//! renderings — a plain-text table, one JSON object, and a self-contained HTML page with inline
//! SVG charts (hand-written; no plotting crate).

use std::fmt::Write as _;

use serde::Serialize;

/// One sample of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Virtual seconds since the start.
    pub t: f64,
    pub nodes_spot: usize,
    pub nodes_on_demand: usize,
    pub nodes_reserved: usize,
    /// Nodes without a capacity-type label.
    pub nodes_other: usize,
    pub cost_per_hour: f64,
    pub pending_pods: usize,
    pub running_pods: usize,
    pub nodeclaims: usize,
    /// vCPUs of the live nodes, by capacity type (reserved counts as other).
    pub vcpu_spot: f64,
    pub vcpu_on_demand: f64,
    pub vcpu_other: f64,
    /// The controllers' API requests so far (cumulative).
    pub api_requests: u64,
    /// Calls to the cloud provider so far (cumulative).
    pub cloud_calls: u64,
    /// EC2 API calls so far (cumulative), as the AWS provider would make them.
    pub ec2_calls: u64,
    /// Ready nodes holding no pod but DaemonSet and finished pods.
    pub nodes_empty: usize,
}

impl Sample {
    pub fn nodes(&self) -> usize {
        self.nodes_spot + self.nodes_on_demand + self.nodes_reserved + self.nodes_other
    }

    pub fn vcpu(&self) -> f64 {
        self.vcpu_spot + self.vcpu_on_demand + self.vcpu_other
    }

    /// Spot's share of the live vCPUs (`None` without nodes).
    pub fn spot_share(&self) -> Option<f64> {
        let total = self.vcpu();
        (total > 0.0).then(|| self.vcpu_spot / total)
    }
}

/// The most calls in one sampling interval, and when (end of the interval, virtual seconds).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CallPeak {
    pub calls: u64,
    pub at_seconds: f64,
}

/// The solves of the provisioner, as the controllers report them (filled in by whoever plugs
/// the controllers in: crates/sim does not see them).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SolverFigures {
    pub batches: usize,
    /// Wall time of one solve (the pure solver, no I/O).
    pub p50_seconds: f64,
    pub max_seconds: f64,
    /// Pods of the largest batch, and its wall time from the batch closing to its last
    /// NodeClaim created (snapshot + solve + writes).
    pub largest_batch_pods: usize,
    pub largest_batch_claims: usize,
    pub largest_batch_seconds: f64,
}

/// Pods of one workload still pending at the end, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PendingGroup {
    pub workload: String,
    pub pods: usize,
    /// The scheduler's latest `Unschedulable` message.
    pub message: String,
}

/// The outcome of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub duration_seconds: f64,
    /// Whether controllers were plugged in.
    pub controllers: bool,
    pub peak_nodes: usize,
    pub nodes_at_end: usize,
    /// Pods still pending at the end that some NodePool could have served.
    pub pending_at_end: usize,
    /// Pods still pending at the end that no NodePool and instance type can serve.
    pub unschedulable_at_end: usize,
    /// Jobs and Spark applications the scenario's end cut short.
    pub jobs_unfinished_at_end: usize,
    /// Pending pods at the end by workload.
    pub pending_by_workload: Vec<PendingGroup>,
    pub cost_total_usd: f64,
    pub peak_cost_per_hour: f64,
    pub p50_pending_seconds: f64,
    pub p95_pending_seconds: f64,
    pub max_pending_seconds: f64,
    pub launches: u64,
    pub interruptions: u64,
    /// Workload pods on nodes when their interruption warning came.
    pub interrupted_pods: u64,
    /// Of those: seconds from the warning to a replacement pod of the same workload Running on
    /// another node (nearest rank), and the longest.
    pub p95_interruption_rescheduled_seconds: f64,
    pub max_interruption_rescheduled_seconds: f64,
    /// Of those: how many had no replacement Running elsewhere by the end.
    pub interrupted_pods_not_rescheduled: u64,
    /// Workload pods still on an interrupted instance when it went away (killed, not drained).
    pub pods_killed_by_interruption: u64,
    pub pods_created: u64,
    pub pods_started: usize,
    pub binds: u64,
    pub wall_seconds: f64,
    /// Of `wall_seconds`: the simulated cluster's own machinery, and its scheduler.
    pub cluster_wall_seconds: f64,
    pub scheduler_wall_seconds: f64,
    /// Of `wall_seconds`: the API server serving requests and watch streams.
    pub api_wall_seconds: f64,
    pub api_requests: u64,
    /// Largest number of pods (pending + running) in one sample.
    pub peak_pods: usize,
    /// Largest vCPU total of live nodes in one sample.
    pub peak_vcpu: f64,
    /// Spot's share of the live vCPUs over the samples that had nodes: lowest and mean.
    pub spot_share_min: f64,
    pub spot_share_avg: f64,
    pub p99_pending_seconds: f64,
    /// The controllers' API requests by `verb group/resource` (audit mode).
    pub controller_api_requests: std::collections::BTreeMap<String, u64>,
    /// The most controller API requests in one sampling interval.
    pub controller_api_peak: CallPeak,
    /// Calls of the controllers to the cloud provider (the `CloudProvider` trait) by operation:
    /// provider calls, not EC2 calls (`create` is one per NodeClaim; the AWS provider coalesces
    /// them). See `ec2_calls` for what EC2 sees.
    pub cloud_calls: std::collections::BTreeMap<String, u64>,
    /// All provider calls per instance launched.
    pub cloud_calls_per_launch: f64,
    /// The most provider calls in one sampling interval.
    pub cloud_calls_peak: CallPeak,
    /// EC2 API calls by action, as the AWS provider would make them for the provider calls
    /// (coalesced: one CreateFleet per launch shape and window, batched DescribeInstances and
    /// TerminateInstances; `stowage_cloud::ec2_model`).
    pub ec2_calls: std::collections::BTreeMap<String, u64>,
    /// All EC2 calls per instance launched.
    pub ec2_calls_per_launch: f64,
    /// The most EC2 calls in one sampling interval.
    pub ec2_calls_peak: CallPeak,
    pub solver: SolverFigures,
    /// Counted by the simulated cluster itself (`cluster/referee.rs`), independently of the
    /// controllers: pods covered by a PodDisruptionBudget that went away while it allowed no
    /// disruption.
    pub pdb_violations: u64,
    /// Nodes that started disrupting beyond their NodePool's `spec.disruption.budgets`.
    pub budget_violations: u64,
    /// Nodes voluntarily disrupted, by method and by reason (what the controllers' `Disrupting`
    /// condition names).
    pub disruptions_by_method: std::collections::BTreeMap<String, u64>,
    pub disruptions_by_reason: std::collections::BTreeMap<String, u64>,
    /// The most nodes of each NodePool disrupting at once.
    pub max_disrupting_by_pool: std::collections::BTreeMap<String, u64>,
    /// Pods evicted, deleted or killed by the controllers (interruptions excluded).
    pub pods_disrupted: u64,
    /// Disrupted pods that nothing recreates, and pods killed with their instance undrained.
    pub pods_lost: u64,
    /// Pods that went away with an interrupted spot instance (involuntary).
    pub pods_interrupted: u64,
    /// Of those, pods deleted within their grace period of the instance's end while a PDB
    /// allowed no disruption (the notice left no time to honour it; not violations).
    pub pods_cut_short: u64,
    /// Deployment replicas not Running at the end (desired minus Running, summed).
    pub replicas_short_at_end: usize,
    /// Disruption commands the controllers started.
    pub disruption_commands: u64,
    /// Price of the nodes removed by voluntary disruption, of the replacements launched for
    /// them, and the difference (what consolidation saves), $/h.
    pub removed_price_per_hour: f64,
    pub replacement_price_per_hour: f64,
    pub saved_per_hour: f64,
    /// Ready nodes without workload pods at the last sample.
    pub empty_nodes_at_end: usize,
    /// The referee's first violations, described.
    pub violations: Vec<String>,
    pub samples: Vec<Sample>,
}

/// The nearest-rank percentile of `values` (0 when empty).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn hms(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl Report {
    /// Takes the referee's counts.
    pub fn set_referee(&mut self, t: crate::cluster::Tally) {
        self.pdb_violations = t.pdb_violations;
        self.budget_violations = t.budget_violations;
        self.disruptions_by_method = t.disruptions_by_method;
        self.disruptions_by_reason = t.disruptions_by_reason;
        self.max_disrupting_by_pool = t.max_disrupting_by_pool;
        self.pods_disrupted = t.pods_disrupted;
        self.pods_lost = t.pods_lost;
        self.pods_interrupted = t.pods_interrupted;
        self.pods_cut_short = t.pods_cut_short;
        self.disruption_commands = t.disruption_commands;
        self.removed_price_per_hour = t.removed_price_per_hour;
        self.replacement_price_per_hour = t.replacement_price_per_hour;
        self.saved_per_hour = t.removed_price_per_hour - t.replacement_price_per_hour;
        self.violations = t.details;
    }

    /// Fills the summary figures from the samples and latencies.
    pub fn finish(&mut self, latencies: &[f64]) {
        self.peak_nodes = self.samples.iter().map(Sample::nodes).max().unwrap_or(0);
        self.nodes_at_end = self.samples.last().map_or(0, Sample::nodes);
        self.empty_nodes_at_end = self.samples.last().map_or(0, |s| s.nodes_empty);
        self.peak_cost_per_hour = self
            .samples
            .iter()
            .map(|s| s.cost_per_hour)
            .fold(0.0, f64::max);
        self.cost_total_usd = self
            .samples
            .windows(2)
            .map(|w| w[0].cost_per_hour * (w[1].t - w[0].t) / 3600.0)
            .sum();
        self.p50_pending_seconds = percentile(latencies, 50.0);
        self.p95_pending_seconds = percentile(latencies, 95.0);
        self.p99_pending_seconds = percentile(latencies, 99.0);
        self.peak_pods = self
            .samples
            .iter()
            .map(|s| s.pending_pods + s.running_pods)
            .max()
            .unwrap_or(0);
        self.peak_vcpu = self.samples.iter().map(Sample::vcpu).fold(0.0, f64::max);
        let shares: Vec<f64> = self.samples.iter().filter_map(Sample::spot_share).collect();
        self.spot_share_min = shares.iter().copied().fold(f64::NAN, f64::min);
        if self.spot_share_min.is_nan() {
            self.spot_share_min = 0.0;
        }
        self.spot_share_avg = if shares.is_empty() {
            0.0
        } else {
            shares.iter().sum::<f64>() / shares.len() as f64
        };
        self.max_pending_seconds = latencies.iter().copied().fold(0.0, f64::max);
        self.pods_started = latencies.len();
    }

    /// Fills the per-launch and peak figures of the cloud and API calls from the samples and
    /// the totals.
    pub fn finish_calls(&mut self) {
        let per_launch = |calls: &std::collections::BTreeMap<String, u64>| {
            if self.launches == 0 {
                0.0
            } else {
                calls.values().sum::<u64>() as f64 / self.launches as f64
            }
        };
        self.cloud_calls_per_launch = per_launch(&self.cloud_calls);
        self.ec2_calls_per_launch = per_launch(&self.ec2_calls);
        let peak = |f: &dyn Fn(&Sample) -> u64| {
            self.samples
                .windows(2)
                .map(|w| CallPeak {
                    calls: f(&w[1]).saturating_sub(f(&w[0])),
                    at_seconds: w[1].t,
                })
                .max_by_key(|p| p.calls)
                .unwrap_or_default()
        };
        self.cloud_calls_peak = peak(&|s| s.cloud_calls);
        self.ec2_calls_peak = peak(&|s| s.ec2_calls);
        self.controller_api_peak = peak(&|s| s.api_requests);
    }

    /// The summary table printed on stdout.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} — {} of virtual time in {:.1}s wall{}",
            self.scenario,
            hms(self.duration_seconds),
            self.wall_seconds,
            if self.controllers {
                ""
            } else {
                " (no controllers: pods stay pending)"
            }
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>8}  {:>6} {:>6} {:>9} {:>6}  {:>10}  {:>8} {:>8}",
            "time", "nodes", "spot", "on-demand", "other", "cost $/h", "pending", "running"
        );
        let rows = 12usize;
        let n = self.samples.len();
        let step = n.div_ceil(rows).max(1);
        let mut picked: Vec<&Sample> = self.samples.iter().step_by(step).collect();
        if let Some(last) = self.samples.last()
            && picked.last().is_none_or(|p| p.t != last.t)
        {
            picked.push(last);
        }
        for s in picked {
            let _ = writeln!(
                out,
                "{:>8}  {:>6} {:>6} {:>9} {:>6}  {:>10.2}  {:>8} {:>8}",
                hms(s.t),
                s.nodes(),
                s.nodes_spot,
                s.nodes_on_demand,
                s.nodes_other + s.nodes_reserved,
                s.cost_per_hour,
                s.pending_pods,
                s.running_pods
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "peak                  {} nodes, {} pods, {:.0} vCPU",
            self.peak_nodes, self.peak_pods, self.peak_vcpu
        );
        let _ = writeln!(
            out,
            "spot share of vCPU    min {:.1} %, avg {:.1} %",
            self.spot_share_min * 100.0,
            self.spot_share_avg * 100.0
        );
        let _ = writeln!(
            out,
            "cost                  ${:.2} total, peak ${:.2}/h",
            self.cost_total_usd, self.peak_cost_per_hour
        );
        let _ = writeln!(
            out,
            "pending -> running    p50 {:.0}s, p95 {:.0}s, p99 {:.0}s, max {:.0}s over {} pods",
            self.p50_pending_seconds,
            self.p95_pending_seconds,
            self.p99_pending_seconds,
            self.max_pending_seconds,
            self.pods_started
        );
        let _ = writeln!(
            out,
            "pending at end        {} schedulable, {} unschedulable by any NodePool",
            self.pending_at_end, self.unschedulable_at_end
        );
        if self.jobs_unfinished_at_end > 0 {
            let _ = writeln!(
                out,
                "cut short             {} Job(s)/Spark application(s) still running when the scenario ended",
                self.jobs_unfinished_at_end
            );
        }
        for g in &self.pending_by_workload {
            let _ = writeln!(
                out,
                "  {:<20} {:>5} pending: {}",
                g.workload, g.pods, g.message
            );
        }
        let _ = writeln!(
            out,
            "empty nodes at end    {} (Ready, no workload pod)",
            self.empty_nodes_at_end
        );
        let by = |m: &std::collections::BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "disruptions           {} command(s), {} node(s): by method [{}], by reason [{}]",
            self.disruption_commands,
            self.disruptions_by_reason.values().sum::<u64>(),
            by(&self.disruptions_by_method),
            by(&self.disruptions_by_reason)
        );
        let _ = writeln!(
            out,
            "consolidation saves   ${:.2}/h (removed ${:.2}/h, replacements ${:.2}/h)",
            self.saved_per_hour, self.removed_price_per_hour, self.replacement_price_per_hour
        );
        let _ = writeln!(
            out,
            "violations            {} PDB, {} budget; {} pod(s) disrupted, {} lost, {} replica(s) short at end",
            self.pdb_violations,
            self.budget_violations,
            self.pods_disrupted,
            self.pods_lost,
            self.replicas_short_at_end
        );
        for v in &self.violations {
            let _ = writeln!(out, "  {v}");
        }
        let _ = writeln!(out, "launches              {}", self.launches);
        let _ = writeln!(out, "interruptions         {}", self.interruptions);
        if self.interrupted_pods > 0 {
            let _ = writeln!(
                out,
                "  warning -> running  p95 {:.0}s, max {:.0}s elsewhere for {} displaced pods ({} not rescheduled); {} pods killed with their instance, {} deleted at its end past their PDB",
                self.p95_interruption_rescheduled_seconds,
                self.max_interruption_rescheduled_seconds,
                self.interrupted_pods,
                self.interrupted_pods_not_rescheduled,
                self.pods_killed_by_interruption,
                self.pods_cut_short
            );
        }
        let _ = writeln!(
            out,
            "pods created          {} ({} binds)",
            self.pods_created, self.binds
        );
        if self.solver.batches > 0 {
            let s = &self.solver;
            let _ = writeln!(
                out,
                "solver                {} batches, p50 {:.3}s, max {:.3}s; largest batch {} pods -> {} NodeClaims created in {:.2}s",
                s.batches,
                s.p50_seconds,
                s.max_seconds,
                s.largest_batch_pods,
                s.largest_batch_claims,
                s.largest_batch_seconds
            );
        }
        if self.controllers {
            let total: u64 = self.controller_api_requests.values().sum();
            let _ = writeln!(
                out,
                "controller API calls  {total} (peak {} in {:.0}s at {})",
                self.controller_api_peak.calls,
                self.sample_interval(),
                hms(self.controller_api_peak.at_seconds)
            );
            for (what, n) in &self.controller_api_requests {
                let _ = writeln!(out, "  {what:<40} {n:>8}");
            }
            let ec2: u64 = self.ec2_calls.values().sum();
            let _ = writeln!(
                out,
                "EC2 calls             {ec2} ({:.2} per launched instance; peak {} in {:.0}s at {})",
                self.ec2_calls_per_launch,
                self.ec2_calls_peak.calls,
                self.sample_interval(),
                hms(self.ec2_calls_peak.at_seconds)
            );
            for (what, n) in &self.ec2_calls {
                let _ = writeln!(out, "  {what:<40} {n:>8}");
            }
            let cloud: u64 = self.cloud_calls.values().sum();
            let _ = writeln!(
                out,
                "provider calls        {cloud} ({:.2} per launched instance; peak {} in {:.0}s at {})",
                self.cloud_calls_per_launch,
                self.cloud_calls_peak.calls,
                self.sample_interval(),
                hms(self.cloud_calls_peak.at_seconds)
            );
            for (what, n) in &self.cloud_calls {
                let _ = writeln!(out, "  {what:<40} {n:>8}");
            }
        }
        let _ = writeln!(
            out,
            "wall time             {:.1}s: simulated cluster {:.1}s (scheduler {:.1}s), API server {:.1}s for {} requests",
            self.wall_seconds,
            self.cluster_wall_seconds,
            self.scheduler_wall_seconds,
            self.api_wall_seconds,
            self.api_requests
        );
        out
    }

    /// Seconds between samples (the first two).
    fn sample_interval(&self) -> f64 {
        match self.samples.as_slice() {
            [a, b, ..] => b.t - a.t,
            _ => 0.0,
        }
    }

    /// One JSON object for machines.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// A self-contained HTML page with SVG charts of the series.
    pub fn to_html(&self) -> String {
        let t: Vec<f64> = self.samples.iter().map(|s| s.t / 60.0).collect();
        let series = |f: &dyn Fn(&Sample) -> f64| self.samples.iter().map(f).collect::<Vec<f64>>();
        let nodes_chart = svg_chart(
            "Nodes by capacity type",
            &t,
            &[
                ("spot", "#2b8cbe", series(&|s| s.nodes_spot as f64)),
                (
                    "on-demand",
                    "#e6550d",
                    series(&|s| s.nodes_on_demand as f64),
                ),
                (
                    "other",
                    "#756bb1",
                    series(&|s| (s.nodes_other + s.nodes_reserved) as f64),
                ),
                ("total", "#333333", series(&|s| s.nodes() as f64)),
            ],
        );
        let cost_chart = svg_chart(
            "Cost per hour (USD)",
            &t,
            &[("cost $/h", "#31a354", series(&|s| s.cost_per_hour))],
        );
        let pods_chart = svg_chart(
            "Pods",
            &t,
            &[
                ("pending", "#de2d26", series(&|s| s.pending_pods as f64)),
                ("running", "#3182bd", series(&|s| s.running_pods as f64)),
            ],
        );
        let table = html_escape(&self.summary_table());
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Stowage simulation: {name}</title>\n<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}pre{{background:#f6f6f6;padding:1em}}svg{{display:block;margin:1em 0}}</style></head>\n<body><h1>Stowage simulation: {name}</h1>\n{nodes_chart}\n{cost_chart}\n{pods_chart}\n<h2>Summary</h2><pre>{table}</pre>\n</body></html>\n",
            name = html_escape(&self.scenario),
        )
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart: x in minutes, one polyline per series, axes with a few ticks, a legend.
fn svg_chart(title: &str, x: &[f64], series: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 300.0, 60.0, 20.0, 30.0, 40.0);
    let x_max = x.iter().copied().fold(0.0, f64::max).max(1e-9);
    let y_max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.05;
    let px = |v: f64| left + v / x_max * (w - left - right);
    let py = |v: f64| h - bottom - v / y_max * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n<text x=\"{left}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        html_escape(title)
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        h - bottom,
        w - right,
        h - bottom
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#999\"/>",
        h - bottom
    );
    for i in 0..=4 {
        let yv = y_max * i as f64 / 4.0;
        let xv = x_max * i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.0}</text>",
            left - 5.0,
            py(yv) + 4.0,
            yv
        );
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#eee\"/>",
            py(yv),
            w - right
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{:.0}m</text>",
            px(xv),
            h - bottom + 15.0,
            xv
        );
    }
    for (i, (name, color, values)) in series.iter().enumerate() {
        let points: Vec<String> = x
            .iter()
            .zip(values)
            .map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>",
            points.join(" ")
        );
        let lx = left + 10.0 + i as f64 * 120.0;
        let _ = writeln!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            h - 12.0,
            lx + 16.0,
            h - 8.0,
            html_escape(name)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, spot: usize, od: usize, cost: f64) -> Sample {
        Sample {
            t,
            nodes_spot: spot,
            nodes_on_demand: od,
            cost_per_hour: cost,
            ..Default::default()
        }
    }

    #[test]
    fn the_referees_counts_and_the_savings_are_reported() {
        let mut r = Report {
            samples: vec![Sample {
                nodes_spot: 3,
                nodes_empty: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        r.finish(&[]);
        let mut t = crate::cluster::Tally {
            budget_violations: 2,
            pdb_violations: 1,
            disruption_commands: 3,
            removed_price_per_hour: 1.5,
            replacement_price_per_hour: 0.25,
            details: vec!["pod a/b went away".into()],
            ..Default::default()
        };
        t.disruptions_by_method.insert("emptiness".into(), 4);
        t.disruptions_by_reason.insert("Empty".into(), 4);
        r.set_referee(t);
        assert_eq!(r.empty_nodes_at_end, 1);
        assert!((r.saved_per_hour - 1.25).abs() < 1e-9);
        let table = r.summary_table();
        assert!(
            table.contains("disruptions           3 command(s), 4 node(s): by method [emptiness 4], by reason [Empty 4]"),
            "{table}"
        );
        assert!(
            table.contains("violations            1 PDB, 2 budget"),
            "{table}"
        );
        assert!(table.contains("  pod a/b went away"), "{table}");
        assert!(table.contains("consolidation saves   $1.25/h"), "{table}");
        assert_eq!(r.to_json()["budget_violations"], 2);
    }

    #[test]
    fn figures_from_samples() {
        let mut r = Report {
            scenario: "x".into(),
            samples: vec![
                sample(0.0, 0, 0, 0.0),
                sample(1800.0, 10, 1, 4.0),
                sample(3600.0, 5, 1, 2.0),
            ],
            ..Default::default()
        };
        r.finish(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert_eq!(r.peak_nodes, 11);
        assert_eq!(r.nodes_at_end, 6);
        assert!(
            (r.cost_total_usd - 2.0).abs() < 1e-9,
            "{}",
            r.cost_total_usd
        );
        assert_eq!(r.p50_pending_seconds, 3.0);
        assert_eq!(r.p95_pending_seconds, 100.0);
        let json = r.to_json();
        for k in [
            "peak_nodes",
            "pending_at_end",
            "cost_total_usd",
            "p95_pending_seconds",
            "launches",
            "interruptions",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
        assert_eq!(r.p99_pending_seconds, 100.0);
        for k in [
            "pdb_violations",
            "budget_violations",
            "disruptions_by_method",
            "disruptions_by_reason",
            "saved_per_hour",
            "empty_nodes_at_end",
            "pods_lost",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
        let html = r.to_html();
        assert!(html.contains("<svg") && html.contains("polyline") && !html.contains("<script"));
        assert!(r.summary_table().contains("peak                  11 nodes"));
    }

    #[test]
    fn spot_share_peaks_and_call_rates() {
        let at = |t: f64, spot: f64, od: f64, pods: usize, api: u64, cloud: u64| Sample {
            t,
            vcpu_spot: spot,
            vcpu_on_demand: od,
            pending_pods: pods / 2,
            running_pods: pods - pods / 2,
            api_requests: api,
            cloud_calls: cloud,
            ..Default::default()
        };
        let mut r = Report {
            controllers: true,
            launches: 40,
            samples: vec![
                at(0.0, 0.0, 0.0, 0, 0, 0),
                at(30.0, 90.0, 10.0, 500, 100, 20),
                at(60.0, 190.0, 10.0, 700, 150, 21),
                at(90.0, 100.0, 0.0, 300, 400, 30),
            ],
            cloud_calls: [("create".to_string(), 25), ("get".to_string(), 5)].into(),
            ec2_calls: [
                ("CreateFleet".to_string(), 4),
                ("DescribeInstances".to_string(), 6),
            ]
            .into(),
            ..Default::default()
        };
        for (s, ec2) in r.samples.iter_mut().zip([0, 2, 9, 10]) {
            s.ec2_calls = ec2;
        }
        r.finish(&[]);
        r.finish_calls();
        assert_eq!(r.peak_pods, 700);
        assert_eq!(r.peak_vcpu, 200.0);
        // Samples without nodes do not count: 0.90, 0.95, 1.0.
        assert!((r.spot_share_min - 0.90).abs() < 1e-9);
        assert!((r.spot_share_avg - 0.95).abs() < 1e-9);
        assert_eq!(r.cloud_calls_per_launch, 0.75);
        assert_eq!(r.ec2_calls_per_launch, 0.25);
        assert_eq!(
            r.ec2_calls_peak,
            CallPeak {
                calls: 7,
                at_seconds: 60.0
            }
        );
        assert_eq!(
            r.cloud_calls_peak,
            CallPeak {
                calls: 20,
                at_seconds: 30.0
            }
        );
        assert_eq!(
            r.controller_api_peak,
            CallPeak {
                calls: 250,
                at_seconds: 90.0
            }
        );
        let table = r.summary_table();
        assert!(
            table.contains("spot share of vCPU    min 90.0 %, avg 95.0 %"),
            "{table}"
        );
        assert!(
            table.contains("0.75 per launched instance; peak 20 in 30s"),
            "{table}"
        );
        assert!(
            table.contains("EC2 calls             10 (0.25 per launched instance; peak 7 in 30s"),
            "{table}"
        );
    }
}
