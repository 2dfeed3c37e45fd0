//! Consolidation decisions: which nodes can go (deleted, or replaced by one cheaper node)
//! because the rest of the cluster plus in-flight capacity holds their pods. Pure: the
//! disruption controller builds the [`Candidate`]s and the per-pool [`Budgets`] from the cluster
//! and acts on the [`Command`]; everything here is a function of its input.
//!
//! Methods, tried in order by [`decide`]; the first that yields a command wins:
//! 1. [`Method::Emptiness`]: every empty candidate (no pod but DaemonSet pods) in one delete;
//! 2. [`Method::MultiNode`]: the largest prefix of the sorted candidates (binary search, at most
//!    [`ConsolidationOptions::max_multi_candidates`]) whose pods fit the rest of the cluster with
//!    at most one new, strictly cheaper node;
//! 3. [`Method::SingleNode`]: the first candidate that can be deleted or replaced by one
//!    cheaper node, the candidates taking turns across NodePools (round-robin, each pool's order
//!    kept) so one large pool does not use up the round.
//!
//! Rules of a probe (removing a set of candidates):
//! - every pod of the candidates (DaemonSet pods leave with their node) must be placed; pods
//!   that were pending before the round do not block: they may stay unschedulable, and a new
//!   claim holding only such pods is the provisioner's, not counted;
//! - at most one new claim holds candidates' pods: none is a delete, one a replacement;
//! - a replacement lists only instance types whose worst launch price (the dearest offering of
//!   the capacity type it launches as: reserved, else spot, else on-demand) is below the
//!   candidates' summed price, and its price is the cheapest of those; a multi-node replacement
//!   that lists a type among the candidates must also be cheaper than the cheapest candidate of
//!   that type (several nodes are not replaced by one more of their own type: deleting the
//!   others is as good with less churn);
//! - spot-to-spot replacement needs at least [`ConsolidationOptions::min_spot_to_spot_types`]
//!   such types (or the pool's `minValues`, when higher) and lists only that many;
//!   on-demand-to-spot needs none.
//!
//! The search is bounded by [`ConsolidationOptions::max_simulations`] (work, not time: the solver
//! reads no clock). Probes are cheap: the cluster is prepared once per round and each probe
//! places only the candidates' (and pending) pods, with the same plan as
//! [`crate::simulate_without`] (`probe.rs`).

mod probe;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use stowage_api::CapacityType;
use stowage_api::labels;
use stowage_api::requirements::Requirements;

use crate::domain::{ExistingNode, NewClaim, Plan, PodKey, PodRequest, SolveInput, SolveOptions};
use crate::model::InstanceType;
use probe::Prepared;

/// How a command was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Emptiness,
    MultiNode,
    SingleNode,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Emptiness, Method::MultiNode, Method::SingleNode];

    /// A short, bounded label (metrics, events).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Emptiness => "emptiness",
            Method::MultiNode => "multi-node",
            Method::SingleNode => "single-node",
        }
    }
}

/// Why a node is disrupted: the `reasons` a NodePool budget names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    Empty,
    Underutilized,
    Drifted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Empty => "Empty",
            Reason::Underutilized => "Underutilized",
            Reason::Drifted => "Drifted",
        }
    }
}

/// A node the controller found eligible: Initialized, past `consolidateAfter`, nothing on it
/// blocks disruption (do-not-disrupt, PDBs, pods that would be lost).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The node's name in [`SolveInput::nodes`].
    pub node: String,
    pub nodepool: String,
    /// What the node costs now, per hour.
    pub price_per_hour: f64,
    pub capacity_type: CapacityType,
    /// The cost of moving its pods (higher moves later): see [`disruption_cost`].
    pub disruption_cost: f64,
    /// The pool's policy allows removing a node that still runs pods
    /// (`WhenEmptyOrUnderutilized`); false: only when empty (`WhenEmpty`).
    pub underutilized_allowed: bool,
    /// The pool's `minValues` on instance types, if any (spot-to-spot flexibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_instance_types: Option<usize>,
}

/// How many more nodes each pool may disrupt now, per reason (the controller computes it from
/// `spec.disruption.budgets`, counting nodes already disrupting). A pool without an entry may
/// disrupt none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    pub allowed: BTreeMap<String, BTreeMap<Reason, usize>>,
}

