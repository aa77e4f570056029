//! `cargo xtask <command>`: project automation that is not part of the product.
//!
//! Commands:
//! - `bench [--quick] [--isolation container|gvisor|both] [--no-build] [--warm-pool N]`: measure Islet
//!   against a bare `runc run` of the same rootfs and print (and write
//!   `target/bench/report.json`) a report. See `bench/mod.rs`.
//! - `bench-preview [--quick] [--no-build] [--backend-processes N]`: Islet's preview edge next
//!   to nginx proxying the same in-sandbox backend; prints (and writes
//!   `target/bench/preview.json`) a report. See `bench/preview/mod.rs`.
//! - `ci lint|unit|host|sdk|all`: the test suite in tiers, cheapest first. See `ci.rs`.
//! - `tidy`: every crate's module cycles (the lint tier refuses any). See `tidy.rs`.

mod bench;
mod ci;
mod tidy;

const USAGE: &str =
    "usage: cargo xtask bench [--quick] [--isolation container|gvisor|both] [--no-build] [--warm-pool N]

  --quick       small sample sizes (a CI smoke run)
  --isolation   which Islet isolation levels to measure (default: both)
  --no-build    do not run `cargo build --release -p islet -p islet-agent` first";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => {
            let options = bench::Options::parse(&args[1..])?;
            if options.help {
                println!("{USAGE}");
                return Ok(());
            }
            bench::run(&options)
        }
        Some("bench-preview") => {
            let options = bench::preview::Options::parse(&args[1..])?;
            if options.help {
                println!("{}", bench::preview::USAGE);
                return Ok(());
            }
            bench::preview::run(&options)
        }
        Some("ci") => ci::run(&args[1..]),
        Some("tidy") => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            for (krate, cycles) in tidy::cycles(&root)? {
                for cycle in cycles {
                    println!("{krate}: {} ({} modules)", cycle.join(" ↔ "), cycle.len());
                }
            }
            Ok(())
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}\n\n{}\n\n{}", bench::preview::USAGE, ci::USAGE);
            Ok(())
        }
        _ => anyhow::bail!("{USAGE}\n\n{}", bench::preview::USAGE),
    }
}
