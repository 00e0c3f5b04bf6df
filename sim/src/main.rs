fn main() -> std::process::ExitCode {
    sim::main_with(scenarios::catalogue())
}
