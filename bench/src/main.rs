//! `stowage-bench solve --pods N --types 400 --mix diverse|generic|seed|spread|spread-limit --catalog karpenter|aws`:
//! one timed solve, reported as `solve pods=.. types=.. mix=.. nodes=.. cost_per_hour=..
//! bound_per_hour=.. gap=.. elapsed_ms=.. pods_per_sec=.. catalog=.. bound_ms=..`, then one
//! `pool name=.. nodes=.. cost_per_hour=..` line per NodePool.
//! `stowage-bench gen-pods --pods N --out pods.json --nodepools pools.yaml`: a `kubectl get pods
//! -A -o json` dump of pending pods in the seed mix, for timing `stowage plan` (see `pods.rs`).

use std::process::ExitCode;

use stowage_bench::{Mix, Report, input, run_input, seed_input};

mod pods;

fn usage() -> ExitCode {
    eprintln!(
        "usage: stowage-bench solve [--pods N] [--types N] [--mix diverse|generic|seed|spread|spread-limit] [--catalog karpenter|aws] [--repeat N]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("gen-pods") {
        return pods::main(&args[1..]);
    }
    if args.first().map(String::as_str) != Some("solve") {
        return usage();
    }
    let (mut pods, mut types, mut mix, mut repeat) = (None, 400usize, Mix::Diverse, 1usize);
    let mut catalog = "karpenter".to_string();
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
    let (inp, catalog) = if catalog == "aws" {
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
        let r = run_input(&inp, mix, catalog);
        if r.unschedulable > 0 {
            eprintln!("warning: {} pods unschedulable", r.unschedulable);
        }
        eprintln!("{}", r.line());
        if best.as_ref().is_none_or(|b| r.elapsed_ms < b.elapsed_ms) {
            best = Some(r);
        }
    }
    if let Some(r) = best {
        println!("{}", r.line());
        for (name, (nodes, cost)) in &r.pools {
            println!("pool name={name} nodes={nodes} cost_per_hour={cost:.2}");
        }
    }
    ExitCode::SUCCESS
}

/// The embedded AWS catalogue (us-east-1, every zone, embedded on-demand and synthetic spot prices).
fn aws_types() -> Result<Vec<stowage_solver::InstanceType>, stowage_aws_catalog::Error> {
    stowage_aws_catalog::embedded(
        "us-east-1",
        &stowage_aws_catalog::CatalogSettings::default(),
    )
}
