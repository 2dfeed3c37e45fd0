//! `stowage-bench solve --pods N --types 400 --mix diverse|generic|seed|spread|spread-limit --catalog karpenter|aws`:
//! one timed solve, reported as `solve pods=.. types=.. mix=.. nodes=.. cost_per_hour=..
//! bound_per_hour=.. gap=.. elapsed_ms=.. cpu_ms=.. pods_per_sec=.. catalog=.. bound_ms=..`, then one
//! `pool name=.. nodes=.. cost_per_hour=..` line per NodePool.
//! `stowage-bench consolidate --nodes 3200 --pods 40000`: one timed consolidation round
//! (`stowage_solver::consolidate::decide`, every method as it runs them) on a seed-shaped running
//! cluster ([`stowage_bench::cluster`]) over the embedded AWS catalogue, reported as
//! `consolidate nodes=.. pods=.. candidates=.. command=.. nodes_removed=.. savings_per_hour=..
//! elapsed_ms=..` (last line); each method run alone is reported on stderr.
//! `stowage-bench solve --input input.json`: the same report for a solver input written by
//! `stowage plan --write-input` (a real or generated dump, solved without reading it again);
//! `--plan FILE` also writes the plan as JSON (to compare plans across builds).
//! `stowage-bench gen-pods --pods N --out pods.json --nodepools pools.yaml`: a `kubectl get pods
//! -A -o json` dump of pending pods in the seed mix, for timing `stowage plan` (see `pods.rs`).
//! `stowage-bench read-dump pods.json`: the reading and parsing of such a dump alone (`dump.rs`).

use std::process::ExitCode;

use stowage_bench::{Mix, Report, input, run_input, seed_input};

use stowage_bench::pods;

mod dump;

