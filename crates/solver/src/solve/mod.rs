//! The solve: place pending pods on existing nodes, then in-flight claims, then new claims bought
//! cheapest first, respecting every scheduling constraint, NodePool limits and capacity mix.
//!
//! # Phases, in order (one file each)
//!
//! | step | file | what it owns |
//! |------|------|--------------|
//! | 1 | [`interning`] | small ids for resources, zones, topology keys and their values |
//! | 2 | [`pools`] | each NodePool's instance types (offerings, daemonset overhead) and its [`pools::PoolBudget`] (limits + on-demand cap) |
//! | 3 | [`topology`] | topology groups (pods a spread/affinity term counts), their counts, the domains a class may use |
//! | 4 | [`classes`] | pod classes (identical pods), zone spreads dealt to zones, their compatible types per pool, relaxation, bundles (classes packed jointly) |
//! | 5 | [`place`] | placing a class onto existing, in-flight and already-opened nodes (the node scan and fit) |
//! | 6 | [`open`] | opening a new claim when nothing has room: pool, capacity type and instance type choice; settling claims when a budget blocks |
//! | 6b | [`patterns`] | repacking the claims that hold only *free* classes (no topology, ports or pins; unlimited pools) by the configuration LP, kept when cheaper |
//! | 7 | [`finish`] | turning opened claims into [`crate::NewClaim`]s: shrink to what they hold, instance type options |
//! | - | [`reasons`] | why pods stay unschedulable |
//! | - | [`base`] | a consolidation round's ids, node vectors and running pods' counts, built once for every probe ([`solve_on_base`]) |
//! | - | [`blast`] | spot blast radius: at most N pods of one workload per spot node of a pool |
//!
//! [`Engine::new`] runs steps 1-4; [`Engine::run`] orders the classes and, per class, alternates
//! steps 5 and 6 (relaxing preferences when pods remain), then runs step 6b; [`Engine::finish`]
//! is step 7.
//!
//! # Key decisions (see `docs/performance.md` for the figures)
//! - Identical pods (everything but the name) form a class and are placed together: each step
//!   puts as many pods of the class on one node as fit, so work scales with nodes and classes,
//!   not pods x nodes. Labels count only through the topology groups that select a pod, so pods
//!   that differ only in labels nothing selects by (a workflow's name, say) are one class; a
//!   class's compatible types are computed once per distinct requirements, tolerations and
//!   requests, not per class.
//! - Instance types are interned per (NodePool, type); a class's compatible types per pool are a
//!   [`crate::bitset::Bitset`] computed once; offerings are pre-indexed as zone masks per capacity type.
//! - Every node scan for a class resumes from a cursor: a node that cannot take a pod of a class
//!   now (resources, taints, hostname spread/anti-affinity, pinned zone) never can later. A scan
//!   checks each node's room in one flat vector before looking at the node, and skips blocks of
//!   32 nodes none of which has room or a pool for the class ([`place`]'s room index, refreshed
//!   per block only when one of its nodes changed).
//! - Topology counts (per node and per domain) are updated incrementally as pods are placed.
//! - A new claim picks its instance type by price per pod of the class being placed, counting
//!   only the pods the class must still place in the claim's domain ([`open`]'s `must_hold`):
//!   the largest type within 5 % of the best ratio (so later classes fill it), the cheapest
//!   with room for three pods for classes capped per node (hostname spread/anti-affinity, host
//!   ports), the best ratio for reserved capacity. Counting what is left sizes the tail of a
//!   class by what it must hold (not one huge node for the last 300 pods).
//! - NodePool limits and the on-demand cap only filter types: the choice is the one an
//!   unlimited pool would make whenever the budget allows it (a limit that is not reached
//!   changes nothing). Claims are charged at the type they were opened as; when the budget is
//!   what blocks a purchase, the pool's claims are first settled to the cheapest type that
//!   holds what they have and the difference refunded, so a limit stops buying only when it
//!   is reached.
//! - A limit that binds (the solve above left pods out at a pool's resource or node-count
//!   limit) is spent well: the whole solve is redone with those pools choosing types by the
//!   share of the limit they take per pod (`TypeChoice::Thrifty`: among the types within a
//!   slack of the least share per pod, the cheapest per pod; settling shrinks to the leanest
//!   type), so DaemonSet overhead and unused room waste little of the limit. Slacks are tried
//!   loosest first ([`THRIFT_SLACKS`], 2.0 down to 1.05) until no pod is left out at a limit;
//!   the plan that places the most pods, then the cheapest, is kept (the first solve's
//!   included). Only a binding limit pays for the extra solves (at most five).
//! - A required zone spread (maxSkew, counting the class itself) only decides which zone each
//!   pod goes to: the class's pods are dealt to the zones up front, each to the zone with the
//!   fewest matching pods, and each zone's share becomes a zone-pinned class without the spread
//!   ([`classes`]), which packs like unconstrained pods instead of one pod per step.
//! - Bundles (classes packed jointly, each new node taking a proportional slice of each, bought
//!   by price per share of their remaining demand): classes of one shape that differ only in
//!   size, and shapes without topology constraints that may use the same pools, types and
//!   zones when a type suiting their summed demand is cheaper than each shape's own (Spark
//!   executors with CPU-bound batch pods). At the end each claim lists every compatible type
//!   that fits what it holds, cheapest first, so a claim that ended up half full is bought
//!   smaller.
//! - The greedy places class by class, so it cannot see that two classes fill one node type
//!   together better than each fills its own. Step 6b repacks the new claims that hold only free
//!   classes, per (NodePool, capacity type) the greedy chose (pool weights and capacity-type
//!   order kept), by column generation on the configuration LP (patterns of whole pods per type,
//!   priced by a knapsack per type) and rounding, and keeps the result only when cheaper as
//!   finished; pools with limits or an on-demand cap are left alone, and so is a bucket the
//!   greedy already packs within 0.1 % of a per-resource bound. Work is capped by iteration and
//!   search-node counts, never by time.
//! - Capacity types are tried reserved > spot > on-demand; a claim is pinned to the one it uses.
//!   A claim's instance type options never exceed the type it is charged for on a limited
//!   dimension, so a claim can never grow past what was charged.
//! - A scoped on-demand cap (`capacityMix.scope`) counts the on-demand vCPUs of all its pools
//!   against their spot and reserved vCPUs (existing nodes, in-flight claims and this solve's
//!   claims). One shared budget (`Rc<RefCell<ScopeBudget>>`) is charged by every pool of the
//!   scope, so spot bought by the spot tier raises what the on-demand tier may buy. A pool in
//!   several scopes, or with its own cap too, must satisfy all of them (deterministic whatever the
//!   pool order). A new on-demand claim is charged to a scope as its target type (its options
//!   never exceed it on CPU); a new spot or reserved claim raises the scope only by the CPU its
//!   pods request, as they are placed: a lower bound on any option it may launch as, so the plan
//!   keeps the cap whichever options are launched. A class stopped only by an on-demand cap is
//!   retried after every other class (the spot tier is bought first whatever the class order).
//!   Consolidation asks [`crate::domain::on_demand_caps_allow`].
//! - A spot blast radius is a per-node count per workload (namespace + controller owner), like a
//!   hostname spread that applies only on spot nodes of the pool that sets it; classes are split
//!   by workload when any pool sets one, and a new spot claim for a capped class is chosen by the
//!   lowest price per pod it may take (the cheapest type that holds the cap).
//!
//! Preferences (preferred node/pod affinity, ScheduleAnyway spread, PreferNoSchedule taints) are
//! treated as required, then relaxed one at a time only for pods that do not fit, in this order:
//! next required node-affinity term (terms are alternatives), lightest preferred pod affinity,
//! lightest preferred pod anti-affinity, lightest preferred node affinity, the last ScheduleAnyway
//! spread, then PreferNoSchedule taints are tolerated. Two exceptions keep a preference from
//! multiplying the cost of a plan: a preference that caps a class's own pods per node
//! (preferred hostname anti-affinity, ScheduleAnyway hostname spread) is honoured on room that
//! is already there, but when a new claim is needed and one pod per node would cost more per
//! pod than packing them (beyond 5 %), it is dropped first instead of opening a node per pod
//! (Karpenter honours it and opens the nodes); and a ScheduleAnyway zone spread is dealt to
//! zones like a required one (free when zones cost alike), its shares relaxed to any zone only
//! when they cannot be placed in theirs.
//!
//! Threads: for many pods the solve reads the pods for classes ([`classes`]) and writes the
//! plan ([`finish`]) on two scoped threads, each over a contiguous half whose results are joined
//! in order, so the plan never depends on timing; placing stays on one thread.
//!
//! Simplification: hostname topology spread allows at most `maxSkew` matching pods per node
//! (new nodes can always be bought, so the global minimum is 0), as Karpenter does.
//!
//! Vocabulary: a *topology group* is the set of pods one spread/affinity term counts (namespaces
//! + selector); a *bundle* is a set of pod classes packed jointly onto new nodes.

