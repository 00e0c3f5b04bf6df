fn main() -> std::process::ExitCode {
    sim::main_with(bounded_queue::catalogue())
}
