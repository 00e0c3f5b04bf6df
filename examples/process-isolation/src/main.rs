fn main() -> std::process::ExitCode {
    sim::main_with(process_isolation::catalogue())
}
