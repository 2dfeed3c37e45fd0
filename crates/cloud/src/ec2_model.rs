//! What EC2 would see of the fake cloud's provider calls, so the simulator reports EC2 API calls
//! and not provider calls.
//!
//! The AWS provider (`crates/aws`) turns each provider call into EC2 calls and coalesces them
//! (`crates/aws/src/coalescer.rs`): launches with the same launch shape (node class, pool,
//! requirements) arriving within a window are one `CreateFleet`; DescribeInstances and
//! TerminateInstances by instance id are batched the same way. The model applies the same rule
//! with the same default windows (`ProviderSettings::new`): a call joins the open batch of its
//! action and key while it arrives within `idle` of the previous one, within `max_wait` of the
//! first, and the batch holds fewer than `max_items`; otherwise it opens a new batch, which is one
//! EC2 call. As with the real coalescer, a caller waits for its batch to close: the fake's
//! batched calls take [`DESCRIBE_WINDOW`]'s idle time (launches take longer anyway), so calls made
//! together batch and calls made one after another do not.
//!
//! The catalogue behind `instance_types` is cached by the provider and re-read every
//! [`CATALOG_REFRESH`] (DescribeInstanceTypes and DescribeInstanceTypeOfferings), spot prices
//! every [`SPOT_PRICE_REFRESH`]; resolving a node class reads subnets, security groups and images.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// How often the AWS provider re-reads the instance-type catalogue (`catalog_refresh`).
pub const CATALOG_REFRESH: Duration = Duration::from_secs(300);
/// How often the AWS provider re-reads spot prices (`spot_price_refresh`).
pub const SPOT_PRICE_REFRESH: Duration = Duration::from_secs(1800);

/// A coalescing window, as `stowage_aws::coalescer::CoalesceWindow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub idle: Duration,
    pub max_wait: Duration,
    pub max_items: usize,
}

/// CreateFleet of identical launches (the AWS provider's default: 35 ms idle, 1 s, 100 claims).
pub const LAUNCH_WINDOW: Window = Window {
    idle: Duration::from_millis(35),
    max_wait: Duration::from_secs(1),
    max_items: 100,
};
/// DescribeInstances by id or by NodeClaim tag (50 ms idle, 1 s, 500 ids).
pub const DESCRIBE_WINDOW: Window = Window {
    idle: Duration::from_millis(50),
    max_wait: Duration::from_secs(1),
    max_items: 500,
};
/// TerminateInstances (50 ms idle, 1 s, 500 ids).
pub const TERMINATE_WINDOW: Window = Window {
    idle: Duration::from_millis(50),
    max_wait: Duration::from_secs(1),
    max_items: 500,
};

/// The EC2 API actions the AWS provider makes for the provider calls the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ec2Action {
    CreateFleet,
    DescribeInstances,
    TerminateInstances,
    DescribeInstanceTypes,
    DescribeInstanceTypeOfferings,
    DescribeSpotPriceHistory,
    DescribeSubnets,
    DescribeSecurityGroups,
    DescribeImages,
}

impl Ec2Action {
    /// The action's name in the EC2 API.
    pub fn as_str(self) -> &'static str {
        match self {
            Ec2Action::CreateFleet => "CreateFleet",
            Ec2Action::DescribeInstances => "DescribeInstances",
            Ec2Action::TerminateInstances => "TerminateInstances",
            Ec2Action::DescribeInstanceTypes => "DescribeInstanceTypes",
            Ec2Action::DescribeInstanceTypeOfferings => "DescribeInstanceTypeOfferings",
            Ec2Action::DescribeSpotPriceHistory => "DescribeSpotPriceHistory",
            Ec2Action::DescribeSubnets => "DescribeSubnets",
            Ec2Action::DescribeSecurityGroups => "DescribeSecurityGroups",
            Ec2Action::DescribeImages => "DescribeImages",
        }
    }
}

#[derive(Debug)]
struct Batch {
    first: Instant,
    last: Instant,
    items: usize,
}

/// The EC2 calls so far, by action.
#[derive(Debug, Default)]
pub struct Ec2Calls {
    open: HashMap<(Ec2Action, u64), Batch>,
    counts: BTreeMap<Ec2Action, u64>,
    total: u64,
    catalog_at: Option<Instant>,
    spot_prices_at: Option<Instant>,
}