impl Budgets {
    /// No limit for any pool (tests, `stowage plan --consolidate` without budgets).
    pub fn unlimited(candidates: &[Candidate]) -> Self {
        let mut b = Budgets::default();
        for c in candidates {
            for r in [Reason::Empty, Reason::Underutilized, Reason::Drifted] {
                b.set(&c.nodepool, r, usize::MAX);
            }
        }
        b
    }

    pub fn set(&mut self, pool: &str, reason: Reason, allowed: usize) {
        self.allowed
            .entry(pool.to_string())
            .or_default()
            .insert(reason, allowed);
    }

    pub fn get(&self, pool: &str, reason: Reason) -> usize {
        self.allowed
            .get(pool)
            .and_then(|m| m.get(&reason))
            .copied()
            .unwrap_or(0)
    }

    /// The candidates (in order) that fit the budgets, each taking one from its pool.
    pub fn filter<'a>(&self, candidates: &[&'a Candidate], reason: Reason) -> Vec<&'a Candidate> {
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        candidates
            .iter()
            .filter(|c| {
                let n = left
                    .entry(c.nodepool.as_str())
                    .or_insert_with(|| self.get(&c.nodepool, reason));
                if *n == 0 {
                    return false;
                }
                *n -= 1;
                true
            })
            .copied()
            .collect()
    }
}

/// Knobs of a consolidation round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsolidationOptions {
    pub solve: SolveOptions,
    /// Multi-node looks at most at this many candidates (cheapest to move first).
    pub max_multi_candidates: usize,
    /// A spot node is replaced by spot only when at least this many cheaper spot types exist
    /// (or the pool's `minValues`), and the replacement lists that many, so the fleet does not
    /// churn.
    pub min_spot_to_spot_types: usize,
    /// At most this many scheduling simulations per round (all methods together).
    pub max_simulations: usize,
    /// Threads a round's probes may run on (at least 1). With more than one, the probes the
    /// sequential search will run next (the next single-node candidates, the binary search's
    /// next prefixes) are solved ahead at the same time; the search then reads their plans in
    /// its own order, so the decision and the simulation count are those of one thread.
    #[serde(default = "one_thread")]
    pub probe_threads: usize,
}

fn one_thread() -> usize {
    1
}

impl Default for ConsolidationOptions {
    fn default() -> Self {
        ConsolidationOptions {
            solve: SolveOptions::default(),
            max_multi_candidates: 100,
            min_spot_to_spot_types: 15,
            max_simulations: 200,
            probe_threads: 1,
        }
    }
}

/// What to do: delete the candidates, launching the replacement (if any) first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub method: Method,
    pub reason: Reason,
    /// Node names, in the order they were chosen.
    pub candidates: Vec<String>,
    pub replacement: Option<NewClaim>,
    /// Candidates' summed price minus the replacement's cheapest price, per hour.
    pub savings_per_hour: f64,
}

/// The outcome of a round: the command (if any) and what was looked at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub command: Option<Command>,
    /// Scheduling simulations run.
    pub simulations: usize,
    /// True when [`ConsolidationOptions::max_simulations`] cut the search short.
    pub truncated: bool,
}

/// A pod's eviction cost: 1 + its deletion cost and priority, clamped to [-10, 10].
pub fn eviction_cost(priority: i32, deletion_cost: i32) -> f64 {
    (1.0 + f64::from(deletion_cost) / 2f64.powi(27) + f64::from(priority) / 2f64.powi(25))
        .clamp(-10.0, 10.0)
}

/// A node's disruption cost: its reschedulable pods' positive eviction costs, scaled by the
/// fraction of its lifetime left (`1.0` when it does not expire).
pub fn disruption_cost(pod_costs: impl IntoIterator<Item = f64>, lifetime_left: f64) -> f64 {
    let sum: f64 = pod_costs.into_iter().map(|c| c.max(0.0)).sum();
    sum * lifetime_left.clamp(0.0, 1.0)
}

/// True for a pod that leaves with its node (DaemonSet pods) rather than moving.
pub fn leaves_with_node(pod: &PodRequest) -> bool {
    pod.owner
        .as_deref()
        .is_some_and(|o| o.starts_with("DaemonSet/"))
}

