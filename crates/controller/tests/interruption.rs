//! Interruption handling on the simulated cluster, in virtual time: spot interruption warnings
//! arrive through the fake cloud's queue with the 2-minute notice, and the displaced pods run
//! elsewhere before the instances go; the other message kinds do what they say; a hot spot pool
//! loses to a calm one once its rate is learnt.
#![allow(clippy::unwrap_used)] // the helpers outside #[test] functions unwrap too

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use stowage_api::NodeClaim;
use stowage_api::conditions::DISRUPTING;
use stowage_cloud::{
    CapacityType, InstanceStateChange, InterruptionEvent, InterruptionKind, MessageContent,
};
use stowage_controller::{Context, Leadership, Settings};
use stowage_sim::{Report, Scenario, SimEnv, SimOptions, Simulation};

const CLUSTER: &str = r#"
catalog: { source: synthetic, types: 12 }
nodeClasses:
  - name: default
    spec:
      amiSelectorTerms: [{ alias: al2023@latest }]
      subnetSelectorTerms: [{ tags: { stowage.dev/discovery: sim } }]
      securityGroupSelectorTerms: [{ tags: { stowage.dev/discovery: sim } }]
      role: NodeRole
nodePools:
  - name: spot
    spec:
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          requirements:
            - { key: stowage.dev/capacity-type, operator: In, values: [spot] }
daemonSets:
  - name: node-agent
    requests: { cpu: 100m, memory: 128Mi }
    tolerations: [{ operator: Exists }]
"#;

/// The controllers' context and the simulator's environment of a run.
type Plugged = (Arc<Context>, SimEnv);

/// What a run left behind for the assertions.
struct Run {
    report: Report,
    ctx: Arc<Context>,
    env: SimEnv,
}

/// Runs `yaml` (name, duration, timeline; the cluster above is prepended) with the controllers
/// plugged in, reading interruption events from the fake cloud when `interruptions` is on;
/// `script` runs alongside.
async fn run<F, Fut>(yaml: &str, interruptions: bool, settings: Settings, script: F) -> Run
where
    F: FnOnce(SimEnv, Arc<Context>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    run_scenario(
        &format!("{CLUSTER}{yaml}"),
        Vec::new(),
        interruptions,
        settings,
        script,
    )
    .await
}

/// [`run`] on a whole scenario, with `catalog` as its `aws` source.
async fn run_scenario<F, Fut>(
    yaml: &str,
    catalog: Vec<stowage_solver::InstanceType>,
    interruptions: bool,
    settings: Settings,
    script: F,
) -> Run
where
    F: FnOnce(SimEnv, Arc<Context>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let scenario = Scenario::from_yaml("interruption", yaml).unwrap();
    let options = SimOptions {
        aws_catalog: Some(catalog),
        ..SimOptions::default()
    };
    let seen: Arc<Mutex<Option<Plugged>>> = Arc::default();
    let keep = seen.clone();
    let report = Simulation::new(scenario, options)
        .run(move |env: SimEnv| async move {
            let mut ctx = Context::new(
                env.client.clone(),
                env.provider.clone(),
                env.clock.clone(),
                Settings {
                    cluster_name: "sim".into(),
                    ..settings
                },
            );
            if interruptions {
                ctx = ctx.with_interruption_source(env.cloud.clone());
            }
            let ctx = Arc::new(ctx);
            *keep.lock().unwrap() = Some((ctx.clone(), env.clone()));
            let running = stowage_controller::start(ctx.clone(), Leadership::Always);
            script(env.clone(), ctx).await;
            let mut shutdown = env.shutdown.clone();
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
            drop(running);
        })
        .await
        .unwrap();
    let (ctx, env) = seen.lock().unwrap().take().unwrap();
    Run { report, ctx, env }
}