/// A stable key for what makes launches coalesce (their launch shape).
pub fn shape_key(parts: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl Ec2Calls {
    fn count(&mut self, action: Ec2Action) {
        *self.counts.entry(action).or_default() += 1;
        self.total += 1;
    }

    /// One item of a coalesced call: joins the open batch of `(action, key)` or opens (and
    /// counts) a new one.
    pub fn coalesced(&mut self, action: Ec2Action, key: u64, window: Window, now: Instant) {
        let joins = self.open.get(&(action, key)).is_some_and(|b| {
            now < b.last + window.idle
                && now <= b.first + window.max_wait
                && b.items < window.max_items.max(1)
        });
        if joins {
            if let Some(b) = self.open.get_mut(&(action, key)) {
                b.last = now;
                b.items += 1;
            }
            return;
        }
        // Batches whose window has closed are forgotten (keeps the map small).
        if self.open.len() > 64 {
            self.open
                .retain(|_, b| now <= b.first + LAUNCH_WINDOW.max_wait.max(window.max_wait));
        }
        self.open.insert(
            (action, key),
            Batch {
                first: now,
                last: now,
                items: 1,
            },
        );
        self.count(action);
    }

    /// A call that is never batched.
    pub fn single(&mut self, action: Ec2Action) {
        self.count(action);
    }

    /// DescribeInstances by id (or by NodeClaim tag), batched.
    pub fn describe(&mut self, now: Instant) {
        self.coalesced(Ec2Action::DescribeInstances, 0, DESCRIBE_WINDOW, now);
    }

    /// The provider's cached catalogue and spot prices, re-read when older than their refresh.
    pub fn catalog(&mut self, now: Instant) {
        if self.catalog_at.is_none_or(|at| now >= at + CATALOG_REFRESH) {
            self.catalog_at = Some(now);
            self.count(Ec2Action::DescribeInstanceTypes);
            self.count(Ec2Action::DescribeInstanceTypeOfferings);
        }
        if self
            .spot_prices_at
            .is_none_or(|at| now >= at + SPOT_PRICE_REFRESH)
        {
            self.spot_prices_at = Some(now);
            self.count(Ec2Action::DescribeSpotPriceHistory);
        }
    }

    /// Resolving a node class's subnets, security groups and images.
    pub fn resolve_node_class(&mut self) {
        self.count(Ec2Action::DescribeSubnets);
        self.count(Ec2Action::DescribeSecurityGroups);
        self.count(Ec2Action::DescribeImages);
    }

    /// Every EC2 call so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// EC2 calls by action name (only actions called).
    pub fn by_action(&self) -> BTreeMap<String, u64> {
        self.counts
            .iter()
            .map(|(a, n)| (a.as_str().to_string(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_within_the_window_batch_and_later_ones_open_a_new_call() {
        let mut m = Ec2Calls::default();
        let t0 = Instant::now();
        // Three launches of one shape at once, one of another shape: two CreateFleet.
        for _ in 0..3 {
            m.coalesced(Ec2Action::CreateFleet, 1, LAUNCH_WINDOW, t0);
        }
        m.coalesced(Ec2Action::CreateFleet, 2, LAUNCH_WINDOW, t0);
        // 30 ms later (within 35 ms idle): joins; 100 ms after that: a new call.
        m.coalesced(
            Ec2Action::CreateFleet,
            1,
            LAUNCH_WINDOW,
            t0 + Duration::from_millis(30),
        );
        m.coalesced(
            Ec2Action::CreateFleet,
            1,
            LAUNCH_WINDOW,
            t0 + Duration::from_millis(130),
        );
        assert_eq!(m.by_action().get("CreateFleet"), Some(&3));
        // A batch holds at most max_items.
        for _ in 0..1200 {
            m.describe(t0);
        }
        assert_eq!(m.by_action().get("DescribeInstances"), Some(&3));
        assert_eq!(m.total(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn the_catalogue_is_read_once_per_refresh() {
        let mut m = Ec2Calls::default();
        let t0 = Instant::now();
        for s in 0..600 {
            m.catalog(t0 + Duration::from_secs(s));
        }
        // t = 0 and t = 300 s; spot prices once.
        assert_eq!(m.by_action().get("DescribeInstanceTypes"), Some(&2));
        assert_eq!(m.by_action().get("DescribeSpotPriceHistory"), Some(&1));
        assert_eq!(m.total(), 5);
    }
}