mod base;
mod blast;
mod classes;
mod finish;
mod interning;
mod open;
mod patterns;
mod place;
mod pools;
mod reasons;
mod topology;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::domain::{ExistingNode, Plan, SolveInput, SolveOptions, TaintEffect};
use crate::hash::FastMap;

use base::OnBase;
use blast::BlastRadius;
use classes::{Bundles, PodClass};
use interning::Ids;
use open::OpenCacheKey;
use place::SimNode;
use pools::Catalog;
use reasons::PoolRejection;
use topology::Topology;

pub(crate) use base::Base;
pub(crate) use classes::lower_bound_input;
pub(crate) use pools::SharedCatalog;

/// Resource ids fixed by [`Ids::for_input`].
const CPU: usize = 0;
const PODS: usize = 2;
/// Kubelet's default when a node or type does not say.
const DEFAULT_MAX_PODS: i64 = 110;
const MAX_ZONES: usize = 64;
const MAX_COMBOS: usize = 32;

/// Solves: decides where every pending pod goes. Pure and deterministic.
pub fn solve(input: &SolveInput, options: &SolveOptions) -> Plan {
    let existing: Vec<&ExistingNode> = input.nodes.iter().chain(input.in_flight.iter()).collect();
    solve_with_limits(input, existing, input.nodes.len(), None, options)
}

