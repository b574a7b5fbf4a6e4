//! `psrt-cli`: publish, subscribe, `--top` and `--benchmark` against a PSRT
//! server. All logic lives in `psrt::client::cli`; see `psrt-cli --help`.

/// Large message buffers start on a page boundary (see `psrt::page_alloc`).
#[global_allocator]
static ALLOC: psrt::page_alloc::PageAlignedLarge = psrt::page_alloc::PageAlignedLarge;

fn main() -> std::process::ExitCode {
    psrt::client::cli::main()
}
