fn main() -> std::process::ExitCode {
    sim::cli::main()
}
