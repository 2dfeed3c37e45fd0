//! `stowage-bench solve --pods N --types 400 --mix diverse|generic`: one timed solve, reported as
//! `solve pods=.. types=.. mix=.. nodes=.. cost_per_hour=.. bound_per_hour=.. gap=.. elapsed_ms=.. pods_per_sec=..`.

use std::process::ExitCode;

use stowage_bench::{Mix, run};

fn usage() -> ExitCode {
    eprintln!(
        "usage: stowage-bench solve [--pods N] [--types N] [--mix diverse|generic] [--repeat N]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("solve") {
        return usage();
    }
    let (mut pods, mut types, mut mix, mut repeat) = (20_000usize, 400usize, Mix::Diverse, 1usize);
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return usage();
        };
        let ok = match flag.as_str() {
            "--pods" => value.parse().map(|v| pods = v).is_ok(),
            "--types" => value.parse().map(|v| types = v).is_ok(),
            "--repeat" => value.parse().map(|v| repeat = v).is_ok(),
            "--mix" => Mix::parse(value).map(|m| mix = m).is_some(),
            _ => false,
        };
        if !ok {
            eprintln!("bad argument {flag} {value}");
            return usage();
        }
    }
    let mut best: Option<stowage_bench::Report> = None;
    for _ in 0..repeat.max(1) {
        let r = run(pods, types, mix);
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
    }
    ExitCode::SUCCESS
}