/// Solves once as the unlimited pools would choose; when a pool's limit then leaves pods out,
/// solves again with those pools spending their limits well ([`Engine::thrifty`]) and keeps
/// the plan that places more pods (then the cheaper). A limit that does not leave pods out
/// changes nothing.
fn solve_with_limits<'a>(
    input: &'a SolveInput,
    existing: Vec<&'a ExistingNode>,
    named: usize,
    base: Option<OnBase<'a>>,
    options: &'a SolveOptions,
) -> Plan {
    let mut e = Engine::with_nodes(input, existing.clone(), named, base, options);
    e.run();
    let bound = e.limits_left_pods_out();
    let plan = e.finish();
    if !bound.iter().any(|b| *b) {
        return plan;
    }
    let mut best = plan;
    for slack in THRIFT_SLACKS {
        let mut thrifty = Engine::with_nodes(input, existing.clone(), named, base, options);
        thrifty.thrifty = bound.clone();
        thrifty.thrift_slack = slack;
        thrifty.run();
        let fits = !thrifty.limits_left_pods_out().iter().any(|b| *b);
        let replanned = thrifty.finish();
        let better = replanned.unschedulable.len() < best.unschedulable.len()
            || (replanned.unschedulable.len() == best.unschedulable.len()
                && cmp_price(replanned.cost_per_hour(), best.cost_per_hour()) == Ordering::Less);
        if better {
            best = replanned;
        }
        if fits {
            break;
        }
    }
    best
}