/// Runs the methods in order on `candidates` (sorted by the controller, cheapest to move
/// first) within `budgets`; the first command found wins.
pub fn decide(
    input: &SolveInput,
    candidates: &[Candidate],
    budgets: &Budgets,
    options: &ConsolidationOptions,
) -> Decision {
    if let Some(command) = emptiness(input, candidates, budgets) {
        return Decision {
            command: Some(command),
            ..Decision::default()
        };
    }
    let mut search = Search::new(input, candidates, options);
    let command = search
        .multi_node(candidates, budgets)
        .or_else(|| search.single_node(candidates, budgets));
    Decision {
        command,
        simulations: search.simulations,
        truncated: search.truncated,
    }
}

/// [`Method::MultiNode`] alone (benchmarks, tests): the largest prefix that consolidates.
pub fn multi_node(
    input: &SolveInput,
    candidates: &[Candidate],
    budgets: &Budgets,
    options: &ConsolidationOptions,
) -> Decision {
    let mut search = Search::new(input, candidates, options);
    let command = search.multi_node(candidates, budgets);
    Decision {
        command,
        simulations: search.simulations,
        truncated: search.truncated,
    }
}

/// [`Method::SingleNode`] alone (benchmarks, tests): the first candidate that consolidates.
pub fn single_node(
    input: &SolveInput,
    candidates: &[Candidate],
    budgets: &Budgets,
    options: &ConsolidationOptions,
) -> Decision {
    let mut search = Search::new(input, candidates, options);
    let command = search.single_node(candidates, budgets);
    Decision {
        command,
        simulations: search.simulations,
        truncated: search.truncated,
    }
}

/// Every empty candidate, within budgets, in one delete.
pub fn emptiness(
    input: &SolveInput,
    candidates: &[Candidate],
    budgets: &Budgets,
) -> Option<Command> {
    let nodes: HashMap<&str, &ExistingNode> =
        input.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let empty: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            nodes
                .get(c.node.as_str())
                .is_some_and(|n| n.pods.iter().all(|p| leaves_with_node(p)))
        })
        .collect();
    let chosen = budgets.filter(&empty, Reason::Empty);
    if chosen.is_empty() {
        return None;
    }
    Some(Command {
        method: Method::Emptiness,
        reason: Reason::Empty,
        savings_per_hour: chosen.iter().map(|c| c.price_per_hour).sum(),
        candidates: chosen.iter().map(|c| c.node.clone()).collect(),
        replacement: None,
    })
}

/// Re-checks a command on a fresh input (the validation after the delay): the same candidates
/// must still go with no more than the command's replacement, at a price no higher.
pub fn validate(input: &SolveInput, command: &Command, options: &ConsolidationOptions) -> bool {
    let candidates: Vec<Candidate> = command
        .candidates
        .iter()
        .filter_map(|name| {
            let n = node(input, name)?;
            Some(Candidate {
                node: name.clone(),
                nodepool: n.nodepool.clone().unwrap_or_default(),
                price_per_hour: n.price_per_hour.unwrap_or(0.0),
                capacity_type: n.capacity_type.unwrap_or(CapacityType::OnDemand),
                disruption_cost: 0.0,
                underutilized_allowed: true,
                min_instance_types: None,
            })
        })
        .collect();
    if candidates.len() != command.candidates.len() {
        return false;
    }
    if command.method == Method::Emptiness {
        return candidates.iter().all(|c| {
            node(input, &c.node).is_some_and(|n| n.pods.iter().all(|p| leaves_with_node(p)))
        });
    }
    let mut search = Search::new(input, &candidates, options);
    let refs: Vec<&Candidate> = candidates.iter().collect();
    match search.evaluate(command.method, &refs) {
        Some(Outcome::Delete) => true,
        Some(Outcome::Replace(fresh)) => match &command.replacement {
            Some(old) => fresh.cheapest_price <= old.cheapest_price + 1e-9,
            None => false,
        },
        None => false,
    }
}

/// What removing a set of candidates needs.
enum Outcome {
    Delete,
    Replace(NewClaim),
}

/// One round's simulations, counted against the cap, over one [`Prepared`] cluster.
struct Search<'a> {
    input: &'a SolveInput,
    options: &'a ConsolidationOptions,
    prepared: Prepared<'a>,
    /// Keys of the pods pending before the round: they do not block (see [`Search::evaluate`]).
    pending: HashSet<PodKey>,
    simulations: usize,
    truncated: bool,
    /// Plans solved ahead on other threads (see [`Search::solve_ahead`]), by the removed
    /// candidates' names.
    ahead: HashMap<Vec<String>, Plan>,
}