async fn claims(env: &SimEnv) -> Vec<NodeClaim> {
    Api::<NodeClaim>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

const WARNINGS: &str = r#"
name: warnings
duration: 25m
timeline:
  - at: 0s
    create:
      name: web
      replicas: 30
      requests: { cpu: 500m, memory: 512Mi }
      spread: [{ topologyKey: kubernetes.io/hostname, maxSkew: 3 }]
      pdb: { maxUnavailable: "20%" }
  - at: 8m
    interrupt: { count: 3 }
  - at: 14m
    interrupt: { count: 2 }
"#;

#[tokio::test(start_paused = true)]
async fn displaced_pods_run_elsewhere_before_the_interrupted_instances_go() {
    let healed = run(WARNINGS, true, Settings::default(), |_, _| async {}).await;
    let r = &healed.report;
    eprintln!("{}", r.summary_table());
    assert_eq!(r.interruptions, 5);
    assert!(r.interrupted_pods >= 5, "{}", r.interrupted_pods);
    assert_eq!(r.pods_killed_by_interruption, 0, "{}", r.summary_table());
    assert_eq!(
        r.interrupted_pods_not_rescheduled,
        0,
        "{}",
        r.summary_table()
    );
    assert!(
        r.max_interruption_rescheduled_seconds < 120.0,
        "every displaced pod ran elsewhere within the 2-minute notice: {}",
        r.summary_table()
    );
    assert_eq!(r.pending_at_end, 0);
    let m = &healed.ctx.metrics;
    assert_eq!(m.interruption_messages_total("spot_interruption"), 5);
    assert_eq!(m.interruption_actions_total("replaced"), 5);
    assert!(m.nodeclaims_created_total("spot", "interruption") >= 1);
    assert_eq!(healed.env.cloud.acknowledged_messages(), 5);
    assert_eq!(healed.env.cloud.unacknowledged_messages(), 0);
    // The interrupted offerings are kept out of the catalogue for a while and feed the rates.
    let now = healed.ctx.clock.now();
    let rates = healed.ctx.with_rates(|b| b.rates(now));
    assert!(!rates.is_empty());

    // The same scenario without interruption handling: the pods die with their instances.
    let before = run(WARNINGS, false, Settings::default(), |_, _| async {}).await;
    let b = &before.report;
    assert_eq!(b.interruptions, 5);
    assert!(
        b.pods_killed_by_interruption > 0,
        "without handling, pods are killed: {}",
        b.summary_table()
    );
    assert!(b.max_interruption_rescheduled_seconds > r.max_interruption_rescheduled_seconds);
    eprintln!(
        "with handling: p95 {:.0}s max {:.0}s killed {} of {}; without: p95 {:.0}s max {:.0}s killed {} of {}",
        r.p95_interruption_rescheduled_seconds,
        r.max_interruption_rescheduled_seconds,
        r.pods_killed_by_interruption,
        r.interrupted_pods,
        b.p95_interruption_rescheduled_seconds,
        b.max_interruption_rescheduled_seconds,
        b.pods_killed_by_interruption,
        b.interrupted_pods
    );
}

#[tokio::test(start_paused = true)]
async fn each_message_kind_does_what_it_says_and_every_message_is_deleted() {
    let yaml = r#"
name: kinds
duration: 20m
timeline:
  - at: 0s
    create:
      name: web
      replicas: 3
      requests: { cpu: 500m, memory: 512Mi }
      spread: [{ topologyKey: kubernetes.io/hostname, maxSkew: 1 }]
"#;
    let outcome: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = outcome.clone();
    let done = run(
        yaml,
        true,
        Settings::default(),
        move |env, ctx| async move {
            // Wait for three launched claims.
            let launched = loop {
                let cs: Vec<NodeClaim> = claims(&env)
                    .await
                    .into_iter()
                    .filter(|c| c.provider_id().is_some())
                    .collect();
                if cs.len() >= 3 {
                    break cs;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            };
            let id = |c: &NodeClaim| {
                c.provider_id()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            };
            let (stopped, rebalanced, scheduled) = (&launched[0], &launched[1], &launched[2]);
            let send = |kind, c: &NodeClaim| {
                env.cloud
                    .send_message(MessageContent::Events(vec![InterruptionEvent::new(
                        kind,
                        &id(c),
                    )]))
            };
            send(
                InterruptionKind::StateChange(InstanceStateChange::Stopping),
                stopped,
            );
            send(InterruptionKind::RebalanceRecommendation, rebalanced);
            send(InterruptionKind::ScheduledChange, scheduled);
            env.cloud
                .send_message(MessageContent::Events(vec![InterruptionEvent::new(
                    InterruptionKind::SpotInterruption,
                    "i-999999",
                )]));
            env.cloud
                .send_message(MessageContent::Malformed("not json".into()));
            env.cloud
                .send_message(MessageContent::Ignored("AMI state change".into()));
            tokio::time::sleep(Duration::from_secs(60)).await;
            let now: Vec<NodeClaim> = claims(&env).await;
            let find = |c: &NodeClaim| now.iter().find(|x| x.name_any() == c.name_any()).cloned();
            let mut o = out.lock().unwrap();
            o.push(format!("stopped gone={}", find(stopped).is_none()));
            o.push(format!(
                "rebalanced kept={}",
                find(rebalanced).is_some_and(|c| c.metadata.deletion_timestamp.is_none())
            ));
            let sched = find(scheduled);
            o.push(format!(
                "scheduled handled={}",
                sched.is_none_or(
                    |c| c.metadata.deletion_timestamp.is_some() && c.is_true(DISRUPTING)
                )
            ));
            let _ = ctx;
        },
    )
    .await;
    assert_eq!(
        *outcome.lock().unwrap(),
        [
            "stopped gone=true",
            "rebalanced kept=true",
            "scheduled handled=true"
        ]
    );
    let m = &done.ctx.metrics;
    assert_eq!(m.interruption_messages_total("state_change"), 1);
    assert_eq!(m.interruption_messages_total("rebalance_recommendation"), 1);
    assert_eq!(m.interruption_messages_total("scheduled_change"), 1);
    assert_eq!(m.interruption_messages_total("malformed"), 1);
    assert_eq!(m.interruption_messages_total("unknown"), 1);
    assert_eq!(m.interruption_actions_total("deleted"), 1);
    assert_eq!(m.interruption_actions_total("recorded"), 1);
    assert_eq!(m.interruption_actions_total("replaced"), 1);
    assert_eq!(m.interruption_actions_total("not_owned"), 1);
    assert_eq!(done.env.cloud.acknowledged_messages(), 6);
    assert_eq!(done.env.cloud.unacknowledged_messages(), 0);
    assert_eq!(done.report.pending_at_end, 0);
}

/// Acting on rebalance recommendations is a setting.
#[tokio::test(start_paused = true)]
async fn a_rebalance_recommendation_replaces_the_node_when_the_setting_says_so() {
    let yaml = r#"
name: rebalance
duration: 10m
timeline:
  - at: 0s
    create: { name: web, replicas: 2, requests: { cpu: 1500m, memory: 512Mi } }
"#;
    let settings = Settings {
        act_on_rebalance_recommendation: true,
        ..Settings::default()
    };
    let done = run(yaml, true, settings, |env, _| async move {
        let c = loop {
            if let Some(c) = claims(&env)
                .await
                .into_iter()
                .find(|c| c.provider_id().is_some())
            {
                break c;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        let id = c.provider_id().unwrap().rsplit('/').next().unwrap();
        env.cloud
            .send_message(MessageContent::Events(vec![InterruptionEvent::new(
                InterruptionKind::RebalanceRecommendation,
                id,
            )]));
    })
    .await;
    assert_eq!(done.ctx.metrics.interruption_actions_total("replaced"), 1);
    assert_eq!(done.report.pending_at_end, 0);
    assert!(
        !done
            .env
            .cloud
            .instances()
            .iter()
            .any(|i| i.capacity_type != CapacityType::Spot)
    );
}

/// One hot capacity pool: the cheapest spot zone of the only instance type is interrupted every
/// 10 minutes while the fleet grows by a node every 30 minutes. With the cost weight 0 every
/// growth buys the hot pool again (the 15-minute unavailable mark of the last interruption has
/// passed); with the default weight the learnt rate makes it lose to a 4 % dearer calm zone.
#[tokio::test(start_paused = true)]
async fn a_hot_spot_pool_loses_to_a_slightly_dearer_calm_one() {
    // One 4-vCPU type whose spot price is lowest in zone a, 4 % and 8 % higher in b and c.
    let mut it = stowage_solver::catalog::karpenter_type(3);
    for o in &mut it.offerings {
        if o.capacity_type == CapacityType::Spot {
            o.price_per_hour *= match o.zone.as_str() {
                "test-zone-a" => 1.0,
                "test-zone-b" => 1.04,
                _ => 1.08,
            };
        }
    }
    let spot_price = |zone: &str| {
        it.offerings
            .iter()
            .find(|o| o.capacity_type == CapacityType::Spot && o.zone == zone)
            .unwrap()
            .price_per_hour
    };
    let (hot, hot_price, calm_price) = (
        "test-zone-a",
        spot_price("test-zone-a"),
        spot_price("test-zone-b"),
    );
    let type_name = it.name.clone();
    let type_name = type_name.as_str();
    let catalog = vec![it.clone()];
    // The fleet grows by one node every 30 minutes: each growth is a fresh purchase.
    let scale_ups: String = (1..16)
        .map(|i| {
            format!(
                "  - at: {}m\n    scale: {{ name: web, replicas: {} }}\n",
                30 * i,
                12 + 2 * i
            )
        })
        .collect();
    let yaml = format!(
        r#"
name: hot-pool
duration: 8h
sampleEvery: 30s
catalog: {{ source: aws, instanceTypes: [{type_name}] }}
nodeClasses:
  - name: default
    spec:
      amiSelectorTerms: [{{ alias: al2023@latest }}]
      subnetSelectorTerms: [{{ tags: {{ stowage.dev/discovery: sim }} }}]
      securityGroupSelectorTerms: [{{ tags: {{ stowage.dev/discovery: sim }} }}]
      role: NodeRole
nodePools:
  - name: spot
    spec:
      template:
        spec:
          nodeClassRef: {{ group: aws.stowage.dev, kind: EC2NodeClass, name: default }}
          requirements:
            - {{ key: stowage.dev/capacity-type, operator: In, values: [spot] }}
timeline:
  - at: 0s
    create:
      name: web
      replicas: 12
      requests: {{ cpu: 1500m, memory: 2Gi }}
      pdb: {{ maxUnavailable: "25%" }}
{scale_ups}  - every: 10m
    at: 10m
    interrupt: {{ count: 1, instanceType: {type_name}, zone: {hot} }}
"#
    );
    let weighted = |weight: f64| Settings {
        spot_interruption_cost_weight: weight,
        ..Settings::default()
    };
    let pure = run_scenario(&yaml, catalog.clone(), true, weighted(0.0), |_, _| async {}).await;
    let aware = run_scenario(&yaml, catalog, true, Settings::default(), |_, _| async {}).await;
    let (p, a) = (&pure.report, &aware.report);
    eprintln!(
        "hot pool {type_name} in {hot} (spot ${hot_price:.4}/h; next zone ${calm_price:.4}/h)\n\
         weight 0: {} interruptions, {} pods disrupted, {} killed, ${:.2} total, p95 warning->running {:.0}s\n\
         weight 1: {} interruptions, {} pods disrupted, {} killed, ${:.2} total, p95 warning->running {:.0}s",
        p.interruptions,
        p.interrupted_pods,
        p.pods_killed_by_interruption,
        p.cost_total_usd,
        p.p95_interruption_rescheduled_seconds,
        a.interruptions,
        a.interrupted_pods,
        a.pods_killed_by_interruption,
        a.cost_total_usd,
        a.p95_interruption_rescheduled_seconds,
    );
    assert!(
        a.interruptions * 2 < p.interruptions,
        "the learnt rate moves the fleet off the hot pool: {} vs {}",
        a.interruptions,
        p.interruptions
    );
    assert!(a.interrupted_pods * 2 < p.interrupted_pods);
    assert!(
        a.cost_total_usd < p.cost_total_usd * 1.10,
        "at a small premium at most: ${:.2} vs ${:.2}",
        a.cost_total_usd,
        p.cost_total_usd
    );
    assert_eq!((p.pending_at_end, a.pending_at_end), (0, 0));
    // The learnt rate is exported per (type, zone).
    let text = aware.ctx.render_metrics();
    assert!(
        text.contains(&format!(
            "stowage_spot_interruption_rate{{instance_type=\"{type_name}\",zone=\"{hot}\"}}"
        )),
        "{text}"
    );
}

/// A PodDisruptionBudget that allows no eviction is honoured while time allows, then the pods
/// still there are deleted in time for the instance's end, each with an Event saying so.
#[tokio::test(start_paused = true)]
async fn a_blocking_pdb_is_cut_short_at_the_deadline_and_says_so() {
    let yaml = r#"
name: pdb
duration: 15m
timeline:
  - at: 0s
    create:
      name: web
      replicas: 2
      requests: { cpu: 500m, memory: 512Mi }
      spread: [{ topologyKey: kubernetes.io/hostname, maxSkew: 1 }]
      pdb: { maxUnavailable: "0" }
  - at: 5m
    interrupt: { count: 1 }
"#;
    let cut: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = cut.clone();
    let done = run(yaml, true, Settings::default(), move |env, _| async move {
        tokio::time::sleep(Duration::from_secs(9 * 60)).await;
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(env.client.clone(), "default");
        let list = events.list(&ListParams::default()).await.unwrap().items;
        *seen.lock().unwrap() = list
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("InterruptionCutShort"))
            .filter_map(|e| e.message)
            .collect();
    })
    .await;
    let r = &done.report;
    assert_eq!(r.interruptions, 1);
    assert_eq!(r.pods_killed_by_interruption, 0, "{}", r.summary_table());
    assert_eq!(r.interrupted_pods_not_rescheduled, 0);
    // The referee counts the pod apart: its PDB could not be honoured in the notice's time.
    assert_eq!(r.pods_cut_short, 1, "{}", r.summary_table());
    assert_eq!(r.pdb_violations, 0, "{:?}", r.violations);
    let cut = cut.lock().unwrap();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(
        cut[0].contains("PodDisruptionBudgets") && cut[0].contains("taken away at"),
        "{}",
        cut[0]
    );
    let text = done.ctx.render_metrics();
    assert!(
        text.contains("stowage_eviction_requests_total{result=\"blocked\"}"),
        "the PDB was asked first: {text}"
    );
    assert!(
        text.contains("stowage_eviction_requests_total{result=\"deleted_after_grace_period\"} 1")
    );
}
