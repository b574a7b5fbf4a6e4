//! `psrt-cli`: publish, subscribe, `--top` and `--benchmark` against a PSRT
//! server. All logic lives in `psrt::client::cli`; see `psrt-cli --help`.

fn main() -> std::process::ExitCode {
    psrt::client::cli::main()
}