impl<'a> Search<'a> {
    fn new(
        input: &'a SolveInput,
        candidates: &[Candidate],
        options: &'a ConsolidationOptions,
    ) -> Self {
        Search {
            input,
            options,
            prepared: Prepared::new(input, candidates.iter().map(|c| c.node.as_str())),
            pending: input.pods.iter().map(|p| p.key()).collect(),
            simulations: 0,
            truncated: false,
            ahead: HashMap::new(),
        }
    }

    /// Solves the probes removing each of `sets` at the same time, one per thread: the first
    /// is the probe the search runs next, the others those it may run after it, most likely
    /// first. At most [`ConsolidationOptions::probe_threads`] of them and no more than the
    /// simulations left; nothing when one thread is set or the next probe was solved ahead
    /// already. [`Search::evaluate`] takes the plans in its own order and counts each as a
    /// simulation then, so the search decides and counts exactly as on one thread (a plan is
    /// a function of the prepared round and the set alone); a plan it never asks for is
    /// dropped with the round.
    fn solve_ahead(&mut self, sets: &[Vec<&str>]) {
        let threads = self.options.probe_threads;
        let Some(next) = sets.first() else {
            return;
        };
        if threads <= 1 || self.ahead.contains_key(&key(next)) {
            return;
        }
        let left = self
            .options
            .max_simulations
            .saturating_sub(self.simulations);
        let mut todo: Vec<&[&str]> = Vec::new();
        for s in sets {
            if todo.len() >= threads.min(left) {
                break;
            }
            if !self.ahead.contains_key(&key(s)) && !todo.contains(&s.as_slice()) {
                todo.push(s);
            }
        }
        if todo.len() < 2 {
            return;
        }
        let prepared = &self.prepared;
        let solve = &self.options.solve;
        let plans: Vec<Plan> = std::thread::scope(|scope| {
            let others: Vec<_> = todo[1..]
                .iter()
                .map(|s| scope.spawn(move || prepared.simulate(s, solve)))
                .collect();
            let mut plans = vec![prepared.simulate(todo[0], solve)];
            for h in others {
                plans.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            plans
        });
        for (s, plan) in todo.into_iter().zip(plans) {
            self.ahead.insert(key(s), plan);
        }
    }

    fn multi_node(&mut self, candidates: &[Candidate], budgets: &Budgets) -> Option<Command> {
        let eligible: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.underutilized_allowed)
            .collect();
        let mut eligible = budgets.filter(&eligible, Reason::Underutilized);
        eligible.truncate(self.options.max_multi_candidates);
        if eligible.len() < 2 {
            return None;
        }
        let prefix =
            |len: usize| -> Vec<&str> { eligible[..len].iter().map(|c| c.node.as_str()).collect() };
        // The whole prefix first: consolidating is not monotonic in the prefix length (with
        // prices linear in size, two nodes never merge for less while three may). Ahead: the
        // binary search's first prefix.
        let mut sets = vec![prefix(eligible.len())];
        if eligible.len() > 2 {
            // (2 + (len - 1)) / 2: the first `mid` below.
            sets.push(prefix(eligible.len().div_ceil(2)));
        }
        self.solve_ahead(&sets);
        if let Some(c) = self.command(Method::MultiNode, &eligible) {
            return Some(c);
        }
        if self.truncated {
            return None;
        }
        // Largest shorter prefix (at least 2) that consolidates: binary search on its length.
        let (mut lo, mut hi) = (2usize, eligible.len() - 1);
        let mut best = None;
        while lo <= hi {
            let mid = (lo + hi) / 2;
            // Ahead: the next prefix if this one fails, then if it consolidates.
            let mut sets = vec![prefix(mid)];
            if lo < mid {
                sets.push(prefix((lo + mid - 1) / 2));
            }
            if mid < hi {
                sets.push(prefix((mid + 1 + hi) / 2));
            }
            self.solve_ahead(&sets);
            match self.command(Method::MultiNode, &eligible[..mid]) {
                Some(c) => {
                    best = Some(c);
                    lo = mid + 1;
                }
                None => {
                    if self.truncated {
                        break;
                    }
                    hi = mid - 1;
                }
            }
        }
        best
    }

