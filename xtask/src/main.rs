//! `cargo xtask <command>`: project automation that is not part of the product.
//!
//! Commands:
//! - `bench [--quick] [--isolation container|gvisor|both] [--no-build] [--warm-pool N]`: measure Islet
//!   against a bare `runc run` of the same rootfs and print (and write
//!   `target/bench/report.json`) a report. See `bench/mod.rs`.
//! - `bench-preview [--quick] [--no-build] [--backend-processes N]`: Islet's preview edge next
//!   to nginx proxying the same in-sandbox backend; prints (and writes
//!   `target/bench/preview.json`) a report. See `bench/preview/mod.rs`.

mod bench;

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
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}\n\n{}", bench::preview::USAGE);
            Ok(())
        }
        _ => anyhow::bail!("{USAGE}\n\n{}", bench::preview::USAGE),
    }
}
