fn main() -> std::process::ExitCode {
    smartsite::main()
}