/// mimalloc, as the `stowage` binary (so `read-dump` and `solve` time what `plan` runs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn usage() -> ExitCode {
    eprintln!(
        "usage: stowage-bench solve [--pods N] [--types N] [--mix diverse|generic|seed|spread|spread-limit] [--catalog karpenter|aws] [--input FILE] [--bound on|off] [--repeat N] [--plan FILE]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("gen-pods") {
        return pods::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("read-dump") {
        return dump::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("consolidate") {
        return consolidate(&args[1..]);
    }
    if args.first().map(String::as_str) != Some("solve") {
        return usage();
    }
    let (mut pods, mut types, mut mix, mut repeat) = (None, 400usize, Mix::Diverse, 1usize);
    let mut catalog = "karpenter".to_string();
    let mut from_file: Option<String> = None;
    let mut with_bound = true;
    let mut plan_out: Option<String> = None;
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return usage();
        };
        let ok = match flag.as_str() {
            "--pods" => value.parse().map(|v| pods = Some(v)).is_ok(),
            "--types" => value.parse().map(|v| types = v).is_ok(),
            "--repeat" => value.parse().map(|v| repeat = v).is_ok(),
            "--mix" => Mix::parse(value).map(|m| mix = m).is_some(),
            "--bound" => match value.as_str() {
                "on" | "off" => {
                    with_bound = value == "on";
                    true
                }
                _ => false,
            },
            "--input" => {
                from_file = Some(value.clone());
                true
            }
            "--plan" => {
                plan_out = Some(value.clone());
                true
            }
            "--catalog" => {
                catalog = value.clone();
                matches!(value.as_str(), "karpenter" | "aws")
            }
            _ => false,
        };
        if !ok {
            eprintln!("bad argument {flag} {value}");
            return usage();
        }
    }
    // The seed batch defaults to its own size.
    let pods = pods.unwrap_or(if mix == Mix::Seed { 7_500 } else { 20_000 });
    let (inp, catalog) = if let Some(path) = from_file {
        match read_input(&path) {
            Ok(inp) => (inp, "file"),
            Err(e) => {
                eprintln!("failed to read {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else if catalog == "aws" {
        if mix != Mix::Seed {
            eprintln!("--catalog aws goes with --mix seed");
            return usage();
        }
        match aws_types() {
            Ok(t) => (seed_input(pods, t), "aws"),
            Err(e) => {
                eprintln!("failed to load the embedded AWS catalogue: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        (input(pods, types, mix), "karpenter")
    };
    let mut best: Option<Report> = None;
    for _ in 0..repeat.max(1) {
        let r = run_input(&inp, mix, catalog, with_bound);
        if r.unschedulable > 0 {
            eprintln!("warning: {} pods unschedulable", r.unschedulable);
        }
        eprintln!("{}", r.line());
        if best
            .as_ref()
            .is_none_or(|b| r.cpu_ms.min(r.elapsed_ms) < b.cpu_ms.min(b.elapsed_ms))
        {
            best = Some(r);
        }
    }
    if let Some(path) = plan_out
        && let Err(e) = write_plan(&inp, &path)
    {
        eprintln!("failed to write {path}: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(r) = best {
        println!("{}", r.line());
        for (name, (nodes, cost)) in &r.pools {
            println!("pool name={name} nodes={nodes} cost_per_hour={cost:.2}");
        }
    }
    ExitCode::SUCCESS
}

/// Solves `inp` once more and writes the plan as JSON (`--plan`: to compare plans across builds).
fn write_plan(
    inp: &stowage_solver::SolveInput,
    path: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let plan = stowage_solver::solve(inp, &stowage_solver::SolveOptions::default());
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer(file, &plan)?;
    Ok(())
}

/// A solver input as `stowage plan --write-input` writes it (JSON).
fn read_input(path: &str) -> Result<stowage_solver::SolveInput, Box<dyn std::error::Error>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(serde_json::from_reader(file)?)
}

/// The embedded AWS catalogue (us-east-1, every zone, embedded on-demand and synthetic spot prices).
fn aws_types() -> Result<Vec<stowage_solver::InstanceType>, stowage_aws_catalog::Error> {
    stowage_aws_catalog::embedded(
        "us-east-1",
        &stowage_aws_catalog::CatalogSettings::default(),
    )
}

/// `stowage-bench consolidate [--nodes N] [--pods N] [--repeat N]`.
fn consolidate(args: &[String]) -> ExitCode {
    use stowage_solver::consolidate::{self, ConsolidationOptions};
    let (mut nodes, mut pods, mut repeat) = (3_200usize, 40_000usize, 1usize);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<usize>().ok());
        match (flag.as_str(), value) {
            ("--nodes", Some(v)) => nodes = v,
            ("--pods", Some(v)) => pods = v,
            ("--repeat", Some(v)) => repeat = v.max(1),
            _ => {
                eprintln!("usage: stowage-bench consolidate [--nodes N] [--pods N] [--repeat N]");
                return ExitCode::from(2);
            }
        }
    }
    let types = match aws_types() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("failed to load the embedded AWS catalogue: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = stowage_bench::cluster::consolidation_cluster(nodes, pods, types, 7);
    eprintln!(
        "cluster nodes={} running_pods={} pending_pods={} candidates={} blocked={}",
        c.input.nodes.len(),
        c.running_pods,
        c.input.pods.len(),
        c.candidates.len(),
        c.blocked
    );
    let options = ConsolidationOptions::default();
    // Each method alone, for where the time goes.
    type MethodFn = fn(
        &stowage_solver::SolveInput,
        &[consolidate::Candidate],
        &consolidate::Budgets,
        &ConsolidationOptions,
    ) -> consolidate::Decision;
    let methods: [(&str, MethodFn); 2] = [
        ("multi-node", consolidate::multi_node),
        ("single-node", consolidate::single_node),
    ];
    for (name, f) in methods {
        let start = std::time::Instant::now();
        let d = f(&c.input, &c.candidates, &c.budgets, &options);
        eprintln!(
            "method={name} simulations={} truncated={} found={} nodes_removed={} elapsed_ms={:.0}",
            d.simulations,
            d.truncated,
            d.command.is_some(),
            d.command.as_ref().map_or(0, |c| c.candidates.len()),
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    // The worst case: the busiest candidates first, so single-node probes keep failing until
    // the round's simulation cap.
    let mut busiest = c.candidates.clone();
    busiest.reverse();
    let start = std::time::Instant::now();
    let d = consolidate::single_node(&c.input, &busiest, &c.budgets, &options);
    eprintln!(
        "method=single-node-busiest-first simulations={} truncated={} found={} elapsed_ms={:.0}",
        d.simulations,
        d.truncated,
        d.command.is_some(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    // One from-scratch probe (what every probe cost before the prepared cluster).
    let start = std::time::Instant::now();
    let first: Vec<&str> = c
        .candidates
        .iter()
        .take(50)
        .map(|c| c.node.as_str())
        .collect();
    let plan = stowage_solver::simulate_without(&c.input, &first, &options.solve);
    eprintln!(
        "probe from-scratch candidates=50 new_claims={} elapsed_ms={:.0}",
        plan.new_claims.len(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    // Preparation vs probes: a round cut after one simulation against the full round.
    let time_round = |max_simulations: usize| {
        let o = ConsolidationOptions {
            max_simulations,
            ..options.clone()
        };
        let start = std::time::Instant::now();
        let d = consolidate::decide(&c.input, &c.candidates, &c.budgets, &o);
        (start.elapsed().as_secs_f64() * 1000.0, d.simulations)
    };
    let (one, _) = time_round(1);
    let (all, sims) = time_round(options.max_simulations);
    if sims > 1 {
        eprintln!(
            "probes simulations={sims} first_round_ms={one:.0} per_probe_ms={:.1}",
            (all - one) / (sims - 1) as f64
        );
    }
    let mut best: Option<(f64, consolidate::Decision)> = None;
    for _ in 0..repeat {
        let start = std::time::Instant::now();
        let d = consolidate::decide(&c.input, &c.candidates, &c.budgets, &options);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        eprintln!("round simulations={} elapsed_ms={ms:.0}", d.simulations);
        if best.as_ref().is_none_or(|(b, _)| ms < *b) {
            best = Some((ms, d));
        }
    }
    let Some((ms, d)) = best else {
        return ExitCode::FAILURE;
    };
    if let Some(cmd) = &d.command {
        eprintln!(
            "command method={} replacement={} simulations={}",
            cmd.method.as_str(),
            cmd.replacement.as_ref().map_or_else(
                || "none".to_string(),
                |r| format!(
                    "{} ({} options, ${:.4}/h)",
                    r.instance_type_options.first().map_or("?", String::as_str),
                    r.instance_type_options.len(),
                    r.cheapest_price
                )
            ),
            d.simulations
        );
    }
    println!(
        "consolidate nodes={} pods={} candidates={} command={} nodes_removed={} savings_per_hour={:.2} elapsed_ms={:.0}",
        c.input.nodes.len(),
        c.running_pods,
        c.candidates.len(),
        d.command.as_ref().map_or("none", |c| c.method.as_str()),
        d.command.as_ref().map_or(0, |c| c.candidates.len()),
        d.command.as_ref().map_or(0.0, |c| c.savings_per_hour),
        ms
    );
    ExitCode::SUCCESS
}