/// How far above the least share of a binding limit per pod a type may be and still be chosen
/// for its price ([`open`]'s `TypeChoice::Thrifty`), tried in turn when a limit binds: loosest
/// (cheapest) first, down to the tightest. (Measured on the embedded catalogue, issue 10's
/// review case, 300 pods, cpu limit 300: 2.0 leaves 33 pods out, 1.5 places all at $2.39/h,
/// 1.05 at $3.12/h.)
const THRIFT_SLACKS: [f64; 5] = [2.0, 1.5, 1.3, 1.15, 1.05];

/// Consolidation simulation: where the pods of the `candidates` (existing or in-flight node
/// names) would go if those nodes were removed, together with `input.pods`. DaemonSet pods
/// (owner `DaemonSet/...`) leave with their node. A candidate set can be removed without buying
/// when the plan has no new claims and nothing unschedulable.
pub fn simulate_without(input: &SolveInput, candidates: &[&str], options: &SolveOptions) -> Plan {
    let mut sim = input.clone();
    displace(&mut sim, candidates);
    solve(&sim, options)
}

/// [`simulate_without`]'s input, made in place: the `candidates` (existing or in-flight node
/// names) are taken out of `input.nodes` and `input.in_flight` and returned, and their pods
/// (DaemonSet pods excepted) are added to `input.pods`, nodes first, in node order. A caller
/// that owns its input solves it as it is then ([`solve`]), without the copy of every node that
/// [`simulate_without`] makes (the interruption handler, once per batch at full scale).
pub fn displace(input: &mut SolveInput, candidates: &[&str]) -> Vec<ExistingNode> {
    let is_candidate = |n: &ExistingNode| candidates.contains(&n.name.as_str());
    let mut gone = Vec::new();
    for list in [&mut input.nodes, &mut input.in_flight] {
        let (out, kept): (Vec<ExistingNode>, Vec<ExistingNode>) = std::mem::take(list)
            .into_iter()
            .partition(|n| is_candidate(n));
        *list = kept;
        gone.extend(out);
    }
    for n in &gone {
        input.pods.extend(
            n.pods
                .iter()
                .filter(|p| {
                    !p.owner
                        .as_deref()
                        .is_some_and(|o| o.starts_with("DaemonSet/"))
                })
                .cloned(),
        );
    }
    gone
}

/// [`solve`] with the existing nodes and in-flight claims given by reference instead of
/// `input.nodes` and `input.in_flight` (which are ignored), over nodes a [`Base`] was built
/// for (`at[i]`: the index in the base's nodes of `nodes` then `in_flight`): consolidation
/// probes place pods on one prepared node list many times without copying it, the engine
/// taking ids, quantity vectors and running pods' counts from the base instead of every
/// node's pods. Same plan as [`solve`] on an input holding these nodes whenever the base's
/// ids are those that input interns (see [`base`]).
pub(crate) fn solve_on_base(
    input: &SolveInput,
    nodes: Vec<&ExistingNode>,
    in_flight: &[&ExistingNode],
    base: &Base,
    catalog: &SharedCatalog<'_>,
    at: &[usize],
    options: &SolveOptions,
) -> Plan {
    let named = nodes.len();
    let mut existing = nodes;
    existing.extend_from_slice(in_flight);
    debug_assert_eq!(existing.len(), at.len(), "one base index per node");
    let on = OnBase { base, at, catalog };
    solve_with_limits(input, existing, named, Some(on), options)
}

