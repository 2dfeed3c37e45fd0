//! `stowage-bench read-dump FILE [--repeat N] [--piece-kib N] [--threads N]`: times the fast reader of `stowage plan`
//! (`stowage_dump`) on a dump written by `gen-pods`, as `plan` calls it: a JSON file read in
//! pieces that are parsed as they arrive, a YAML file read whole then parsed. Reported as
//! `read-dump format=.. bytes=.. pods=.. elapsed_ms=.. cpu_ms=.. mb_per_sec=..` per run
//! (`cpu_ms` is the whole process's, every thread; 10 ms resolution).

use std::process::ExitCode;
use std::time::Instant;

use stowage_bench::process_cpu_ms;
use stowage_dump::Item;

pub fn main(args: &[String]) -> ExitCode {
    let Some(path) = args.first() else {
        return usage();
    };
    let (mut repeat, mut piece_kib, mut threads) = (1usize, 4096usize, None);
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|v| *v > 0);
        match (flag.as_str(), value) {
            ("--repeat", Some(v)) => repeat = v,
            ("--piece-kib", Some(v)) => piece_kib = v,
            ("--threads", Some(v)) => threads = Some(v),
            _ => return usage(),
        }
    }
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    for _ in 0..repeat {
        let (start, cpu) = (Instant::now(), process_cpu_ms());
        let (format, read) = match read(path, threads, piece_kib << 10) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("read-dump: {path}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        let cpu_ms = process_cpu_ms() - cpu;
        let Some(docs) = read else {
            eprintln!("read-dump: {path}: the fast reader declines it (plan reads it exactly)");
            return ExitCode::FAILURE;
        };
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        println!(
            "read-dump format={format} bytes={bytes} pods={} elapsed_ms={elapsed_ms:.1} cpu_ms={cpu_ms:.0} mb_per_sec={:.0}",
            pods(&docs),
            bytes as f64 / 1e6 / (elapsed_ms / 1e3),
        );
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: stowage-bench read-dump FILE [--repeat N] [--piece-kib N] [--threads N]");
    ExitCode::from(2)
}

/// The file read as `stowage plan` reads it (JSON with `threads` parsers and pieces of
/// `piece_bytes`; YAML as `plan` does).
fn read(
    path: &str,
    threads: usize,
    piece_bytes: usize,
) -> std::io::Result<(&'static str, Option<Vec<Item>>)> {
    let mut file = std::fs::File::open(path)?;
    let json = stowage_dump::starts_like_json(&mut file)?;
    if json {
        return Ok((
            "json",
            stowage_dump::json_reader_with(file, threads, piece_bytes, &stowage_dump::Keep),
        ));
    }
    let text = std::fs::read_to_string(path)?;
    Ok((
        "yaml",
        stowage_dump::yaml_documents(&text, || stowage_dump::yaml_options(usize::MAX, usize::MAX)),
    ))
}

fn pods(docs: &[Item]) -> usize {
    docs.iter()
        .map(|d| match d {
            Item::Pod(_) => 1,
            Item::List(items) => pods(items),
            Item::Null | Item::Other(_) => 0,
        })
        .sum()
}