    fn single_node(&mut self, candidates: &[Candidate], budgets: &Budgets) -> Option<Command> {
        let eligible: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.underutilized_allowed)
            .collect();
        let order = interleave_pools(budgets.filter(&eligible, Reason::Underutilized));
        for (i, &c) in order.iter().enumerate() {
            // Ahead: this candidate and the next ones, one per thread.
            let sets: Vec<Vec<&str>> = order[i..]
                .iter()
                .take(self.options.probe_threads)
                .map(|c| vec![c.node.as_str()])
                .collect();
            self.solve_ahead(&sets);
            if let Some(cmd) = self.command(Method::SingleNode, &[c]) {
                return Some(cmd);
            }
            if self.truncated {
                break;
            }
        }
        None
    }

    fn command(&mut self, method: Method, chosen: &[&Candidate]) -> Option<Command> {
        let price: f64 = chosen.iter().map(|c| c.price_per_hour).sum();
        let (replacement, cost) = match self.evaluate(method, chosen)? {
            Outcome::Delete => (None, 0.0),
            Outcome::Replace(claim) => {
                let cost = claim.cheapest_price;
                (Some(claim), cost)
            }
        };
        Some(Command {
            method,
            reason: Reason::Underutilized,
            candidates: chosen.iter().map(|c| c.node.clone()).collect(),
            replacement,
            savings_per_hour: price - cost,
        })
    }

    /// Simulates removing `chosen`: `None` when it cannot be done (a pod of theirs left over,
    /// more than one new node for their pods, or not strictly cheaper). Pods pending before
    /// the round do not block: they may stay unschedulable, and a new claim holding only
    /// such pods is the provisioner's (it buys it whatever consolidation does).
    fn evaluate(&mut self, method: Method, chosen: &[&Candidate]) -> Option<Outcome> {
        if self.simulations >= self.options.max_simulations {
            self.truncated = true;
            return None;
        }
        self.simulations += 1;
        let names: Vec<&str> = chosen.iter().map(|c| c.node.as_str()).collect();
        let plan = match self.ahead.remove(&key(&names)) {
            Some(plan) => plan,
            None => self.prepared.simulate(&names, &self.options.solve),
        };
        if plan.unschedulable.keys().any(|k| !self.pending.contains(k)) {
            return None;
        }
        let mut claims = plan
            .new_claims
            .into_iter()
            .filter(|c| c.pods.iter().any(|k| !self.pending.contains(k)));
        let Some(mut claim) = claims.next() else {
            return Some(Outcome::Delete);
        };
        if claims.next().is_some() {
            return None;
        }
        let price: f64 = chosen.iter().map(|c| c.price_per_hour).sum();
        // Several nodes replaced by one of a type among them: only when cheaper than the
        // cheapest candidate of that type (else deleting the others and keeping it is better).
        let same_type = (method == Method::MultiNode).then(|| self.same_type_prices(chosen));
        let all_spot = chosen.iter().all(|c| c.capacity_type == CapacityType::Spot);
        let min_types = chosen
            .iter()
            .filter_map(|c| c.min_instance_types)
            .max()
            .unwrap_or(0);
        restrict_replacement(
            self.input,
            &mut claim,
            price,
            same_type.as_ref(),
            all_spot,
            self.options.min_spot_to_spot_types.max(min_types),
        )
        .then_some(Outcome::Replace(claim))
    }

    /// Per instance type among `chosen`: the cheapest candidate of that type.
    fn same_type_prices(&self, chosen: &[&Candidate]) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for c in chosen {
            let Some(t) = node(self.input, &c.node).and_then(instance_type_of) else {
                continue;
            };
            let p = out.entry(t.to_string()).or_insert(f64::INFINITY);
            *p = p.min(c.price_per_hour);
        }
        out
    }
}