/// Memos that make repeated scans and type choices cheap.
#[derive(Default)]
struct Caches {
    /// Per class, per domain combination: the first node index worth scanning.
    cursors: FastMap<usize, FastMap<Vec<u32>, usize>>,
    /// What each block of nodes has room for (see [`place::RoomIndex`]).
    room: place::RoomIndex,
    /// The types a bundle's node may be, per pool, capacity type, types and pins.
    bundle_offers: FastMap<open::BundleOffersKey, std::sync::Arc<open::BundleOffers>>,
    /// While a bundle fills the slack of claims: which claims are still to be shrunk, and the
    /// capacities of those that were (see [`place`]).
    slack: place::Slack,
    /// Per (class, topology key): the domain values the class can reach.
    domains: FastMap<(usize, usize), Vec<u32>>,
    /// Per (class, topology key): the domains its spreads take the global minimum over.
    spread_domains: FastMap<(usize, usize), Vec<u32>>,
    /// New-claim type choices that stay valid (see [`open`]).
    open: FastMap<OpenCacheKey, open::CachedChoice>,
    /// Per node index: the cheapest type holding what the claim had when last asked (see
    /// [`place`]); reused while no pod was placed on the claim since.
    shrink: Vec<Option<place::ShrinkMemo>>,
    /// Compatible types per pool of the classes built so far, by what they depend on.
    compatibility: classes::CompatMemo,
    /// Per pool, the types the requirements of the classes built so far admit, by what they
    /// depend on (hashed).
    matches: classes::MatchMemo,
}

/// The state of one solve. Each phase owns its part (see the module map).
struct Engine<'a> {
    input: &'a SolveInput,
    options: &'a SolveOptions,
    /// Existing nodes then in-flight claims (indexed by [`place::NodeOrigin::Existing`]).
    existing: Vec<&'a ExistingNode>,
    /// How many of `existing` are registered nodes (the rest are in-flight claims).
    named: usize,
    /// What a consolidation round computed once for its nodes (see [`base`]).
    base: Option<OnBase<'a>>,
    ids: Ids,
    topology: Topology,
    catalog: Catalog<'a>,
    /// Existing nodes first, then claims opened by this solve.
    nodes: Vec<SimNode>,
    classes: Vec<PodClass>,
    bundles: Bundles,
    caches: Caches,
    /// Per pool: why the last attempt to open a claim there failed (limits, cap, offerings).
    pool_failures: Vec<Option<PoolRejection>>,
    unschedulable: BTreeMap<String, String>,
    /// `namespace/name` of every pending pod (by index into `SolveInput::pods`): built once, by
    /// [`Engine::build_classes`], for the class order and the plan.
    pod_keys: Vec<String>,
    /// Whether any pool or node has a PreferNoSchedule taint (worth relaxing to tolerate).
    any_prefer_taint: bool,
    /// Per-node workload counts under a spot blast radius.
    blast: BlastRadius,
    /// Per pool: whether its limits bind (a first solve left pods out at a limit), so new
    /// claims there are chosen to spend the limit well ([`open`]'s `TypeChoice::Thrifty`).
    thrifty: Vec<bool>,
    /// The slack of `TypeChoice::Thrifty` (see [`THRIFT_SLACKS`]).
    thrift_slack: f64,
    /// Per pool: the summed requests of the pods given up that could use it.
    left_out: Vec<Vec<i64>>,
}

impl<'a> Engine<'a> {
    /// Steps 1-4: interning, pools, topology groups and existing nodes, classes and bundles.
    fn new(input: &'a SolveInput, options: &'a SolveOptions) -> Self {
        let existing: Vec<&ExistingNode> =
            input.nodes.iter().chain(input.in_flight.iter()).collect();
        Self::with_nodes(input, existing, input.nodes.len(), None, options)
    }

    /// [`Engine::new`] on `existing` (the first `named` registered nodes, then in-flight
    /// claims) instead of the input's, on `base` when a round prepared one.
    fn with_nodes(
        input: &'a SolveInput,
        existing: Vec<&'a ExistingNode>,
        named: usize,
        base: Option<OnBase<'a>>,
        options: &'a SolveOptions,
    ) -> Self {
        let ids = match base {
            Some(b) => b.base.ids.clone(),
            None => Ids::for_input(input, &existing),
        };
        let catalog = match base {
            Some(b) => b.catalog.catalog(&ids),
            None => Catalog::build(input, &ids),
        };
        let any_prefer_taint = catalog.any_prefer_taint()
            || existing.iter().any(|n| {
                n.taints
                    .iter()
                    .any(|t| t.effect == TaintEffect::PreferNoSchedule)
            });
        let pool_count = catalog.pools.len();
        let mut e = Engine {
            input,
            options,
            existing,
            named,
            base,
            ids,
            topology: Topology::default(),
            catalog,
            nodes: Vec::new(),
            classes: Vec::new(),
            bundles: Bundles::default(),
            caches: Caches::default(),
            pool_failures: vec![None; pool_count],
            unschedulable: BTreeMap::new(),
            pod_keys: Vec::new(),
            any_prefer_taint,
            blast: BlastRadius::default(),
            thrifty: vec![false; pool_count],
            thrift_slack: THRIFT_SLACKS[0],
            left_out: vec![Vec::new(); pool_count],
        };
        e.register_topology_groups();
        e.add_existing_nodes();
        e.init_blast_radius();
        e.build_classes();
        e.split_zone_spreads();
        e.build_bundles();
        e
    }

    /// Places every class in [`ClassOrder`], bundles first when their turn comes; a class whose
    /// pods remain is relaxed (one preference less) and retried, or its pods are unschedulable.
    /// A class stopped only by an on-demand cap is retried once more after every other class:
    /// the spot those bought may have raised the cap.
    fn run(&mut self) {
        let order_keys = self.class_order_keys();
        let mut order: Vec<usize> = (0..self.classes.len()).collect();
        order.sort_by(|a, b| order_keys[*a].cmp(&order_keys[*b]));
        let mut bundle_done = vec![false; self.bundles.members.len()];
        let mut deferred = Vec::new();
        for first in order {
            if let Some(b) = self.bundles.of_class[first]
                && !bundle_done[b]
            {
                bundle_done[b] = true;
                let mut members = self.bundles.members[b].clone();
                members.sort_by(|x, y| order_keys[*x].cmp(&order_keys[*y]));
                self.place_bundle(&members);
            }
            let mut c = first;
            loop {
                self.place_class(c);
                if self.classes[c].remaining() == 0 {
                    break;
                }
                match self.relax(c) {
                    Some(relaxed) => c = relaxed,
                    None => {
                        if self.blocked_by_on_demand_cap(c) {
                            deferred.push(c);
                        } else {
                            self.give_up(c);
                        }
                        break;
                    }
                }
            }
        }
        for c in deferred {
            self.place_class(c);
            if self.classes[c].remaining() > 0 {
                self.give_up(c);
            }
        }
        self.pack_patterns();
    }

    /// Pods of class `c` placed on node `n`: on a new spot or reserved claim they raise the
    /// scoped on-demand caps covering its pool by the CPU they request (see the key decisions).
    fn count_scope_use(&self, c: usize, n: usize, k: usize) {
        if let Some(claim) = self.nodes[n].opened()
            && claim.capacity_type != stowage_api::CapacityType::OnDemand
        {
            self.catalog.pools[claim.pool]
                .budget
                .count_placed(self.classes[c].requests[CPU] * k as i64);
        }
    }

    /// Whether an on-demand cap (a pool's or a scope's) stopped the last claim for class `c`
    /// in some pool the class could otherwise use.
    fn blocked_by_on_demand_cap(&self, c: usize) -> bool {
        let class = &self.classes[c];
        class.topology_reason.is_none()
            && self.pool_failures.iter().enumerate().any(|(i, f)| {
                class.pool_rejections[i].is_none()
                    && matches!(
                        f,
                        Some(PoolRejection::OnDemandCap(_) | PoolRejection::ScopedOnDemandCap(..))
                    )
            })
    }