/// The key of a probe's plan solved ahead: the removed candidates' names, in order.
fn key(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The candidates in round-robin over their NodePools (each pool's own order kept, pools in
/// the order their first candidate comes), so one large pool does not use up the round.
fn interleave_pools<'c>(candidates: Vec<&'c Candidate>) -> Vec<&'c Candidate> {
    let mut queues: Vec<(&str, std::collections::VecDeque<&'c Candidate>)> = Vec::new();
    for c in candidates {
        match queues.iter_mut().find(|(p, _)| *p == c.nodepool) {
            Some((_, q)) => q.push_back(c),
            None => queues.push((c.nodepool.as_str(), [c].into())),
        }
    }
    let mut out = Vec::new();
    while queues.iter().any(|(_, q)| !q.is_empty()) {
        for (_, q) in &mut queues {
            if let Some(c) = q.pop_front() {
                out.push(c);
            }
        }
    }
    out
}

/// A node's instance type: the field, else its label.
fn instance_type_of(n: &ExistingNode) -> Option<&str> {
    n.instance_type
        .as_deref()
        .or_else(|| n.labels.get(labels::INSTANCE_TYPE).map(String::as_str))
}

/// Narrows a replacement to the instance types whose worst launch price is below `price`
/// (and, for a type among the candidates (`same_type`), below the cheapest candidate of
/// that type); false when none is left (or, replacing spot by spot, fewer than
/// `min_spot_types`). The claim's `cheapest_price` is recomputed over what is left.
fn restrict_replacement(
    input: &SolveInput,
    claim: &mut NewClaim,
    price: f64,
    same_type: Option<&BTreeMap<String, f64>>,
    all_spot: bool,
    min_spot_types: usize,
) -> bool {
    let Ok(reqs) = Requirements::from_requirements(claim.requirements.iter()) else {
        return false;
    };
    let types = pool_types(input, &claim.nodepool);
    let capacity = reqs.get(labels::CAPACITY_TYPE);
    let zones = reqs.get(labels::ZONE);
    // The capacity type the claim would launch as: the cheapest it allows, reserved > spot >
    // on-demand (a claim that allows spot is narrowed to spot, never risking an on-demand
    // fallback that costs more).
    let launch_as = [
        CapacityType::Reserved,
        CapacityType::Spot,
        CapacityType::OnDemand,
    ]
    .into_iter()
    .find(|ct| capacity.is_none_or(|s| s.has(ct.as_str())));
    let Some(launch_as) = launch_as else {
        return false;
    };
    let prices = |t: &InstanceType| -> Vec<f64> {
        t.offerings
            .iter()
            .filter(|o| o.available && o.capacity_type == launch_as)
            .filter(|o| zones.is_none_or(|z| z.has(&o.zone)))
            .map(|o| o.price_per_hour)
            .collect()
    };
    // A type among the candidates caps every option's price (Karpenter's
    // `filterOutSameInstanceType`).
    let ceiling = same_type.map_or(price, |m| {
        claim
            .instance_type_options
            .iter()
            .filter_map(|name| m.get(name))
            .fold(price, |a, b| a.min(*b))
    });
    let mut options: Vec<(f64, f64, String)> = claim
        .instance_type_options
        .iter()
        .filter_map(|name| {
            let t = types.iter().find(|t| &t.name == name)?;
            let p = prices(t);
            let worst = p.iter().copied().reduce(f64::max)?;
            let cheapest = p.iter().copied().reduce(f64::min)?;
            (worst < ceiling).then(|| (worst, cheapest, name.clone()))
        })
        .collect();
    options.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
    if launch_as == CapacityType::Spot && all_spot {
        if options.len() < min_spot_types {
            return false;
        }
        options.truncate(min_spot_types);
    }
    let Some(cheapest) = options.iter().map(|o| o.1).reduce(f64::min) else {
        return false;
    };
    claim.cheapest_price = cheapest;
    claim.instance_type_options = options.into_iter().map(|(_, _, n)| n).collect();
    if capacity.is_some_and(|s| s.values().len() != 1) || capacity.is_none() {
        claim
            .requirements
            .retain(|r| r.key != labels::CAPACITY_TYPE);
        claim
            .requirements
            .push(stowage_api::requirements::Requirement::in_(
                labels::CAPACITY_TYPE,
                [launch_as.as_str()],
            ));
    }
    true
}

fn pool_types<'a>(input: &'a SolveInput, pool: &str) -> &'a [InstanceType] {
    input
        .nodepools
        .iter()
        .find(|p| p.name == pool)
        .and_then(|p| p.instance_types.as_deref())
        .map_or(&input.instance_types[..], |v| &v[..])
}

fn node<'a>(input: &'a SolveInput, name: &str) -> Option<&'a ExistingNode> {
    input.nodes.iter().find(|n| n.name == name)
}

#[cfg(test)]
mod tests;