    /// Per pool: whether a limit (a resource or the node count) stopped its last claim while
    /// pods stayed unschedulable, and a re-plan could hold them: what the pool's new claims hold
    /// plus what the pods left out that may use the pool request stays within its resource
    /// limits (a limit that the requests alone exceed is spent, however well it is packed: no
    /// extra solves). These pools are solved again spending their limits well.
    fn limits_left_pods_out(&self) -> Vec<bool> {
        let left_out = !self.unschedulable.is_empty();
        let resources = self.ids.resource_count();
        (0..self.catalog.pools.len())
            .map(|pi| {
                if !left_out || !matches!(self.pool_failures[pi], Some(PoolRejection::Limit(_))) {
                    return false;
                }
                let mut demand = self.left_out[pi].clone();
                demand.resize(resources, 0);
                let mut charged = vec![0i64; resources];
                for node in &self.nodes {
                    if let Some(claim) = node.opened()
                        && claim.pool == pi
                    {
                        let capacity = &self.catalog.types[claim.target_type].capacity;
                        for r in 0..resources {
                            demand[r] += node.used[r];
                            charged[r] += capacity[r];
                        }
                    }
                }
                self.catalog.pools[pi].budget.could_hold(&demand, &charged)
            })
            .collect()
    }

    /// Marks the remaining pods of class `c` unschedulable, with the reason.
    fn give_up(&mut self, c: usize) {
        let reason = self.reason(c);
        let class = &self.classes[c];
        for (pi, left) in self.left_out.iter_mut().enumerate() {
            if class.compatible[pi].is_some() && class.pool_rejections[pi].is_none() {
                left.resize(class.requests.len(), 0);
                for (l, r) in left.iter_mut().zip(&class.requests) {
                    *l += r * class.remaining() as i64;
                }
            }
        }
        let class = &mut self.classes[c];
        for &m in &class.members[class.next..] {
            self.unschedulable
                .insert(self.pod_keys[m].clone(), reason.clone());
        }
        class.next = class.members.len();
    }

    fn class_order_keys(&self) -> Vec<ClassOrder> {
        // A class's size: its largest request as a share of the largest allocatable anywhere.
        let mut largest: Vec<f64> = vec![1.0; self.ids.resource_count()];
        for ty in self.catalog.types.iter() {
            for (s, a) in largest.iter_mut().zip(&ty.allocatable) {
                *s = s.max(*a as f64);
            }
        }
        self.classes
            .iter()
            .enumerate()
            .map(|(i, c)| ClassOrder {
                priority: c.pod.priority,
                // Zone shares keep the turn of the spread class they come from (measured: on the
                // diverse mix, 20,000 pods, $3,458 -> $3,406; 50,000 pods $8,654 -> $8,515).
                bundled: self.bundles.of_class[i].is_some() && !c.dealt,
                size: c
                    .requests
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| *r != PODS)
                    .map(|(r, q)| *q as f64 / largest[r])
                    .fold(0.0, f64::max),
                first_pod: self.pod_keys[c.members[0]].clone(),
            })
            .collect()
    }
}

/// The order classes are placed in: priority first; classes with per-node caps (spread,
/// anti-affinity, ports) and zones' shares of a zone spread before bundled ones, so the latter
/// fill the room the former leave; then
/// largest first; then by the first pod's key (determinism).
#[derive(Debug, Clone)]
struct ClassOrder {
    priority: i32,
    bundled: bool,
    size: f64,
    first_pod: String,
}

impl Ord for ClassOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.bundled.cmp(&other.bundled))
            .then(other.size.total_cmp(&self.size))
            .then_with(|| self.first_pod.cmp(&other.first_pod))
    }
}

impl PartialOrd for ClassOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ClassOrder {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ClassOrder {}

/// Prices within this absolute difference are equal (ties then go to the next criterion).
const PRICE_EPSILON: f64 = 1e-12;

/// Compares two prices, treating near-equal ones as equal.
fn cmp_price(a: f64, b: f64) -> Ordering {
    if (a - b).abs() > PRICE_EPSILON {
        a.total_cmp(&b)
    } else {
        Ordering::Equal
    }
}

/// Compares two price ratios (price per pod, per share), treating relative differences below
/// 1e-9 as equal.
fn cmp_ratio(a: f64, b: f64) -> Ordering {
    if (a - b).abs() > 1e-9 * b.abs().max(PRICE_EPSILON) {
        a.total_cmp(&b)
    } else {
        Ordering::Equal
    }
}
